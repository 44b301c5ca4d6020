"""The lab's Wine device runs each command through nck-sshexec (sshexec.c): cmd.exe as
Windows OpenSSH runs it. Built with mingw-w64 like the agent, and installed into the device's
WINEPREFIX, where `wine nck-sshexec` finds it (C:\\windows\\system32 is on Wine's PATH).

    [device.agent]
    launcher = ["wine", "nck-sshexec"]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.device.agents.windows.build import APT_PACKAGE, BUILD_TIMEOUT_S, COMPILER
from harness.errors import UsageError

SOURCE = Path(__file__).with_name("sshexec.c")
EXE_NAME = "nck-sshexec.exe"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-municode", "-static-libgcc", "-s")


def build(out_dir: Path) -> Path:
    """An up-to-date nck-sshexec.exe in out_dir (rebuilt when the source or flags change)."""
    out_dir = Path(out_dir)
    exe, stamp = out_dir / EXE_NAME, out_dir / (EXE_NAME + ".sha256")
    digest = hashlib.sha256(SOURCE.read_bytes() + "\0".join((COMPILER, *CFLAGS)).encode()).hexdigest()
    if exe.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return exe
    compiler = shutil.which(COMPILER)
    if compiler is None:
        raise UsageError(f"{COMPILER} not found: install the Debian package {APT_PACKAGE} "
                         f"(apt-get install -y {APT_PACKAGE}) to build the lab's nck-sshexec")
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".sshexec-", suffix=".exe", dir=out_dir)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            proc = subprocess.run([compiler, *CFLAGS, "-o", str(tmp), str(SOURCE)],
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UsageError(f"{COMPILER} did not finish within {BUILD_TIMEOUT_S:g} s") from None
        if proc.returncode != 0:
            raise UsageError(f"building nck-sshexec failed:\n{proc.stderr.strip()}")
        os.replace(tmp, exe)  # atomic: parallel builders never see half a file
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(digest + "\n")
    return exe


def install(prefix_dir: Path, built: Path) -> Path:
    """Put nck-sshexec.exe into the prefix's C:\\windows\\system32 (a copy of its own: the
    prefix's other files may be hard links to a shared template)."""
    target = Path(prefix_dir) / "drive_c" / "windows" / "system32" / EXE_NAME
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(built, tmp)
    os.replace(tmp, target)
    return target
