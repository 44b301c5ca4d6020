"""`neighcheck bench`: the harness measured against the alternatives, on this machine.

Five comparisons. Each is measured in ONE run with its contenders alternating (A B C, B C A,
...), so load from other jobs on the machine lands on every contender alike, and each ratio is
taken between samples of the same round (paired), not between runs.

1. rtt: one command round trip on the reference device (linux-a), `true` and a full agent
   `table` read, through the harness session, raw paramiko (defaults, and with TCP_NODELAY: the
   floor), OpenSSH with a ControlMaster (what labgrid's SSHDriver does), a fresh `ssh` per
   command, and pytest-testinfra's paramiko backend when it is installed.
2. seeding: entries/s landing in a device table on one link, for the harness Seeder, scapy
   `sendp` per packet, scapy `sendp(list)`, a reused scapy L2 socket, and the floor (prebuilt
   frames on a raw AF_PACKET socket). scapy's cost is per packet whatever the table size, so
   past a cap it sends a sample and its rate is extrapolated (marked so). An entry counts when
   the agent's `table` shows it; send and verify time are reported apart; the link is flushed
   between contenders; every contender sends byte-identical frames (checked).
3. suite: `neighcheck run --device X` wall time per device, with the per-case breakdown summed
   from results.json, and one flush case at 16,384 entries per family.
4. scaling: 1, 2 and 4 lab devices with `-n` equal to the device count.
5. growth: one flush case versus entries per link (64 .. 16,384).

Seeding, scaling and growth run on a lab of the bench's own (devices nckP-N, namespaces
nck-nckP-N, links nck-pN-*), brought up and always taken down here, so they never touch the
shared devices' tables. Output: <out>/<run-id>/bench.json, bench.md, *.png; the table is
printed. Exit 0 when every judged target passes, 1 when one is short.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.hostlock import host_lock
from harness.errors import DeviceError, NeighcheckError, SeedingError, UsageError

REPO = Path(__file__).resolve().parent.parent
SEED_FAMILIES = 2  # every plan seeds IPv4 and IPv6: entries on a link = 2 x entries per family


# --- settings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    quick: bool
    rtt_rounds: int
    rtt_warmup: int
    seed_sizes: tuple[int, ...]          # entries per family on one link
    seed_rounds: int
    sendp_sample: int                    # frames sent with one sendp() each, then extrapolated
    scapy_cap: int                       # other scapy contenders: at most this many frames
    suite_rounds: int
    big_entries: int | None              # the one flush case at this many entries (None: skip)
    big_rounds: int
    scale_counts: tuple[int, ...]        # device counts; () skips scaling
    scale_rounds: int
    growth_sizes: tuple[int, ...]
    growth_rounds: int

    @classmethod
    def full(cls) -> "Settings":
        # rtt holds linux-a's suite lock: 20 rounds keep that under 20 s (others wait 30 s).
        return cls(quick=False, rtt_rounds=20, rtt_warmup=3, seed_sizes=(1024, 16384),
                   seed_rounds=3, sendp_sample=150, scapy_cap=2048, suite_rounds=3, big_entries=16384,
                   big_rounds=3, scale_counts=(1, 2, 4), scale_rounds=3,
                   growth_sizes=(64, 256, 1024, 4096, 16384), growth_rounds=2)

    @classmethod
    def quick_mode(cls) -> "Settings":
        # --quick: fewer repetitions, no 16,384-entry and no multi-device parts.
        return cls(quick=True, rtt_rounds=8, rtt_warmup=1, seed_sizes=(1024,), seed_rounds=1,
                   sendp_sample=40, scapy_cap=2048, suite_rounds=1, big_entries=None, big_rounds=0,
                   scale_counts=(), scale_rounds=0, growth_sizes=(64, 1024), growth_rounds=1)


@dataclass(frozen=True)
class OwnLab:
    """The bench's own lab devices nckP-<first> .. nckP-<first+count-1>.

    Addresses follow the plan for this prefix: management 198.18.(220+N).0/24, test link
    198.18.(230+N).0/24 and 2001:db8:(230+N)::/64 (written in decimal digits, e.g. 2001:db8:231::).
    """

    first: int = 1
    count: int = 4

    def __post_init__(self):
        if not (1 <= self.first and self.first + self.count - 1 <= 9 and self.count >= 1):
            raise UsageError("the bench's own lab holds devices nckP-1 .. nckP-9")

    @property
    def numbers(self) -> range:
        return range(self.first, self.first + self.count)

    @property
    def state_dir(self) -> Path:
        # Fixed per identity: a crashed run's lab is found (and cleaned) by the next one.
        return Path(tempfile.gettempdir()) / f"nckP-lab-{self.first}"

    @property
    def inventory_path(self) -> Path:
        return Path(tempfile.gettempdir()) / f"nckP-lab-{self.first}.toml"

    def names(self, count: int | None = None) -> list[str]:
        return [f"nckP-{n}" for n in self.numbers][:count]

    def inventory_text(self) -> str:
        state = self.state_dir
        parts = ["# neighcheck bench: its own lab (written by harness/bench.py; removed after the run)\n",
                 f'[lab]\nstate_dir = "{state}"\n']
        for n in self.numbers:
            parts.append(f"""
