"""How to speak to a device's shell, decided once per device: quoting, the device lock's
command, a liveness probe.

- POSIX: a Linux device, or Windows reached through a launcher on a POSIX shell (the embedded
  lab's Wine device, whose sshd is a Linux one).
- Windows: Windows OpenSSH runs commands under `cmd.exe /c`.

`dialect_for` is the one place that chooses; the agent factory, the device lock, the device
under test and doctor all ask it.
"""

from __future__ import annotations

import base64
import re
import shlex

from harness.errors import UsageError
from harness.inventory import Device

POSIX_LOCK_PATH = "/run/lock/neighcheck.lock"
LOCK_BUSY_EXIT = 75  # the lock command's exit status when another run kept the device past the wait
_CMD_SAFE = re.compile(r"^[A-Za-z0-9_.:/\\-]+$")


class PosixDialect:
    name = "posix"
    liveness = "true"
    lock_path = POSIX_LOCK_PATH

    def quote(self, words: list[str]) -> str:
        return " ".join(shlex.quote(w) for w in words)

    def lock_command(self, holder: str, wait: float) -> str:
        """`flock` keeps the lock while `cat` waits on the channel's stdin; prints `locked` once
        held; exit 75 (after printing the holder) when another run keeps it past the wait."""
        info = self.lock_path + ".holder"
        script = (f"exec 9>>{self.lock_path} || exit 70; "
                  f"if ! flock -w {wait:g} 9; then cat {info} 2>/dev/null; exit {LOCK_BUSY_EXIT}; fi; "
                  f"printf '%s\\n' {shlex.quote(holder)} > {info}; echo locked; exec cat >/dev/null")
        return f"sh -c {shlex.quote(script)}"


class WindowsDialect:
    name = "cmd.exe"
    liveness = "rem"  # cmd.exe has no `true`; `rem` runs nothing and exits 0
    lock_path = r"%ProgramData%\neighcheck.lock"

    def quote(self, words: list[str]) -> str:
        return " ".join(cmd_quote(w) for w in words)

    def lock_command(self, holder: str, wait: float) -> str:
        """The same lock on Windows: a file in %ProgramData% opened with no sharing, held by a
        PowerShell process while the channel's stdin stays open. Sent as -EncodedCommand so
        cmd.exe never parses it."""
        holder = holder.replace("'", "''")
        script = "\n".join([
            "$p = Join-Path $env:ProgramData 'neighcheck.lock'",
            f"$deadline = (Get-Date).AddSeconds({wait:g})",
            "while ($true) {",
            "  try { $f = [IO.File]::Open($p, 'OpenOrCreate', 'ReadWrite', 'None'); break }",
            "  catch { if ((Get-Date) -gt $deadline) {",
            f"      Get-Content ($p + '.holder') -ErrorAction SilentlyContinue; exit {LOCK_BUSY_EXIT} }}",
            "    Start-Sleep -Milliseconds 200 }",
            "}",
            f"Set-Content -Path ($p + '.holder') -Value '{holder}'",
            "'locked'",
            "[Console]::In.ReadToEnd() | Out-Null",
        ])
        encoded = base64.b64encode(script.encode("utf-16-le")).decode()
        return f"powershell -NoProfile -NonInteractive -EncodedCommand {encoded}"


Dialect = PosixDialect | WindowsDialect


def cmd_quote(word: str) -> str:
    """Quote one argument for cmd.exe + the MSVC runtime's argv parsing."""
    if _CMD_SAFE.match(word):
        return word
    if any(c in word for c in '"%!^&|<>\r\n'):
        # The agent's arguments are numbers, addresses and MACs; anything else is refused
        # rather than trusted to cmd.exe's quoting rules.
        raise UsageError(f"refusing to pass {word!r} to cmd.exe: characters cmd.exe would interpret")
    return f'"{word}"'


def dialect_for(device: Device) -> Dialect:
    if device.os == "windows" and not device.agent.launcher:
        return WindowsDialect()
    return PosixDialect()
