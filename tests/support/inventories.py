"""Inventory texts shared by the inventory tests: a good inventory with every key, and edits of it."""

from __future__ import annotations

from pathlib import Path

DUT_HEAD = '''
[[device]]
name = "dut-a"
os = "linux"
'''
DUT_SSH = '''[device.ssh]
host = "192.0.2.10"
port = 22
user = "root"
key_file = "id_test"
known_hosts = "known_hosts"
connect_timeout = 5
'''
DUT_UNPRIV = '''[device.unprivileged]
user = "nckuser"
key_file = "id_test"
'''
DUT_AGENT = '''[device.agent]
command = ["/opt/vendor/agent", "--json"]
'''
DUT_CAPS = '''[device.capabilities]
ipv6 = true
'''
DUT_LINK = '''[[device.link]]
device_if = "eth1"
harness_if = "nckI-t1"
device_v4 = "198.51.100.2/24"
harness_v4 = "198.51.100.1/24"
device_v6 = "2001:db8:1::2/64"
harness_v6 = "2001:db8:1::1/64"
'''
LAB_DEVICE = '''
[[device]]
name = "lab-b"
os = "linux"
[device.ssh]
host = "198.18.250.2"
user = "root"
key_file = "labstate/id_ed25519"
known_hosts = "labstate/known_hosts"
[device.lab]
mgmt_harness_if = "nckI-b-m"
mgmt_harness_addr = "198.18.250.1/24"
[[device.link]]
device_if = "eth1"
harness_if = "nckI-b-t1"
device_v4 = "198.18.251.2/24"
harness_v4 = "198.18.251.1/24"
'''
LAB_TOP = '[lab]\nstate_dir = "labstate"\n'
DUT = DUT_HEAD + DUT_SSH + DUT_UNPRIV + DUT_AGENT + DUT_CAPS + DUT_LINK
GOOD = LAB_TOP + DUT + LAB_DEVICE
A, B = "device 'dut-a'", "device 'lab-b'"


def edit(text: str, *edits: tuple[str, str]) -> str:
    """Apply (old, new) edits to the first occurrence; an edit that does not apply is a bug."""
    for old, new in edits:
        assert old in text, f"test bug: {old!r} is not in the inventory"
        text = text.replace(old, new, 1)
    return text


def lab_edit(*edits: tuple[str, str]) -> str:
    """An edit inside the lab device only (its keys repeat the first device's)."""
    return LAB_TOP + DUT + edit(LAB_DEVICE, *edits)


def seed(line: str) -> str:
    """The good inventory with one more key in dut-a's first link."""
    return edit(GOOD, ('harness_v6 = "2001:db8:1::1/64"\n', f'harness_v6 = "2001:db8:1::1/64"\n{line}\n'))


def lab_shape(line: str) -> str:
    """The good inventory with one more key in lab-b's [device.lab]."""
    return lab_edit(('mgmt_harness_addr = "198.18.250.1/24"\n', f'mgmt_harness_addr = "198.18.250.1/24"\n{line}\n'))


def write_fixture_files(directory: Path) -> None:
    (directory / "id_test").write_text("not a real key: only its existence is checked\n")
    (directory / "known_hosts").write_text("")