[[device]]
name = "nckP-{n}"
os = "linux"
[device.ssh]
host = "198.18.{220 + n}.2"
user = "root"
key_file = "{state}/id_ed25519"
known_hosts = "{state}/known_hosts"
[device.unprivileged]
user = "nckuser"
key_file = "{state}/id_ed25519"
[device.lab]
mgmt_harness_if = "nck-p{n}-m"
mgmt_harness_addr = "198.18.{220 + n}.1/24"
ipv6 = true
[[device.link]]
device_if = "eth1"
harness_if = "nck-p{n}-t1"
device_v4 = "198.18.{230 + n}.2/24"
harness_v4 = "198.18.{230 + n}.1/24"
device_v6 = "2001:db8:{230 + n}::2/64"
harness_v6 = "2001:db8:{230 + n}::1/64"
""")
        return "".join(parts)


# --- statistics and targets ------------------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median and spread (p10/p90, inclusive quantiles) of a sample."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {"n": 0, "median": None, "p10": None, "p90": None}
    if len(vals) == 1:
        p10 = p90 = vals[0]
    else:
        cuts = statistics.quantiles(vals, n=10, method="inclusive")
        p10, p90 = cuts[0], cuts[-1]
    return {"n": len(vals), "median": statistics.median(vals), "p10": p10, "p90": p90,
            "min": vals[0], "max": vals[-1]}


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> dict[str, Any]:
    """Ratios of samples taken in the same round (load drift cancels), summarized."""
    return summarize([a / b for a, b in zip(numerator, denominator) if a and b])


@dataclass
class Target:
    name: str
    measured: float | None
    limit: float
    better: str                      # "<=" or ">="
    unit: str = ""
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        ok = self.measured <= self.limit if self.better == "<=" else self.measured >= self.limit
        return "pass" if ok else "short"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def rotate(items: Sequence, round_no: int) -> list:
    """A B C, B C A, C A B...: alternation without one contender always going first."""
    k = round_no % len(items)
    return list(items[k:]) + list(items[:k])


def load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {"load1": one, "load5": five, "load15": fifteen, "cpus": os.cpu_count(),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}


# --- 1. command round trip -------------------------------------------------------------------------
class _Contender:
    name = ""
    note = ""

    def open(self) -> None: ...

    def run(self, command: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None: ...


class HarnessSession(_Contender):
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


class ParamikoClient(_Contender):
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


class OpenSsh(_Contender):
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
        if self.master_pid and _wait_gone(self.master_pid, 2.0) is False:
            try:
                os.kill(self.master_pid, 15)  # our own master, by pid
            except ProcessLookupError:
                pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.02)
    return False


class Testinfra(_Contender):
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
    contenders: list[_Contender] = [HarnessSession(device), ParamikoClient(device, nodelay=True),
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
    opened: list[_Contender] = []
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


# --- 2. seeding -----------------------------------------------------------------------------------
@dataclass
class SeedSample:
    contender: str
    size: int                # entries per family
    sent: int                # frames sent (= entries asked for)
    send_s: float
    verify_s: float
    landed: int
    polls: int                         # table reads until all showed (1: landed during the send)
    build_s: float | None = None       # scapy contenders: building the packets (inside send_s)
    extrapolated: bool = False

    @property
    def rate(self) -> float | None:
        return self.landed / self.send_s if self.landed == self.sent and self.send_s > 0 else None

    @property
    def rate_end_to_end(self) -> float | None:
        total = self.send_s + self.verify_s
        return self.landed / total if self.landed == self.sent and total > 0 else None


class SeedBench:
    """One link of one own-lab device, its agent, and the contenders that seed it."""

    VERIFY_TIMEOUT = 20.0

    def __init__(self, inventory, device):
        from harness.device.agent import make_agent
        from harness.traffic.seeding import LinkTarget, Seeder
        from harness.ssh import SshSession

        self.inventory, self.device = inventory, device
        self.allowed = inventory.test_interfaces
        self.session = SshSession(device.name, device.ssh)
        self.session.connect()
        self.agent = make_agent(device, self.session, inventory)
        link = device.links[0]
        iface = next(i for i in self.agent.interfaces() if i["name"] == link.device_if)
        self.ifindex = int(iface["index"])
        self.target = LinkTarget(harness_if=link.harness_if, device_mac=str(iface["mac"]).lower(),
                                 device_v4=str(link.device_v4.ip), device_v6=str(link.device_v6.ip),
                                 v6_network=str(link.device_v6.network))
        self.seeder = Seeder(self.allowed)
        self.responder = None
        self._l2 = None

    def close(self) -> None:
        if self.responder is not None:
            self.responder.stop()
        if self._l2 is not None:
            self._l2.close()
        self.seeder.close()
        try:
            self.agent.flush(0, self.ifindex)
        finally:
            self.session.close()

    # --- table side -----------------------------------------------------------------------
    def rows(self):
        return self.agent.table(0).entries

    def verify(self, entries) -> tuple[float, int, int]:
        """Seconds until the table shows every entry as seeded, how many landed, table reads."""
        from harness.traffic.seeding import missing_seeds
        from harness.waits import poll_until
        t0 = time.perf_counter()
        polls, missing = 0, list(entries)

        def landed() -> bool:
            nonlocal polls, missing
            polls += 1
            missing = missing_seeds(self.rows(), self.ifindex, entries)
            return not missing

        poll_until(landed, timeout=self.VERIFY_TIMEOUT, delay=0.01, max_delay=0.25, backoff=2)
        return time.perf_counter() - t0, len(entries) - len(missing), polls

    def flush(self, plan) -> None:
        """Flush the link and wait (bounded) until no seeded address is left on it."""
        wanted = {(e.family, e.address) for e in plan}
        deadline = time.monotonic() + 10
        while True:
            reply = self.agent.flush(0, self.ifindex)
            if reply.outcome.value != "SUCCESS":
                raise DeviceError(f"bench: flush on {self.device.name} returned {reply.raw}")
            left = [r for r in self.rows() if r.ifindex == self.ifindex
                    and (r.family, r.address) in wanted]
            if not left:
                return
            if time.monotonic() > deadline:
                raise SeedingError(f"bench: {len(left)} seeded entries survive flushes on {self.device.name}")
            time.sleep(0.05)

    # --- contenders ---------------------------------------------------------------------------
    def serve(self, plan) -> None:
        from harness.traffic.responder import Responder
        if self.responder is None:
            self.responder = Responder(self.allowed)
            self.responder.start()
        self.responder.serve(self.target, plan)  # keeps IPv6 seeds alive (DESIGN.md §3)

    def harness(self, plan) -> tuple[float, float | None]:
        stats = self.seeder.send(self.target, plan)
        return stats.seconds, None

    def floor(self, plan) -> tuple[float, float | None]:
        from harness.traffic.seeding import check_test_link, open_link_socket
        frames = self.frame_bytes(plan)  # prebuilt: only sending is timed
        check_test_link(self.target.harness_if, self.allowed)
        with open_link_socket(self.target.harness_if) as sock:
            send = sock.send
            t0 = time.perf_counter()
            for frame in frames:
                send(frame)
            return time.perf_counter() - t0, None

    def frame_bytes(self, plan) -> list[bytes]:
        from harness.traffic.packets import ArpSeedBuilder, NsSeedBuilder, mac_bytes
        arp = ArpSeedBuilder(self.target.device_mac, self.target.device_v4).frame
        ns = NsSeedBuilder(self.target.device_mac, self.target.device_v6).frame
        return [arp(mac_bytes(e.lladdr), socket.inet_aton(e.address)) if e.family == 2
                else ns(mac_bytes(e.lladdr), socket.inet_pton(socket.AF_INET6, e.address))
                for e in plan]

    def scapy_packets(self, plan) -> list:
        from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
        from scapy.layers.l2 import ARP, Ether
        t = self.target
        return [Ether(dst=t.device_mac, src=e.lladdr)
                / ARP(hwsrc=e.lladdr, psrc=e.address, hwdst="00:00:00:00:00:00", pdst=t.device_v4)
                if e.family == 2 else
                Ether(dst=t.device_mac, src=e.lladdr) / IPv6(src=e.address, dst=t.device_v6, hlim=255)
                / ICMPv6ND_NS(tgt=t.device_v6) / ICMPv6NDOptSrcLLAddr(lladdr=e.lladdr)
                for e in plan]

    def check_same_frames(self, plan) -> None:
        """Every contender must send the very same bytes, or the comparison is not fair."""
        sample = plan[:3] + plan[-3:]
        scapy_frames = [bytes(p) for p in self.scapy_packets(sample)]
        if scapy_frames != self.frame_bytes(sample):
            raise SeedingError("bench: scapy-built frames differ from the harness's; "
                               "the seeding comparison would not be fair")

    def scapy_l2(self, plan) -> tuple[float, float | None]:
        from scapy.config import conf
        from harness.traffic.seeding import check_test_link
        check_test_link(self.target.harness_if, self.allowed)
        if self._l2 is None:
            self._l2 = conf.L2socket(iface=self.target.harness_if)  # opened once, reused
        t0 = time.perf_counter()
        packets = self.scapy_packets(plan)
        t1 = time.perf_counter()
        for packet in packets:
            self._l2.send(packet)
        return time.perf_counter() - t0, t1 - t0

    def scapy_sendp_list(self, plan) -> tuple[float, float | None]:
        from scapy.sendrecv import sendp
        from harness.traffic.seeding import check_test_link
        check_test_link(self.target.harness_if, self.allowed)
        t0 = time.perf_counter()
        packets = self.scapy_packets(plan)
        t1 = time.perf_counter()
        sendp(packets, iface=self.target.harness_if, verbose=False)
        return time.perf_counter() - t0, t1 - t0

    def scapy_sendp_each(self, plan) -> tuple[float, float | None]:
        from scapy.sendrecv import sendp
        from harness.traffic.seeding import check_test_link
        check_test_link(self.target.harness_if, self.allowed)
        t0 = time.perf_counter()
        for packet in self.scapy_packets(plan):
            sendp(packet, iface=self.target.harness_if, verbose=False)
        return time.perf_counter() - t0, None


def _sample_plan(plan, count: int):
    """`count` entries taken evenly from both families of a plan."""
    v4 = [e for e in plan if e.family == 2]
    v6 = [e for e in plan if e.family != 2]
    half = count // 2
    return v4[:half] + v6[:count - half]


def bench_seeding(inventory, device, settings: Settings, log: Callable[[str], None]) -> dict:
    from harness.traffic.seeding import address_plan

    bench = SeedBench(inventory, device)
    samples: list[SeedSample] = []
    try:
        contenders: dict[str, Callable] = {
            "harness Seeder": bench.harness,
            "raw AF_PACKET, prebuilt (floor)": bench.floor,
            "scapy L2 socket, reused": bench.scapy_l2,
            "scapy sendp(list)": bench.scapy_sendp_list,
            "scapy sendp per packet": bench.scapy_sendp_each,
        }
        warm = address_plan(0, 8, bench.target)
        bench.check_same_frames(warm)
        bench.serve(warm)
        for send in contenders.values():  # imports, templates, sockets: not what is measured
            send(warm[:2])
        # scapy spends its time per packet (building and encoding objects), whatever the
        # table size: past a cap it is sampled and its rate extrapolated, or one 16,384 run
        # of it would take half a minute.
        caps = {"scapy sendp per packet": settings.sendp_sample,
                "scapy L2 socket, reused": settings.scapy_cap, "scapy sendp(list)": settings.scapy_cap}
        for size in settings.seed_sizes:
            plan = address_plan(0, size, bench.target)
            bench.serve(plan)
            for round_no in range(settings.seed_rounds):
                for name in rotate(list(contenders), round_no):
                    sent = plan
                    extrapolated = caps.get(name, len(plan)) < len(plan)
                    if extrapolated:
                        sent = _sample_plan(plan, caps[name])
                    bench.flush(plan)
                    send_s, build_s = contenders[name](sent)
                    verify_s, landed, polls = bench.verify(sent)
                    samples.append(SeedSample(name, size, len(sent), send_s, verify_s, landed,
                                              polls, build_s, extrapolated))
                log(f"seeding: {size} per family, round {round_no + 1}/{settings.seed_rounds}")
        bench.flush(plan)
    finally:
        bench.close()
    return {"device": device.name, "link": bench.target.harness_if, "rounds": settings.seed_rounds,
            "sendp_sample": settings.sendp_sample, "scapy_cap": settings.scapy_cap, "sizes": _seed_summary(samples, settings),
            "samples": [{**asdict(s), "rate": s.rate, "rate_end_to_end": s.rate_end_to_end}
                        for s in samples]}


def _seed_summary(samples: list[SeedSample], settings: Settings) -> dict:
    out: dict[str, Any] = {}
    for size in settings.seed_sizes:
        mine = [s for s in samples if s.size == size]
        harness = [s for s in mine if s.contender == "harness Seeder"]
        rows = {}
        for name in dict.fromkeys(s.contender for s in mine):
            these = [s for s in mine if s.contender == name]
            rates = [s.rate for s in these]
            rows[name] = {
                "entries": SEED_FAMILIES * size,
                "frames_sent": these[0].sent,
                "extrapolated": these[0].extrapolated,
                "landed_all": all(s.landed == s.sent for s in these),
                "landed": [s.landed for s in these],
                "send_s": summarize([s.send_s for s in these]),
                "build_s": summarize([s.build_s for s in these if s.build_s is not None]),
                "verify_s": summarize([s.verify_s for s in these]),
                "polls": [s.polls for s in these],
                "rate": summarize(rates),
                "rate_end_to_end": summarize([s.rate_end_to_end for s in these]),
                # Time for the whole plan (extrapolated from the sample's rate where sampled).
                "seconds_for_all": summarize([SEED_FAMILIES * size / r for r in rates if r]),
                "harness_speedup": paired_ratio([h.rate for h in harness], rates),
            }
        out[str(size)] = rows
    return out


def seeding_targets(seeding: dict | None, settings: Settings) -> list[Target]:
    rows = (seeding or {}).get("sizes", {}).get("16384")
    note = "" if rows else "skipped (--quick)" if settings.quick else "not measured"
    rate = rows["harness Seeder"]["rate"]["median"] if rows else None
    speedup = rows["scapy L2 socket, reused"]["harness_speedup"]["median"] if rows else None
    return [Target("seeding 16,384/family: harness entries/s landed", rate, 100_000, ">=", "/s", note),
            Target("seeding 16,384/family: harness / reused scapy L2 socket", speedup, 30, ">=", "x", note)]


# --- 3-5. the suite as a user runs it --------------------------------------------------------------
PHASES = ("seed", "verify", "flush", "snapshot", "judge", "evidence")


@dataclass
class SuiteRun:
    label: str
    wall: float
    exit_code: int
    cases: int
    verdicts: dict[str, int]
    phases: dict[str, float]           # summed over cases (results.json timings)
    case_total: float                  # sum of pytest items' setup + call + teardown (junit.xml)
    case_durations: dict[str, float]   # per item, setup + call + teardown
    record_durations: dict[str, float]  # per case, results.json duration_s (no evidence, no teardown)
    cpu_s: float                       # CPU time of the run's process tree (user + system)
    host_busy: float                   # share of all host CPUs busy during the run (everyone's)
    error: str | None = None

    @property
    def outside_cases(self) -> float:
        """Process start, imports, collection, report writing, exit."""
        return self.wall - self.case_total


def run_suite(label: str, inventory_path: Path, devices: Sequence[str], out: Path, *,
              workers: int = 1, entries: int | None = None, select: str | None = None,
              timeout: float = 300) -> SuiteRun:
    """`neighcheck run` in a child process, as a user runs it; numbers from its results.json."""
    run_root = out / label
    argv = [sys.executable, "-m", "harness.cli", "run", "--devices", str(inventory_path),
            "--out", str(run_root)]
    for name in devices:
        argv += ["--device", name]
    if workers > 1:
        argv += ["-n", str(workers)]
    if entries is not None:
        argv += ["--entries", str(entries)]
    argv += ["--", "--lock-wait", "60"]
    if select:
        argv += ["-k", select]
    cpu0, busy0 = _children_cpu(), _host_cpu()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"bench: suite run {label} did not finish within {timeout:g} s") from None
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    busy1 = _host_cpu()
    host_busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
    runs = sorted(p for p in run_root.glob("*/results.json"))
    if not runs:
        raise DeviceError(f"bench: suite run {label} wrote no results (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    results = json.loads(runs[-1].read_text())
    phases = {p: 0.0 for p in PHASES}
    record_durations = {}
    for case in results["cases"]:
        for phase, seconds in case.get("timings", {}).items():
            phases[phase] = phases.get(phase, 0.0) + seconds
        record_durations[case["name"]] = case.get("duration_s") or 0.0
    durations = _junit_item_seconds(runs[-1].parent / "junit.xml")
    summary = {k: v for k, v in results["summary"].items() if v}
    error = None
    if proc.returncode != 0:
        error = f"exit {proc.returncode}: {summary}"
    # Keep results.json only: a 16,384-entry run's evidence is tens of MB.
    kept = out / "runs" / f"{label}.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runs[-1], kept)
    shutil.rmtree(run_root, ignore_errors=True)
    return SuiteRun(label, wall, proc.returncode, len(results["cases"]), summary, phases,
                    sum(durations.values()), durations, record_durations, cpu, host_busy, error)


def _junit_item_seconds(path: Path) -> dict[str, float]:
    """pytest's own time per item: setup + call + teardown (junit_duration_report=total)."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    return {case.get("name", ""): float(case.get("time", 0)) for case in root.iter("testcase")}


