"""The Windows driver: the native agent, built here and uploaded over SFTP.

- The agent (agents/windows/neighcheck_agent.c) is built on the harness host with mingw-w64
  and uploaded over the SSH session that will run it, so each account runs its own copy
  from a place it can write and execute: `agent.upload_dir`, default `neighcheck`.
  A relative upload_dir is relative to the login's profile (where Windows OpenSSH's SFTP
  starts); an absolute one (`C:\\neighcheck`) is written in SFTP's `/C:/neighcheck` form.
  The copy is checksum-checked on every `make_agent`: the remote copy is read back and
  hashed; only a missing or different copy (changed after upload, or a new build) is
  uploaded again, so a stale or tampered agent is never run.
- The agent runs from the Windows form of the path SFTP reports: `/C:/Users/x/...` becomes
  `C:\\Users\\x\\...`; behind a POSIX transport to Wine (the lab device) a Unix path
  becomes `Z:\\...`, Wine's drive for the Unix root.
- How the command line is quoted is the device's dialect (harness/device/dialect.py).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
from pathlib import Path

import paramiko

from harness.errors import DeviceError, UsageError
from harness.inventory import Device, Inventory
from harness.paths import cache_dir
from harness.ssh import SshSession

DEFAULT_UPLOAD_DIR = "neighcheck"
REMOTE_NAME = "neighcheck_agent.exe"
WINE_UNIX_DRIVE = "Z:"  # Wine maps the Unix root to Z: in every prefix it creates
_DRIVE_PATH = re.compile(r"^([A-Za-z]):(?:[\\/](.*))?$")
_SFTP_DRIVE_PATH = re.compile(r"^/([A-Za-z]):(?:/(.*))?$")
_SFTP_DRIVE_ROOT = re.compile(r"^/[A-Za-z]:/?$")


def local_agent() -> Path:
    """The built agent (built on first use, rebuilt when its source changes)."""
    from harness.device.agents.windows.build import build_agent
    return build_agent(cache_dir() / "agent")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sftp_dir(upload_dir: str) -> str:
    """upload_dir as an SFTP path: `C:\\neighcheck` -> `/C:/neighcheck`; a relative
    `tools\\neighcheck` -> `tools/neighcheck` (relative to the login's profile); a POSIX
    absolute path (a lab device on this host) unchanged."""
    if upload_dir.startswith("/"):
        return upload_dir
    drive = _DRIVE_PATH.match(upload_dir)
    if drive:
        rest = (drive.group(2) or "").replace("\\", "/").strip("/")
        return f"/{drive.group(1).upper()}:/{rest}".rstrip("/") if rest else f"/{drive.group(1).upper()}:/"
    if ":" in upload_dir:
        raise UsageError(f"agent.upload_dir {upload_dir!r}: a ':' belongs only after a drive letter "
                         "(C:\\neighcheck)")
    return upload_dir.replace("\\", "/").strip("/")


def windows_path(remote: str, *, wine: bool = False) -> str:
    """The path cmd.exe runs, from the path SFTP reports."""
    drive = _SFTP_DRIVE_PATH.match(remote)
    if drive:
        return f"{drive.group(1).upper()}:\\" + (drive.group(2) or "").replace("/", "\\")
    if wine and remote.startswith("/"):
        return WINE_UNIX_DRIVE + remote.replace("/", "\\")
    return remote.replace("/", "\\")


def ensure_uploaded(session: SshSession, upload_dir: str, local: Path) -> str:
    """Upload the agent unless an identical copy is already there; return its remote path
    as SFTP reports it (absolute)."""
    payload = local.read_bytes()
    want = _sha256(payload)
    directory = sftp_dir(upload_dir)
    sftp = session.sftp()
    try:
        remote = posixpath.join(directory, REMOTE_NAME)
        try:
            with sftp.open(remote, "rb") as fh:
                have = _sha256(fh.read())
        except OSError:
            have = None
        if have != want:
            _mkdirs(sftp, directory)
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
                          f"as {session.login.user!r} failed: {exc}") from None
    finally:
        sftp.close()


def _mkdirs(sftp: paramiko.SFTPClient, path: str) -> None:
    parts, current = path.split("/"), ""
    for part in parts:
        if not part:
            current = "/"
            continue
        current = posixpath.join(current, part) if current else part
        if _SFTP_DRIVE_ROOT.match(current):
            continue  # a drive root: it exists, and some servers refuse to stat it
        try:
            sftp.stat(current)
        except OSError:
            sftp.mkdir(current)


def upload_dir(device: Device, inventory: Inventory | None) -> str:
    """Where the agent goes: the inventory's upload_dir, or for a lab device a directory in
    its lab state, which `lab down` removes."""
    if device.lab is not None and inventory is not None:
        return str(inventory.lab_state_dir / device.name / "upload")
    return device.agent.upload_dir or DEFAULT_UPLOAD_DIR


def agent_prefix(device: Device, session: SshSession, inventory: Inventory | None) -> list[str]:
    """The words that run the built-in agent uploaded over `session`: its Windows path."""
    remote = ensure_uploaded(session, upload_dir(device, inventory), local_agent())
    return [windows_path(remote, wine=bool(device.agent.launcher))]
