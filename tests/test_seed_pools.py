"""The seeding plan per link (issue 14): pools, static entries, what a pool holds.

Pure tests (no lab): harness.traffic.seeding's plan rule for the default pool (unchanged),
seed_v4/seed_v6 networks inside or outside the link's subnet (link-local too), seed_from =
"subnet", the one clear error when a pool cannot hold --entries, and the responder answering
only the device.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.contract.clauses import AF_INET, AF_INET6, MAX_ENTRIES
from harness.errors import UsageError
from harness.inventory import load_inventory
from harness.traffic.packets import ArpSeedBuilder, NsSeedBuilder, mac_bytes
from harness.traffic.responder import Responder, _LinkState
from harness.traffic.seeding import (
    LinkTarget, SeedEntry, address_plan, check_plan, check_plans, link_target, seed_pools, static_plan,
)

REPO = Path(__file__).resolve().parent.parent
MAC = "02:00:00:00:00:01"


def v4(plan):
    return [e.address for e in plan if e.family == AF_INET]


def v6(plan):
    return [e.address for e in plan if e.family == AF_INET6]


def link(**kw) -> LinkTarget:
    base = dict(harness_if="nckT-t1", device_mac=MAC, device_v4="192.0.2.2", device_v6="2001:db8:1::2",
                v6_network="2001:db8:1::/64", v4_network="192.0.2.0/24", harness_v4="192.0.2.1",
                harness_v6="2001:db8:1::1")
    return LinkTarget(**{**base, **kw})


# --- the default pool stays as it was ---------------------------------------------------------


def old_plan(slot: int, count: int, target: LinkTarget) -> tuple[list[str], list[str]]:
    """The plan rule before issue 14, written out: what the default must still give."""
    first = int(ipaddress.IPv4Address("198.19.0.0")) + slot * 16384
    dev4 = int(ipaddress.IPv4Address(target.device_v4))
    a4 = [str(ipaddress.IPv4Address(n)) for n in range(first, first + 16384) if n != dev4][:count]
    prefix = int(ipaddress.IPv6Network(target.v6_network).network_address)
    dev6 = int(ipaddress.IPv6Address(target.device_v6))
    base = prefix | (0x5E00 | slot) << 48
    a6 = [str(ipaddress.IPv6Address(n)) for n in range(base + 1, base + count + 2) if n != dev6][:count]
    return a4, a6


@pytest.mark.parametrize("slot, count", [(0, 1), (1, 300), (3, 16384)])
def test_the_default_plan_is_unchanged(slot, count):
    target = link()
    plan = address_plan(slot, count, target)
    assert (v4(plan), v6(plan)) == old_plan(slot, count, target)
    assert static_plan(slot, target) == [
        SeedEntry(AF_INET, str(ipaddress.IPv4Address("198.51.100.200") + slot), f"02:5e:ff:00:{slot:02x}:01"),
        SeedEntry(AF_INET6, str(ipaddress.IPv6Address("2001:db8:ffff::200") + slot), f"02:5e:ff:00:{slot:02x}:02")]


def test_the_default_pool_holds_the_largest_table():
    pools = seed_pools(0, link())
    assert pools[AF_INET].capacity == MAX_ENTRIES
    assert pools[AF_INET6].capacity > MAX_ENTRIES
    assert pools[AF_INET].where == "off-subnet" and pools[AF_INET6].where == "in-subnet"


# --- pools of the link's own --------------------------------------------------------------------


def test_a_29_seeded_in_subnet_holds_three_and_says_so():
    target = link(device_v4="198.18.231.2", harness_v4="198.18.231.1", v4_network="198.18.231.0/29",
                  seed_v4=("198.18.231.0/29",))
    # .0 network, .1 harness, .2 device, .7 broadcast; .6 is the static entry
    assert v4(address_plan(0, 3, target)) == ["198.18.231.3", "198.18.231.4", "198.18.231.5"]
    assert static_plan(0, target)[0].address == "198.18.231.6"
    assert seed_pools(0, target)[AF_INET].capacity == 3
    with pytest.raises(UsageError) as info:
        address_plan(0, 4, target)
    message = str(info.value)
    for fragment in ("link nckT-t1", "seed pool 198.18.231.0/29", "room for 3 entries, 4 asked",
                     "largest --entries this link holds is 3", "seed_v4"):
        assert fragment in message, message
    with pytest.raises(UsageError, match="largest --entries this link holds is 3"):
        check_plan(0, 4, target)


def test_several_networks_are_used_in_order_and_the_static_is_the_last_free_address():
    target = link(seed_v4=("198.19.9.0/30", "10.9.0.0/29"))
    plan = address_plan(0, 6, target)
    assert v4(plan) == ["198.19.9.0", "198.19.9.1", "198.19.9.2", "198.19.9.3", "10.9.0.0", "10.9.0.1"]
    assert static_plan(0, target)[0].address == "10.9.0.7"
    assert seed_pools(0, target)[AF_INET].capacity == 4 + 8 - 1
    assert seed_pools(0, target)[AF_INET].where == "off-subnet"


def test_link_local_and_long_prefix_ipv6_pools():
    ll = link(seed_v6=("fe80::/64",))
    assert v6(address_plan(2, 2, ll)) == ["fe80::5e02:0:0:1", "fe80::5e02:0:0:2"]
    assert static_plan(2, ll)[1].address == "fe80::5e02:0:ffff:ffff"
    assert seed_pools(2, ll)[AF_INET6].where == "link-local"
    # a /124 inside the link's /64: address by address, never the device's or the harness's
    small = link(device_v6="2001:db8:1::3", seed_v6=("2001:db8:1::/124",))
    assert v6(address_plan(0, 3, small)) == ["2001:db8:1::2", "2001:db8:1::4", "2001:db8:1::5"]
    assert static_plan(0, small)[1].address == "2001:db8:1::f"
    assert seed_pools(0, small)[AF_INET6].capacity == 15 - 2 - 1  # not ::0, not .1/.3, not the static


def test_a_link_longer_than_64_needs_its_own_ipv6_pool():
    p2p = link(device_v6="2001:db8:1::2", harness_v6="2001:db8:1::1", v6_network="2001:db8:1::/126")
    with pytest.raises(UsageError, match=r"longer than /64.*seed_v6"):
        address_plan(0, 1, p2p)
    in_subnet = link(device_v6="2001:db8:1::2", harness_v6="2001:db8:1::1", v6_network="2001:db8:1::/120",
                     seed_v6=("2001:db8:1::/120",))
    assert v6(address_plan(0, 2, in_subnet)) == ["2001:db8:1::3", "2001:db8:1::4"]


def test_the_static_address_never_shadows_a_neighbor_in_the_subnet():
    # the link's subnet holds 198.51.100.200: the next documentation address is used
    target = link(device_v4="198.51.100.2", harness_v4="198.51.100.1", v4_network="198.51.100.0/24",
                  device_v6="2001:db8:ffff::2", harness_v6=None, v6_network="2001:db8:ffff::/64")
    assert [e.address for e in static_plan(0, target)] == ["203.0.113.200", "3fff:ffff:ffff::200"]


def test_seeds_never_take_the_links_addresses_or_its_static_entries():
    """Random links and pools: every plan is `count` distinct addresses from the pool, none of
    them the device's, the harness's, the subnet's network or broadcast address, or a static
    entry; the static entries do not move with the count."""
    rng = random.Random(14)
    for _ in range(300):
        prefix = rng.randint(24, 29)
        subnet = ipaddress.IPv4Network((rng.randrange(0x0B000000, 0xDF000000) >> (32 - prefix) << (32 - prefix), prefix))
        hosts = list(subnet.hosts())
        dev, har = rng.sample(hosts, 2)
        net6 = ipaddress.IPv6Network((0x20010DB8 << 96 | rng.randrange(1 << 32) << 64, 64))
        pool6 = (ipaddress.IPv6Network((int(net6.network_address) | rng.randrange(1 << 56) << 8, 120)),)
        pool4 = rng.choice([(), (str(subnet),), (f"198.19.{rng.randrange(256)}.0/{rng.randint(26, 30)}",)])
        target = LinkTarget("nckT-t1", MAC, str(dev), str(net6.network_address + 2), str(net6),
                            str(subnet), str(har), str(net6.network_address + 1), pool4,
                            tuple(map(str, pool6)) if rng.random() < 0.5 else ())
        pools = seed_pools(0, target)
        count = min(p.capacity for p in pools.values())
        count = rng.randint(0, min(count, 300))
        plan = address_plan(0, count, target)
        statics = {e.address for e in static_plan(0, target)}
        assert statics == {e.address for e in static_plan(0, target)}  # cached or not: the same
        forbidden = {str(dev), str(har), str(subnet.network_address), str(subnet.broadcast_address),
                     str(net6.network_address), target.device_v6, target.harness_v6} | statics
        for family in (AF_INET, AF_INET6):
            addresses = [e.address for e in plan if e.family == family]
            assert len(addresses) == count == len(set(addresses))
            assert not forbidden & set(addresses), (target, forbidden & set(addresses))
        if pool4:
            pool = ipaddress.IPv4Network(pool4[0])
            assert all(ipaddress.IPv4Address(a) in pool for a in v4(plan))
        with pytest.raises(UsageError, match="largest --entries"):
            address_plan(0, min(p.capacity for p in pools.values()) + 1, target)


def test_link_target_reads_the_inventory(tmp_path):
    inv = inventory(tmp_path, 'seed_from = "subnet"')
    lt = link_target(inv.devices[0].links[0], "02:AA:00:00:00:01", device="dut")
    assert (lt.seed_v4, lt.seed_v6) == (("198.18.231.0/29",), ("2001:db8:d1::/64",))
    assert lt.device_mac == "02:aa:00:00:00:01" and lt.harness_v4 is None
    assert lt.name == "device 'dut' link enp1s0 (nckT-t1)"
    no_v6 = link_target(inv.devices[0].links[0], MAC, ipv6=False)
    assert no_v6.device_v6 is None and no_v6.seed_v6 == () and set(seed_pools(0, no_v6)) == {AF_INET}


# --- a run refuses what a link cannot hold, before anything connects ------------------------


def inventory(directory: Path, extra: str):
    (directory / "id").write_text("x")
    (directory / "known_hosts").write_text("")
    (directory / "devices.toml").write_text(f'''
[[device]]
name = "dut"
os = "linux"
[device.ssh]
host = "192.0.2.99"
user = "root"
key_file = "id"
known_hosts = "known_hosts"
[[device.link]]
device_if = "enp1s0"
harness_if = "nckT-t1"
device_v4 = "198.18.231.2/29"
device_v6 = "2001:db8:d1::2/64"
{extra}
''')
    return load_inventory(directory / "devices.toml")


def test_check_plans_names_device_link_pool_and_the_largest_entries(tmp_path):
    inv = inventory(tmp_path, 'seed_from = "subnet"')
    check_plans(inv.devices, 4)  # .1 .3 .4 .5 (.6 static; no harness address on this link)
    with pytest.raises(UsageError) as info:
        check_plans(inv.devices, 5)
    assert str(info.value).startswith("device 'dut' link enp1s0 (nckT-t1): the IPv4 seed pool "
                                      "198.18.231.0/29 has room for 4 entries, 5 asked")
    assert "the largest --entries this link holds is 4" in str(info.value)


def test_neighcheck_run_refuses_a_plan_the_pool_cannot_hold_in_one_line(tmp_path):
    inventory(tmp_path, 'seed_from = "subnet"')
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--devices", str(tmp_path / "devices.toml"),
                           "--entries", "32", "--out", str(tmp_path / "reports")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "largest --entries this link holds is 4" in lines[0], lines
    assert "Traceback" not in proc.stderr and not (tmp_path / "reports").exists()


# --- the responder answers the device only -------------------------------------------------------


def test_the_responder_answers_only_the_device():
    """A bystander on the segment that resolves a seeded address gets no answer (it would learn
    the seed); the device does. Checked on the frames themselves."""
    target = link()
    seeds = address_plan(0, 2, target)
    seed4, seed6 = seeds[0], seeds[2]
    state = _LinkState("nckT-t1", sock=None)  # type: ignore[arg-type]
    state.v4 = {socket.inet_aton(seed4.address): mac_bytes(seed4.lladdr)}
    state.v6 = {socket.inet_pton(socket.AF_INET6, seed6.address): mac_bytes(seed6.lladdr)}
    state.device_mac = mac_bytes(target.device_mac)
    responder = Responder([])
    try:
        for asker_mac, asker_v4, asker_v6, answered in (
                (target.device_mac, "192.0.2.2", "2001:db8:1::2", True),
                ("02:00:00:00:0b:01", "192.0.2.254", "2001:db8:1::bb01", False)):
            arp = ArpSeedBuilder("ff:ff:ff:ff:ff:ff", seed4.address).frame(
                mac_bytes(asker_mac), socket.inet_aton(asker_v4))
            ns = NsSeedBuilder("33:33:ff:00:00:01", seed6.address).frame(
                mac_bytes(asker_mac), socket.inet_pton(socket.AF_INET6, asker_v6))
            for frame in (arp, ns):
                reply = responder._reply_for(state, frame)
                assert (reply is not None) == answered, (asker_mac, frame[12:14].hex())
                if reply is not None:
                    assert reply[:6] == mac_bytes(asker_mac) and reply[6:12] in (
                        mac_bytes(seed4.lladdr), mac_bytes(seed6.lladdr))
        assert responder.stats.ignored == 2 and responder.stats.answered == 2
    finally:
        responder.stop()