def _children_cpu() -> float:
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _suite_stats(runs: list[SuiteRun]) -> dict:
    good = [r for r in runs if r.error is None]
    return {
        "runs": len(runs), "failed_runs": [f"{r.label}: {r.error}" for r in runs if r.error],
        "wall_s": summarize([r.wall for r in good]),
        "cases": good[0].cases if good else None,
        "verdicts": good[0].verdicts if good else None,
        "case_total_s": summarize([r.case_total for r in good]),
        "cpu_s": summarize([r.cpu_s for r in good]),
        "host_busy": summarize([r.host_busy for r in good]),
        "outside_cases_s": summarize([r.outside_cases for r in good]),
        # Inside cases but in no timed phase: fixtures, the agent calls of observed cases.
        "case_other_s": summarize([r.case_total - sum(r.phases.values()) for r in good]),
        "phases_s": {p: summarize([r.phases.get(p, 0.0) for r in good]) for p in PHASES},
        "samples": [asdict(r) | {"outside_cases": r.outside_cases} for r in runs],
    }


def _only(values: dict[str, float]) -> float | None:
    """The one selected case's number (None when the selection ran not exactly one case)."""
    return next(iter(values.values())) if len(values) == 1 else None


def bench_suite(inventory, reference: str, settings: Settings, out: Path,
                log: Callable[[str], None]) -> dict:
    names = [d.name for d in inventory.devices if d.os == "linux"] or [reference]
    names = [reference] + [n for n in names if n != reference]
    runs: dict[str, list[SuiteRun]] = {n: [] for n in names}
    for round_no in range(settings.suite_rounds):
        for name in rotate(names, round_no):
            runs[name].append(run_suite(f"suite-{name}-{round_no}", inventory.path, [name], out))
        log(f"suite: round {round_no + 1}/{settings.suite_rounds} ({', '.join(names)})")
    result: dict[str, Any] = {"reference": reference, "devices": {n: _suite_stats(r) for n, r in runs.items()}}
    if settings.big_entries:
        select = f"test_flush_scope and {reference}-AF_UNSPEC-all"
        big = [run_suite(f"big-{reference}-{i}", inventory.path, [reference], out,
                         entries=settings.big_entries, select=select) for i in range(settings.big_rounds)]
        stats = _suite_stats(big)
        stats["case_s"] = summarize([_only(r.case_durations) for r in big if not r.error])
        stats["record_duration_s"] = summarize([_only(r.record_durations) for r in big if not r.error])
        stats["entries_per_family"] = settings.big_entries
        stats["select"] = select
        result["big_case"] = stats
        log(f"suite: {settings.big_rounds} runs of one case at {settings.big_entries} entries")
    return result


