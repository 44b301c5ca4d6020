"""Root through sudo, for POSIX devices whose root may not log in: `[device.ssh] become = "sudo"`.

Everything the harness runs as the admin account goes through `sudo -n --`: every agent call
(the agent factory), the device lock and cleanup's `ip -batch`. The non-admin account used for
RET-ACCESS never does (`make_agent(privileged=False)`): that account must meet the API as it is.
`sudo -n` never prompts, so a sudo that wants a password fails at once instead of hanging a
run; `check` tries `sudo -n true` once when a device is opened and turns a failure into one
error that names the device, the account and the fix.
"""

from __future__ import annotations

import shlex

from harness.errors import DeviceError
from harness.inventory import Device
from harness.ssh import SshSession

SUDO = ("sudo", "-n", "--")
NOT_FOUND_EXIT = 127  # the shell's status for a command it cannot find


def become_words(device: Device) -> tuple[str, ...]:
    """The words put before every privileged command on this device (none: it logs in as root)."""
    return SUDO if device.ssh.become == "sudo" else ()


def prefixed(words: tuple[str, ...], command: str) -> str:
    """A POSIX command line run through `words` (e.g. sudo); unchanged when there are none."""
    return f"{shlex.join(words)} {command}" if words else command


def as_admin(device: Device, command: str) -> str:
    return prefixed(become_words(device), command)


def check(device: Device, session: SshSession) -> None:
    """Raise DeviceError unless the session's account can use the device's become method."""
    if not become_words(device):
        return
    result = session.run(prefixed(SUDO, "true"), timeout=device.ssh.connect_timeout + 10)
    if result.exit_status == 0:
        return
    said = result.stderr.decode(errors="replace").strip().splitlines()
    said_text = said[-1] if said else f"exit {result.exit_status}"
    user = session.login.user
    if result.exit_status == NOT_FOUND_EXIT:
        problem = "cannot use sudo: sudo is not installed on the device"
    elif "password" in said_text:
        problem = f"cannot use sudo without a password ({said_text!r})"
    else:
        problem = f"cannot use sudo ({said_text!r})"
    raise DeviceError(
        f"device {device.name!r}: account {user!r} {problem}, and become = \"sudo\" never prompts. "
        f"Fix: let {user} run sudo without a password on the device (sudoers: "
        f"`{user} ALL=(root) NOPASSWD: ALL`), or let root log in over SSH and set user = \"root\" "
        "without become")
