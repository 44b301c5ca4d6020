"""SSH sessions to devices (paramiko): one connection per device, reused for every command.

Why these choices:
- TCP_NODELAY on the socket: an exec round trip is a handful of small packets, and Nagle plus
  delayed ACK costs ~40 ms each (DESIGN.md §3: 47 ms -> 3.7 ms per exec).
- Host keys are checked by us against the inventory's known_hosts file, strictly by default:
  an unattended run must never block on, or silently accept, a key prompt.
- Every wait (connect, handshake, auth, channel open, command) has a timeout.
- One reconnect when the connection is found dropped *before* a command starts; a command
  that may have run is never retried behind the caller's back.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.errors import DeviceError, UsageError
from harness.inventory import Credentials, SshConfig

MAX_OUTPUT = 256 << 20  # a full 65k-entry table is about 8.4 MB

# paramiko's transport thread logs a failed handshake (a port that never sends a banner) at
# ERROR, with a traceback, and with no handler configured Python prints that to stderr, racing
# the harness's own one-line error. The harness reports every SSH failure itself; a handler on
# paramiko's logger keeps its log off the terminal deterministically (a user can still attach one).
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes
    seconds: float


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _shown(command: str) -> str:
    return command if len(command) < 80 else command[:77] + "..."


def _connected(channel: paramiko.Channel) -> bool:
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"  # e.g. "ssh-ed25519 SHA256:..."


class SshSession:
    """A reused SSH connection to one device, as one user."""

    def __init__(self, device_name: str, config: SshConfig, login: Credentials | None = None):
        self.device_name = device_name
        self.config = config
        self.login = login or config.login
        self._transport: paramiko.Transport | None = None
        self.connects = 0  # how many times a connection was made (reconnects show here)
        self.timed_out = False  # the last command hit its timeout (is the device still there?)

    # --- connection -------------------------------------------------------------------
    def _where(self) -> str:
        return f"device {self.device_name!r} ({self.login.user}@{self.config.host}:{self.config.port})"

    def connect(self) -> None:
        cfg = self.config
        try:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout)
        except socket.timeout:
            raise DeviceError(f"{self._where()}: unreachable: no answer within "
                              f"{cfg.connect_timeout:g} s (is it up? is ssh.host right?)") from None
        except OSError as exc:
            raise DeviceError(f"{self._where()}: unreachable: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = cfg.connect_timeout
            transport.handshake_timeout = cfg.connect_timeout
            transport.start_client(timeout=cfg.connect_timeout)
            self._check_host_key(transport.get_remote_server_key())
            self._authenticate(transport)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            transport.close()
            raise DeviceError(self._handshake_failed(transport, exc)) from None
        except BaseException:
            transport.close()
            raise
        if cfg.keepalive:
            transport.set_keepalive(cfg.keepalive)
        self._transport = transport
        self.connects += 1

    def _handshake_failed(self, transport: paramiko.Transport, exc: BaseException) -> str:
        """One message whichever of paramiko's two equal timers fired first (its transport
        thread's banner timeout, or start_client's wait): it says "Error reading SSH protocol
        banner" or "No existing session" for the same silent port."""
        cfg = self.config
        if not transport.remote_version:
            return (f"{self._where()}: no SSH banner within {cfg.connect_timeout:g} s: port {cfg.port} "
                    "accepts connections but does not speak SSH (is ssh.port right? is sshd overloaded?)")
        if not transport.initial_kex_done:
            return (f"{self._where()}: the SSH handshake did not finish within {cfg.connect_timeout:g} s "
                    f"(the server said {transport.remote_version!r}): {exc}")
        return f"{self._where()}: SSH handshake failed: {exc}"

    def _check_host_key(self, key: paramiko.PKey) -> None:
        cfg = self.config
        name = _known_hosts_name(cfg.host, cfg.port)
        known = paramiko.HostKeys()
        path = Path(cfg.known_hosts)
        if path.is_file():
            try:
                known.load(str(path))
            except (OSError, paramiko.SSHException) as exc:
                raise UsageError(f"{path}: cannot read known_hosts: {exc}") from None
        entries = known.lookup(name)
        if entries is None:
            if cfg.host_key_policy == "trust-on-first-use":
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a") as fh:
                    fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
                return
            raise DeviceError(
                f"{self._where()}: unknown host key {_fingerprint(key)}; not in {path}. "
                f"Verify it and add it (ssh-keyscan -p {cfg.port} {cfg.host} >> {path}), or set "
                f"host_key_policy = \"trust-on-first-use\" for this device")
        expected = entries.get(key.get_name())
        if expected is None or expected.asbytes() != key.asbytes():
            raise DeviceError(
                f"{self._where()}: HOST KEY CHANGED: the device offered {_fingerprint(key)}, "
                f"which does not match {path}. Someone may be intercepting the connection, or the "
                f"device was reinstalled; if you verified the new key, replace its line in {path}")

    def _authenticate(self, transport: paramiko.Transport) -> None:
        login = self.login
        tried: list[str] = []
        if login.key_file is not None:
            passphrase = os.environ.get(login.passphrase_env) if login.passphrase_env else None
            if login.passphrase_env and passphrase is None:
                raise UsageError(f"{self._where()}: environment variable {login.passphrase_env} "
                                 "(passphrase_env) is not set")
            try:
                # Bytes: paramiko 5 hands a str passphrase to cryptography, which refuses it
                # (TypeError "password must be bytes": every encrypted key failed to load).
                pkey = paramiko.PKey.from_path(str(login.key_file),
                                               password=passphrase.encode() if passphrase else None)
            except FileNotFoundError:
                raise UsageError(f"{self._where()}: key file {login.key_file} does not exist") from None
            except (paramiko.SSHException, ValueError) as exc:
                raise UsageError(f"{self._where()}: cannot load key {login.key_file}: {exc}") from None
            if self._try_auth(lambda: transport.auth_publickey(login.user, pkey)):
                return
            tried.append(f"key {login.key_file}")
        if login.use_agent:
            for agent_key in paramiko.Agent().get_keys():
                if self._try_auth(lambda: transport.auth_publickey(login.user, agent_key)):
                    return
            tried.append("ssh-agent keys")
        if login.password_env:
            password = os.environ.get(login.password_env)
            if password is None:
                raise UsageError(f"{self._where()}: environment variable {login.password_env} "
                                 "(password_env) is not set")
            if self._try_auth(lambda: transport.auth_password(login.user, password)):
                return
            tried.append(f"password from ${login.password_env}")
        raise DeviceError(f"{self._where()}: authentication failed (tried {', '.join(tried)})")

    @staticmethod
    def _try_auth(attempt) -> bool:
        try:
            attempt()
            return True
        except paramiko.AuthenticationException:
            return False

    def _live_transport(self) -> paramiko.Transport:
        if self._transport is None or not self._transport.is_active():
            self.close()
            self.connect()
        assert self._transport is not None
        return self._transport

    def _open_channel(self) -> paramiko.Channel:
        """Open a session channel, reconnecting once if the connection turns out dropped."""
        for attempt in (1, 2):
            transport = self._live_transport()
            try:
                return transport.open_session(timeout=self.config.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.close()
                if attempt == 2:
                    raise DeviceError(f"{self._where()}: cannot open a channel: {exc}") from None
        raise AssertionError("unreachable")

    # --- commands ------------------------------------------------------------------------
    def run(self, command: str, *, timeout: float | None = None, stdin: bytes | None = None) -> CommandResult:
        """Run one command; return its exit status and output. Raises DeviceError on timeout."""
        limit = self.config.command_timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + limit
        channel = self._open_channel()
        try:
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = self._collect(channel, deadline, limit, command)
            status = channel.recv_exit_status() if channel.exit_status_ready() else self._wait_status(
                channel, deadline, limit, command)
            if status == -1 and not _connected(channel):  # dropped before the exit status came
                raise self._lost(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise DeviceError(f"{self._where()}: connection lost during a command: {exc}") from None
        finally:
            channel.close()
        return CommandResult(status, out, err, time.monotonic() - started)

    def _timeout(self, limit: float, command: str) -> DeviceError:
        self.timed_out = True
        return DeviceError(f"{self._where()}: command timed out after {limit:g} s: {_shown(command)}")

    def _lost(self, command: str) -> DeviceError:
        return DeviceError(f"{self._where()}: connection lost during a command (the device or its "
                           f"sshd went away; whether the command ran is unknown): {_shown(command)}")

    def _collect(self, channel: paramiko.Channel, deadline: float, limit: float, command: str):
        out, err = bytearray(), bytearray()
        while True:
            # Checked while data flows too: a command that never stops printing must still hit
            # its timeout, and must not fill the harness's memory first.
            if len(out) + len(err) > MAX_OUTPUT:
                raise DeviceError(f"{self._where()}: command printed more than "
                                  f"{MAX_OUTPUT >> 20} MiB; stopped it: {_shown(command)}")
            if time.monotonic() > deadline:
                raise self._timeout(limit, command)
            if channel.recv_ready():
                out += channel.recv(65536)
                continue
            if channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
                continue
            if channel.eof_received or channel.closed:
                # Drain what arrived together with EOF (or with the close).
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if not channel.eof_received and not _connected(channel):
                    # The connection died mid-command. Say so now: waiting for the timeout
                    # would spin (select() on a closed channel returns at once).
                    raise self._lost(command)
                return bytes(out), bytes(err)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._timeout(limit, command)
            select.select([channel], [], [], min(remaining, 1.0))

    def _wait_status(self, channel, deadline, limit, command) -> int:
        if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            raise self._timeout(limit, command)
        return channel.recv_exit_status()

    def open_channel(self) -> paramiko.Channel:
        """A raw session channel (e.g. to hold a device lock for as long as it stays open)."""
        return self._open_channel()

    def sftp(self) -> paramiko.SFTPClient:
        client = paramiko.SFTPClient.from_transport(self._live_transport())
        if client is None:
            raise DeviceError(f"{self._where()}: SFTP subsystem refused")
        client.get_channel().settimeout(self.config.command_timeout)
        return client

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> "SshSession":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
