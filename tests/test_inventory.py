"""load_inventory against hostile and malformed inventories.

Every bad inventory is a valid one with one edit. Each case asserts the whole contract of the
message: it names the file, the device (where there is one), the key, and says what to do;
it is one line; it never echoes a secret. The good inventory itself is loaded and checked
first, so a case cannot pass because the base was already broken.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.inventory import (
    DEVICE_NAME, ENV_NAME, LAB_PATH, LINUX_IFNAME, USER_NAME, WINDOWS_IFNAME, load_inventory,
)

REPO = Path(__file__).resolve().parent.parent

from tests.support.inventories import (DUT, DUT_CAPS, DUT_LINK, DUT_SSH,  # noqa: E402
                                      GOOD, LAB_DEVICE, LAB_TOP, A, B, edit, lab_edit, lab_shape, seed,
                                      write_fixture_files)


def labgrid(table: str, text: str = None) -> str:
    """GOOD (or `text`) with a [device.labgrid] table on the first device."""
    return edit(text or GOOD, (DUT_CAPS, DUT_CAPS + "[device.labgrid]\n" + table))



@pytest.fixture
def inv_dir(tmp_path: Path) -> Path:
    write_fixture_files(tmp_path)
    return tmp_path


def load_text(directory: Path, text: str | bytes) -> tuple[Path, object]:
    path = directory / "devices.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path, load_inventory(path)


def problem(directory: Path, text: str | bytes) -> tuple[Path, str]:
    path = directory / "devices.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UsageError) as info:
        load_inventory(path)
    assert info.value.exit_code == 2
    return path, str(info.value)


# --- the good inventory ------------------------------------------------------------------------
def test_good_inventory_loads_with_every_value(inv_dir):
    path, inv = load_text(inv_dir, GOOD)
    dut, lab = inv.devices
    assert inv.path == path.resolve() and inv.lab_state_dir == (inv_dir / "labstate").resolve()
    assert (dut.name, dut.os, dut.ssh.host, dut.ssh.port, dut.ssh.login.user) == \
        ("dut-a", "linux", "192.0.2.10", 22, "root")
    assert dut.ssh.login.key_file == inv_dir / "id_test" and dut.ssh.known_hosts == inv_dir / "known_hosts"
    assert dut.ssh.connect_timeout == 5.0 and dut.ssh.keepalive == 15 and dut.ssh.host_key_policy == "strict"
    assert dut.unprivileged.user == "nckuser"
    assert dut.agent.command == ("/opt/vendor/agent", "--json")
    assert dut.capabilities == {"ipv6": True}
    link = dut.links[0]
    assert (link.device_if, link.harness_if) == ("eth1", "nckI-t1")
    assert link.device_v4 == ipaddress.ip_interface("198.51.100.2/24")
    assert link.harness_v6 == ipaddress.ip_interface("2001:db8:1::1/64")
    # A lab device's key and known_hosts are made by `lab up`: they need not exist yet.
    assert lab.lab.mgmt_harness_if == "nckI-b-m" and lab.lab.ipv6 is True and lab.netns == "nck-lab-b"
    assert not lab.ssh.login.key_file.exists()
    assert inv.test_interfaces == {"nckI-t1", "nckI-b-t1"}
    assert len(inv.raw_sha256) == 64


def test_the_repository_inventory_loads():
    inv = load_inventory(REPO / "devices.toml")
    assert {d.name for d in inv.devices} >= {"linux-a", "linux-b"}


@pytest.mark.parametrize("text, check", [
    pytest.param(b"\xef\xbb\xbf" + GOOD.encode(), lambda inv: len(inv.devices) == 2, id="utf8-bom"),
    pytest.param(edit(GOOD, ('device_if = "eth1"', 'device_if = "Ethernet 2 (#1)"'), ('os = "linux"', 'os = "windows"')),
                 lambda inv: inv.devices[0].links[0].device_if == "Ethernet 2 (#1)", id="windows-ifname-with-space"),
    pytest.param(edit(GOOD, ('known_hosts = "known_hosts"\n', 'known_hosts = "absent"\nhost_key_policy = "trust-on-first-use"\n')),
                 lambda inv: inv.devices[0].ssh.host_key_policy == "trust-on-first-use", id="tofu-without-known-hosts"),
    pytest.param(edit(GOOD, ('host = "192.0.2.10"', 'host = "fe80::10%eth0"')),
                 lambda inv: inv.devices[0].ssh.host == "fe80::10%eth0", id="ipv6-link-local-host"),
    pytest.param(edit(GOOD, ('host = "192.0.2.10"', 'host = "dut-a.lab.example"')),
                 lambda inv: inv.devices[0].ssh.host == "dut-a.lab.example", id="dns-host"),
    pytest.param(edit(GOOD, ('command = ["/opt/vendor/agent", "--json"]', 'command = "/opt/vendor/agent \'a b\'"')),
                 lambda inv: inv.devices[0].agent.command == ("/opt/vendor/agent", "a b"), id="agent-command-string"),
    pytest.param(edit(labgrid('place = "rack-3:dut-a"\n'), ('host = "192.0.2.10"\n', ""), ('user = "root"\n', "")),
                 lambda inv: (inv.devices[0].ssh.host, inv.devices[0].ssh.login.user) == (None, None)
                 and inv.devices[0].labgrid.place == "rack-3:dut-a"
                 and inv.devices[0].labgrid.from_place == {"host", "user"}, id="labgrid-place-gives-host-and-user"),
    pytest.param(labgrid('place = "p1"\nresource = "ssh"\n'),
                 lambda inv: inv.devices[0].ssh.host == "192.0.2.10" and inv.devices[0].labgrid.resource == "ssh"
                 and inv.devices[0].labgrid.from_place == frozenset(), id="labgrid-place-with-inventory-host"),
    pytest.param(edit(GOOD, ("connect_timeout = 5", "connect_timeout = 0.25\nkeepalive = 0")),
                 lambda inv: inv.devices[0].ssh.connect_timeout == 0.25 and inv.devices[0].ssh.keepalive == 0,
                 id="short-timeout-and-keepalive-off"),
    # issue 14: seed pools, harness ends without addresses, lab shapes
    pytest.param(edit(GOOD, ('harness_v6 = "2001:db8:1::1/64"\n', 'harness_v6 = "2001:db8:1::1/64"\n'
                             'seed_v4 = ["198.51.100.128/26", "198.19.5.0/24"]\nseed_v6 = "fe80::/64"\n')),
                 lambda inv: inv.devices[0].links[0].seed_v4 == (ipaddress.ip_network("198.51.100.128/26"),
                                                                 ipaddress.ip_network("198.19.5.0/24"))
                 and inv.devices[0].links[0].seed_v6 == (ipaddress.ip_network("fe80::/64"),)
                 and inv.devices[0].links[0].seed_from is None, id="seed-pools"),
    pytest.param(edit(GOOD, ('harness_v6 = "2001:db8:1::1/64"\n', 'harness_v6 = "2001:db8:1::1/64"\nseed_from = "subnet"\n')),
                 lambda inv: inv.devices[0].links[0].seed_from == "subnet", id="seed-from-subnet"),
    pytest.param(lab_edit(('harness_v4 = "198.18.251.1/24"\n', "")),
                 lambda inv: inv.devices[1].links[0].harness_v4 is None, id="lab-harness-end-without-address"),
    pytest.param(lab_edit(('mgmt_harness_addr = "198.18.250.1/24"\n', 'mgmt_harness_addr = "198.18.250.1/24"\n'
                           'bystanders = 2\nuserland = "busybox"\n'),
                          ('device_if = "eth1"', 'device_if = "wan-uplink1.100"')),
                 lambda inv: (inv.devices[1].lab.bystanders, inv.devices[1].lab.userland) == (2, "busybox")
                 and inv.devices[1].links[0].device_if == "wan-uplink1.100", id="lab-shapes"),
])
def test_unusual_but_valid_inventories_load(inv_dir, text, check):
    _, inv = load_text(inv_dir, text)
    assert check(inv)


# --- the hostile corpus ----------------------------------------------------------------------
@dataclass
class Bad:
    id: str
    text: str | bytes
    expect: tuple[str, ...]  # fragments the message must contain (device, key, problem, fix)
    secret: str | None = None  # must NOT appear in the message


BAD = [
    # the file itself
    Bad("toml-syntax", "[[device]]\nname = \n", ("not valid TOML", "line 2", "fix the syntax")),
    Bad("toml-duplicate-key", edit(GOOD, ('name = "dut-a"', 'name = "dut-a"\nname = "x"')), ("not valid TOML",)),
    Bad("not-utf8", b"\xff\xfe[[device]]\n", ("not UTF-8", "0xff", "offset 0", "save the inventory as UTF-8")),
    Bad("latin1-comment", ("# caf\u00e9\n" + GOOD).encode("latin-1"), ("not UTF-8", "0xe9", "offset 5")),
    Bad("empty", "", ("the inventory is empty", "[[device]]")),
    Bad("blank", " \n\t\n", ("the inventory is empty",)),
    Bad("comments-only", "# nothing here\n", ("device: no devices", "add at least one [[device]]")),
    Bad("nested-too-deep", "x = " + "[" * 5000 + "]" * 5000, ("not valid TOML", "nested too deeply")),
    Bad("too-large", "# " + "x" * (1 << 20) + "\n" + GOOD, ("too large", "is this the right file")),
    Bad("device-single-table", "[device]\nname = \"x\"\n", ("device: is one table", "write [[device]]")),
    Bad("device-string", 'device = "dut-a"\n', ("device: must be an array of tables", "the string 'dut-a'")),
    Bad("device-entry-not-table", "device = [1, 2]\n", ("device[0]: must be a table", "the integer 1")),
    Bad("unknown-top-key", "devices = []\n" + GOOD, ("devices: unknown key", "did you mean 'device'")),
    Bad("top-lab-not-table", edit(GOOD, (LAB_TOP, 'lab = "x"\n')), ("lab: must be a table", "[lab]")),
    Bad("unknown-lab-top-key", edit(GOOD, ("state_dir", "statedir")), ("lab.statedir: unknown key", "'state_dir'")),
    Bad("state-dir-traversal", edit(GOOD, ('"labstate"', '"../labstate"')), ("lab.state_dir", "'..' is not allowed")),
    Bad("state-dir-inventory-dir", edit(GOOD, ('"labstate"', '"."')), ("lab.state_dir", "not the lab's", "lab down")),
    Bad("state-dir-system-dir", edit(GOOD, ('"labstate"', '"/etc"')), ("lab.state_dir", "/etc already holds files")),
    Bad("state-dir-shell-chars", edit(GOOD, ('"labstate"', '"lab state;id"'), ('"labstate/', '"lab state;id/'),
                                      ('"labstate/', '"lab state;id/')),
        ("lab.state_dir", "cannot be used by the lab", "no spaces")),
    # wrong types
    Bad("port-string", edit(GOOD, ("port = 22", 'port = "22"')), (A, "ssh.port: must be an integer", "the string '22'", "port = 22")),
    Bad("port-bool", edit(GOOD, ("port = 22", "port = true")), (A, "ssh.port: must be an integer", "the boolean true")),
    Bad("port-float", edit(GOOD, ("port = 22", "port = 22.5")), (A, "ssh.port: must be an integer", "the number 22.5")),
    Bad("port-date", edit(GOOD, ("port = 22", "port = 1979-05-27")), (A, "ssh.port", "a TOML date")),
    Bad("ssh-list", edit(GOOD, (DUT_SSH, "ssh = [1, 2]\n")), (A, "ssh: must be a table", "[device.ssh]", "an array")),
    Bad("name-int", edit(GOOD, ('name = "dut-a"', "name = 5")), ("device '#1'", "name: must be a string", "double quotes")),
    Bad("link-single-table", edit(GOOD, ("[[device.link]]", "[device.link]")), (A, "link: is one table", "[[device.link]]")),
    Bad("link-string", edit(GOOD, (DUT_LINK, ""), ('os = "linux"', 'os = "linux"\nlink = "eth1"')),
        (A, "link: must be an array of tables", "the string 'eth1'")),
    Bad("capabilities-string", edit(GOOD, (DUT_CAPS, ""), ('os = "linux"', 'os = "linux"\ncapabilities = "all"')),
        (A, "capabilities: must be a table", "the string 'all'")),
    Bad("capability-string-bool", edit(GOOD, ("ipv6 = true", 'ipv6 = "true"')),
        (A, "capabilities.ipv6: must be true or false", "ipv6 = true")),
    Bad("timeout-string", edit(GOOD, ("connect_timeout = 5", 'connect_timeout = "5"')),
        (A, "ssh.connect_timeout: must be a number", "connect_timeout = 5")),
    Bad("use-agent-string", edit(GOOD, ('key_file = "id_test"\nknown', 'use_agent = "yes"\nknown')),
        (A, "ssh.use_agent: must be true or false", "the string 'yes'")),
    # missing fields
    Bad("missing-name", edit(GOOD, ('name = "dut-a"\n', "")), ("device '#1'", "name: missing", "required")),
    Bad("missing-os", edit(GOOD, ('os = "linux"\n', "")), (A, "os: missing")),
    Bad("missing-ssh", edit(GOOD, (DUT_SSH, "")), (A, "ssh: missing", "[device.ssh]")),
    Bad("missing-ssh-host", edit(GOOD, ('host = "192.0.2.10"\n', "")), (A, "ssh.host: missing")),
    Bad("missing-ssh-user", edit(GOOD, ('port = 22\nuser = "root"\n', "port = 22\n")), (A, "ssh.user: missing")),
    Bad("missing-link", edit(GOOD, (DUT_LINK, "")), (A, "link: a device needs at least one test link", "[[device.link]]")),
    Bad("missing-device-if", edit(GOOD, ('device_if = "eth1"\n', "")), (A, "link[0].device_if: missing")),
    Bad("missing-harness-if", edit(GOOD, ('harness_if = "nckI-t1"\n', "")), (A, "link[0].harness_if: missing")),
    Bad("missing-login", edit(GOOD, ('key_file = "id_test"\nknown', "known")), (A, "ssh: no way to log in", "password_env")),
    Bad("missing-addresses", edit(GOOD, ('device_v4 = "198.51.100.2/24"\nharness_v4 = "198.51.100.1/24"\n'
                                         'device_v6 = "2001:db8:1::2/64"\nharness_v6 = "2001:db8:1::1/64"\n', "")),
        (A, "link[0].device_v4", "needs device_v4, device_v6 or both")),
    Bad("missing-lab-mgmt-addr", lab_edit(('mgmt_harness_addr = "198.18.250.1/24"\n', "")), (B, "lab.mgmt_harness_addr: missing")),
    # unknown keys, one per level
    Bad("typo-device-key", edit(GOOD, ('name = "dut-a"', 'name = "dut-a"\nnmae = "x"')), (A, "nmae: unknown key", "did you mean 'name'")),
    Bad("typo-ssh-key", edit(GOOD, ("port = 22", "port = 22\nhots = 1")), (A, "ssh.hots: unknown key", "did you mean 'host'")),
    Bad("typo-link-key", edit(GOOD, ('device_if = "eth1"', 'device_if = "eth1"\ndevice_ip4 = "x"')),
        (A, "link[0].device_ip4: unknown key", "did you mean 'device_v4'")),
    Bad("typo-agent-key", edit(GOOD, ("command =", "comand =")), (A, "agent.comand: unknown key", "did you mean 'command'")),
    Bad("typo-lab-key", lab_edit(("mgmt_harness_if", "mgmt_harnes_if")), (B, "lab.mgmt_harnes_if: unknown key", "'mgmt_harness_if'")),
    Bad("typo-caps-key", edit(GOOD, ("ipv6 = true", "ipv_6 = true")), (A, "capabilities.ipv_6: unknown key", "'ipv6'")),
    Bad("typo-unpriv-key", edit(GOOD, ('user = "nckuser"', 'user = "nckuser"\nkeyfile = "x"')),
        (A, "unprivileged.keyfile: unknown key", "'key_file'")),
    Bad("odd-quoted-key", edit(GOOD, ("port = 22", 'port = 22\n"bad\\nkey" = 1')), (A, "ssh.'bad\\nkey': unknown key")),
    # duplicates
    Bad("duplicate-name", lab_edit(('name = "lab-b"', 'name = "dut-a"')), (A, "name: another device is also named 'dut-a'", "unique")),
    Bad("duplicate-name-case", lab_edit(('name = "lab-b"', 'name = "DUT-A"')), ("device 'DUT-A'", "also named 'dut-a'")),
    Bad("harness-if-across-devices", lab_edit(('harness_if = "nckI-b-t1"', 'harness_if = "nckI-t1"')),
        (B, "link[0].harness_if", "'nckI-t1' is also used by device 'dut-a' (link[0].harness_if)", "one link")),
    Bad("harness-if-mgmt-and-link", lab_edit(('mgmt_harness_if = "nckI-b-m"', 'mgmt_harness_if = "nckI-b-t1"')),
        (B, "lab.mgmt_harness_if", "is also used by this device (link[0].harness_if)")),
    Bad("harness-if-two-links", edit(GOOD, (DUT_LINK, DUT_LINK + edit(DUT_LINK, ('"eth1"', '"eth2"'))
                                             .replace("198.51.100", "203.0.113").replace("db8:1", "db8:2"))),
        (A, "link[1].harness_if", "is also used by this device (link[0].harness_if)")),
    Bad("device-if-two-links", edit(GOOD, (DUT_LINK, DUT_LINK + edit(DUT_LINK, ('"nckI-t1"', '"nckI-t2"')))),
        (A, "link[1].device_if", "'eth1' is also link[0]'s")),
    Bad("same-ssh-endpoint", GOOD + edit(DUT, ('"dut-a"', '"dut-c"'), ('"nckI-t1"', '"nckI-t3"')),
        ("device 'dut-c'", "ssh.host", "192.0.2.10:22 is also device 'dut-a'")),
    Bad("overlapping-lab-mgmt-nets", GOOD + edit(LAB_DEVICE, ('"lab-b"', '"lab-c"'), ("198.18.250.2", "198.18.250.130"),
                                                ("-b-", "-c-"), ("-b-", "-c-"), ('"198.18.250.1/24"', '"198.18.250.129/25"')),
        ("device 'lab-c'", "lab.mgmt_harness_addr", "overlaps the management network 198.18.250.0/24 of device 'lab-b'")),
    # hostile names
    Bad("ifname-semicolon", edit(GOOD, ('"eth1"', '"eth1;reboot"')), (A, "link[0].device_if", "'eth1;reboot' is not allowed", "1-15")),
    Bad("ifname-dollar-paren", edit(GOOD, ('"eth1"', '"$(id)"')), (A, "link[0].device_if", "'$(id)' is not allowed")),
    Bad("ifname-backticks", edit(GOOD, ('"eth1"', '"`id`"')), (A, "link[0].device_if", "'`id`' is not allowed")),
    Bad("ifname-space-linux", edit(GOOD, ('"eth1"', '"eth 1"')), (A, "link[0].device_if", "'eth 1' is not allowed", "no spaces")),
    Bad("ifname-16-chars", edit(GOOD, ('"eth1"', '"abcdefghijklmnop"')), (A, "link[0].device_if", "1-15 letters")),
    Bad("ifname-dotdot", edit(GOOD, ('"eth1"', '".."')), (A, "link[0].device_if", "'..' is not allowed")),
    Bad("ifname-option", edit(GOOD, ('"eth1"', '"-eth1"')), (A, "link[0].device_if", "not starting with '.' or '-'")),
    Bad("ifname-newline", edit(GOOD, ('"eth1"', '"eth1\\n"')), (A, "link[0].device_if", "'eth1\\n' is not allowed")),
    Bad("harness-ifname-injection", edit(GOOD, ('"nckI-t1"', '"nckI;rm -rf /"')), (A, "link[0].harness_if", "is not allowed")),
    Bad("windows-ifname-dollar", edit(GOOD, ('os = "linux"', 'os = "windows"'), ('"eth1"', '"Ethernet$(id)"')),
        (A, "link[0].device_if", "'Ethernet$(id)' is not allowed", "the name Windows shows")),
    Bad("device-name-slash", edit(GOOD, ('"dut-a"', '"a/b"')), ("device 'a/b'", "name: 'a/b' is not allowed", "1-32")),
    Bad("device-name-dotdot", edit(GOOD, ('"dut-a"', '".."')), ("device '..'", "name: '..' is not allowed")),
    Bad("device-name-space", edit(GOOD, ('"dut-a"', '"dut a"')), ("device 'dut a'", "name: 'dut a' is not allowed")),
    Bad("device-name-long", edit(GOOD, ('"dut-a"', '"' + "d" * 200 + '"')), ("name:", "1-32 letters", "...'")),
    Bad("user-injection", edit(GOOD, ('user = "root"', 'user = "root;id"')), (A, "ssh.user: 'root;id' is not allowed")),
    Bad("host-option", edit(GOOD, ('"192.0.2.10"', '"-oProxyCommand=id"')), (A, "ssh.host", "is not a valid host name")),
    Bad("host-bad-ipv4", edit(GOOD, ('"192.0.2.10"', '"192.0.2.300"')), (A, "ssh.host", "is not a valid IPv4 address")),
    Bad("host-zone-injection", edit(GOOD, ('"192.0.2.10"', '"fe80::1%$(id)"')), (A, "ssh.host", "zone that is not an interface name")),
    Bad("host-space", edit(GOOD, ('"192.0.2.10"', '"dut a.example"')), (A, "ssh.host", "not a valid host name")),
    Bad("os-unknown", edit(GOOD, ('os = "linux"', 'os = "Linux"')), (A, "os: 'Linux' is not supported", '"linux" or "windows"')),
    # addresses
    Bad("v6-in-device-v4", edit(GOOD, ('"198.51.100.2/24"', '"2001:db8:1::5/64"')),
        (A, "link[0].device_v4", "is an IPv6 address, expected IPv4", "put it in device_v6")),
    Bad("v4-in-harness-v6", edit(GOOD, ('"2001:db8:1::1/64"', '"198.51.100.9/24"')),
        (A, "link[0].harness_v6", "expected IPv6", "put it in harness_v4")),
    Bad("address-malformed", edit(GOOD, ('"198.51.100.2/24"', '"198.51.100.300/24"')), (A, "link[0].device_v4", "is not an address")),
    Bad("address-bad-prefix", edit(GOOD, ('"198.51.100.2/24"', '"198.51.100.2/33"')), (A, "link[0].device_v4", "is not an address")),
    Bad("address-no-prefix", edit(GOOD, ('"198.51.100.2/24"', '"198.51.100.2"')), (A, "link[0].device_v4", "has no prefix length")),
    Bad("address-network", edit(GOOD, ('"198.51.100.2/24"', '"198.51.100.0/24"')), (A, "link[0].device_v4", "is the network address")),
    Bad("address-broadcast", edit(GOOD, ('"198.51.100.2/24"', '"198.51.100.255/24"')), (A, "is the broadcast address")),
    Bad("address-multicast", edit(GOOD, ('"198.51.100.2/24"', '"224.0.0.5/24"')), (A, "is a multicast address")),
    Bad("address-loopback", edit(GOOD, ('"2001:db8:1::2/64"', '"::1/128"')), (A, "link[0].device_v6", "loopback")),
    Bad("address-zone", edit(GOOD, ('"2001:db8:1::2/64"', '"fe80::2%eth1/64"')), (A, "link[0].device_v6", "scope/zone ID")),
    Bad("address-zone-injection", edit(GOOD, ('"2001:db8:1::2/64"', '"fe80::2%$(reboot)/64"')), (A, "scope/zone ID")),
    Bad("harness-other-network", edit(GOOD, ('"198.51.100.1/24"', '"203.0.113.1/24"')), (A, "link[0].harness_v4", "not in the device's network")),
    Bad("harness-same-address", edit(GOOD, ('"198.51.100.1/24"', '"198.51.100.2/24"')), (A, "link[0].harness_v4", "is also the device's address")),
    Bad("harness-v6-without-device-v6", edit(GOOD, ('device_v6 = "2001:db8:1::2/64"\n', "")),
        (A, "link[0].harness_v6", "device_v6 is not")),
    # secrets
    Bad("inline-password", edit(GOOD, ('user = "root"', 'user = "root"\npassword = "hunter2"')),
        (A, "ssh.password", "inline passwords are not allowed", "password_env"), secret="hunter2"),
    Bad("inline-passphrase", edit(GOOD, ('user = "root"', 'user = "root"\npassphrase = "s3cret-pp"')),
        (A, "ssh.passphrase", "inline key passphrases are not allowed", "passphrase_env"), secret="s3cret-pp"),
    Bad("inline-password-unprivileged", edit(GOOD, ('user = "nckuser"', 'user = "nckuser"\npassword = "hunter2"')),
        (A, "unprivileged.password", "inline passwords"), secret="hunter2"),
    Bad("password-env-holds-secret", edit(GOOD, ('user = "root"', 'user = "root"\npassword_env = "hunter2!"')),
        (A, "ssh.password_env", "this value is not allowed", "NAME of an environment variable"), secret="hunter2"),
    Bad("password-env-bad-name", edit(GOOD, ('user = "root"', 'user = "root"\npassword_env = "1PASS"')),
        (A, "ssh.password_env", "NAME of an environment variable"), secret="1PASS"),
    Bad("passphrase-env-number", edit(GOOD, ('user = "root"', 'user = "root"\npassphrase_env = 987654')),
        (A, "ssh.passphrase_env: must be a string, got an integer"), secret="987654"),
    # files and host keys
    Bad("key-file-missing", edit(GOOD, ('key_file = "id_test"', 'key_file = "no_such_key"')),
        (A, "ssh.key_file", "no_such_key does not exist", "ssh-keygen")),
    Bad("key-file-directory", edit(GOOD, ('key_file = "id_test"', 'key_file = "."')), (A, "ssh.key_file", "is a directory")),
    Bad("key-file-empty", edit(GOOD, ('key_file = "id_test"', 'key_file = ""')), (A, "ssh.key_file: is empty")),
    Bad("known-hosts-missing-strict", edit(GOOD, ('known_hosts = "known_hosts"', 'known_hosts = "nope"')),
        (A, "ssh.known_hosts", "nope does not exist", "ssh-keyscan", "trust-on-first-use")),
    Bad("host-key-policy-unknown", edit(GOOD, ("port = 22", 'port = 22\nhost_key_policy = "auto-add"')),
        (A, "ssh.host_key_policy", "'auto-add' is not a policy", "strict, trust-on-first-use")),
    Bad("lab-known-hosts-outside-state", lab_edit(('known_hosts = "labstate/known_hosts"', 'known_hosts = "known_hosts"')),
        (B, "ssh.known_hosts", "outside the lab's state directory", "rewrites it")),
    Bad("lab-key-file-elsewhere", lab_edit(('key_file = "labstate/id_ed25519"', 'key_file = "labstate/other_key"')),
        (B, "ssh.key_file", "does not exist", "the lab creates only")),
    # ranges
    Bad("port-0", edit(GOOD, ("port = 22", "port = 0")), (A, "ssh.port: 0 is out of range", "1..65535")),
    Bad("port-70000", edit(GOOD, ("port = 22", "port = 70000")), (A, "ssh.port: 70000 is out of range")),
    Bad("timeout-zero", edit(GOOD, ("connect_timeout = 5", "connect_timeout = 0")),
        (A, "ssh.connect_timeout: 0 is out of range", "above 0")),
    Bad("timeout-negative", edit(GOOD, ("connect_timeout = 5", "command_timeout = -5")), (A, "ssh.command_timeout: -5 is out of range")),
    Bad("timeout-nan", edit(GOOD, ("connect_timeout = 5", "connect_timeout = nan")), (A, "ssh.connect_timeout: nan is out of range")),
    Bad("timeout-inf", edit(GOOD, ("connect_timeout = 5", "command_timeout = inf")), (A, "ssh.command_timeout: inf is out of range")),
    Bad("keepalive-negative", edit(GOOD, ("connect_timeout = 5", "keepalive = -1")), (A, "ssh.keepalive: -1 is out of range")),
    Bad("keepalive-fraction", edit(GOOD, ("connect_timeout = 5", "keepalive = 0.5")), (A, "ssh.keepalive: must be an integer")),
    Bad("max-entries-zero", edit(GOOD, ("ipv6 = true", "max_entries = 0")), (A, "capabilities.max_entries: 0 is out of range")),
    # vendor agent
    Bad("agent-command-empty-list", edit(GOOD, ('["/opt/vendor/agent", "--json"]', "[]")), (A, "agent.command: is empty", "built-in agent")),
    Bad("agent-command-empty-string", edit(GOOD, ('["/opt/vendor/agent", "--json"]', '""')), (A, "agent.command: is empty")),
    Bad("agent-command-ints", edit(GOOD, ('["/opt/vendor/agent", "--json"]', "[1, 2]")), (A, "agent.command", "list of non-empty strings")),
    Bad("agent-command-empty-word", edit(GOOD, ('"--json"]', '""]')), (A, "agent.command", "list of non-empty strings")),
    Bad("agent-command-table", edit(GOOD, ('["/opt/vendor/agent", "--json"]', "{ x = 1 }")), (A, "agent.command", "got a table")),
    Bad("agent-command-unbalanced", edit(GOOD, ('["/opt/vendor/agent", "--json"]', "\"/opt/agent 'x\"")),
        (A, "agent.command: cannot be split into words", "list of strings")),
    Bad("agent-upload-dir-shell", edit(GOOD, ("command =", 'upload_dir = "C:\\\\x & calc"\ncommand =')),
        (A, "agent.upload_dir", "is not allowed", "C:\\neighcheck")),
    Bad("agent-upload-dir-dotdot", edit(GOOD, ("command =", 'upload_dir = "C:\\\\x\\\\..\\\\Windows"\ncommand =')),
        (A, "agent.upload_dir: '..' is not allowed")),
    # lab devices
    Bad("lab-harness-if-no-prefix", lab_edit(('"nckI-b-t1"', '"eth5"')), (B, "link[0].harness_if", "must start with 'nck'")),
    Bad("lab-mgmt-if-no-prefix", lab_edit(('"nckI-b-m"', '"br0"')), (B, "lab.mgmt_harness_if", "'br0'", "must start with 'nck'")),
    Bad("lab-harness-if-dot", lab_edit(('"nckI-b-t1"', '"nck.b.t1"')), (B, "link[0].harness_if", "sysctl")),
    Bad("lab-host-outside-mgmt", lab_edit(('host = "198.18.250.2"', 'host = "198.18.99.2"')),
        (B, "ssh.host", "198.18.99.2 must be another address", "198.18.250.0/24")),
    Bad("lab-host-is-harness-address", lab_edit(('host = "198.18.250.2"', 'host = "198.18.250.1"')), (B, "ssh.host", "another address")),
    Bad("lab-host-name", lab_edit(('host = "198.18.250.2"', 'host = "labhost"')), (B, "ssh.host", "must be an IPv4 address")),
    Bad("lab-device-if-eth0", lab_edit(('device_if = "eth1"', 'device_if = "eth0"')), (B, "link[0].device_if", "management link")),
    Bad("lab-mgmt-addr-v6", lab_edit(('"198.18.250.1/24"', '"2001:db8:9::1/64"')), (B, "lab.mgmt_harness_addr", "expected IPv4")),
    Bad("typo-device-table", lab_edit(("[device.lab]", "[device.labb]")), (B, "labb: unknown key", "did you mean 'lab'")),
    # seed pools (issue 14)
    Bad("seed-v4-not-network", seed("seed_v4 = \"198.51.100.300/24\""), (A, "link[0].seed_v4", "is not a network", "198.51.100.128/25")),
    Bad("seed-v4-no-prefix", seed("seed_v4 = \"198.51.100.128\""), (A, "link[0].seed_v4", "has no prefix length")),
    Bad("seed-v4-host-bits", seed("seed_v4 = \"198.51.100.130/25\""), (A, "link[0].seed_v4", "has host bits set", "write 198.51.100.128/25")),
    Bad("seed-v4-is-v6", seed("seed_v4 = \"2001:db8:9::/64\""), (A, "link[0].seed_v4", "is an IPv6 network", "put it in seed_v6")),
    Bad("seed-v6-is-v4", seed("seed_v6 = \"198.51.100.0/24\""), (A, "link[0].seed_v6", "is an IPv4 network", "put it in seed_v4")),
    Bad("seed-v4-multicast", seed("seed_v4 = \"224.0.0.0/24\""), (A, "link[0].seed_v4", "overlaps multicast", "unicast")),
    Bad("seed-v4-this-network", seed("seed_v4 = \"0.0.0.0/0\""), (A, "link[0].seed_v4", "'this network'")),
    Bad("seed-v4-loopback", seed("seed_v4 = \"127.0.0.0/30\""), (A, "link[0].seed_v4", "loopback")),
    Bad("seed-v4-reserved", seed("seed_v4 = \"240.0.0.0/28\""), (A, "link[0].seed_v4", "reserved")),
    Bad("seed-v6-multicast", seed("seed_v6 = \"ff02::/64\""), (A, "link[0].seed_v6", "overlaps multicast")),
    Bad("seed-v6-mapped", seed("seed_v6 = \"::ffff:0:0/96\""), (A, "link[0].seed_v6", "IPv4-mapped")),
    Bad("seed-v6-whole-space", seed("seed_v6 = \"::/0\""), (A, "link[0].seed_v6", "unspecified or loopback")),
    Bad("seed-v6-zone", seed("seed_v6 = \"fe80::%eth1/64\""), (A, "link[0].seed_v6", "scope/zone ID")),
    Bad("seed-v4-overlap", seed("seed_v4 = [\"198.51.100.0/25\", \"198.51.100.64/26\"]"),
        (A, "link[0].seed_v4", "198.51.100.64/26 overlaps 198.51.100.0/25", "once")),
    Bad("seed-v4-empty-list", seed("seed_v4 = []"), (A, "link[0].seed_v4", "needs 1-16 networks, got 0")),
    Bad("seed-v4-too-many", seed("seed_v4 = [" + ", ".join(f'\"10.0.{i}.0/24\"' for i in range(17)) + "]"),
        (A, "link[0].seed_v4", "needs 1-16 networks, got 17")),
    Bad("seed-v4-int-in-list", seed("seed_v4 = [\"10.0.0.0/24\", 5]"), (A, "link[0].seed_v4", "got the integer 5")),
    Bad("seed-v4-table", seed("seed_v4 = { net = \"10.0.0.0/24\" }"), (A, "link[0].seed_v4: must be a string or an array", "got a table")),
    Bad("seed-v4-without-device-v4", edit(GOOD, ('device_v4 = "198.51.100.2/24"\nharness_v4 = "198.51.100.1/24"\n', ""),
                                          ('harness_v6 = "2001:db8:1::1/64"\n', 'harness_v6 = "2001:db8:1::1/64"\nseed_v4 = "10.0.0.0/24"\n')),
        (A, "link[0].seed_v4", "is given but device_v4 is not")),
    Bad("seed-from-unknown", seed("seed_from = \"off-subnet\""), (A, "link[0].seed_from", "'off-subnet' is not a seed source", "subnet")),
    Bad("seed-from-number", seed("seed_from = 1"), (A, "link[0].seed_from: must be a string")),
    Bad("seed-from-and-pool", seed("seed_from = \"subnet\"\nseed_v6 = \"fe80::/64\""),
        (A, "link[0].seed_from", "together with seed_v6", "use one")),
    Bad("seed-typo", seed("seed_v5 = \"10.0.0.0/24\""), (A, "link[0].seed_v5: unknown key", "did you mean")),
    # lab shapes (issue 14)
    Bad("lab-bystanders-negative", lab_shape("bystanders = -1"), (B, "lab.bystanders: -1 is out of range", "0..4")),
    Bad("lab-bystanders-many", lab_shape("bystanders = 5"), (B, "lab.bystanders: 5 is out of range")),
    Bad("lab-bystanders-string", lab_shape("bystanders = \"2\""), (B, "lab.bystanders: must be an integer", "bystanders = 2")),
    Bad("lab-bystanders-no-room", lab_edit(('mgmt_harness_addr = "198.18.250.1/24"\n', 'mgmt_harness_addr = "198.18.250.1/24"\nbystanders = 1\n'),
                                           ('"198.18.251.2/24"', '"198.18.251.2/31"'), ('"198.18.251.1/24"', '"198.18.251.3/31"')),
        (B, "link[0]:", "no room for 1 bystander", "fewer lab.bystanders")),
    Bad("lab-bystanders-in-seed-pool", lab_edit(('mgmt_harness_addr = "198.18.250.1/24"\n', 'mgmt_harness_addr = "198.18.250.1/24"\nbystanders = 1\n'),
                                                ('harness_v4 = "198.18.251.1/24"\n', 'harness_v4 = "198.18.251.1/24"\nseed_v4 = "198.18.251.128/25"\n')),
        (B, "link[0].seed_v4", "would take bystander address 198.18.251.254", "without the bystanders")),
    Bad("lab-bystanders-seed-from-subnet", lab_edit(('mgmt_harness_addr = "198.18.250.1/24"\n', 'mgmt_harness_addr = "198.18.250.1/24"\nbystanders = 2\n'),
                                                    ('harness_v4 = "198.18.251.1/24"\n', 'harness_v4 = "198.18.251.1/24"\nseed_from = "subnet"\n')),
        (B, "link[0].seed_from", "bystander address")),
    Bad("lab-userland-unknown", lab_shape("userland = \"alpine\""), (B, "lab.userland: 'alpine' is not a lab userland", "full, busybox")),
    Bad("lab-userland-busybox-without-root", lab_edit(('user = "root"\nkey_file = "labstate/id_ed25519"',
                                                      'user = "nckadmin"\nbecome = "sudo"\nkey_file = "labstate/id_ed25519"'),
                                                     ('mgmt_harness_addr = "198.18.250.1/24"\n',
                                                      'mgmt_harness_addr = "198.18.250.1/24"\nroot_login = false\nuserland = "busybox"\n')),
        (B, "lab.userland", "no sudo", "root_login")),
    Bad("lab-userland-windows", lab_edit(('os = "linux"', 'os = "windows"'), ('mgmt_harness_addr = "198.18.250.1/24"\n',
                                                                            'mgmt_harness_addr = "198.18.250.1/24"\nuserland = "busybox"\n')),
        (B, "lab.userland", "for a Linux device, this one is windows")),
    # labgrid places ([device.labgrid])
    Bad("labgrid-string", edit(GOOD, ('os = "linux"', 'os = "linux"\nlabgrid = "rack-3"')),
        (A, "labgrid: must be a table ([device.labgrid])", "the string 'rack-3'")),
    Bad("labgrid-typo", labgrid('plase = "p1"\n'), (A, "labgrid.plase: unknown key", "did you mean 'place'")),
    Bad("labgrid-no-place", labgrid('resource = "ssh"\n'), (A, "labgrid.place: missing", "required")),
    Bad("labgrid-place-int", labgrid("place = 3\n"), (A, "labgrid.place: must be a string", "place = \"...\"")),
    Bad("labgrid-place-empty", labgrid('place = ""\n'), (A, "labgrid.place: '' is not allowed", "1-64 letters")),
    Bad("labgrid-place-injection", labgrid('place = "p1;reboot"\n'), (A, "labgrid.place: 'p1;reboot' is not allowed")),
    Bad("labgrid-place-option", labgrid('place = "-x"\n'), (A, "labgrid.place: '-x' is not allowed", "starting with a letter")),
    Bad("labgrid-resource-path", labgrid('place = "p1"\nresource = "../ssh"\n'), (A, "labgrid.resource", "is not allowed")),
    Bad("labgrid-on-lab-device", lab_edit(("[device.lab]", '[device.labgrid]\nplace = "p1"\n[device.lab]')),
        (B, "labgrid: a lab device cannot also be a labgrid place", "remove [device.labgrid] or [device.lab]")),
    Bad("labgrid-same-place-twice", labgrid('place = "p1"\n', GOOD + edit(DUT, ('"dut-a"', '"dut-c"'), ('"nckI-t1"', '"nckI-t3"'),
                                                                         ('"192.0.2.10"', '"192.0.2.11"'),
                                                                         (DUT_CAPS, DUT_CAPS + '[device.labgrid]\nplace = "p1"\n'))),
        ("device 'dut-c'", "labgrid.place: 'p1' is also device 'dut-a''s place", "its own labgrid place")),
    Bad("labgrid-password-in-place-table", labgrid('place = "p1"\npassword = "hunter2"\n'),
        (A, "labgrid.password: unknown key"), secret="hunter2"),
    Bad("unprivileged-root", edit(GOOD, ('user = "nckuser"', 'user = "root"')), (A, "unprivileged.user", "admin")),
    Bad("unprivileged-administrator", edit(GOOD, ('os = "linux"', 'os = "windows"'), ('user = "nckuser"', 'user = "Administrator"'),
                                           ('user = "root"', 'user = "admin"')),
        (A, "unprivileged.user", "'Administrator' is an administrator account")),
]


def test_corpus_is_large_and_distinct():
    assert len(BAD) >= 35
    assert len({c.id for c in BAD}) == len(BAD)
    texts = [c.text for c in BAD]
    assert len(set(texts)) == len(texts), "two cases test the same inventory"


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_hostile_inventory_gives_one_clear_message(inv_dir, case):
    path, message = problem(inv_dir, case.text)
    assert path.name in message and message.startswith(str(path.resolve())), message
    assert "\n" not in message, "one message, one line"
    for fragment in case.expect:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    if case.secret:
        assert case.secret not in message
    assert "Traceback" not in message


def test_lab_table_that_is_not_a_table(inv_dir):
    _, message = problem(inv_dir, lab_edit(('os = "linux"', 'os = "linux"\nlab = true'),
                                       ('[device.lab]\nmgmt_harness_if = "nckI-b-m"\nmgmt_harness_addr = "198.18.250.1/24"\n', "")))
    assert B in message and "lab: must be a table ([device.lab])" in message and "the boolean true" in message


@pytest.mark.parametrize("where", ["directory", "missing", "device-node"])
def test_unreadable_paths(tmp_path, where):
    path = {"directory": tmp_path, "missing": tmp_path / "absent.toml", "device-node": Path("/dev/zero")}[where]
    with pytest.raises(UsageError) as info:
        load_inventory(path)
    expected = {"directory": "is a directory", "missing": "inventory file not found",
                "device-node": "is not a regular file"}[where]
    assert str(info.value).startswith(f"{path}: {expected}") and "--devices FILE" in str(info.value)


@pytest.mark.parametrize("setup, change, expected", [
    ("loop", ('key_file = "id_test"', 'key_file = "loop"'), "ssh.key_file: {dir}/loop does not exist"),
    ("loop", ('known_hosts = "known_hosts"', 'known_hosts = "loop"'), "ssh.known_hosts: {dir}/loop does not exist"),
    ("loop", ('"labstate"', '"loop"'), "lab.state_dir: {dir}/loop exists and is not a usable directory"),
    ("file", ('"labstate"', '"afile"'), "lab.state_dir: {dir}/afile exists and is not a usable directory"),
    ("link-to-lab-key", ('key_file = "labstate/id_ed25519"', 'key_file = "lab-key-link"'), None),
], ids=["key-file-symlink-loop", "known-hosts-symlink-loop", "state-dir-symlink-loop", "state-dir-is-a-file",
        "symlink-to-the-lab-key"])
def test_hostile_paths(inv_dir, setup, change, expected):
    """Symlink loops and wrong file kinds give a message, never an exception from pathlib."""
    (inv_dir / "loop").symlink_to("loop")
    (inv_dir / "afile").write_text("x")
    (inv_dir / "lab-key-link").symlink_to(inv_dir / "labstate" / "id_ed25519")  # made by `lab up`
    text = lab_edit(change) if setup == "link-to-lab-key" else edit(GOOD, change)
    if expected is None:
        _, inv = load_text(inv_dir, text)
        assert inv.devices[1].ssh.login.key_file == inv_dir / "lab-key-link"
        return
    _, message = problem(inv_dir, text)
    assert expected.format(dir=inv_dir) in message, message


def test_state_dir_is_checked_before_any_device(inv_dir):
    # `lab down` removes the state directory: a home directory must be refused even when the
    # devices are fine and the inventory has no lab device at all.
    _, message = problem(inv_dir, edit(LAB_TOP + DUT, ('"labstate"', f'"{inv_dir}"')))
    assert "lab.state_dir" in message and "not the lab's" in message


# --- the name rules keep shell syntax out --------------------------------------------------------
SHELL_CHARS = ";|&$`'\"<>(){}[]*?!~\\ \t\n#="


@pytest.mark.parametrize("rule, allowed", [
    (LINUX_IFNAME, ""), (DEVICE_NAME, ""), (USER_NAME, ""), (ENV_NAME, ""), (LAB_PATH, ""),
    (WINDOWS_IFNAME, " ()#"),  # matched against the device's list, never put on a command line
])
def test_name_rules_reject_shell_characters(rule, allowed):
    assert rule.ok("abc1")
    accepted = [c for c in SHELL_CHARS if rule.ok(f"a{c}b")]
    assert accepted == [c for c in SHELL_CHARS if c in allowed]


def test_linux_ifname_boundaries():
    assert LINUX_IFNAME.ok("a" * 15) and not LINUX_IFNAME.ok("a" * 16)
    assert not any(LINUX_IFNAME.ok(n) for n in (".", "..", "-x", "", "eth1/2", "eth1:0", "ethé"))
    assert re.search(r"1-15", LINUX_IFNAME.words)
