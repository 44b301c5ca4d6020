"""The embedded lab: up, status, up again (no-op), down leaves nothing behind, crash recovery."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.lab.netns import lab_sysctls
from harness.lab.sysctls import sysctl_path
from harness.lab.private import LabDevice, LabLink, PrivateLab
from tests.support import NEIGHCHECK, needs_root
from tests.support.netns import namespaces
from tests.support.waits import wait_for

pytestmark = [pytest.mark.lab, needs_root]

LABTEST = LabDevice("labtest", "nck-lt-m", 210, (LabLink("eth1", "nck-lt-t1", 211),), ipv6=False)
LINKS = ("nck-lt-m", "nck-lt-t1")
NETNS = "nck-labtest"


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
    return {name: sysctl_path(name).read_text().strip() for name in lab_sysctls()}


@pytest.fixture
def lab(tmp_path):
    private = PrivateLab(tmp_path, (LABTEST,))  # its inventory: tmp_path/devices.toml
    yield private.lab, private.state
    private.lab.down()  # whatever the test did


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
    wait_for(lambda: not lab.status()[0].up, 3, "the lab to see its sshd gone")  # SIGKILL is asynchronous
    assert lab.up() == ["labtest"]
    assert lab.status()[0].up is True


def test_cli_lab_status_exit_codes(lab, tmp_path):
    lab_obj, state = lab
    cli = [str(NEIGHCHECK)]
    inv = str(tmp_path / "devices.toml")
    down = subprocess.run(cli + ["lab", "status", "--devices", inv], capture_output=True, text=True)
    assert down.returncode == 3 and "DOWN" in down.stdout
    up = subprocess.run(cli + ["lab", "up", "--devices", inv], capture_output=True, text=True)
    assert up.returncode == 0 and "started labtest" in up.stdout
    status = subprocess.run(cli + ["lab", "status", "--devices", inv], capture_output=True, text=True)
    assert status.returncode == 0 and "UP" in status.stdout
