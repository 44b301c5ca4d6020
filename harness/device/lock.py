"""The on-device lock: two runs never drive one device at once.

Held for as long as one SSH channel stays open: the lock command keeps the lock while it
waits on the channel's stdin; closing the channel (or losing the connection, or the harness
dying) releases it, so a crashed run never leaves a stale lock.

Which command is the dialect's (harness/device/dialect.py): on a POSIX device `flock` on
/run/lock/neighcheck.lock (through sudo where root may not log in), which prints `locked`; on
Windows the built-in agent's `lock` verb (protocol13.md item 3), which opens
%ProgramData%\\neighcheck.lock with no sharing and prints `{"status": 0, "locked": true}`, or
`{"locked": false, "holder": ...}` when another run kept it past the wait. The built-in agent
holds the lock even where a vendor's agent answers the protocol, so that every run on a device
takes the same lock.
"""

from __future__ import annotations

import json
import socket
import time
from typing import TYPE_CHECKING

from harness.device.become import become_words, prefixed
from harness.device.dialect import LOCK_BUSY_EXIT, Dialect, dialect_for
from harness.errors import DeviceError
from harness.inventory import Device, Inventory
from harness.ssh import SshSession

if TYPE_CHECKING:
    from harness.device.agent import Agent

MAX_BANNER_LINES = 1000  # lines a device may print before `locked` (a login banner) ...
MAX_LINE = 4096  # ... each read at most this long: a device cannot make the harness wait forever


class DeviceLock:
    """An on-device lock held for as long as one SSH channel stays open."""

    def __init__(self, session: SshSession, dialect: Dialect, holder: str, wait: float,
                 become: tuple[str, ...] = (), agent_words: list[str] | tuple[str, ...] = ()):
        self.session, self.dialect, self.holder, self.wait = session, dialect, holder, wait
        self.become = become  # run through sudo where root may not log in (device/become.py)
        self.agent_words = list(agent_words)  # the built-in agent that holds it on Windows
        self._channel = None

    def command(self) -> str:
        """Prints `locked` or {"locked": true} once held, then holds it until stdin closes."""
        return prefixed(self.become, self.dialect.lock_command(self.holder, self.wait, self.agent_words))

    def acquire(self) -> None:
        where = f"device {self.session.device_name!r}"
        channel = self.session.open_channel()
        channel.settimeout(self.wait + 10)
        channel.exec_command(self.command())
        try:
            line = self._until_locked(channel.makefile("rb"), time.monotonic() + self.wait + 10)
        except socket.timeout:
            channel.close()
            raise DeviceError(f"{where}: no answer from the lock command within {self.wait + 10:g} s") from None
        held, busy_holder = _answer(line)
        if held:
            self._channel = channel
            return
        # Bounded: a device that printed something else and kept running must not hang us.
        status = channel.recv_exit_status() if channel.status_event.wait(10) else None
        channel.close()
        if busy_holder is not None or status == LOCK_BUSY_EXIT:
            holder = busy_holder if busy_holder is not None else line
            raise DeviceError(f"{where} is in use by another run ({holder or 'holder unknown'}); "
                              f"waited {self.wait:g} s for {self.dialect.lock_path}")
        if status is None:
            raise DeviceError(f"{where}: the lock command printed {line[:100]!r} instead of `locked`")
        if status == -1:  # no exit status: the connection went, not the command
            raise DeviceError(f"{where}: the connection dropped while taking {self.dialect.lock_path}")
        hint = "does the agent have the `lock` verb?" if self.dialect.windows else "is flock installed?"
        raise DeviceError(f"{where}: cannot take {self.dialect.lock_path} (exit {status}"
                          f"{': ' + line[:200] if line else ''}; {hint})")

    @staticmethod
    def _until_locked(stream, deadline: float) -> str:
        """The line that says the lock is held, or the last line printed before the command
        ended (the holder when busy). Lines before it are a login shell's banner: skipped, as
        the agent's replies do. Raises socket.timeout past the deadline (each read is bounded
        by the channel's timeout)."""
        last = ""
        for _ in range(MAX_BANNER_LINES):
            if time.monotonic() > deadline:
                raise socket.timeout()
            raw = stream.readline(MAX_LINE)
            if not raw:
                return last
            line = raw.decode(errors="replace").strip()
            if _answer(line)[0]:
                return line
            last = line or last
        return last

    @property
    def held(self) -> bool:
        """Still ours: the channel that holds it is open and its connection alive."""
        channel = self._channel
        if channel is None or channel.closed or channel.eof_received:
            return False
        transport = channel.get_transport()
        return transport is not None and transport.is_active()

    def release(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def _answer(line: str) -> tuple[bool, str | None]:
    """(held, holder when busy) from a line of the lock command: POSIX `locked`, or the
    agent's JSON object. Anything else is (False, None)."""
    if line == "locked":
        return True, None
    if not line.startswith("{"):
        return False, None
    try:
        reply = json.loads(line)
    except ValueError:
        return False, None
    if not isinstance(reply, dict):
        return False, None
    if reply.get("locked") is True and reply.get("status") in (0, None):
        return True, None
    if reply.get("locked") is False:
        holder = reply.get("holder")
        return False, holder.strip() if isinstance(holder, str) else ""
    return False, None


def device_lock(device: Device, session: SshSession, inventory: Inventory | None, holder: str,
                wait: float, agent: "Agent | None" = None) -> DeviceLock:
    """The device's lock over `session` (connected). On Windows it is held by the built-in
    agent: `agent`'s own words when it is the built-in one, else the built-in agent is
    uploaded (checksum-cached) for it."""
    dialect = dialect_for(device, session)
    words: list[str] = []
    if dialect.windows:
        if agent is not None and agent.builtin:
            words = list(agent.prefix)
        else:
            from harness.device.windows import agent_prefix
            words = agent_prefix(device, session, inventory)
    return DeviceLock(session, dialect, holder, wait, become_words(device), words)
