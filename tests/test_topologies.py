"""Labs the default lab does not build (issue 14): odd interface names, a /29 seeded inside
its subnet, a harness end with no IP address, link-local seeds, a segment shared with
bystander hosts behind a bridge, and a device whose only userland is busybox.

One private lab (prefix nckT: namespaces nck-T-*, links nckT-*, small subnets of
198.18.230.0/24 (the bench's own lab uses 198.18.221-239 but not .230), 2001:db8:d1-d7::/64)
built by the lab's own options:
- T-names: test links enp1s0 (a /29, seed_from = "subnet"), wan-uplink1 (the harness end has
  no address at all) and eth1.100 (link-local IPv6 seeds). This host's kernel has no 802.1Q
  (CONFIG_VLAN_8021Q is not set), so eth1.100 is a veth of that name, not a VLAN.
- T-shared: `bystanders = 2`: its link runs through a bridge with two more hosts on the
  segment; its seeds are a free range inside the subnet (seed_v4 = 198.18.230.80/28).
- T-bb: `userland = "busybox"`: sh, awk and ip are busybox's, no iproute2.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from harness.contract.protocol import parse_neighbor
from harness.hostlock import host_lock
from harness.inventory import load_inventory
from harness.lab.netns import Lab, bystander_netns
from harness.traffic.responder import Responder
from harness.traffic.seeding import Seeder, address_plan, link_target, missing_seeds, static_plan

REPO = Path(__file__).resolve().parent.parent
NEIGHCHECK = REPO / ".venv" / "bin" / "neighcheck"
ENTRIES = 3  # what the /29 holds in-subnet: .27 .28 .29 (.25 harness, .26 device, .30 static)

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("nckT-lab"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, veth, sshd)")]

INVENTORY = """
[lab]
state_dir = "{state}"

[[device]]
name = "T-names"
os = "linux"
[device.ssh]
host = "198.18.230.2"
user = "root"
key_file = "{state}/id_ed25519"
known_hosts = "{state}/known_hosts"
connect_timeout = 3
command_timeout = 15
[device.unprivileged]
user = "nckuser"
key_file = "{state}/id_ed25519"
[device.lab]
mgmt_harness_if = "nckT-n-m"
mgmt_harness_addr = "198.18.230.1/29"
[[device.link]]
device_if = "enp1s0"
harness_if = "nckT-n-t1"
device_v4 = "198.18.230.26/29"
harness_v4 = "198.18.230.25/29"
device_v6 = "2001:db8:d1::2/64"
harness_v6 = "2001:db8:d1::1/64"
seed_from = "subnet"
[[device.link]]
device_if = "wan-uplink1"
harness_if = "nckT-n-t2"
device_v4 = "198.18.230.34/28"
device_v6 = "2001:db8:d2::2/64"
[[device.link]]
device_if = "eth1.100"
harness_if = "nckT-n-t3"
device_v4 = "198.18.230.50/28"
harness_v4 = "198.18.230.49/28"
device_v6 = "2001:db8:d3::2/64"
seed_v6 = "fe80::/64"

[[device]]
name = "T-shared"
os = "linux"
[device.ssh]
host = "198.18.230.10"
user = "root"
key_file = "{state}/id_ed25519"
known_hosts = "{state}/known_hosts"
connect_timeout = 3
command_timeout = 15
[device.lab]
mgmt_harness_if = "nckT-s-m"
mgmt_harness_addr = "198.18.230.9/29"
bystanders = 2
[[device.link]]
device_if = "eth1"
harness_if = "nckT-s-t1"
device_v4 = "198.18.230.66/26"
harness_v4 = "198.18.230.65/26"
device_v6 = "2001:db8:d7::2/64"
harness_v6 = "2001:db8:d7::1/64"
seed_v4 = "198.18.230.80/28"

