"""Labs that outgrow one harness host (issue 16): devices shared through a real labgrid
coordinator, sharded runs merged into one, packet evidence for failing cases, and JUnit suite
properties under xdist.

The lab side runs for real, as labgrid's own test suite does it: a `labgrid-coordinator` and a
`labgrid-exporter` (its YAML exports one NetworkService per device) on 127.0.0.1, started once
for this module and stopped by pid; places made with `labgrid-client`. The devices are a
private embedded lab of this module's own (prefix nckG: namespaces nck-G-*, links nckG-*,
198.18.247-249.x), described to the runs as a real lab would describe them: no [device.lab],
and no SSH host or user (the place's NetworkService gives them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.hostlock import host_lock
from harness.reports.manifest import verify
from harness.reports.merge import merge_runs
from harness.run import parse_shard, shard_devices
from harness.errors import UsageError
from harness.lab.private import LabDevice, LabLink, _table
from tests.support.runlab import RunLab, is_planted
from tests.support.waits import wait_for

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
MUTANTS = REPO / "tests" / "mutants"

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("nckG-lab")]

A, B = "G-linux-a", "G-linux-b"
# LabLink.net is not used for addresses here: ADDRESSES says them (B's two /25 halves keep
# the lab inside 198.18.247-249).
DEVICES = (
    LabDevice(A, "nckG-a-m", 247, (LabLink("eth1", "nckG-a-t1", 248),)),
    LabDevice(B, "nckG-b-m", 249, (LabLink("eth1", "nckG-b-t1", 249),), ipv6=False),
)
ADDRESSES = {
    A: {"mgmt": "198.18.247.1/24", "host": "198.18.247.2", "v4": ("198.18.248.2/24", "198.18.248.1/24"),
        "v6": ("2001:db8:f8::2/64", "2001:db8:f8::1/64")},
    B: {"mgmt": "198.18.249.1/25", "host": "198.18.249.2", "v4": ("198.18.249.130/25", "198.18.249.129/25"),
        "v6": None},
}
PLACES = {A: "nckG-place-a", B: "nckG-place-b"}
WAITING_STATE, ACQUIRED_STATE = 0, 2  # labgrid's ReservationState
QUICK = ("--", "-k", "test_idempotent and AF_UNSPEC")  # one case per device: enough to hold a place


class LabgridLab(RunLab):
    """The private lab, plus inventories that reach its devices through labgrid places."""

    coordinator = ""

    def inventory(self, filename: str, *, lab: bool = True, only: tuple[str, ...] | None = None,
                  ssh: dict[str, dict] | None = None, unprivileged=None,
                  agent: dict[str, list[str]] | None = None, places: tuple[str, ...] = ()) -> Path:
        """lab=True: the inventory that builds the lab. Else as a real lab describes it; the
        devices in `places` name their labgrid place and leave SSH host and user to it."""
        lines = _table("[lab]", {"state_dir": str(self.state)})
        for name, device in self.devices.items():
            if only is not None and name not in only:
                continue
            where = ADDRESSES[name]
            ssh_table = {"host": where["host"], "user": "root", "key_file": f"{self.state}/id_ed25519",
                         "known_hosts": f"{self.state}/known_hosts", "connect_timeout": 3.0,
                         "command_timeout": 10.0, **(ssh or {}).get(name, {})}
            if name in places:
                del ssh_table["host"], ssh_table["user"]
            lines += ["", "[[device]]", f'name = "{name}"', 'os = "linux"']
            lines += _table("[device.ssh]", ssh_table)
            lines += _table("[device.unprivileged]", {"user": "nckuser", "key_file": f"{self.state}/id_ed25519"})
            if not device.ipv6:
                lines += _table("[device.capabilities]", {"ipv6": False})
            if agent and name in agent:
                lines += _table("[device.agent]", {"command": agent[name]})
            if name in places:
                lines += _table("[device.labgrid]", {"place": PLACES[name]})
            if lab:
                lines += _table("[device.lab]", {"mgmt_harness_if": device.mgmt_if,
                                                 "mgmt_harness_addr": where["mgmt"], "ipv6": device.ipv6})
            link = {"device_if": "eth1", "harness_if": device.links[0].harness_if,
                    "device_v4": where["v4"][0], "harness_v4": where["v4"][1]}
            if where["v6"]:
                link.update(device_v6=where["v6"][0], harness_v6=where["v6"][1])
            lines += _table("[[device.link]]", link)
        path = self.root / filename
        path.write_text("\n".join(lines) + "\n")
        return path

    def client(self, *args: str, user: str) -> None:
        """labgrid-client as another user at a terminal would run it."""
        proc = subprocess.run([str(BIN / "labgrid-client"), "-x", self.coordinator, *args], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "LG_USERNAME": user})
        assert proc.returncode == 0, f"labgrid-client {args}: {proc.stdout} {proc.stderr}"

    def acquired(self) -> dict[str, str]:
        """place -> who holds it (host/user), as the coordinator says."""
        return {name: place.acquired for name, place in in_session(self.coordinator, places).items()
                if place.acquired}

    def reservation_states(self) -> list[int]:
        """The state of every reservation (labgrid's ReservationState numbers: 0 is waiting)."""
        return in_session(self.coordinator, reservations)


# What a lab admin does with labgrid-client, in-process (each labgrid-client costs an interpreter).
def in_session(address: str, work):
    """`await work(session)` in a labgrid client session to the coordinator at `address`."""
    import asyncio
    from labgrid.remote.client import ClientSession

    async def main():
        session = ClientSession(address, asyncio.get_running_loop())
        await session.start()
        try:
            return await work(session)
        finally:
            await session.stop()
            await session.close()
    return asyncio.run(asyncio.wait_for(main(), 30))


async def places(session):
    await session.sync_with_coordinator()
    return dict(session.places)


async def reservations(session):
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
    response = await session.stub.GetReservations(pb.GetReservationsRequest())
    return [r.state for r in response.reservations]


def create_places(address: str, matches: dict[str, str | None]) -> None:
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

    async def work(session):
        for place, pattern in matches.items():
            await session.stub.AddPlace(pb.AddPlaceRequest(name=place))
            if pattern is not None:
                await session.stub.AddPlaceMatch(pb.AddPlaceMatchRequest(placename=place, pattern=pattern))
    in_session(address, work)


def exported(address: str) -> set[str]:
    """exporter/group/cls of every resource the coordinator has."""
    async def work(session):
        await session.sync_with_coordinator()
        return {f"{e}/{g}/{r.cls}" for e, groups in session.resources.items() for g, rs in groups.items()
                for r in rs.values()}
    return in_session(address, work)


def me(user: str | None = None) -> str:
    """host/user, as labgrid names a client (who acquired a place)."""
    import getpass
    return f"{os.environ.get('LG_HOSTNAME', socket.gethostname())}/{user or os.environ.get('LG_USERNAME', getpass.getuser())}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    """By pid: SIGTERM, then SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def labgrid_services(root: Path, devices: dict):
    """A coordinator and an exporter (one NetworkService per device) on 127.0.0.1; a place per
    device matching its NetworkService. Yields the coordinator's address."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    work = root / "labgrid"
    work.mkdir()
    procs = []
    try:
        # The coordinator keeps places.yaml in its working directory: ours, thrown away after.
        coordinator = subprocess.Popen([str(BIN / "labgrid-coordinator"), "--listen", address], cwd=work,
                                       stdout=(work / "coordinator.log").open("w"), stderr=subprocess.STDOUT,
                                       start_new_session=True)
        procs.append(coordinator)
        wait_for(lambda: coordinator.poll() is not None or _listening(port), 30, "the coordinator to listen")
        assert coordinator.poll() is None, (work / "coordinator.log").read_text()
        exports = work / "exports.yaml"
        exports.write_text("".join(f"nckG-{name}:\n  NetworkService:\n    address: '{ADDRESSES[name]['host']}'\n"
                                   f"    username: root\n    port: 22\n" for name in devices)
                           # a resource that is not a NetworkService, for a place that has only it
                           + f"nckG-{A}-serial:\n  NetworkSerialPort:\n    host: '127.0.0.1'\n    port: 9\n")
        exporter = subprocess.Popen([str(BIN / "labgrid-exporter"), "--coordinator", address, "--name", "nckG-exporter",
                                     "--hostname", "127.0.0.1", str(exports)], cwd=work,
                                    stdout=(work / "exporter.log").open("w"), stderr=subprocess.STDOUT,
                                    start_new_session=True)
        procs.append(exporter)
        create_places(address, {**{PLACES[name]: f"nckG-exporter/nckG-{name}/NetworkService" for name in devices},
                                "nckG-place-bare": None, "nckG-place-serial": f"nckG-exporter/nckG-{A}-serial/*"})
        wanted = {f"nckG-exporter/nckG-{name}/NetworkService" for name in devices} | \
            {f"nckG-exporter/nckG-{A}-serial/NetworkSerialPort"}
        wait_for(lambda: exporter.poll() is not None or wanted <= exported(address), 30, "the exporter's resources",
                 step=0.2)
        assert exporter.poll() is None, (work / "exporter.log").read_text()
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)


@pytest.fixture(scope="module")
def glab():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, sshd)")
    pytest.importorskip("labgrid", reason="needs the labgrid extra (make deps installs it)")
    with host_lock(Path("/run/lock/nckG-lab.lock"), 600, "another test session kept the nckG lab for 600 s"):
        root = Path(tempfile.mkdtemp(prefix="nckG-"))
        root.chmod(0o755)  # the lab's unprivileged account reads the key below it
        lab = LabgridLab(root, DEVICES)
        try:
            lab.up()
            with labgrid_services(root, lab.devices) as address:
                lab.coordinator = address
                yield lab
        finally:
            lab.down()
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def lg(glab):
    """The lab; after each test, no place may be left acquired and no reservation left over."""
    yield glab
    assert glab.acquired() == {}, "a run left a labgrid place acquired"
    assert glab.reservation_states() == [], "a run left a reservation behind"


def places_run(lab: LabgridLab, inventory: Path, *args: str, timeout: float = 120, **kw):
    return lab.run(inventory, "--lg-coordinator", lab.coordinator, *args, timeout=timeout, **kw)


def case_reasons(result, device: str) -> list[tuple[str, str]]:
    return [(c["verdict"], c["reason"]) for c in result.cases(device)]


# --- labgrid places ----------------------------------------------------------------------------
HOLDING_AGENT = """#!/bin/sh
# Holds its run at its first flush until the test says go (bounded: 30 s), so another run can be
# seen waiting for the place meanwhile.
if [ "$1" = flush ]; then
    touch "@DIR@/in-flush"
    i=0
    while [ ! -e "@DIR@/go" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
fi
exec sh @SHIM@ "$@"
"""


def holding_agent(lab: LabgridLab, tag: str) -> tuple[Path, Path]:
    flag_dir = lab.root / f"hold-{tag}"
    flag_dir.mkdir()
    flag_dir.chmod(0o777)
    script = lab.agent_script(f"holding-{tag}.sh", HOLDING_AGENT.replace("@DIR@", str(flag_dir)))
    return script, flag_dir


def test_two_runs_serialize_on_a_place(lg):
    script, flags = holding_agent(lg, "serial")
    holder_inv = lg.inventory("holder.toml", lab=False, only=(A,), places=(A,), agent={A: ["sh", str(script)]},
                              ssh={A: {"command_timeout": 60.0}})
    waiter_inv = lg.inventory("waiter.toml", lab=False, only=(A,), places=(A,))

    holder = lg.start(holder_inv, "--lg-coordinator", lg.coordinator, *QUICK)
    waiter = None
    try:
        wait_for(lambda: holder.proc.poll() is not None or (flags / "in-flush").exists(), 60, "the first run's flush")
        assert holder.proc.poll() is None, holder.output()[-3000:]
        assert lg.acquired() == {PLACES[A]: me()}
        # The second run may reach the device only through the place: its on-device lock wait
        # is 0, so had it got past the place while the first run held it, its case would error.
        waiter = lg.start(waiter_inv, "--lg-coordinator", lg.coordinator, "--place-wait", "60",
                          *QUICK, "--lock-wait", "0")
        wait_for(lambda: waiter.proc.poll() is not None
                 or sorted(lg.reservation_states()) == [WAITING_STATE, ACQUIRED_STATE], 60,
                 "the second run's reservation to wait", step=0.1)
        assert waiter.proc.poll() is None, waiter.output()[-3000:]
        time.sleep(1.0)  # the waiter keeps waiting while the place is held
        assert waiter.proc.poll() is None and not waiter.finished_cases()
    finally:
        go = time.time()
        (flags / "go").touch()
        first = holder.wait(120)
        second = waiter.wait(120) if waiter is not None else None
    assert first.exit == 0, first.output[-3000:]
    assert second.exit == 0, second.output[-3000:]
    assert {c["verdict"] for c in second.cases(A)} == {"pass"}, case_reasons(second, A)
    waited = second.device_info(A)["labgrid"]
    assert waited["place"] == PLACES[A] and waited["waited_s"] >= 1.0, waited
    # ... and got it as soon as the first run gave it back (not at the coordinator's next timer).
    from datetime import datetime
    handover = datetime.fromisoformat(waited["acquired_at"].replace("Z", "+00:00")).timestamp() - go
    assert 0 < handover < 5, f"the place changed hands {handover:.1f} s after the first run was let go"
    # The address came from the place's NetworkService.
    assert waited["resource"] == f"nckG-exporter/nckG-{A}/NetworkService/NetworkService"


def test_a_place_taken_past_the_wait_is_one_clear_error_and_the_other_device_runs(lg):
    lg.client("-p", PLACES[A], "acquire", user="nckG-other")
    try:
        inventory = lg.inventory("taken.toml", lab=False, places=(A, B))
        result = places_run(lg, inventory, "--place-wait", "2", "--", "-k", "test_idempotent")
    finally:
        lg.client("-p", PLACES[A], "release", user="nckG-other")
    assert result.exit == 1, result.output[-3000:]
    a_cases = result.cases(A)
    assert len(a_cases) >= 2 and {c["verdict"] for c in a_cases} == {"error"}, case_reasons(result, A)
    reason = a_cases[0]["reason"]
    assert f"labgrid place '{PLACES[A]}' is still taken (acquired by {me('nckG-other')}) " \
           "after waiting 2 s" in reason, reason
    assert "release --kick" in reason and "\n" not in reason
    # One wait for the device, not one per case: its first case waited, the others errored at once.
    durations = sorted(c["duration_s"] for c in a_cases)
    assert durations[-1] >= 2 and all(d < 1.5 for d in durations[:-1]), durations
    assert {c["verdict"] for c in result.cases(B)} <= {"pass", "observed", "not-applicable"}, case_reasons(result, B)
    assert result.device_info(B)["labgrid"]["place"] == PLACES[B]


def test_a_coordinator_that_is_down_is_one_clear_error_and_the_other_device_runs(lg):
    dead = f"127.0.0.1:{_free_port()}"
    inventory = lg.inventory("down.toml", lab=False, places=(A,))  # B: a plain device, no place
    result = lg.run(inventory, "--lg-coordinator", dead, "--", "-k", "test_idempotent", timeout=120)
    assert result.exit == 1, result.output[-3000:]
    assert len(result.cases(A)) == 3 and {c["reason"] for c in result.cases(A)} == {result.cases(A)[0]["reason"]}
    case = result.cases(A)[0]
    assert case["verdict"] == "error"
    assert f"the labgrid coordinator at {dead} cannot be reached" in case["reason"], case["reason"]
    assert "Connection refused" in case["reason"] and "--lg-coordinator" in case["reason"]
    assert {c["verdict"] for c in result.cases(B)} == {"pass", "not-applicable"}, case_reasons(result, B)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_a_ci_cancel_while_holding_a_place_releases_it(lg, sig):
    """SIGTERM (how CI systems cancel a job) is handled as Ctrl-C."""
    script, flags = holding_agent(lg, sig.name)
    inventory = lg.inventory("sigint.toml", lab=False, only=(A,), places=(A,), agent={A: ["sh", str(script)]},
                             ssh={A: {"command_timeout": 60.0}})
    run = lg.start(inventory, "--lg-coordinator", lg.coordinator, *QUICK)
    try:
        wait_for(lambda: run.proc.poll() is not None or (flags / "in-flush").exists(), 60, "the run's flush")
        assert lg.acquired() == {PLACES[A]: me()}
        os.killpg(run.proc.pid, sig)
    finally:
        (flags / "go").touch()  # the agent on the device ends too
        result = run.wait(60)
    assert result.exit == 130, result.output[-3000:]
    # (the lg fixture asserts that no place is left acquired)


@pytest.mark.parametrize("place, words", [
    ("nckG-place-bare", "has no usable NetworkService resource (its matches: none); export one"),
    ("nckG-place-serial", "has no usable NetworkService resource (its matches: nckG-exporter/nckG-G-linux-a-serial/*)"
                          "; export one"),
    ("nckG-no-such-place", "does not exist on the coordinator at {address} (places: nckG-place-a, nckG-place-b, "
                           "nckG-place-bare, nckG-place-serial); create it"),
])
def test_a_place_without_a_usable_network_service_is_one_clear_error_at_once(lg, place, words):
    from dataclasses import replace
    from harness.inventory import load_inventory
    from harness.places import PlaceError, Places
    device = load_inventory(lg.inventory("nsvc.toml", lab=False, only=(A,), places=(A,))).devices[0]
    device = replace(device, labgrid=replace(device.labgrid, place=place))
    places = Places(lg.coordinator, wait=30)
    started = time.monotonic()
    with pytest.raises(PlaceError) as info:
        places.claim(device)
    assert f"device '{A}': labgrid place '{place}' " + words.format(address=lg.coordinator) in str(info.value)
    assert time.monotonic() - started < 10, "a place that can never do must not be waited for"
    assert places.claims == {}


def test_doctor_finds_the_device_through_its_place(lg):
    inventory = lg.inventory("doctor.toml", lab=False, only=(A,), places=(A,))
    proc = subprocess.run([str(BIN / "neighcheck"), "doctor", "--devices", str(inventory),
                           "--lg-coordinator", lg.coordinator], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"place {PLACES[A]}: nckG-exporter/nckG-{A}/NetworkService" in proc.stdout
    assert f"(root@{ADDRESSES[A]['host']}:22)" in proc.stdout


# --- shards and JUnit suite properties ---------------------------------------------------------------
def test_shards_merged_equal_one_whole_run_with_suite_properties_under_xdist(lg, tmp_path):
    inventory = lg.inventory("shards.toml", lab=False, places=(A, B))
    subset = ("--", "-k", "test_idempotent or test_no_stack")
    shards = [places_run(lg, inventory, "--shard", f"{k}/2", *subset) for k in (1, 2)]
    whole = places_run(lg, inventory, "-n", "2", "--pcap", "all", *subset)
    for result in (*shards, whole):
        assert result.exit == 0, result.output[-3000:]
    assert [sorted({c["device"] for c in s.cases()}) for s in shards] == [[A], [B]]
    assert "shard 1/2: G-linux-a" in shards[0].output

    merged = merge_runs([s.run_dir for s in shards], tmp_path / "merged")
    combined = json.loads((merged / "results.json").read_text())
    verdicts = lambda cases: {c["id"]: c["verdict"] for c in cases}  # noqa: E731
    assert verdicts(combined["cases"]) == verdicts(whole.cases()) and len(whole.cases()) == 6
    assert verify(merged) == []

    # Suite-level properties, written by the controller of an xdist run, inside the sealed run.
    junit = ET.parse(whole.run_dir / "junit.xml").getroot()
    [suite] = junit.iter("testsuite")
    assert suite[0].tag == "properties"
    props = {p.get("name"): p.get("value") for p in suite[0].iter("property")}
    assert props["run_id"] == whole.results["run_id"] and props["suite_version"] == whole.results["suite_version"]
    assert props["inventory_sha256"] == whole.results["inventory"]["sha256"]
    assert props["devices"] == f"{A} {B}"
    for name in (A, B):
        fingerprint = json.loads(props[f"device.{name}.fingerprint"])
        assert fingerprint == whole.device_info(name)["fingerprint"] and fingerprint["os"] == "linux"
        assert props[f"device.{name}.labgrid_place"] == PLACES[name]
    # Per case, as before: device, clauses and verdict.
    case_props = {p.get("name") for p in junit.iter("property")} - set(props)
    assert {"device", "clauses", "verdict"} <= case_props
    assert verify(whole.run_dir) == []  # junit.xml was final before the manifest was written
    assert f"{PLACES[A]} at {lg.coordinator}, acquired by {me()}" in (whole.run_dir / "report.html").read_text()
    # --pcap all: passing cases keep their packets too (written by the xdist workers).
    passed = [c for c in whole.cases() if c["verdict"] == "pass"]
    assert passed and all(c["pcap"]["frames"] > 0 and (whole.run_dir / c["pcap"]["file"]).is_file() for c in passed)
    assert not any(c.get("pcap") for s in shards for c in s.cases())  # by default, only failures


# --- packet evidence ------------------------------------------------------------------------------
def read_pcapng(path: Path):
    from scapy.utils import PcapNgReader
    with PcapNgReader(str(path)) as reader:
        return list(reader)


def test_a_failing_case_keeps_a_pcap_with_the_seeded_frames(lg):
    from scapy.layers.inet6 import ICMPv6ND_NS
    from scapy.layers.l2 import ARP

    inventory = lg.inventory("mutant.toml", lab=False, only=(A,),
                             agent={A: ["sh", str(MUTANTS / "inet_flushes_inet6.sh")]})
    result = lg.run(inventory, "--", "-k", "test_flush_scope and all")
    assert result.exit == 1, result.output[-3000:]
    cases = {c["name"]: c for c in result.cases(A)}
    failed = cases[f"test_flush_scope[{A}-AF_INET-all]"]
    passed = cases[f"test_flush_scope[{A}-AF_INET6-all]"]
    assert failed["verdict"] == "fail" and passed["verdict"] == "pass", case_reasons(result, A)
    assert passed["pcap"] is None  # kept only for cases that fail or error
    assert not list((result.run_dir / "evidence").rglob("*AF_INET6-all.pcapng"))

    pcap = failed["pcap"]
    assert pcap["file"] == f"evidence/{A}/test_flush_scope-{A}-AF_INET-all-.pcapng", pcap
    assert pcap["links"] == ["nckG-a-t1"] and pcap["not_kept"] == 0
    path = result.run_dir / pcap["file"]
    frames = read_pcapng(path)
    assert len(frames) == pcap["frames"] and path.stat().st_size == pcap["bytes"]
    seeded_arp = {f[ARP].psrc for f in frames if ARP in f and f[ARP].op == 1 and is_planted(f[ARP].psrc)}
    seeded_ns = {f["IPv6"].src for f in frames if ICMPv6ND_NS in f and is_planted(f["IPv6"].src)}
    entries = result.results["entries_per_family"]
    assert len(seeded_arp) == entries and len(seeded_ns) == entries, (len(seeded_arp), len(seeded_ns))
    # Only the test link: nothing from the management link (SSH) is in it.
    assert not [f for f in frames if "TCP" in f]
    assert tcpdump_reads(path) in (None, len(frames))
    assert verify(result.run_dir) == []
    html = (result.run_dir / "report.html").read_text()
    assert f'href="{pcap["file"]}"' in html


def tcpdump_reads(path: Path) -> int | None:
    """Frames tcpdump counts in the file (None when tcpdump is not installed)."""
    if shutil.which("tcpdump") is None:
        return None
    proc = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return len(proc.stdout.splitlines())


# --- without a lab ----------------------------------------------------------------------------------
@pytest.mark.parametrize("names, n", [([], 1), (["a"], 1), (list("abcdefg"), 3), (["x-9", "X-1", "b", "a.2"], 4)])
def test_shards_are_disjoint_cover_every_device_and_are_balanced(names, n):
    shards = [shard_devices(names, k, n) for k in range(1, n + 1)]
    assert sorted(sum(shards, [])) == sorted(names)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # Deterministic: only the names matter, not their order.
    assert shards == [shard_devices(list(reversed(names)), k, n) for k in range(1, n + 1)]


def test_shard_assignment_is_documented_round_robin():
    assert shard_devices(["c", "a", "d", "b", "e"], 1, 2) == ["a", "c", "e"]
    assert shard_devices(["c", "a", "d", "b", "e"], 2, 2) == ["b", "d"]


@pytest.mark.parametrize("value", ["0/2", "3/2", "2", "a/b", "1/0", "-1/2", "1/2/3"])
def test_bad_shard_is_one_clear_message(value):
    with pytest.raises(UsageError) as info:
        parse_shard(value)
    assert f"--shard {value!r}" in str(info.value) and "K/N" in str(info.value) or "1..N" in str(info.value)
    assert parse_shard(" 2/3 ") == (2, 3)


def test_more_shards_than_devices_is_refused(tmp_path):
    proc = subprocess.run([str(BIN / "neighcheck"), "run", "--devices", str(REPO / "devices.toml"), "--device",
                           "linux-a", "--shard", "1/2"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2 and "only 1 device(s) are selected" in proc.stderr, proc.stderr


def test_pcapng_is_what_scapy_reads(tmp_path):
    from harness.traffic.capture import Frame, pcapng_frame, pcapng_header
    from scapy.layers.l2 import ARP, Ether
    arp = bytes(Ether(src="02:5e:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="198.19.0.1", pdst="198.18.248.2"))
    frames = [Frame(1_700_000_000_123_456_789, 1, True, arp), Frame(1_700_000_000_223_456_789, 0, False, arp[:41])]
    path = tmp_path / "x.pcapng"
    path.write_bytes(pcapng_header(["nckG-x1", "nckG-x2"]) + b"".join(pcapng_frame(f) for f in frames))
    read = read_pcapng(path)
    assert [bytes(p) for p in read] == [arp, arp[:41]]
    assert read[0][ARP].psrc == "198.19.0.1" and float(read[0].time) == pytest.approx(1_700_000_000.123456789)
    assert [getattr(p, "sniffed_on", None) for p in read] == ["nckG-x2", "nckG-x1"]
    assert tcpdump_reads(path) in (None, 2)


def test_capture_refuses_a_link_that_is_not_a_test_link():
    from harness.errors import LinkNotAllowed
    from harness.traffic.capture import LinkCapture
    with pytest.raises(LinkNotAllowed):
        LinkCapture(["lo"], {"nckG-a-t1"}, max_bytes=1 << 20)


def test_suite_properties_keep_existing_ones(tmp_path):
    from harness.plugin.results import add_suite_properties
    junit = tmp_path / "junit.xml"
    junit.write_text('<?xml version="1.0"?><testsuites><testsuite name="neighcheck" tests="1">'
                     '<properties><property name="ENV" value="x"/><property name="run_id" value="old"/></properties>'
                     '<testcase name="t"/></testsuite></testsuites>')
    add_suite_properties(junit, [("run_id", "new & <id>"), ("devices", "a b")])
    [suite] = ET.parse(junit).getroot().iter("testsuite")
    assert suite[0].tag == "properties"
    assert [(p.get("name"), p.get("value")) for p in suite[0]] == [("ENV", "x"), ("run_id", "new & <id>"),
                                                                    ("devices", "a b")]


def test_resolve_takes_only_what_the_inventory_leaves_out(tmp_path):
    from harness.inventory import load_inventory
    from harness.places import NetworkService, PlaceError, resolve
    (tmp_path / "key").write_text("x")
    (tmp_path / "known_hosts").write_text("")
    base = ('[[device]]\nname = "d"\nos = "linux"\n[device.labgrid]\nplace = "p"\n[device.ssh]\n'
            'key_file = "key"\nknown_hosts = "known_hosts"\n{ssh}[[device.link]]\ndevice_if = "eth1"\n'
            'harness_if = "nckG-x"\ndevice_v4 = "198.51.100.2/24"\n')
    path = tmp_path / "devices.toml"
    service = NetworkService("e/g/NetworkService/NetworkService", "192.0.2.7", "admin", 2222)
    path.write_text(base.format(ssh=""))
    device = load_inventory(path).devices[0]
    assert (device.ssh.host, device.ssh.login.user) == (None, None)
    got = resolve(device, service).ssh
    assert (got.host, got.login.user, got.port) == ("192.0.2.7", "admin", 2222)
    path.write_text(base.format(ssh='host = "192.0.2.9"\nuser = "root"\nport = 22\n'))
    got = resolve(load_inventory(path).devices[0], service).ssh
    assert (got.host, got.login.user, got.port) == ("192.0.2.9", "root", 22)
    # The place is hostile input too.
    for bad, words in ((NetworkService("s", "-oProxyCommand=id", "root", None), "is not a valid host name"),
                       (NetworkService("s", "192.0.2.7", "root;id", None), "username 'root;id' is not allowed"),
                       (NetworkService("s", "192.0.2.7", None, None), "gives no username; set ssh.user")):
        with pytest.raises(PlaceError) as info:
            resolve(device, bad)
        assert words in str(info.value) and "device 'd'" in str(info.value)


def test_without_labgrid_a_place_is_one_clear_message(tmp_path, monkeypatch):
    from harness.inventory import load_inventory
    from harness.places import PlaceError, Places
    (tmp_path / "key").write_text("x")
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "devices.toml").write_text(
        '[[device]]\nname = "d"\nos = "linux"\n[device.labgrid]\nplace = "p"\n[device.ssh]\nkey_file = "key"\n'
        'known_hosts = "known_hosts"\n[[device.link]]\ndevice_if = "eth1"\nharness_if = "nckG-x"\n'
        'device_v4 = "198.51.100.2/24"\n')
    monkeypatch.setitem(sys.modules, "labgrid.remote.client", None)  # as if not installed
    places = Places(None, 1)
    with pytest.raises(PlaceError) as info:
        places.claim(load_inventory(tmp_path / "devices.toml").devices[0])
    assert str(info.value) == ("device 'd' names a labgrid place, but labgrid is not installed here; "
                               "install the extra: pip install 'neighcheck[labgrid]'")


@pytest.mark.parametrize("plugin", [(), ("-p", "no:labgrid")], ids=["with-labgrid-plugin", "without"])
def test_lg_coordinator_is_one_option_with_or_without_labgrids_plugin(plugin, tmp_path):
    proc = subprocess.run([str(BIN / "python"), "-m", "pytest", *plugin, "-p", "no:cacheprovider",
                           "--lg-coordinator", "127.0.0.1:1", "--help"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("--lg-coordinator") == 1 and "--place-wait" in proc.stdout


# --- the example CI configurations --------------------------------------------------------------------
EXAMPLES = sorted((REPO / "examples" / "ci").glob("*.yml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_ci_is_valid_yaml_whose_commands_parse(example):
    """The example's neighcheck command lines are ones this version accepts (a renamed option
    would break a lab's CI the day it copies the example)."""
    import re
    import shlex
    import yaml
    from harness.cli import _parse

    def strings(node):
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            return [text for item in node for text in strings(item)]
        return [node] if isinstance(node, str) else []

    commands = [m[1] for text in strings(yaml.safe_load(example.read_text()))
                for m in re.finditer(r"\.venv/bin/neighcheck (.+)", text)]
    verbs = {" ".join(shlex.split(c)[:2 if c.startswith("report") else 1]) for c in commands}
    assert verbs == {"run", "report merge", "report verify"}, verbs
    for command in commands:
        command = re.sub(r"\$\{\{ matrix\.shard \}\}|\$SHARD", "1/2", command)
        words = shlex.split(re.sub(r"\$\{\{ matrix\.host \}\}|\$HARNESS_HOST", "harness-1", command))
        args = _parse(words)
        if args.command == "run":
            assert parse_shard(args.shard) == (1, 2) and args.workers == "auto"