def suite_targets(suite: dict, settings: Settings) -> list[Target]:
    ref = suite["reference"]
    wall = suite["devices"][ref]["wall_s"]["median"]
    targets = [Target(f"suite on {ref}: wall time", wall, 3.0, "<=", "s")]
    big = suite.get("big_case")
    targets.append(Target(f"one flush case on {ref} at 16,384/family", big["case_s"]["median"] if big else None,
                          1.5, "<=", "s", "" if big else "skipped (--quick)"))
    return targets


def bench_scaling(own_inventory, own: OwnLab, settings: Settings, out: Path,
                  log: Callable[[str], None]) -> dict:
    runs: dict[int, list[SuiteRun]] = {n: [] for n in settings.scale_counts}
    for round_no in range(settings.scale_rounds):
        for count in rotate(list(settings.scale_counts), round_no):
            runs[count].append(run_suite(f"scale-{count}-{round_no}", own_inventory.path,
                                         own.names(count), out, workers=count))
        log(f"scaling: round {round_no + 1}/{settings.scale_rounds}")
    one = [r.wall for r in runs[settings.scale_counts[0]]]
    return {"devices": {str(n): _suite_stats(r) | {"vs_one": paired_ratio([x.wall for x in r], one)}
                        for n, r in runs.items()}}


