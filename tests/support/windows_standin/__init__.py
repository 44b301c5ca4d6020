"""A scripted stand-in for iphlpapi.dll, to run the real Windows agent's every path under Wine.

Wine 8 exports no FlushIpNetTable2, CreateIpNetEntry2 or DeleteIpNetEntry2, so the paths that
matter on a real Windows host never run against Wine's own iphlpapi. The stand-in
(standin.c, built with mingw-w64 as iphlpapi.dll) answers the NETIOAPI functions the agent
calls from a script and records every call with its arguments:

- `build_standin` builds a variant (all exports, some left out, or the "poison" DLL that
  marks itself when loaded), cached by source digest like the agent (build.compile_pe);
- `StandinWine` installs a variant into a test prefix's C:\\windows\\system32 and runs the
  agent with `iphlpapi=n` added to WINEDLLOVERRIDES, so Wine loads the stand-in the way
  Windows loads iphlpapi (a native DLL found by the search path): never through the agent's
  own folder. Wine's own processes (services started with the server) keep the builtin.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.device.agents.windows import build
from harness.lab import wine as winelab

SOURCE = Path(__file__).with_name("standin.c")
DLL_NAME = "iphlpapi.dll"
# Everything the agent resolves with GetProcAddress.
EXPORTS = ("FlushIpNetTable2", "CreateIpNetEntry2", "DeleteIpNetEntry2", "SetIpNetEntry2",
           "GetIpNetTable2", "GetIfTable2", "GetIpInterfaceTable", "FreeMibTable")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-static-libgcc", "-s")
SCRIPT_ENV, LOG_ENV = "NCK_STANDIN_SCRIPT", "NCK_STANDIN_LOG"
POISON_MARKER_SUFFIX = ".loaded"  # the poison DLL writes <its own path>.loaded when loaded
CALL_TIMEOUT_S = 20.0

# NL_NEIGHBOR_STATE (netioapi.h)
NL_NEIGHBOR_STATE = {"NlnsUnreachable": 0, "NlnsIncomplete": 1, "NlnsProbe": 2, "NlnsDelay": 3,
                     "NlnsStale": 4, "NlnsReachable": 5, "NlnsPermanent": 6}


def build_standin(out_dir: Path, omit: frozenset[str] | set[str] = frozenset(),
                  poison: bool = False) -> Path:
    """An up-to-date stand-in variant: every export but `omit`; `poison` marks itself."""
    unknown = set(omit) - set(EXPORTS)
    if unknown:
        raise ValueError(f"not stand-in exports: {sorted(unknown)}")
    name = "poison" if poison else "full" if not omit else "no-" + "-".join(sorted(omit))
    variant = Path(out_dir) / name
    variant.mkdir(parents=True, exist_ok=True)
    # The .def decides what is exported (standin_X is exported as X): a left-out name is a
    # missing export, exactly what GetProcAddress reports on an implementation without it.
    definition = "LIBRARY iphlpapi.dll\nEXPORTS\n" + "".join(
        f"    {fn}=standin_{fn}\n" for fn in EXPORTS if fn not in omit)
    def_file = variant / "iphlpapi.def"
    if not def_file.is_file() or def_file.read_text() != definition:
        def_file.write_text(definition)
    flags = (*CFLAGS, *(("-DSTANDIN_POISON",) if poison else ()))
    return build.compile_pe(variant / DLL_NAME, [SOURCE, def_file], flags)


def windows_path(path: Path) -> str:
    """A host path as Wine's Z: drive shows it (Z: is the host's /)."""
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


@dataclass
class Script:
    """What the stand-in answers: codes per function (one per call, the last repeats; 0 when
    not given) and the rows of its tables."""

    lines: list[str] = field(default_factory=list)

    def returns(self, function: str, *codes: int) -> "Script":
        self.lines.append(f"return {function} {' '.join(str(c) for c in codes)}")
        return self

    def table_on_error(self, function: str) -> "Script":
        """Also hand out an (empty) table when `function` fails."""
        self.lines.append(f"tableonerror {function}")
        return self

    def neighbor(self, family: int, ifindex: int, address: str, lladdr: str | None,
                 state: int, router: bool = False, unreachable: bool = False) -> "Script":
        packed = ipaddress.ip_address(address).packed.hex()
        mac = lladdr.replace(":", "") if lladdr else "-"
        self.lines.append(f"neigh {family} {ifindex} {packed} {mac} {state} {int(router)} "
                          f"{int(unreachable)}")
        return self

    def interface(self, index: int, alias: str, mac: str | None, up: bool = True,
                  filter_module: bool = False) -> "Script":
        mac_hex = mac.replace(":", "") if mac else "-"
        self.lines.append(f"if {index} {alias} {mac_hex} {int(up)} {int(filter_module)}")
        return self

    def ip_interface(self, family: int, index: int) -> "Script":
        self.lines.append(f"ipif {family} {index}")
        return self

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


@dataclass
class Reply:
    """One agent run against the stand-in: its exit code, its one JSON object, and the calls
    the stand-in recorded (in order; DllMain first)."""

    returncode: int
    reply: dict[str, Any]  # without elapsed_us
    log: list[dict[str, Any]]
    stdout: bytes
    elapsed_us: int | None = None  # the API call's own time, when the reply said (issue 15)

    def calls(self, function: str) -> list[dict[str, Any]]:
        return [entry for entry in self.log if entry["fn"] == function]

    @property
    def loaded_from(self) -> list[str]:
        return [entry["path"] for entry in self.log if entry["fn"] == "DllMain"]


def untimed(reply: dict[str, Any]) -> int | None:
    """Take `elapsed_us` (the API call's own time, a protocol extension) out of a reply, after
    checking it is a plausible number of microseconds; None when the reply had none."""
    elapsed = reply.pop("elapsed_us", None)
    assert elapsed is None or (type(elapsed) is int and 0 <= elapsed < CALL_TIMEOUT_S * 1e6), elapsed
    return elapsed


def row_address(call: dict[str, Any]) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a row-taking call (Create/Delete/SetIpNetEntry2) was given."""
    return ipaddress.ip_address(bytes.fromhex(call["address"]))


class StandinWine:
    """Runs Windows programs in one prepared WINEPREFIX (whose wineserver runs in `netns`)
    with the stand-in as iphlpapi.dll. Not thread-safe: one call at a time."""

    def __init__(self, netns: str, prefix: Path, workdir: Path):
        self.netns, self.prefix, self.workdir = netns, Path(prefix), Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.script_file = self.workdir / "script.txt"
        self.log_file = self.workdir / "calls.jsonl"
        self.system32_dll = self.prefix / "drive_c" / "windows" / "system32" / DLL_NAME
        self._installed: Path | None = None

    def install(self, dll: Path) -> None:
        """Make `dll` the prefix's system32 iphlpapi.dll. A clone's DLLs are hard links into
        the cached template: replace the directory entry, never write through the link."""
        if self._installed == dll:
            return
        tmp = self.system32_dll.with_name(f".{DLL_NAME}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        tmp.write_bytes(Path(dll).read_bytes())
        os.replace(tmp, self.system32_dll)
        self._installed = dll

    def remove_dll(self) -> None:
        """No iphlpapi.dll in system32 at all (with `iphlpapi=n`, Wine has none to load)."""
        self.system32_dll.unlink(missing_ok=True)
        self._installed = None

    def env(self) -> dict[str, str]:
        env = winelab.wine_env(self.prefix)
        env["WINEDLLOVERRIDES"] += ";iphlpapi=n"
        env[SCRIPT_ENV] = windows_path(self.script_file)
        env[LOG_ENV] = windows_path(self.log_file)
        return env

    def argv(self, exe: Path, *args: str | int) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *winelab.wine_argv(exe, *args)]

    def prepare(self, dll: Path | None, script: Script | None) -> None:
        if dll is None:
            self.remove_dll()
        else:
            self.install(dll)
        self.script_file.write_text((script or Script()).text())
        self.log_file.unlink(missing_ok=True)

    def read_log(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line]

    def run(self, dll: Path | None, exe: Path, *args: str | int,
            script: Script | None = None) -> Reply:
        """Run `exe args` once with `dll` as system32's iphlpapi.dll (None: none there); the
        reply must be exactly one JSON line (any exit code)."""
        self.prepare(dll, script)
        try:
            proc = subprocess.run(self.argv(exe, *args), env=self.env(), capture_output=True,
                                  timeout=CALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"`{exe.name} {' '.join(map(str, args))}` did not finish "
                                 f"within {CALL_TIMEOUT_S:g} s") from None
        out = proc.stdout.decode(errors="replace")
        assert out.endswith("\n") and out.count("\n") == 1 and out.isascii(), \
            f"not one ASCII JSON line: {out!r} (stderr: {proc.stderr[-300:]!r})"
        reply = json.loads(out)
        assert isinstance(reply, dict), out
        elapsed = untimed(reply)
        return Reply(proc.returncode, reply, self.read_log(), proc.stdout, elapsed)

    def popen(self, dll: Path, exe: Path, *args: str | int) -> subprocess.Popen:
        """Start `exe args` with a stdin pipe (the lock verb holds until stdin closes)."""
        self.install(dll)
        return subprocess.Popen(self.argv(exe, *args), env=self.env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
