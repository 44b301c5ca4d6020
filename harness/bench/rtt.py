"""1. One command round trip on the reference device: `true` and a full agent `table` read,
through the harness session and the alternatives (raw paramiko with its defaults and with
TCP_NODELAY, the floor; OpenSSH through a ControlMaster, as labgrid's SSHDriver does; a fresh
`ssh` per command; pytest-testinfra's paramiko backend when it is installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.bench.settings import Settings
from harness.bench.stats import Target, paired_ratio, rotate, summarize
from harness.errors import DeviceError, UsageError
from harness.waits import poll_until


class Contender:
    name = ""
    note = ""

    def open(self) -> None: ...

    def run(self, command: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None: ...


class HarnessSession(Contender):
    name = "harness SshSession"
    note = "paramiko Transport, TCP_NODELAY, strict host keys, timeouts"

    def __init__(self, device):
        from harness.ssh import SshSession
        self.session = SshSession(device.name, device.ssh)

    def open(self) -> None:
        self.session.connect()

    def run(self, command: str) -> bytes:
        result = self.session.run(command)
        if result.exit_status != 0:
            raise DeviceError(f"{self.name}: exit {result.exit_status}: {result.stderr[:200]!r}")
        return result.stdout

    def close(self) -> None:
        self.session.close()


class ParamikoClient(Contender):
    """paramiko's SSHClient as its docs show it; with nodelay, TCP_NODELAY on its socket."""

    def __init__(self, device, nodelay: bool):
        self.ssh = device.ssh
        self.nodelay = nodelay
        self.name = "paramiko + TCP_NODELAY (floor)" if nodelay else "paramiko SSHClient defaults"
        self.note = "exec_command on one connection" + (", Nagle off" if nodelay else "")
        self.client = None

    def open(self) -> None:
        import paramiko
        ssh = self.ssh
        client = paramiko.SSHClient()
        client.load_host_keys(str(ssh.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        kwargs: dict[str, Any] = dict(hostname=ssh.host, port=ssh.port, username=ssh.login.user,
                                      key_filename=str(ssh.login.key_file), look_for_keys=False,
                                      allow_agent=False, timeout=ssh.connect_timeout)
        if self.nodelay:
            sock = socket.create_connection((ssh.host, ssh.port), timeout=ssh.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            kwargs["sock"] = sock
        client.connect(**kwargs)
        self.client = client

    def run(self, command: str) -> bytes:
        _, stdout, stderr = self.client.exec_command(command, timeout=self.ssh.command_timeout)
        out = stdout.read()
        err = stderr.read()
        if stdout.channel.recv_exit_status() != 0:
            raise DeviceError(f"{self.name}: {err[:200]!r}")
        return out

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class OpenSsh(Contender):
    """The OpenSSH client, one process per command: through a ControlMaster, or fresh."""

    def __init__(self, device, control_dir: Path | None):
        ssh = device.ssh
        self.ssh = ssh
        self.control_path = control_dir / "cm" if control_dir else None
        self.name = "OpenSSH ControlMaster" if control_dir else "OpenSSH fresh connection"
        self.note = ("ssh -o ControlMaster=auto -o ControlPersist=60 (labgrid SSHDriver)"
                     if control_dir else "a new ssh process and connection per command")
        self.base = ["ssh", "-F", "/dev/null", "-T", "-o", "BatchMode=yes",
                     "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={ssh.known_hosts}",
                     "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes",
                     "-i", str(ssh.login.key_file), "-o", f"ConnectTimeout={max(1, int(ssh.connect_timeout))}",
                     "-o", "LogLevel=ERROR", "-p", str(ssh.port), "-l", ssh.login.user]
        if self.control_path:
            self.base += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path}",
                          "-o", "ControlPersist=60"]
        else:
            self.base += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        self.master_pid: int | None = None

    def open(self) -> None:
        if self.control_path is None:
            return
        # Start the master explicitly (-M -N -f): a master forked by ControlPersist from a
        # captured command would keep its pipes open and stall the caller.
        subprocess.run([*self.base, "-M", "-N", "-f", self.ssh.host], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=15, check=True)
        check = subprocess.run([*self.base, "-O", "check", self.ssh.host], capture_output=True,
                               text=True, timeout=10)
        found = re.search(r"pid=(\d+)", check.stderr + check.stdout)
        self.master_pid = int(found.group(1)) if found else None

    def run(self, command: str) -> bytes:
        proc = subprocess.run([*self.base, self.ssh.host, command], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=self.ssh.command_timeout + 10)
        if proc.returncode != 0:
            raise DeviceError(f"{self.name}: exit {proc.returncode}: {proc.stderr[:200]!r}")
        return proc.stdout

    def close(self) -> None:
        if self.control_path is None:
            return
        subprocess.run([*self.base, "-O", "exit", self.ssh.host], capture_output=True, timeout=10)
        if self.master_pid and not _wait_gone(self.master_pid, 2.0):
            try:
                os.kill(self.master_pid, 15)  # our own master, by pid
            except ProcessLookupError:
                pass


def _wait_gone(pid: int, timeout: float) -> bool:
    return poll_until(lambda: not Path(f"/proc/{pid}").exists(), timeout=timeout)


class Testinfra(Contender):
    name = "pytest-testinfra paramiko"
    note = "testinfra.backend.paramiko (its defaults)"

    def __init__(self, device, workdir: Path):
        from testinfra.backend.paramiko import ParamikoBackend  # ImportError: skipped by caller
        ssh = device.ssh
        self.ssh = ssh
        config = workdir / "testinfra_ssh_config"
        config.write_text(f"Host {ssh.host}\n  User {ssh.login.user}\n  Port {ssh.port}\n"
                          f"  IdentityFile {ssh.login.key_file}\n")
        self.backend = ParamikoBackend(f"{ssh.login.user}@{ssh.host}:{ssh.port}",
                                       ssh_config=str(config))

    def open(self) -> None:
        import warnings

        import paramiko
        # testinfra accepts unknown host keys with a warning; check ours before any command.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = self.backend.client  # connects
        key = client.get_transport().get_remote_server_key()
        known = paramiko.HostKeys(str(self.ssh.known_hosts))
        name = self.ssh.host if self.ssh.port == 22 else f"[{self.ssh.host}]:{self.ssh.port}"
        expected = (known.lookup(name) or {}).get(key.get_name())
        if expected is None or expected.asbytes() != key.asbytes():
            raise DeviceError(f"{self.name}: the device's host key is not the known one")

    def run(self, command: str) -> bytes:
        result = self.backend.run(command)
        if result.rc != 0:
            raise DeviceError(f"{self.name}: exit {result.rc}: {result.stderr[:200]!r}")
        return result.stdout_bytes

    def close(self) -> None:
        self.backend.client.close()


def bench_rtt(device, settings: Settings, workdir: Path, log: Callable[[str], None]) -> dict:
    from harness.device.agent import make_agent
    from harness.ssh import SshSession

    if device.ssh.login.key_file is None:
        raise UsageError(f"bench: device {device.name!r} needs ssh.key_file for the raw contenders")
    control_dir = Path(tempfile.mkdtemp(prefix="nckP-cm-"))  # short: a unix socket path
    contenders: list[Contender] = [HarnessSession(device), ParamikoClient(device, nodelay=True),
                                    ParamikoClient(device, nodelay=False),
                                    OpenSsh(device, control_dir), OpenSsh(device, None)]
    skipped = {}
    try:
        contenders.append(Testinfra(device, workdir))
    except ImportError:
        skipped["pytest-testinfra paramiko"] = "pytest-testinfra is not installed"
    table_command = make_agent(device, SshSession(device.name, device.ssh), None).command_line("table", 0)
    commands = {"true": "true", "table": table_command}
    samples: dict[str, dict[str, list[float]]] = {k: {c.name: [] for c in contenders} for k in commands}
    sizes: dict[str, list[int]] = {c.name: [] for c in contenders}
    parse_samples: list[float] = []
    opened: list[Contender] = []
    try:
        for contender in contenders:
            contender.open()
            opened.append(contender)
        harness = contenders[0]
        for _ in range(settings.rtt_warmup):
            for contender in contenders:
                for command in commands.values():
                    contender.run(command)
        for round_no in range(settings.rtt_rounds):
            for contender in rotate(contenders, round_no):
                for label, command in commands.items():
                    t0 = time.perf_counter()
                    out = contender.run(command)
                    samples[label][contender.name].append(time.perf_counter() - t0)
                    if label == "table":
                        sizes[contender.name].append(len(out))
                        _check_table_reply(contender.name, out)
                    elif out.strip():
                        raise DeviceError(f"{contender.name}: `true` printed {out[:80]!r}")
            # The harness's whole table() call: the same round trip plus parsing and checks.
            agent = make_agent(device, harness.session, None)
            t0 = time.perf_counter()
            agent.table(0)
            parse_samples.append(time.perf_counter() - t0)
    finally:
        for contender in opened:
            contender.close()
        shutil.rmtree(control_dir, ignore_errors=True)
    log(f"rtt: {settings.rtt_rounds} rounds x {len(contenders)} contenders on {device.name}")
    harness_name = contenders[0].name
    result: dict[str, Any] = {"device": device.name, "rounds": settings.rtt_rounds,
                              "control_path": str(control_dir / "cm"),
                              "skipped": skipped, "commands": {}, "notes": {c.name: c.note for c in contenders}}
    for label in commands:
        rows = {}
        for contender in contenders:
            rows[contender.name] = {
                "seconds": summarize(samples[label][contender.name]),
                "vs_harness": paired_ratio(samples[label][contender.name], samples[label][harness_name]),
                "samples": samples[label][contender.name]}
        result["commands"][label] = rows
    result["commands"]["table"]["harness Agent.table() (+parse)"] = {
        "seconds": summarize(parse_samples), "samples": parse_samples,
        "vs_harness": paired_ratio(parse_samples, samples["table"][harness_name])}
    result["table_reply_bytes"] = summarize([s for v in sizes.values() for s in v])
    return result


def _check_table_reply(who: str, out: bytes) -> None:
    try:
        reply = json.loads(out)
    except ValueError:
        raise DeviceError(f"{who}: `table` printed no JSON: {out[:120]!r}") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("entries"), list):
        raise DeviceError(f"{who}: `table` reply has no entries list")