def scaling_targets(scaling: dict | None, settings: Settings) -> list[Target]:
    row = (scaling or {}).get("devices", {}).get("4")
    return [Target("scaling: 4 devices / 1 device wall time", row["vs_one"]["median"] if row else None,
                   1.5, "<=", "x", "" if row else "skipped (--quick)")]


def bench_growth(own_inventory, device: str, settings: Settings, out: Path,
                 log: Callable[[str], None]) -> dict:
    select = f"test_flush_scope and {device}-AF_UNSPEC-all"
    runs: dict[int, list[SuiteRun]] = {n: [] for n in settings.growth_sizes}
    for round_no in range(settings.growth_rounds):
        for size in rotate(list(settings.growth_sizes), round_no):
            runs[size].append(run_suite(f"growth-{size}-{round_no}", own_inventory.path, [device], out,
                                        entries=size, select=select))
        log(f"growth: round {round_no + 1}/{settings.growth_rounds}")
    sizes = {}
    for size, these in runs.items():
        stats = _suite_stats(these)
        stats["case_s"] = summarize([_only(r.case_durations) for r in these if not r.error])
        stats["record_duration_s"] = summarize([_only(r.record_durations) for r in these if not r.error])
        sizes[str(size)] = stats
    return {"device": device, "select": select, "links": 1, "sizes": sizes}


