"""Build the native Windows agent (neighcheck_agent.c) with mingw-w64.

The .exe is never committed: it is built on the harness host and uploaded to devices.
`build_agent(out_dir)` rebuilds only when the source or the compiler flags changed (a
digest stamp sits next to the .exe) and replaces the .exe atomically, so parallel pytest
workers building into the same directory never see a half-written file.

    python -m harness.device.agents.windows.build OUT_DIR     # prints the .exe path
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.errors import UsageError

SOURCE = Path(__file__).with_name("neighcheck_agent.c")
EXE_NAME = "neighcheck_agent.exe"
COMPILER = "x86_64-w64-mingw32-gcc"
APT_PACKAGE = "gcc-mingw-w64-x86-64"
# -municode: wmain gets UTF-16 arguments. Only system DLLs are imported (kernel32, advapi32,
# ws2_32, msvcrt); iphlpapi is loaded at run time so a missing export cannot stop the loader.
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-municode", "-static-libgcc", "-s")
LIBS = ("-lws2_32",)
BUILD_TIMEOUT_S = 120.0


def _digest(sources: Sequence[Path], flags: Sequence[str], libs: Sequence[str]) -> str:
    h = hashlib.sha256()
    for source in sources:
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    h.update("\0".join((COMPILER, *flags, *libs)).encode())
    return h.hexdigest()


def compile_pe(out: Path, sources: Sequence[Path], flags: Sequence[str],
               libs: Sequence[str] = ()) -> Path:
    """Compile `sources` (C files, and for a DLL its .def) into `out` with mingw-w64 unless the
    digest stamp beside it says these sources and flags built it; return `out`.

    The one build rule for the agent and for test-only Windows programs and DLLs (e.g. the
    iphlpapi stand-in in tests/support). `out` is replaced atomically, so parallel pytest
    workers building into the same directory never see a half-written file. Raises
    UsageError when the cross compiler is missing (naming the apt package) or the compile
    fails.
    """
    out = Path(out)
    stamp = out.with_name(out.name + ".sha256")
    digest = _digest(sources, flags, libs)
    if out.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return out

    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise UsageError(f"{COMPILER} not found: install the Debian package {APT_PACKAGE} "
                         f"(apt-get install -y {APT_PACKAGE}) to build the Windows agent")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}-", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            proc = subprocess.run([compiler, *flags, "-o", str(tmp), *map(str, sources), *libs],
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UsageError(f"{COMPILER} did not finish within {BUILD_TIMEOUT_S:g} s") from None
        if proc.returncode != 0:
            raise UsageError(f"building {out.name} failed:\n{proc.stderr.strip()}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(digest + "\n")
    return out


def build_agent(out_dir: Path, defines: Sequence[str] = ()) -> Path:
    """Return the path of an up-to-date neighcheck_agent.exe in out_dir, compiling if needed.

    `defines` (NAME=VALUE, passed as -D) is for test builds only, e.g. FLUSH_EXPORT to point
    the flush verb at another export; use a separate out_dir for such a build.
    Raises UsageError when the cross compiler is missing (naming the apt package) or the
    compile fails.
    """
    flags = (*CFLAGS, *(f"-D{define}" for define in defines))
    return compile_pe(Path(out_dir) / EXE_NAME, [SOURCE], flags, LIBS)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.device.agents.windows.build OUT_DIR", file=sys.stderr)
        return 2
    try:
        print(build_agent(Path(args[0])))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
