"""The on-device lock: two runs never drive one device at once.

Held for as long as one SSH channel stays open: the lock command (the device's dialect says
which) keeps the lock while it waits on the channel's stdin; closing the channel (or losing the
connection, or the harness dying) releases it, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import socket
import time

from harness.device.become import prefixed
from harness.device.dialect import LOCK_BUSY_EXIT, Dialect
from harness.errors import DeviceError
from harness.ssh import SshSession

MAX_BANNER_LINES = 1000  # lines a device may print before `locked` (a login banner) ...
MAX_LINE = 4096  # ... each read at most this long: a device cannot make the harness wait forever


class DeviceLock:
    """An on-device lock held for as long as one SSH channel stays open.

    `flock` runs on the device and keeps the lock while its `cat` waits on the channel's
    stdin; closing the channel (or losing the connection, or the harness dying) ends `cat`
    and releases the lock, so a crashed run never leaves a stale lock behind.
    """

    def __init__(self, session: SshSession, dialect: Dialect, holder: str, wait: float,
                 become: tuple[str, ...] = ()):
        self.session, self.dialect, self.holder, self.wait = session, dialect, holder, wait
        self.become = become  # run through sudo where root may not log in (device/become.py)
        self._channel = None

    def command(self) -> str:
        """Prints `locked` once held, then holds it until stdin closes."""
        return prefixed(self.become, self.dialect.lock_command(self.holder, self.wait))

    def acquire(self) -> None:
        channel = self.session.open_channel()
        channel.settimeout(self.wait + 10)
        channel.exec_command(self.command())
        try:
            line = self._until_locked(channel.makefile("rb"), time.monotonic() + self.wait + 10)
        except socket.timeout:
            channel.close()
            raise DeviceError(f"device {self.session.device_name!r}: no answer from the lock command") from None
        if line != "locked":
            # Bounded: a device that printed something else and kept running must not hang us.
            status = channel.recv_exit_status() if channel.status_event.wait(10) else None
            channel.close()
            if status is None:
                raise DeviceError(f"device {self.session.device_name!r}: the lock command printed "
                                  f"{line[:100]!r} instead of `locked`")
            if status == LOCK_BUSY_EXIT:
                raise DeviceError(f"device {self.session.device_name!r} is in use by another run "
                                  f"({line or 'holder unknown'}); waited {self.wait:g} s for {self.dialect.lock_path}")
            if status == -1:  # no exit status: the connection went, not the command
                raise DeviceError(f"device {self.session.device_name!r}: the connection dropped while "
                                  f"taking {self.dialect.lock_path}")
            raise DeviceError(f"device {self.session.device_name!r}: cannot take {self.dialect.lock_path} "
                              f"(exit {status}; is flock installed?)")
        self._channel = channel

    @staticmethod
    def _until_locked(stream, deadline: float) -> str:
        """`locked`, or the last line printed before the command ended (the holder when busy).
        Lines before `locked` are a login shell's banner: skipped, as the agent's replies do.
        Raises socket.timeout past the deadline (each read is bounded by the channel's timeout)."""
        last = ""
        for _ in range(MAX_BANNER_LINES):
            if time.monotonic() > deadline:
                raise socket.timeout()
            raw = stream.readline(MAX_LINE)
            if not raw:
                return last
            line = raw.decode(errors="replace").strip()
            if line == "locked":
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


