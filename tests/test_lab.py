"""The embedded lab: up, status, up again (no-op), down leaves nothing behind, crash recovery."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.inventory import load_inventory
from harness.lab.netns import Lab, lab_sysctls, _sysctl_path

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, veth, sshd)")]

INVENTORY = """
[lab]
state_dir = "{state}"

[[device]]
name = "labtest"
os = "linux"
[device.ssh]
host = "198.18.210.2"
user = "root"
key_file = "{state}/id_ed25519"
known_hosts = "{state}/known_hosts"
[device.lab]
mgmt_harness_if = "nck-lt-m"
mgmt_harness_addr = "198.18.210.1/24"
ipv6 = false
[[device.link]]
device_if = "eth1"
harness_if = "nck-lt-t1"
device_v4 = "198.18.211.2/24"
harness_v4 = "198.18.211.1/24"
"""
LINKS = ("nck-lt-m", "nck-lt-t1")
NETNS = "nck-labtest"


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def sshd_pids_for(state: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "sshd" in cmd and str(state) in cmd:
                pids.append(int(proc.name))
    return pids


def sysctls() -> dict[str, str]:
    return {name: _sysctl_path(name).read_text().strip() for name in lab_sysctls()}


@pytest.fixture
def lab(tmp_path):
    state = tmp_path / "state"
    inv_path = tmp_path / "devices.toml"
    inv_path.write_text(INVENTORY.format(state=state))
    lab = Lab(load_inventory(inv_path))
    yield lab, state
    lab.down()  # whatever the test did


def test_up_status_down_leaves_nothing_behind(lab):
    lab, state = lab
    original = sysctls()
    assert lab.up() == ["labtest"]
    assert NETNS in namespaces()
    assert all(Path("/sys/class/net", link).exists() for link in LINKS)
    [row] = lab.status()
    assert row.up and row.sshd and row.netns
    pid = lab._load_state()["devices"]["labtest"]["sshd_pid"]
    assert pid in sshd_pids_for(state)
    assert int(sysctls()["net.ipv4.neigh.default.gc_thresh3"]) >= 1048576
    # The device really is a device: it has IPv6 disabled, as the inventory says.
    ipv6 = subprocess.run(["ip", "netns", "exec", NETNS, "cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"],
                          capture_output=True, text=True).stdout.strip()
    assert ipv6 == "1"

    assert lab.up() == []  # up twice is a no-op: same sshd
    assert lab._load_state()["devices"]["labtest"]["sshd_pid"] == pid
    assert pid in sshd_pids_for(state)

    assert lab.down() == ["labtest"]
    assert NETNS not in namespaces()
    assert not any(Path("/sys/class/net", link).exists() for link in LINKS)
    assert sshd_pids_for(state) == []
    assert not state.exists()
    assert sysctls() == original
    assert lab.status()[0].up is False


def test_down_cleans_up_after_a_crash_half_way(lab):
    lab, state = lab
    # As if a previous `up` died after making the namespace and one link, before any state.
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    subprocess.run(["ip", "link", "add", "nck-lt-t1", "type", "veth", "peer", "name", "eth1",
                    "netns", NETNS], check=True)
    assert lab.down() == ["labtest"]
    assert NETNS not in namespaces()
    assert not Path("/sys/class/net/nck-lt-t1").exists()


def test_up_repairs_a_device_whose_sshd_died(lab):
    lab, state = lab
    lab.up()
    for pid in sshd_pids_for(state):
        os.kill(pid, 9)
    deadline = time.monotonic() + 3  # SIGKILL is delivered asynchronously
    while lab.status()[0].up and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab.status()[0].up is False
    assert lab.up() == ["labtest"]
    assert lab.status()[0].up is True


def test_cli_lab_status_exit_codes(lab, tmp_path):
    lab_obj, state = lab
    cli = [str(Path(__file__).resolve().parent.parent / ".venv/bin/neighcheck")]
    inv = str(tmp_path / "devices.toml")
    down = subprocess.run(cli + ["lab", "status", "--devices", inv], capture_output=True, text=True)
    assert down.returncode == 3 and "DOWN" in down.stdout
    up = subprocess.run(cli + ["lab", "up", "--devices", inv], capture_output=True, text=True)
    assert up.returncode == 0 and "started labtest" in up.stdout
    status = subprocess.run(cli + ["lab", "status", "--devices", inv], capture_output=True, text=True)
    assert status.returncode == 0 and "UP" in status.stdout
