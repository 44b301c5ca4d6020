"""How to speak to a device's shell, decided once per session: quoting, the device lock's
command, a liveness probe, how long a command line may be.

- POSIX sh: a Linux device.
- cmd.exe: Windows OpenSSH's default. It runs an exec request as
  `"C:\\Windows\\system32\\cmd.exe" /c "<command>"`.
- PowerShell: a host whose HKLM\\SOFTWARE\\OpenSSH\\DefaultShell is powershell.exe or pwsh.exe.
  It runs `powershell -c "<command>"`, where a quoted exe path needs the call operator `&`
  and the exit code of a native program must be passed on with `exit $LASTEXITCODE`.
- A Windows shell behind a POSIX transport (`[device.agent] launcher`, the embedded lab's Wine
  device, whose sshd is a Linux one): the command line is built for the Windows shell as on
  any Windows device, then given as one word to the launcher, which runs it the way Windows
  OpenSSH would (harness/lab/sshexec.c).

`dialect_for` is the one place that chooses: on a Windows device it asks the shell once per
SSH session (`SHELL_PROBE`, whose output differs between the three shells). The agent
factory, the device lock, the device under test and doctor all get their dialect from it.
"""

from __future__ import annotations

import math
import re
import shlex
import weakref

from harness.errors import DeviceError, UsageError
from harness.inventory import Device
from harness.ssh import SshSession

POSIX_LOCK_PATH = "/run/lock/neighcheck.lock"
WINDOWS_LOCK_PATH = r"%ProgramData%\neighcheck.lock"  # the agent's `lock` verb (protocol13.md 3)
LOCK_BUSY_EXIT = 75  # the POSIX lock command's exit status when another run kept the device past the wait
# cmd.exe refuses command lines over 8191 characters; the words get less, because Windows
# OpenSSH wraps them in `"C:\Windows\system32\cmd.exe" /c "..."`.
CMD_LINE_BUDGET = 8000
# A Linux exec request: the shim's text is one argument (MAX_ARG_STRLEN is 128 KiB) and the
# whole request one SSH packet (OpenSSH accepts 256 KiB): stay well below both.
POSIX_LINE_BUDGET = 96_000
# Prints three different things: cmd.exe expands %OS% and leaves `$PSVersionTable...` alone,
# PowerShell does the opposite (Desktop or Core), and sh expands `$PSVersionTable` to nothing.
SHELL_PROBE = "echo neighcheck-shell %OS% $PSVersionTable.PSEdition"

_CMD_SAFE = re.compile(r"^[A-Za-z0-9_.:/\\-]+$")
_PS_SAFE_NUMBER = re.compile(r"^[0-9]+$")
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"  # PowerShell takes all of these as single quotes
_HOLDER_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:@/+-]")


class PosixDialect:
    name = "sh"
    windows = False
    liveness = "true"
    lock_path = POSIX_LOCK_PATH
    line_budget = POSIX_LINE_BUDGET

    def quote(self, words: list[str]) -> str:
        return " ".join(shlex.quote(w) for w in words)

    def word_length(self, word: str) -> int:
        return len(shlex.quote(word)) + 1

    def lock_command(self, holder: str, wait: float, agent_words: list[str] = ()) -> str:
        """`flock` keeps the lock while `cat` waits on the channel's stdin; prints `locked` once
        held; exit 75 (after printing the holder) when another run keeps it past the wait."""
        info = self.lock_path + ".holder"
        script = (f"exec 9>>{self.lock_path} || exit 70; "
                  f"if ! flock -w {wait:g} 9; then cat {info} 2>/dev/null; exit {LOCK_BUSY_EXIT}; fi; "
                  f"printf '%s\\n' {shlex.quote(holder)} > {info}; echo locked; exec cat >/dev/null")
        return f"sh -c {shlex.quote(script)}"


class _WindowsShell:
    """What cmd.exe and PowerShell share: the lock is the agent's own `lock` verb."""

    windows = True
    lock_path = WINDOWS_LOCK_PATH
    line_budget = CMD_LINE_BUDGET

    def quote(self, words: list[str]) -> str:
        raise NotImplementedError

    def lock_command(self, holder: str, wait: float, agent_words: list[str] = ()) -> str:
        """`AGENT lock WAIT HOLDER`: the agent holds %ProgramData%\\neighcheck.lock until its
        stdin closes (protocol13.md item 3). The holder text is kept to characters every
        shell passes through unchanged."""
        if not agent_words:
            raise DeviceError("the Windows device lock needs the agent (its `lock` verb)")
        return self.quote([*agent_words, "lock", str(math.ceil(wait)), safe_holder(holder)])


class CmdDialect(_WindowsShell):
    name = "cmd.exe"
    liveness = "rem"  # cmd.exe has no `true`; `rem` runs nothing and exits 0

    def quote(self, words: list[str]) -> str:
        return " ".join(cmd_quote(w) for w in words)

    def word_length(self, word: str) -> int:
        return len(cmd_quote(word)) + 1


class PowerShellDialect(_WindowsShell):
    name = "PowerShell"
    liveness = "exit 0"

    def quote(self, words: list[str]) -> str:
        # `&` calls the (quoted) program; without `exit $LASTEXITCODE` powershell.exe exits
        # 0 or 1 from $? whatever the program returned.
        if not words:
            raise UsageError("nothing to run")
        return "& " + " ".join(ps_quote(w) for w in words) + "; exit $LASTEXITCODE"

    def word_length(self, word: str) -> int:
        return len(ps_quote(word)) + 1