# --- locks and labs ---------------------------------------------------------------------------------
def _own_lab_lock(own: OwnLab, wait: float):
    """One bench per own-lab identity at a time: two would tear down each other's devices."""
    path = Path("/run/lock") / f"nckP-bench-{own.first}.lock"
    return host_lock(path, wait, f"bench: another bench holds {path} (waited {wait:g} s)")


@contextmanager
def _reference_lock(device, wait: float = 60.0):
    """Hold the device's suite lock while measuring on it: others' runs would change its table."""
    from harness.device.lock import device_lock
    from harness.ssh import SshSession
    session = SshSession(device.name, device.ssh)
    session.connect()
    lock = None
    try:
        lock = device_lock(device, session, None, f"{socket.gethostname()} pid {os.getpid()} neighcheck bench", wait)
        lock.acquire()
        yield
    finally:
        if lock is not None:
            lock.release()
        session.close()


# --- report -------------------------------------------------------------------------------------------
def _ms(stats: dict | None) -> str:
    if not stats or stats.get("median") is None:
        return "-"
    return f"{stats['median'] * 1e3:.1f} ({stats['p10'] * 1e3:.1f}-{stats['p90'] * 1e3:.1f})"


def _s(stats: dict | None, digits: int = 2) -> str:
    if not stats or stats.get("median") is None:
        return "-"
    return f"{stats['median']:.{digits}f} ({stats['p10']:.{digits}f}-{stats['p90']:.{digits}f})"


def _x(stats: dict | None) -> str:
    if not stats or stats.get("median") is None:
        return "-"
    return f"{stats['median']:.2f}x ({stats['p10']:.2f}-{stats['p90']:.2f})"


def _pct(stats: dict | None) -> str:
    if not stats or stats.get("median") is None:
        return "-"
    return f"{stats['median']:.0%} ({stats['p10']:.0%}-{stats['p90']:.0%})"


def _rate(stats: dict | None) -> str:
    if not stats or stats.get("median") is None:
        return "-"
    return f"{stats['median']:,.0f} ({stats['p10']:,.0f}-{stats['p90']:,.0f})"