def rtt_targets(rtt: dict) -> list[Target]:
    targets = []
    for label in ("true", "table"):
        rows = rtt["commands"][label]
        floor = rows["paramiko + TCP_NODELAY (floor)"]["vs_harness"]["median"]
        targets.append(Target(f"rtt `{label}`: harness / NODELAY floor", 1 / floor if floor else None,
                              1.3, "<=", "x"))
        targets.append(Target(f"rtt `{label}`: ControlMaster / harness",
                              rows["OpenSSH ControlMaster"]["vs_harness"]["median"], 3, ">=", "x"))
        targets.append(Target(f"rtt `{label}`: fresh ssh / harness",
                              rows["OpenSSH fresh connection"]["vs_harness"]["median"], 10, ">=", "x"))
    return targets



@contextmanager
def reference_lock(device, wait: float = 60.0, inventory=None) -> Iterator[None]:
    """Hold the device's suite lock while measuring on it: others' runs would change its table.
    (`inventory` places a lab device's Windows agent, which holds the lock there.)"""
    from harness.device.lock import device_lock
    from harness.ssh import SshSession
    session = SshSession(device.name, device.ssh)
    session.connect()
    lock = None
    try:
        lock = device_lock(device, session, inventory,
                           f"{socket.gethostname()} pid {os.getpid()} neighcheck bench", wait)
        lock.acquire()
        yield
    finally:
        if lock is not None:
            lock.release()
        session.close()
