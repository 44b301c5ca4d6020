"""A private lab (harness.lab.private, prefix nckF) that the tests run `neighcheck run`
against: variants of its inventory, runs and their results, its devices' tables as the
kernel shows them, vendor agent scripts, and a repair between injected faults.
tests/test_faults.py and tests/test_security.py each build one of their own.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.lab.private import LabDevice, PrivateLab
from tests.support import NEIGHCHECK, SHIM
from tests.support.netns import carrier, ip_json, netns_pids
from tests.support.waits import wait_for

# What the harness plants (harness/traffic/seeding.py: address_plan, static_plan), written out
# here as the tests' own oracle: seeds from 198.19.0.0/16 and with the 5eSS interface-identifier
# mark, static entries from 198.51.100.200 and 2001:db8:ffff::200 up (one per link slot).
SEED_V4 = ipaddress.ip_network("198.19.0.0/16")
STATIC_V4 = (ipaddress.ip_address("198.51.100.200"), ipaddress.ip_address("198.51.100.255"))
STATIC_V6 = (ipaddress.ip_address("2001:db8:ffff::200"), ipaddress.ip_address("2001:db8:ffff::2ff"))

LOGGING_AGENT = """#!/bin/sh
# A vendor agent that logs each call (the run's tag and the verb) before the reference shim runs it.
log=$1; tag=$2; shift 2
echo "$tag $1" >> "$log"
exec sh @SHIM@ "$@"
"""


def calls(log: Path) -> list[str]:
    """The run tags of a LOGGING_AGENT log, one per agent call, in order."""
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def is_planted(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    low, high = STATIC_V4 if ip.version == 4 else STATIC_V6
    if low <= ip <= high:
        return True
    if ip.version == 4:
        return ip in SEED_V4
    return (int(ip) >> 56) & 0xFF == 0x5E  # interface identifier 5eSS:...


@dataclass
class RunResult:
    exit: int
    output: str
    seconds: float
    run_dir: Path | None
    results: dict | None = None
    jsonl: list[dict] = field(default_factory=list)

    def cases(self, device: str | None = None) -> list[dict]:
        cases = self.results["cases"] if self.results else self.jsonl
        return [c for c in cases if device is None or c["device"] == device]

    def verdicts(self, device: str | None = None) -> dict[str, str]:
        return {c["name"]: c["verdict"] for c in self.cases(device)}

    def device_info(self, name: str) -> dict:
        return next(d for d in self.results["devices"] if d["name"] == name)


@dataclass
class Started:
    """A `neighcheck run` in progress (its own session: Ctrl-C can go to its process group)."""

    proc: subprocess.Popen
    out: Path
    log: object
    t0: float

    def finished_cases(self) -> list[dict]:
        return [json.loads(line) for path in self.out.glob("*/results.jsonl") if not path.parent.is_symlink()
                for line in path.read_text().splitlines() if line.endswith("}")]

    def wait_for_cases(self, count: int, timeout: float = 60, device: str | None = None) -> None:
        wait_for(lambda: self.proc.poll() is not None or
                 len([c for c in self.finished_cases() if device in (None, c["device"])]) >= count,
                 timeout, f"{count} finished cases")
        assert self.proc.poll() is None, f"the run ended before {count} cases: {self.output()}"

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait(self, timeout: float) -> RunResult:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            pytest.fail(f"the run did not end within {timeout} s (a hang): {self.output()[-3000:]}")
        seconds = time.monotonic() - self.t0
        dirs = [p for p in self.out.glob("*") if p.is_dir() and not p.is_symlink()]
        run_dir = dirs[0] if len(dirs) == 1 else None
        result = RunResult(self.proc.returncode, self.output(), seconds, run_dir)
        if run_dir is not None:
            if (run_dir / "results.json").exists():
                result.results = json.loads((run_dir / "results.json").read_text())
            result.jsonl = self.finished_cases()
        self.log.close()
        return result

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


class RunLab(PrivateLab):
    """A private lab with runs against it, its devices' tables, and fault repair."""

    def __init__(self, root: Path, devices: tuple[LabDevice, ...], **options):
        super().__init__(root, devices, **options)
        self._runs = 0

    def agent_script(self, name: str, body: str) -> Path:
        """A vendor agent (POSIX sh) that wraps the reference shim (@SHIM@); the lab shares our files."""
        path = self.root / name
        path.write_text(body.replace("@SHIM@", str(SHIM)))
        return path

    # faults ----------------------------------------------------------------------------------
    def undo_faults(self, name: str) -> None:
        """Remove what fault injection may have left: nftables tables, links set down."""
        subprocess.run(["ip", "netns", "exec", self.netns(name), "nft", "flush", "ruleset"],
                       capture_output=True, timeout=10)
        for link in self.devices[name].links:
            subprocess.run(["ip", "link", "set", link.harness_if, "up"], capture_output=True, timeout=10)

    def down(self) -> None:
        for name in self.devices:
            self.undo_faults(name)
        super().down()

    def repair(self) -> None:
        """Back to a working lab with empty tables (after a fault left a device dark or dirty)."""
        for name in self.devices:
            self.undo_faults(name)
        if not self.lab.is_up():
            self.up()
        for name in self.devices:
            self.forget_planted(name)
        wait_for(lambda: all(carrier(link.harness_if) for d in self.devices.values() for link in d.links),
                 5, "test links have carrier again")

    # the devices' tables -------------------------------------------------------------------
    def table(self, name: str) -> list[dict]:
        return ip_json(self.netns(name), "neigh")

    def planted_left(self, name: str) -> list[str]:
        """Addresses in the device's table (as its kernel shows it) that the harness plants."""
        return sorted(e["dst"] for e in self.table(name) if is_planted(e["dst"]))

    def forget_planted(self, name: str) -> None:
        for entry in self.table(name):
            if is_planted(entry["dst"]):
                subprocess.run(["ip", "-n", self.netns(name), "neigh", "del", entry["dst"], "dev",
                                entry["dev"]], capture_output=True, timeout=10)

    def busy(self, name: str) -> bool:
        """Something other than sshd runs in the device (an agent call, say)."""
        comms = []
        for pid in netns_pids(self.netns(name)):
            try:
                comms.append(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                pass  # ended meanwhile
        return any(comm != "sshd" for comm in comms)

    def status_ok(self) -> bool:
        proc = subprocess.run([str(NEIGHCHECK), "lab", "status", "--devices", str(self.path)],
                              capture_output=True, text=True, timeout=30)
        return proc.returncode == 0

    # runs ------------------------------------------------------------------------------------
    def _argv(self, inventory: Path | None, args: tuple[str, ...]) -> tuple[list[str], Path]:
        self._runs += 1
        out = self.root / f"reports-{self._runs}"
        return [str(NEIGHCHECK), "run", "--devices", str(inventory or self.path), "--out", str(out),
                *args], out

    def start(self, inventory: Path | None = None, *args: str, env: dict | None = None,
              argv_prefix: list[str] | None = None) -> Started:
        argv, out = self._argv(inventory, args)
        if argv_prefix:
            argv = [*argv_prefix, *argv[1:]]  # the same arguments through another launcher
        log = (self.root / f"run-{self._runs}.log").open("w+")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        return Started(proc, out, log, time.monotonic())

    def run(self, inventory: Path | None = None, *args: str, timeout: float = 120,
            env: dict | None = None, argv_prefix: list[str] | None = None) -> RunResult:
        return self.start(inventory, *args, env=env, argv_prefix=argv_prefix).wait(timeout)


@contextmanager
def run_lab(devices: tuple[LabDevice, ...], wait: float = 600) -> Iterator[RunLab]:
    """Build the lab, yield it, take it down. Its names are fixed (so that they say whose they
    are), so two test sessions at once (two `make test`) take turns through a host-wide lock
    instead of tearing down each other's devices."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, sshd)")
    first = devices[0].name
    # Not under pytest's tmp_path: its 0700 parent would keep the lab's unprivileged account
    # from reading the agent scripts kept there.
    root = Path(tempfile.mkdtemp(prefix="nckF-"))
    try:
        with RunLab.held(root, devices, lock=Path(f"/run/lock/nckF-lab-{first}.lock"), wait=wait,
                         busy=f"another test session kept the nckF lab {first} for {wait:g} s",
                         ssh_defaults={"connect_timeout": 2.0, "command_timeout": 5.0}) as lab:
            yield lab
    finally:
        shutil.rmtree(root, ignore_errors=True)  # also when the lock was never ours
