"""doctor names what a device's userland lacks in one line each (issue 14: busybox devices).

The probe's answers come from a stand-in session; tests/test_topologies.py runs doctor against
a real busybox-only lab device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.doctor import IP_FLAVOURS, NO_FLOCK, NO_IP, Check, _userland
from harness.inventory import load_inventory

INVENTORY = '''
[[device]]
name = "dut"
os = "{os}"
[device.ssh]
host = "192.0.2.10"
user = "root"
key_file = "id"
known_hosts = "known_hosts"
{agent}
[[device.link]]
device_if = "eth1"
harness_if = "nckT-u1"
device_v4 = "192.0.2.2/24"
'''


@dataclass
class Result:
    stdout: bytes


class Session:
    def __init__(self, answer: str):
        self.answer, self.commands = answer, []

    def run(self, command: str, timeout: float | None = None) -> Result:
        self.commands.append(command)
        return Result(self.answer.encode())


def device(tmp_path: Path, os_name: str = "linux", agent: str = ""):
    (tmp_path / "id").write_text("x")
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "devices.toml").write_text(INVENTORY.format(os=os_name, agent=agent))
    return load_inventory(tmp_path / "devices.toml").devices[0]


@pytest.mark.parametrize("flock, ip, problems, userland", [
    ("flock", "iproute2", [], None),
    ("Welcome to dut. Authorized use only.\nflock\n", "iproute2", [], None),  # a login banner first
    ("Welcome to dut.\nnone\n", "iproute2", [NO_FLOCK], None),
    ("flock", "busybox", [], IP_FLAVOURS["busybox"]),
    ("none", "busybox", [NO_FLOCK], IP_FLAVOURS["busybox"]),
    ("", "missing", [NO_FLOCK, NO_IP], None),
])
def test_each_missing_tool_is_one_line(tmp_path, flock, ip, problems, userland):
    check = Check("dut")
    _userland(check, device(tmp_path), Session(flock), {"ip": ip})
    assert check.problems == problems and check.ok is not problems
    assert check.facts.get("userland") == userland
    assert all("\n" not in p for p in problems)


def test_a_vendor_agent_brings_its_own_ip_and_windows_has_no_flock_probe(tmp_path):
    check = Check("dut")
    _userland(check, device(tmp_path, agent='[device.agent]\ncommand = ["/opt/agent"]'), Session("flock"),
              {"ip": "missing"})
    assert check.ok and "userland" not in check.facts
    (tmp_path / "w").mkdir()
    session = Session("none")
    _userland(check, device(tmp_path / "w", os_name="windows"), session, {})
    assert check.ok and session.commands == []
