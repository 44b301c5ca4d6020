"""The Windows driver: the native agent uploaded over SFTP and run under the device's shell.

- The agent (harness/agents/windows/neighcheck_agent.c) is built here with mingw-w64 and
  uploaded to `agent.upload_dir` (default `neighcheck`, relative to the user's home, which is
  where Windows OpenSSH's SFTP starts). It is checksum-cached: the remote copy is read back and
  hashed once per session; only a missing or different copy (changed after upload, or a new
  build) is uploaded again, so a stale or tampered agent is never run.
- Windows OpenSSH runs commands under cmd.exe: the command line is quoted for cmd.exe and the
  C runtime. A device with a `launcher` (e.g. `wine` on the embedded lab's Wine device, whose
  sshd is a Linux one) gets POSIX shell quoting instead.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import shlex
from pathlib import Path

import paramiko

from harness.agent import Agent
from harness.errors import DeviceError, UsageError
from harness.inventory import Device, Inventory
from harness.ssh import SshSession

DEFAULT_UPLOAD_DIR = "neighcheck"
REMOTE_NAME = "neighcheck_agent.exe"
_CMD_SAFE = re.compile(r"^[A-Za-z0-9_.:/\\-]+$")


def local_agent() -> Path:
    """The built agent (built on first use, rebuilt when its source changes)."""
    from harness.agents.windows.build import build_agent
    from harness.winelab import default_cache_dir
    return build_agent(default_cache_dir() / "agent")


def cmd_quote(word: str) -> str:
    """Quote one argument for cmd.exe + the MSVC runtime's argv parsing."""
    if _CMD_SAFE.match(word):
        return word
    if any(c in word for c in '"%!^&|<>\r\n'):
        # The agent's arguments are numbers, addresses and MACs; anything else is refused
        # rather than trusted to cmd.exe's quoting rules.
        raise UsageError(f"refusing to pass {word!r} to cmd.exe: characters cmd.exe would interpret")
    return f'"{word}"'


class WindowsAgent(Agent):
    def __init__(self, device: Device, session: SshSession, remote_path: str):
        super().__init__(device, session)
        self.remote_path = remote_path
        self.launcher = list(device.agent.launcher)

    def command_line(self, verb: str, *args: str | int) -> str:
        words = [self.remote_path, verb, *map(str, args)]
        if self.launcher:  # a POSIX shell on the device (the Wine lab device)
            return " ".join(shlex.quote(w) for w in [*self.launcher, *words])
        return " ".join(cmd_quote(w) for w in words)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ensure_uploaded(session: SshSession, upload_dir: str, local: Path) -> str:
    """Upload the agent unless an identical copy is already there; return its remote path."""
    payload = local.read_bytes()
    want = _sha256(payload)
    sftp = session.sftp()
    try:
        remote = posixpath.join(upload_dir, REMOTE_NAME)
        try:
            with sftp.open(remote, "rb") as fh:
                have = _sha256(fh.read())
        except FileNotFoundError:
            have = None
        except OSError:
            have = None
        if have != want:
            _mkdirs(sftp, upload_dir)
            tmp = remote + ".part"
            sftp.putfo(io.BytesIO(payload), tmp)
            try:
                sftp.remove(remote)
            except OSError:
                pass
            sftp.rename(tmp, remote)
            with sftp.open(remote, "rb") as fh:
                if _sha256(fh.read()) != want:
                    raise DeviceError(f"device {session.device_name!r}: the uploaded agent does not "
                                      "match its checksum after upload")
        return sftp.normalize(remote)
    except (paramiko.SSHException, OSError) as exc:
        raise DeviceError(f"device {session.device_name!r}: uploading the agent to {upload_dir} "
                          f"failed: {exc}") from None
    finally:
        sftp.close()


def _mkdirs(sftp: paramiko.SFTPClient, path: str) -> None:
    parts, current = path.replace("\\", "/").split("/"), ""
    for part in parts:
        if not part:
            current = "/"
            continue
        current = posixpath.join(current, part) if current else part
        try:
            sftp.stat(current)
        except OSError:
            sftp.mkdir(current)


def upload_dir(device: Device, inventory: Inventory) -> str:
    """Where the agent goes: the inventory's upload_dir (relative to the login's home), or for
    a lab device a directory in its lab state, which `lab down` removes."""
    if device.lab is not None:
        return str(inventory.lab_state_dir / device.name / "upload")
    return device.agent.upload_dir or DEFAULT_UPLOAD_DIR


def windows_agent(device: Device, session: SshSession, inventory: Inventory) -> WindowsAgent:
    remote = ensure_uploaded(session, upload_dir(device, inventory), local_agent())
    if not device.agent.launcher and re.match(r"^/[A-Za-z]:/", remote):
        remote = remote[1:].replace("/", "\\")  # Windows OpenSSH's SFTP says /C:/Users/...
    return WindowsAgent(device, session, remote)