[[device]]
name = "T-bb"
os = "linux"
[device.ssh]
host = "198.18.230.18"
user = "root"
key_file = "{state}/id_ed25519"
known_hosts = "{state}/known_hosts"
connect_timeout = 3
command_timeout = 15
[device.unprivileged]
user = "nckuser"
key_file = "{state}/id_ed25519"
[device.lab]
mgmt_harness_if = "nckT-b-m"
mgmt_harness_addr = "198.18.230.17/29"
userland = "busybox"
[[device.link]]
device_if = "eth1"
harness_if = "nckT-b-t1"
device_v4 = "198.18.230.130/26"
harness_v4 = "198.18.230.129/26"
device_v6 = "2001:db8:d5::2/64"
harness_v6 = "2001:db8:d5::1/64"
"""


def ns_json(netns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    return json.loads(out or "[]")


def table(netns: str) -> list[dict]:
    return ns_json(netns, "neigh", "show", "nud", "all")


class TopoLab:
    def __init__(self, root: Path):
        self.root = root
        self.path = root / "devices.toml"
        self.path.write_text(INVENTORY.format(state=root / "state"))
        self.inventory = load_inventory(self.path)
        self.lab = Lab(self.inventory)

    def device(self, name: str):
        return self.inventory.device(name)

    def up(self) -> None:
        self.lab.up()  # host sysctls go through the host's registry (harness/lab/sysctls.py)

    def neighcheck(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(NEIGHCHECK), *args, "--devices", str(self.path)], capture_output=True,
                              text=True, timeout=timeout, cwd=self.root)

    def target(self, device: str, index: int = 0):
        """The link as the harness plans it (the device's MAC read from its namespace)."""
        dev = self.device(device)
        link = dev.links[index]
        mac = ns_json(dev.netns, "link", "show", link.device_if)[0]["address"]
        return link_target(link, mac, device=device)


@pytest.fixture(scope="module")
def topo():
    if shutil.which("busybox") is None or shutil.which("flock") is None:
        pytest.skip("needs busybox and flock (scripts/install-deps installs them)")
    with host_lock(Path("/run/lock/nckT-lab.lock"), 600, "another test session kept the nckT lab for 600 s"):
        root = Path(tempfile.mkdtemp(prefix="nckT-"))
        root.chmod(0o755)  # the lab's unprivileged account reads the authorized_keys there
        lab = TopoLab(root)
        try:
            lab.up()
            yield lab
        finally:
            lab.lab.down()
            shutil.rmtree(root, ignore_errors=True)


# In a bystander: resolve ADDRESS from scratch again and again (bounded: about 30 s).
RESOLVE_LOOP = ('for i in $(seq 150); do ip "$1" neigh del "$2" dev eth1 2>/dev/null; '
                'ping "$1" -c1 -W0.2 "$2" >/dev/null 2>&1; done')


def learned_from_harness(entry: dict, planted: set[str]) -> bool:
    """An entry with a link-layer address for a seed or static address, or with a harness MAC
    (02:5e:...). A bystander's own failed attempt to resolve a seed (no lladdr) is not one."""
    lladdr = entry.get("lladdr")
    return lladdr is not None and (entry["dst"].split("%")[0] in planted or lladdr.startswith("02:5e:"))


def test_the_suite_judges_right_on_odd_names_a_29_a_bare_harness_end_bystanders_and_busybox(topo):
    shared = topo.device("T-shared")
    target = topo.target("T-shared")
    seeds = address_plan(0, ENTRIES, target)
    planted = {e.address for e in seeds} | {e.address for e in static_plan(0, target)}
    bystanders = [bystander_netns(shared, 0, k) for k in (1, 2)]
    before = {ns: table(ns) for ns in bystanders}
    # Bystanders that keep resolving seeded addresses through the run (a monitoring host, a
    # scan): only a responder that answers them could teach them a seed.
    # (A fresh resolution every 0.2 s: one long ping stops resolving once the entry FAILED.)
    pingers = [subprocess.Popen(["ip", "netns", "exec", ns, "sh", "-c", RESOLVE_LOOP, "resolve", flag, address],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
               for ns in bystanders for flag, address in (("-4", seeds[0].address), ("-6", seeds[-1].address))]
    # Watched all along: a learned seed turns FAILED (and loses its lladdr) soon after the
    # responder that taught it stops, so a look at the end alone would miss it.
    learned: list[dict] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            learned.extend(e for ns in bystanders for e in table(ns)
                           if e not in before[ns] and learned_from_harness(e, planted))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        proc = topo.neighcheck("run", "--entries", str(ENTRIES), "--out", str(topo.root / "reports"))
    finally:
        done.set()
        watcher.join(10)
        for pinger in pingers:
            os.killpg(pinger.pid, signal.SIGTERM)  # its own session: the loop and its ping
            pinger.wait(5)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    results = json.loads(next((topo.root / "reports").glob("2*/results.json")).read_text())
    verdicts = {c["name"]: c["verdict"] for c in results["cases"]}
    assert set(verdicts.values()) <= {"pass", "not-applicable", "observed"}, verdicts
    for device in ("T-names", "T-shared", "T-bb"):
        assert sum(1 for c in results["cases"] if c["device"] == device and c["verdict"] == "pass") >= 9
    names = {d["name"]: [i["name"] for i in d["interfaces"]] for d in results["devices"]}
    assert names["T-names"] == ["enp1s0", "wan-uplink1", "eth1.100"]
    # The busybox device holds its IPv4 static entry (busybox arp) but no IPv6 one (busybox ip
    # cannot add it), and the case that observes static entries says which it had.
    run_dir = next((topo.root / "reports").glob("2*"))
    evidence = json.loads(next((run_dir / "evidence" / "T-bb").glob("test_observe_permanent*")).read_text())
    assert [e["family"] for e in evidence["static"]] == [2], evidence["static"]
    # The bystanders learned nothing the harness planted, though they asked all the time.
    assert not learned, f"bystanders learned {learned[:4]}"
    for ns in bystanders:
        pinged = [e for e in table(ns) if e["dst"] in (seeds[0].address, seeds[-1].address)]
        assert all("lladdr" not in e for e in pinged), pinged
    # Every device is left as it was found: nothing planted remains (busybox cleanup too).
    for name in ("T-names", "T-shared", "T-bb"):
        left = [e for e in table(topo.device(name).netns) if str(e.get("lladdr", "")).startswith("02:5e:")]
        assert not left, f"{name} kept {left}"
    # The harness end of wan-uplink1 has no address of any kind (IPv6 off: not even a
    # link-local), and its link's cases passed above.
    out = subprocess.run(["ip", "-j", "addr", "show", "nckT-n-t2"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    assert json.loads(out)[0]["addr_info"] == []


def test_doctor_shows_each_pool_and_the_busybox_userland(topo):
    proc = topo.neighcheck("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"seeds enp1s0\s+IPv4 198\.18\.230\.24/29: in-subnet, holds 3, static 198\.18\.230\.30; "
                     r"IPv6 2001:db8:d1::/64 \(interface IDs 5e00:0:\*\): in-subnet, holds 4,294,967,294, "
                     r"static 2001:db8:d1:0:5e00:0:ffff:ffff", out), out
    assert re.search(r"seeds wan-uplink1\s+IPv4 198\.19\.64\.0/18 \(block 1 of 198\.19\.0\.0/16\): off-subnet, "
                     r"holds 16,384, static 198\.51\.100\.201", out), out
    assert re.search(r"seeds eth1\.100\s+IPv4 198\.19\.128\.0/18 .*; IPv6 fe80::/64 \(interface IDs 5e02:0:\*\): "
                     r"link-local, holds 4,294,967,294, static fe80::5e02:0:ffff:ffff", out), out
    assert re.search(r"seeds eth1\s+IPv4 198\.18\.230\.80/28: in-subnet, holds 15, static 198\.18\.230\.95", out), out
    busybox = out.split("T-bb:")[1]
    assert "userland    busybox ip (no iproute2): IPv6 static entries cannot be added" in busybox
    assert "userland" not in out.split("T-bb:")[0]


def test_bystanders_never_learn_a_seed_and_the_check_catches_a_responder_that_answers_them(topo):
    """Seeds and answers reach the device only. A bystander that resolves a seeded address
    stays without an answer; a responder that answers anyone (the mutant) teaches it the seed
    MAC, which is what the check is there to catch."""
    device = topo.device("T-shared")
    target = topo.target("T-shared")
    seeds = address_plan(0, 4, target)
    bystander = bystander_netns(device, 0, 1)

    class AnswersAnyone(Responder):
        def _reply_for(self, state, frame):
            state.device_mac = frame[6:12]
            return super()._reply_for(state, frame)

    def resolve_from_bystander(responder_class, v4, v6):
        subprocess.run(["ip", "-n", bystander, "neigh", "flush", "dev", "eth1"], check=True, timeout=10)
        with responder_class([target.harness_if]) as responder, Seeder([target.harness_if]) as seeder:
            responder.serve(target, seeds)
            seeder.send(target, seeds)
            pings = [subprocess.Popen(["ip", "netns", "exec", bystander, "ping", *flag, "-c1", "-W1", a],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for flag, a in (((), v4.address), (("-6",), v6.address))]
            for ping in pings:
                ping.wait(10)
            device_table = neighbors(device.netns)
        learned = {e["dst"]: e.get("lladdr") for e in table(bystander) if e["dst"] in (v4.address, v6.address)}
        return learned, device_table

    v4s = [e for e in seeds if e.family == 2]
    v6s = [e for e in seeds if e.family == 23]
    learned, device_table = resolve_from_bystander(Responder, v4s[0], v6s[0])
    assert all(mac is None for mac in learned.values()), learned
    ifindex = ns_json(device.netns, "link", "show", "eth1")[0]["ifindex"]
    assert missing_seeds(device_table, ifindex, seeds) == []
    learned, _ = resolve_from_bystander(AnswersAnyone, v4s[1], v6s[1])
    assert learned == {v4s[1].address: v4s[1].lladdr, v6s[1].address: v6s[1].lladdr}, learned
    subprocess.run(["ip", "-n", bystander, "neigh", "flush", "dev", "eth1"], check=True, timeout=10)
    subprocess.run(["ip", "-n", device.netns, "neigh", "flush", "dev", "eth1", "nud", "all"], timeout=10)


def neighbors(netns: str) -> list:
    """The namespace's table in protocol form (Neighbor), as an agent's `table` gives it."""
    index = {link["ifname"]: link["ifindex"] for link in ns_json(netns, "link", "show")}
    out = []
    for e in table(netns):
        states = [s.lower() for s in e.get("state", []) if s != "NONE"]
        if states and e.get("lladdr"):
            out.append(parse_neighbor({"address": e["dst"], "family": 23 if ":" in e["dst"] else 2,
                                       "ifindex": index[e["dev"]], "lladdr": e["lladdr"], "state": states[-1]}))
    return out