def render_markdown(data: dict) -> str:
    lines = [f"# neighcheck bench {data['run_id']}", "",
             f"Host {data['host']}, {data['load_start']['cpus']} CPUs; load at start "
             f"{data['load_start']['load1']:.2f}, at end {data['load_end']['load1']:.2f}"
             f"{' (--quick)' if data['settings']['quick'] else ''}. Medians, (p10-p90) in brackets; "
             "ratios are paired within rounds.", "", "## Targets", "",
             "| target | measured | limit | verdict |", "|---|---|---|---|"]
    for t in data["targets"]:
        measured = "-" if t["measured"] is None else f"{t['measured']:,.2f}{t['unit']}"
        lines.append(f"| {t['name']} | {measured} | {t['better']} {t['limit']:,}{t['unit']} | "
                     f"{t['verdict']}{' ' + t['note'] if t['note'] else ''} |")
    rtt = data.get("rtt")
    if rtt:
        lines += ["", f"## 1. Command round trip on {rtt['device']} ({rtt['rounds']} rounds; ms)", "",
                  "| contender | `true` | vs harness | `table` | vs harness |", "|---|---|---|---|---|"]
        for name, row in rtt["commands"]["table"].items():
            true_row = rtt["commands"]["true"].get(name, {})
            lines.append(f"| {name} | {_ms(true_row.get('seconds'))} | {_x(true_row.get('vs_harness'))} | "
                         f"{_ms(row['seconds'])} | {_x(row['vs_harness'])} |")
        for name, why in rtt["skipped"].items():
            lines.append(f"| {name} | skipped: {why} | | | |")
        lines.append(f"\n`table` reply: {rtt['table_reply_bytes']['median']:.0f} bytes (median).")
    seeding = data.get("seeding")
    if seeding:
        lines += ["", f"## 2. Seeding one link ({seeding['device']} {seeding['link']}, "
                  f"{seeding['rounds']} rounds)", "",
                  "| per family | contender | entries | send s | verify s | landed entries/s | "
                  "end-to-end /s | harness speedup | all landed (table reads) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for size, rows in seeding["sizes"].items():
            for name, row in rows.items():
                sampled = f" (sample of {row['frames_sent']:,}, extrapolated)" if row["extrapolated"] else ""
                lines.append(f"| {int(size):,} | {name}{sampled} | {row['entries']:,} | {_s(row['send_s'], 3)} | "
                             f"{_s(row['verify_s'], 3)} | {_rate(row['rate'])} | {_rate(row['rate_end_to_end'])} | "
                             f"{_x(row['harness_speedup'])} | {'yes' if row['landed_all'] else 'NO'} "
                             f"({', '.join(map(str, row['polls']))}) |")
    suite = data.get("suite")
    if suite:
        lines += ["", "## 3. Suite wall time per device (default entries; s)", "",
                  "In cases: pytest's setup + call + teardown of every item (junit.xml); outside: "
                  "process start, imports, collection, report, exit. Other in cases: device "
                  "open/close, cleanup of planted entries, fixtures. CPU: the run's process tree; "
                  "host busy: all CPUs, everyone's load.", "",
                  "| device | runs | cases | wall | in cases | outside cases | "
                  + " | ".join(PHASES) + " | other in cases | CPU s | host busy |",
                  "|---|---|---|---|---|---|" + "---|" * (len(PHASES) + 3)]
        for name, row in suite["devices"].items():
            lines.append(f"| {name} | {row['runs']} | {row['cases']} | {_s(row['wall_s'])} | "
                         f"{_s(row['case_total_s'])} | {_s(row['outside_cases_s'])} | "
                         + " | ".join(_s(row["phases_s"][p], 3) for p in PHASES)
                         + f" | {_s(row['case_other_s'], 3)} | {_s(row['cpu_s'])} | {_pct(row['host_busy'])} |")
        big = suite.get("big_case")
        if big:
            lines += ["", f"One case at {big['entries_per_family']:,} entries per family on every link of "
                      f"{suite['reference']} (`-k \"{big['select']}\"`): pytest item (setup + call + "
                      f"teardown) {_s(big['case_s'])} s, of which the case record (no evidence, no "
                      f"cleanup) {_s(big['record_duration_s'])} s; process wall {_s(big['wall_s'])} s, "
                      f"CPU {_s(big['cpu_s'])} s; phases: "
                      + ", ".join(f"{p} {_s(big['phases_s'][p], 3)}" for p in PHASES)]
    scaling = data.get("scaling")
    if scaling:
        lines += ["", "## 4. Scaling (own lab devices, -n = device count)", "",
                  "| devices | wall s | vs one device | CPU s (harness) | host busy |", "|---|---|---|---|---|"]
        for count, row in scaling["devices"].items():
            lines.append(f"| {count} | {_s(row['wall_s'])} | {_x(row['vs_one'])} | {_s(row['cpu_s'])} | "
                         f"{_pct(row['host_busy'])} |")
    growth = data.get("growth")
    if growth:
        lines += ["", f"## 5. Cost growth: one flush case on {growth['device']} (1 link; s)", "",
                  "| entries/family | pytest item | case record | " + " | ".join(PHASES) + " | process wall |",
                  "|---|---|---|" + "---|" * len(PHASES) + "---|"]
        for size, row in growth["sizes"].items():
            lines.append(f"| {int(size):,} | {_s(row['case_s'], 3)} | {_s(row['record_duration_s'], 3)} | "
                         + " | ".join(_s(row["phases_s"][p], 3) for p in PHASES)
                         + f" | {_s(row['wall_s'])} |")
    for name, why in data.get("skipped", {}).items():
        lines.append(f"\n{name}: skipped ({why})")
    failed = [f for f in _failed_runs(data)]
    if failed:
        lines += ["", "Suite runs left out of the numbers (they did not exit 0):", ""]
        lines += [f"- {f}" for f in failed]
    return "\n".join(lines) + "\n"


def _failed_runs(data: dict) -> list[str]:
    rows = list((data.get("suite") or {}).get("devices", {}).values())
    rows += [data["suite"]["big_case"]] if (data.get("suite") or {}).get("big_case") else []
    rows += list((data.get("scaling") or {}).get("devices", {}).values())
    rows += list((data.get("growth") or {}).get("sizes", {}).values())
    return [f for row in rows for f in row["failed_runs"]]


def write_charts(data: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    def log_axis(ax):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())

    def bars(ax, labels, stats, scale=1.0):
        med = [s["median"] * scale for s in stats]
        lo = [(s["median"] - s["p10"]) * scale for s in stats]
        hi = [(s["p90"] - s["median"]) * scale for s in stats]
        ax.barh(labels, med, xerr=[lo, hi], color="#4c78a8", capsize=3)
        ax.invert_yaxis()

    if rtt := data.get("rtt"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for ax, label in zip(axes, ("true", "table")):
            rows = rtt["commands"][label]
            bars(ax, list(rows), [r["seconds"] for r in rows.values()], 1e3)
            log_axis(ax)
            ax.set_xlabel("ms per command (median, p10-p90)")
            ax.set_title(f"`{label}` round trip on {rtt['device']}")
        save(fig, "rtt.png")
    if seeding := data.get("seeding"):
        sizes = list(seeding["sizes"])
        fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 3.8), squeeze=False)
        for ax, size in zip(axes[0], sizes):
            rows = seeding["sizes"][size]
            ok = {n: r for n, r in rows.items() if r["rate"]["median"]}
            bars(ax, list(ok), [r["rate"] for r in ok.values()])
            log_axis(ax)
            ax.set_xlabel("entries/s landed (median, p10-p90)")
            ax.set_title(f"{int(size):,}/family ({2 * int(size):,} entries)")
        save(fig, "seeding.png")
    if suite := data.get("suite"):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        rows = dict(suite["devices"])
        if suite.get("big_case"):
            rows[f"1 case @ {suite['big_case']['entries_per_family']}"] = suite["big_case"]
        left = [0.0] * len(rows)
        for part in (*PHASES, "other in cases", "outside cases"):
            key = {"other in cases": "case_other_s", "outside cases": "outside_cases_s"}.get(part)
            widths = [(r[key] if key else r["phases_s"][part])["median"] or 0 for r in rows.values()]
            ax.barh(list(rows), widths, left=left, label=part)
            left = [a + b for a, b in zip(left, widths)]
        ax.invert_yaxis()
        ax.set_xlabel("seconds (medians; other in cases = device open/close, cleanup, fixtures; "
                      "outside = start, imports, report)", fontsize=8)
        ax.legend(fontsize=7, ncol=4)
        ax.set_title("suite wall time, by phase")
        save(fig, "suite.png")
    if scaling := data.get("scaling"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        counts = [int(c) for c in scaling["devices"]]
        walls = [r["wall_s"]["median"] for r in scaling["devices"].values()]
        ax.plot(counts, walls, "o-", label="measured")
        ax.plot(counts, [walls[0] * 1.5] * len(counts), "--", label="target: 1.5x one device")
        ax.set_xticks(counts)
        ax.set_xlabel("devices (-n = devices)")
        ax.set_ylabel("wall s")
        ax.legend()
        ax.set_title("scaling")
        save(fig, "scaling.png")
    if growth := data.get("growth"):
        fig, ax = plt.subplots(figsize=(7, 4))
        sizes = [int(s) for s in growth["sizes"]]
        rows = list(growth["sizes"].values())
        ax.plot(sizes, [r["case_s"]["median"] for r in rows], "o-", color="black", label="case total")
        for phase in PHASES:
            ax.plot(sizes, [max(r["phases_s"][phase]["median"] or 0, 1e-5) for r in rows], ".--", label=phase)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("entries per family on the link")
        ax.set_ylabel("seconds (median)")
        ax.legend(fontsize=7)
        ax.set_title(f"flush case cost vs entries ({growth['device']})")
        save(fig, "growth.png")
    return written


# --- the run -------------------------------------------------------------------------------------------
def _reference_device(inventory):
    names = [d.name for d in inventory.devices]
    if "linux-a" in names:
        return inventory.device("linux-a")
    for device in inventory.devices:
        if device.os == "linux":
            return device
    raise UsageError(f"{inventory.path}: the bench needs a Linux device (has: {', '.join(names)})")


def run_bench(settings: Settings, out_root: Path, *, reference_inventory: Path | None,
              own: OwnLab, lock_wait: float = 600.0, log: Callable[[str], None] = print) -> tuple[int, Path]:
    """Run the benchmark; returns (exit code, run directory).

    reference_inventory: the devices for the round-trip and suite parts (its linux-a, else its
    first Linux device); None: use the bench's own first device for them as well.
    """
    from harness.inventory import load_inventory
    from harness.lab.netns import Lab
    from harness.plugin.results import new_run_id

    Lab.require_root()
    try:
        import matplotlib  # noqa: F401  (fail before measuring, not after)
    except ImportError:
        raise UsageError("bench: matplotlib is missing (pip install -e '.[bench]'; make bench does)") from None
    if ".." in out_root.parts:
        raise UsageError(f"--out {out_root}: '..' is not allowed")
    run_id = new_run_id()
    out = out_root / run_id
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"schema": "neighcheck-bench/1", "run_id": run_id, "host": socket.gethostname(),
                            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "settings": asdict(settings), "load_start": load(), "sections": {},
                            "skipped": {}}
    ref_inventory = load_inventory(reference_inventory) if reference_inventory else None

    def section(name: str, fn: Callable[[], dict]) -> None:
        before = load()
        t0 = time.perf_counter()
        data[name] = fn()
        data["sections"][name] = {"seconds": time.perf_counter() - t0, "load_before": before,
                                  "load_after": load()}
        log(f"{name}: done in {data['sections'][name]['seconds']:.1f} s "
            f"(load {before['load1']:.2f} -> {data['sections'][name]['load_after']['load1']:.2f})")

    with _own_lab_lock(own, lock_wait):
        own.inventory_path.write_text(own.inventory_text())
        own_inventory = load_inventory(own.inventory_path)
        shutil.copyfile(own.inventory_path, out / "own-lab.toml")
        own_lab = Lab(own_inventory)
        ref_lab_to_take_down = None
        try:
            own_lab.up()
            if ref_inventory is not None:
                ref_lab = Lab(ref_inventory)
                lab_devices = ref_inventory.lab_devices
                if lab_devices and not ref_lab.is_up(lab_devices):
                    ref_lab.up()
                    ref_lab_to_take_down = ref_lab
            suite_inventory = ref_inventory or own_inventory
            reference = _reference_device(suite_inventory) if ref_inventory else own_inventory.devices[0]
            data["reference_device"] = reference.name
            first_own = own_inventory.devices[0]

            def rtt():
                with _reference_lock(reference):
                    return bench_rtt(reference, settings, out, log)

            section("rtt", rtt)
            section("seeding", lambda: bench_seeding(own_inventory, first_own, settings, log))
            section("suite", lambda: bench_suite(suite_inventory if ref_inventory else
                                                 _OnlyDevices(own_inventory, [reference.name]),
                                                 reference.name, settings, out, log))
            if settings.scale_counts and own.count >= max(settings.scale_counts):
                section("scaling", lambda: bench_scaling(own_inventory, own, settings, out, log))
            else:
                data["skipped"]["scaling"] = "--quick" if settings.quick else "too few own lab devices"
            section("growth", lambda: bench_growth(own_inventory, first_own.name, settings, out, log))
        finally:
            problems = []
            for lab in (own_lab, ref_lab_to_take_down):
                if lab is not None:
                    try:
                        lab.down()
                    except NeighcheckError as exc:
                        problems.append(str(exc))
            own.inventory_path.unlink(missing_ok=True)
            if problems:
                log("bench: lab down: " + "; ".join(problems))
    data["load_end"] = load()
    data["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    targets = (rtt_targets(data["rtt"]) + seeding_targets(data.get("seeding"), settings)
               + suite_targets(data["suite"], settings) + scaling_targets(data.get("scaling"), settings))
    data["targets"] = [t.to_dict() for t in targets]
    data["charts"] = write_charts(data, out)
    (out / "bench.json").write_text(json.dumps(data, indent=1))
    table = render_markdown(data)
    (out / "bench.md").write_text(table)
    log(table)
    log(f"bench: {out}")
    return (1 if any(t.verdict == "short" for t in targets) else 0), out


class _OnlyDevices:
    """An inventory view whose devices are a subset (the suite part on the own lab's first device)."""

    def __init__(self, inventory, names: list[str]):
        self._inventory = inventory
        self.devices = tuple(d for d in inventory.devices if d.name in names)

    def __getattr__(self, name):
        return getattr(self._inventory, name)


def main(args) -> int:
    settings = Settings.quick_mode() if args.quick else Settings.full()
    devices = Path(args.devices)
    if not devices.is_file():
        raise UsageError(f"{devices}: inventory file not found; pass --devices FILE")
    own = OwnLab(first=1, count=max(settings.scale_counts, default=1))
    code, _ = run_bench(settings, Path(args.out), reference_inventory=devices, own=own)
    return code
