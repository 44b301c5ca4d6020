"""The Windows driver: the native agent, built here and uploaded over SFTP.

- The agent (agents/windows/neighcheck_agent.c) is built on the harness host with mingw-w64
  and uploaded to `agent.upload_dir` (default `neighcheck`, relative to the user's home, which
  is where Windows OpenSSH's SFTP starts). It is checksum-cached: the remote copy is read back
  and hashed once per session; only a missing or different copy (changed after upload, or a
  new build) is uploaded again, so a stale or tampered agent is never run.
- How the command line is quoted is the device's dialect (harness/device/dialect.py).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
from pathlib import Path

import paramiko

from harness.errors import DeviceError
from harness.inventory import Device, Inventory
from harness.paths import cache_dir
from harness.ssh import SshSession

DEFAULT_UPLOAD_DIR = "neighcheck"
REMOTE_NAME = "neighcheck_agent.exe"


def local_agent() -> Path:
    """The built agent (built on first use, rebuilt when its source changes)."""
    from harness.device.agents.windows.build import build_agent
    return build_agent(cache_dir() / "agent")


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


def upload_dir(device: Device, inventory: Inventory | None) -> str:
    """Where the agent goes: the inventory's upload_dir (relative to the login's home), or for
    a lab device a directory in its lab state, which `lab down` removes."""
    if device.lab is not None and inventory is not None:
        return str(inventory.lab_state_dir / device.name / "upload")
    return device.agent.upload_dir or DEFAULT_UPLOAD_DIR


def agent_prefix(device: Device, session: SshSession, inventory: Inventory | None) -> list[str]:
    """The words that run the uploaded agent: its path, behind the launcher where one is set."""
    remote = ensure_uploaded(session, upload_dir(device, inventory), local_agent())
    if not device.agent.launcher and re.match(r"^/[A-Za-z]:/", remote):
        remote = remote[1:].replace("/", "\\")  # Windows OpenSSH's SFTP says /C:/Users/...
    return [*device.agent.launcher, remote]