class LaunchedDialect:
    """A Windows shell behind a POSIX transport: the Windows command line is one word of the
    launcher's POSIX command (e.g. `wine nck-sshexec '<cmd.exe command line>'`)."""

    def __init__(self, inner: CmdDialect | PowerShellDialect, launcher: tuple[str, ...]):
        self.inner, self.launcher = inner, tuple(launcher)
        self.name = f"{inner.name} (through `{' '.join(launcher)}` on a POSIX shell)"
        self.windows = True
        self.lock_path = inner.lock_path
        self.line_budget = inner.line_budget  # the Windows command line is what is limited
        self.liveness = self.wrap(inner.liveness)

    def wrap(self, windows_command: str) -> str:
        return " ".join(shlex.quote(w) for w in (*self.launcher, windows_command))

    def quote(self, words: list[str]) -> str:
        return self.wrap(self.inner.quote(words))

    def word_length(self, word: str) -> int:
        return self.inner.word_length(word)

    def lock_command(self, holder: str, wait: float, agent_words: list[str] = ()) -> str:
        return self.wrap(self.inner.lock_command(holder, wait, agent_words))


Dialect = PosixDialect | CmdDialect | PowerShellDialect | LaunchedDialect


def cmd_quote(word: str) -> str:
    """Quote one argument for cmd.exe + the MSVC runtime's argv parsing."""
    if _CMD_SAFE.match(word):
        return word
    if any(c in word for c in '"%!^&|<>\r\n'):
        # The agent's arguments are numbers, addresses and MACs; anything else is refused
        # rather than trusted to cmd.exe's quoting rules.
        raise UsageError(f"refusing to pass {word!r} to cmd.exe: characters cmd.exe would interpret")
    if word.endswith("\\"):
        raise UsageError(f"refusing to pass {word!r} to cmd.exe: a trailing backslash would escape "
                         "the closing quote")
    return f'"{word}"'


def ps_quote(word: str) -> str:
    """Quote one word for PowerShell: a literal single-quoted string (quote characters
    doubled), which PowerShell passes to a native program as one argument."""
    if _PS_SAFE_NUMBER.match(word):
        return word
    if any(c in word for c in '"\r\n\0'):
        # Windows PowerShell 5.1 passes an embedded " to a native program unescaped.
        raise UsageError(f"refusing to pass {word!r} to PowerShell: characters a native program "
                         "would not get back unchanged")
    if word.endswith("\\") and any(c.isspace() for c in word):
        raise UsageError(f"refusing to pass {word!r} to PowerShell: a trailing backslash would "
                         "escape the closing quote")
    for q in _PS_QUOTES:
        word = word.replace(q, q + q)
    return f"'{word}'"


def safe_holder(holder: str) -> str:
    """The lock holder's text as it may travel on a Windows command line."""
    return _HOLDER_UNSAFE.sub("_", holder)[:200] or "unknown"


def classify_shell(output: str) -> str | None:
    """Which shell printed SHELL_PROBE's output: "cmd.exe", "PowerShell", "sh" or None."""
    words = output.split()
    if "neighcheck-shell" not in words:
        return None
    if "$PSVersionTable.PSEdition" in words and "%OS%" not in words:
        return "cmd.exe"
    if "%OS%" in words and ".PSEdition" in words:
        return "sh"
    if "%OS%" in words and not any("PSEdition" in w for w in words):
        return "PowerShell"  # Desktop or Core after %OS%; nothing before PowerShell 5.1
    return None


_probed: "weakref.WeakKeyDictionary[SshSession, Dialect]" = weakref.WeakKeyDictionary()


def dialect_for(device: Device, session: SshSession) -> Dialect:
    """The dialect of `device` over `session` (connected): POSIX sh on Linux; on Windows,
    the shell that answers SHELL_PROBE (asked once per session), behind the inventory's
    launcher when one is set."""
    if device.os != "windows":
        return PosixDialect()
    known = _probed.get(session)
    if known is not None:
        return known
    launcher = tuple(device.agent.launcher)
    probe = LaunchedDialect(CmdDialect(), launcher).wrap(SHELL_PROBE) if launcher else SHELL_PROBE
    result = session.run(probe, timeout=device.ssh.command_timeout)
    out = result.stdout.decode(errors="replace")
    shell = classify_shell(out)
    where = f"device {device.name!r}"
    if shell not in ("cmd.exe", "PowerShell"):
        said = (out.strip() or result.stderr.decode(errors="replace").strip())[:200]
        if launcher:
            raise DeviceError(f"{where}: the launcher `{' '.join(launcher)}` did not run a Windows "
                              f"shell (exit {result.exit_status}: {said!r}); check [device.agent] "
                              "launcher in the inventory")
        kind = "a POSIX shell" if shell == "sh" else "an unknown shell"
        raise DeviceError(f"{where}: its SSH server runs commands in {kind} ({said!r}); neighcheck "
                          "needs cmd.exe or PowerShell as Windows OpenSSH's DefaultShell, or "
                          "[device.agent] launcher for a POSIX transport")
    dialect: Dialect = CmdDialect() if shell == "cmd.exe" else PowerShellDialect()
    if launcher:
        dialect = LaunchedDialect(dialect, launcher)
    _probed[session] = dialect
    return dialect
