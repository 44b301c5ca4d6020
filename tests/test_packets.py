"""Unit tests (no root): seeding and answering frames, the responder's filter, the address plan,
and seed verification. Frames are parsed back with scapy, an independent decoder."""

from __future__ import annotations

import ipaddress
import random
import re
import socket
import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    IPv6,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
)
from scapy.layers.l2 import ARP, Ether

from harness.traffic import packets
from harness.errors import SeedingError, UsageError
from harness.traffic.packets import (
    ArpRequest,
    ArpSeedBuilder,
    NeighborSolicit,
    NsSeedBuilder,
    arp_reply,
    mac_bytes,
    neighbor_advert,
    parse_arp_request,
    parse_neighbor_solicit,
)
from harness.traffic.responder import REQUEST_FILTER
from harness.contract.protocol import Neighbor, parse_neighbor
from harness.traffic.seeding import LinkTarget, SeedEntry, address_plan, missing_seeds, verify_present

DEVICE_MAC = "0a:1b:2c:3d:4e:5f"
LINK = LinkTarget("nckBh0", DEVICE_MAC, "192.0.2.1", "2001:db8:1::1", "2001:db8:1::/64")
ZERO_MAC = "00:00:00:00:00:00"


def _v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def _receiver_checksum_ok(frame: bytes) -> bool:
    """What a receiver checks (RFC 1071): pseudo-header + message, checksum included, sums to
    all ones. Independent of both scapy and harness.traffic.packets."""
    src, dst, message = frame[22:38], frame[38:54], frame[54:]
    data = src + dst + struct.pack("!IxxxB", len(message), 58) + message
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def _random_seeds(n: int) -> list[tuple[str, str, str]]:
    rng = random.Random(7)
    seeds = [("0.0.0.1", "::1", ZERO_MAC), ("255.255.255.254", "ffff:" * 7 + "fffe",
                                            "ff:ff:ff:ff:ff:fe")]
    for _ in range(n):
        mac = "02:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(5))
        seeds.append((str(ipaddress.IPv4Address(rng.getrandbits(32))),
                      str(ipaddress.IPv6Address(rng.getrandbits(128))), mac))
    return seeds


# --- seeding frames -----------------------------------------------------------------------------


def test_arp_seed_frame_every_field() -> None:
    build = ArpSeedBuilder(DEVICE_MAC, "192.0.2.1").frame
    for v4, _v6text, mac in _random_seeds(50):
        frame = build(mac_bytes(mac), socket.inet_aton(v4))
        assert len(frame) == packets.ARP_FRAME_LEN
        pkt = Ether(frame)
        assert (pkt.dst, pkt.src, pkt.type) == (DEVICE_MAC, mac, 0x0806)
        arp = pkt[ARP]
        assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 1)
        assert (arp.hwsrc, arp.psrc) == (mac, v4)
        assert (arp.hwdst, arp.pdst) == (ZERO_MAC, "192.0.2.1")
        assert not arp.payload


def test_ns_seed_frame_every_field_and_checksum() -> None:
    builder = NsSeedBuilder(DEVICE_MAC, "2001:db8:1::1")
    plan = address_plan(0, 300, LINK) + address_plan(3, 300, LINK)
    seeds = [(e.address, e.lladdr) for e in plan if e.family == 23]
    seeds += [(v6, mac) for _v4, v6, mac in _random_seeds(300)]
    for v6, mac in seeds:
        frame = builder.frame(mac_bytes(mac), _v6(v6))
        assert len(frame) == packets.ND_FRAME_LEN
        pkt = Ether(frame)
        assert (pkt.dst, pkt.src, pkt.type) == (DEVICE_MAC, mac, 0x86DD)
        ip6 = pkt[IPv6]
        assert (ip6.version, ip6.tc, ip6.fl, ip6.plen, ip6.nh, ip6.hlim) == (6, 0, 0, 32, 58, 255)
        assert (ip6.src, ip6.dst) == (ipaddress.IPv6Address(v6).compressed, "2001:db8:1::1")
        ns = pkt[ICMPv6ND_NS]
        assert (ns.type, ns.code, ns.res, ns.tgt) == (135, 0, 0, "2001:db8:1::1")
        opt = pkt[ICMPv6NDOptSrcLLAddr]
        assert (opt.type, opt.len, opt.lladdr) == (1, 1, mac)
        assert not opt.payload
        # scapy recomputes the checksum from scratch and must agree; a receiver must accept it.
        rebuilt = pkt.copy()
        rebuilt[ICMPv6ND_NS].cksum = None
        assert Ether(bytes(rebuilt))[ICMPv6ND_NS].cksum == ns.cksum, (v6, mac)
        assert _receiver_checksum_ok(frame), (v6, mac)


def test_ns_checksum_changes_when_a_seed_byte_changes() -> None:
    builder = NsSeedBuilder(DEVICE_MAC, "2001:db8:1::1")
    base = builder.frame(mac_bytes("02:5e:00:00:00:01"), _v6("2001:db8:1:0:5e00::1"))
    other = builder.frame(mac_bytes("02:5e:00:00:00:02"), _v6("2001:db8:1:0:5e00::1"))
    assert base[56:58] != other[56:58]
    corrupted = base[:30] + bytes([base[30] ^ 1]) + base[31:]
    assert not _receiver_checksum_ok(corrupted)


# --- what the responder hears and says ----------------------------------------------------------


ASKER_MAC, ASKER_V4, ASKER_V6 = "0a:00:00:00:00:07", "192.0.2.1", "2001:db8:1::1"
SEED_MAC, SEED_V4, SEED_V6 = "02:5e:00:00:00:09", "198.19.0.9", "2001:db8:1:0:5e00::a"


def _arp(op: int = 1, dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    return bytes(Ether(dst=dst, src=ASKER_MAC)
                 / ARP(op=op, hwsrc=ASKER_MAC, psrc=ASKER_V4, hwdst=ZERO_MAC, pdst=SEED_V4))


def _ns(dst: str = "ff02::1:ff00:a", hlim: int = 255, src: str = ASKER_V6) -> bytes:
    return bytes(Ether(dst="33:33:ff:00:00:0a", src=ASKER_MAC)
                 / IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=SEED_V6)
                 / ICMPv6NDOptSrcLLAddr(lladdr=ASKER_MAC))


def test_parse_arp_request_broadcast_and_unicast() -> None:
    for dst in ("ff:ff:ff:ff:ff:ff", SEED_MAC):
        parsed = parse_arp_request(_arp(dst=dst))
        assert parsed == ArpRequest(mac_bytes(ASKER_MAC), socket.inet_aton(ASKER_V4),
                                    socket.inet_aton(SEED_V4))


def test_parse_arp_request_rejects_everything_else() -> None:
    assert parse_arp_request(_arp(op=2)) is None
    assert parse_arp_request(_arp()[:41]) is None
    assert parse_arp_request(_ns()) is None
    assert parse_arp_request(bytes(Ether() / IP() / UDP())) is None


def test_parse_neighbor_solicit_multicast_and_unicast() -> None:
    for dst in ("ff02::1:ff00:a", SEED_V6):
        assert parse_neighbor_solicit(_ns(dst=dst)) == NeighborSolicit(
            mac_bytes(ASKER_MAC), _v6(ASKER_V6), _v6(SEED_V6))


def test_parse_neighbor_solicit_rejects_everything_else() -> None:
    assert parse_neighbor_solicit(_ns(hlim=64)) is None  # RFC 4861: must be 255
    na = bytes(Ether() / IPv6(hlim=255) / ICMPv6ND_NA(tgt=SEED_V6))
    assert parse_neighbor_solicit(na) is None
    assert parse_neighbor_solicit(_ns()[:70]) is None
    assert parse_neighbor_solicit(_arp()) is None
    assert parse_neighbor_solicit(bytes(Ether() / IPv6() / UDP())) is None


def test_arp_reply_every_field() -> None:
    frame = arp_reply(parse_arp_request(_arp()), mac_bytes(SEED_MAC))
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src, pkt.type) == (ASKER_MAC, SEED_MAC, 0x0806)
    arp = pkt[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen, arp.op) == (1, 0x0800, 6, 4, 2)
    assert (arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (SEED_MAC, SEED_V4, ASKER_MAC, ASKER_V4)


def test_neighbor_advert_every_field_and_checksum() -> None:
    frame = neighbor_advert(parse_neighbor_solicit(_ns()), mac_bytes(SEED_MAC))
    assert len(frame) == packets.ND_FRAME_LEN
    pkt = Ether(frame)
    assert (pkt.dst, pkt.src, pkt.type) == (ASKER_MAC, SEED_MAC, 0x86DD)
    ip6 = pkt[IPv6]
    assert (ip6.plen, ip6.nh, ip6.hlim, ip6.src, ip6.dst) == (32, 58, 255, SEED_V6, ASKER_V6)
    na = pkt[ICMPv6ND_NA]
    assert (na.type, na.code, na.R, na.S, na.O, na.res, na.tgt) == (136, 0, 0, 1, 1, 0, SEED_V6)
    opt = pkt[ICMPv6NDOptDstLLAddr]
    assert (opt.type, opt.len, opt.lladdr) == (2, 1, SEED_MAC)
    rebuilt = pkt.copy()
    rebuilt[ICMPv6ND_NA].cksum = None
    assert Ether(bytes(rebuilt))[ICMPv6ND_NA].cksum == na.cksum
    assert _receiver_checksum_ok(frame)


def _run_bpf(program: list[tuple[int, int, int, int]], frame: bytes) -> int:
    """A classic-BPF interpreter for the instructions the responder's filter uses."""
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == 0x28:    # ldh [k]
            if k + 2 > len(frame):
                return 0
            acc = int.from_bytes(frame[k:k + 2], "big")
        elif code == 0x30:  # ldb [k]
            if k + 1 > len(frame):
                return 0
            acc = frame[k]
        elif code == 0x15:  # jeq #k
            pc += jt if acc == k else jf
        elif code == 0x06:  # ret #k
            return k
        else:
            raise AssertionError(f"unexpected BPF opcode {code:#x}")
        pc += 1


def test_responder_filter_passes_only_arp_requests_and_ns() -> None:
    passes = [_arp(), _arp(dst=SEED_MAC), _ns(), _ns(dst=SEED_V6)]
    blocked = [
        _arp(op=2),
        bytes(Ether() / IPv6(hlim=255) / ICMPv6ND_NA(tgt=SEED_V6)),
        bytes(Ether() / IP() / UDP()),
        bytes(Ether() / IPv6() / UDP()),
        bytes(Ether(type=0x0806)),  # truncated: the kernel rejects out-of-frame loads
    ]
    assert all(_run_bpf(REQUEST_FILTER, f) > len(f) for f in passes)
    assert all(_run_bpf(REQUEST_FILTER, f) == 0 for f in blocked)


# --- the address plan ----------------------------------------------------------------------------


def test_plan_is_deterministic_with_known_values() -> None:
    plan = address_plan(1, 3, LINK)
    assert plan == address_plan(1, 3, LINK)
    assert plan[0] == SeedEntry(2, "198.19.64.0", "02:5e:01:00:00:00")
    assert plan[2] == SeedEntry(2, "198.19.64.2", "02:5e:01:00:00:02")
    assert plan[3] == SeedEntry(23, "2001:db8:1:0:5e01::1", "02:5e:01:00:00:00")
    assert [e.family for e in plan] == [2, 2, 2, 23, 23, 23]


def test_plan_entries_are_canonical() -> None:
    for e in address_plan(2, 600, LINK):
        assert ipaddress.ip_address(e.address).compressed == e.address
        assert re.fullmatch(r"02:5e:02(:[0-9a-f]{2}){3}", e.lladdr)
        if e.family == 23:
            assert ipaddress.IPv6Address(e.address) in ipaddress.IPv6Network(LINK.v6_network)
        else:
            assert ipaddress.IPv4Address(e.address) in ipaddress.IPv4Network("198.19.0.0/16")


def test_plan_slots_never_collide() -> None:
    entries = [e for slot in range(4) for e in address_plan(slot, 16384, LINK)]
    for family in (2, 23):
        addresses = [e.address for e in entries if e.family == family]
        macs = [e.lladdr for e in entries if e.family == family]
        assert len(addresses) == 4 * 16384 == len(set(addresses))
        assert len(set(macs)) == len(macs)
    assert not {LINK.device_v4, LINK.device_v6} & {e.address for e in entries}


def test_plan_skips_device_addresses_inside_its_blocks() -> None:
    link = LinkTarget("nckBh0", DEVICE_MAC, "198.19.64.5", "2001:db8:1:0:5e01::7",
                      "2001:db8:1::/64")
    plan = address_plan(1, 16383, link)
    assert len(plan) == 2 * 16383
    assert not {"198.19.64.5", "2001:db8:1:0:5e01::7"} & {e.address for e in plan}
    v4 = [e.address for e in plan if e.family == 2]
    assert v4[5] == "198.19.64.6" and v4[-1] == "198.19.127.255"
    with pytest.raises(UsageError, match="room for 16383 entries, 16384 asked"):
        address_plan(1, 16384, link)


def test_plan_skips_a_family_the_link_has_no_address_for() -> None:
    v4_only = LinkTarget("nckBh0", DEVICE_MAC, "192.0.2.1", None, None)
    assert {e.family for e in address_plan(0, 5, v4_only)} == {2}
    v6_only = LinkTarget("nckBh0", DEVICE_MAC, None, "2001:db8:1::1", "2001:db8:1::/64")
    assert {e.family for e in address_plan(0, 5, v6_only)} == {23}


def test_plan_without_a_v6_network_uses_a_documentation_prefix_per_slot() -> None:
    link = LinkTarget("nckBh0", DEVICE_MAC, "192.0.2.1", "2001:db8:1::1", None)
    for slot in (0, 3):
        v6 = [e.address for e in address_plan(slot, 4, link) if e.family == 23]
        net = ipaddress.IPv6Network(f"2001:db8:5e00:{slot:x}::/64")
        assert all(ipaddress.IPv6Address(a) in net for a in v6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(slot=4, count=1), "holds 4 link slot"),
    (dict(slot=0, count=16385), "room for 16384"),
    (dict(slot=-1, count=1), "slot must be"),
    (dict(slot=256, count=1), "slot must be"),
    (dict(slot=0, count=-1), "count must be"),
    (dict(slot=0, count=1, v4_pool="198.19.0.1/16"), "not an IPv4 network"),
    (dict(slot=1, count=1, v4_pool="198.19.0.0/24"), "holds 1 link slot"),
])
def test_plan_refuses_what_the_pool_cannot_hold(kwargs: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        address_plan(link=LINK, **kwargs)


def test_plan_refuses_a_malformed_device_address() -> None:
    with pytest.raises(UsageError, match="device_v4 '192.0.2' is not an IPv4 address"):
        address_plan(0, 1, LinkTarget("nckBh0", DEVICE_MAC, "192.0.2", None, None))
    with pytest.raises(UsageError, match="device_v6 '2001:db8::1/64' is not an IPv6 address"):
        address_plan(0, 1, LinkTarget("nckBh0", DEVICE_MAC, None, "2001:db8::1/64", None))


def test_plan_small_pool_and_long_v6_prefix() -> None:
    assert len(address_plan(0, 256, LINK, v4_pool="198.19.7.0/24")) == 512
    long_prefix = LinkTarget("nckBh0", DEVICE_MAC, None, "2001:db8:1::1", "2001:db8:1::/80")
    with pytest.raises(UsageError, match="longer than /64"):
        address_plan(0, 1, long_prefix)


# --- verification --------------------------------------------------------------------------------


def _row(e: SeedEntry, *, ifindex: int = 5, state: str = "stale", lladdr: str | None = None,
         address: str | None = None) -> Neighbor:
    """A table entry as the agent protocol delivers it (parsed: canonical address and MAC)."""
    return parse_neighbor({"address": address or e.address, "family": e.family, "ifindex": ifindex,
                           "lladdr": lladdr if lladdr is not None else e.lladdr, "state": state})


def test_verify_present_polls_until_everything_landed() -> None:
    plan = address_plan(0, 3, LINK)
    tables = iter([[], [_row(e) for e in plan[:4]], [_row(e) for e in plan]])
    result = verify_present(lambda: next(tables), 5, plan, timeout=5.0)
    assert result.polls == 3
    assert 0 < result.seconds < 2.0


def test_verify_present_accepts_other_spellings_of_the_same_entry() -> None:
    plan = address_plan(0, 1, LINK)
    v4, v6 = plan
    rows = [_row(v4, lladdr=v4.lladdr.upper().replace(":", "-")),
            _row(v6, address=v6.address.upper() + "%5", state="REACHABLE")]
    assert verify_present(lambda: rows, 5, plan, timeout=0.1).polls == 1


def test_missing_seeds_names_each_reason() -> None:
    plan = address_plan(0, 5, LINK)
    rows = [_row(plan[0], state="failed"), _row(plan[1], state="incomplete", lladdr=""),
            _row(plan[2], lladdr="02:00:00:00:00:99"), _row(plan[3], ifindex=6),
            _row(plan[4]), _row(plan[5], state="probe")]
    reasons = {e.address: why for e, why in missing_seeds(rows, 5, plan)}
    assert reasons == {plan[0].address: "state failed", plan[1].address: "state incomplete",
                       plan[2].address: f"lladdr 02:00:00:00:00:99, seeded {plan[2].lladdr}",
                       plan[3].address: "absent",
                       **{e.address: "absent" for e in plan[6:]}}


def test_verify_present_times_out_with_a_useful_message() -> None:
    plan = address_plan(0, 10, LINK)
    rows = [_row(e) for e in plan[:3]]
    with pytest.raises(SeedingError, match=r"17 of 20 seeded entries missing on ifindex 5 "
                                           r"after .* first: 198\.19\.0\.3 \(absent\)"):
        verify_present(lambda: rows, 5, plan, timeout=0.2)


def test_frame_templates_are_what_scapy_builds() -> None:
    """The constant templates equal scapy's own encoding (lengths, hop limit, options, checksum)."""
    from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                                    ICMPv6NDOptSrcLLAddr, IPv6)
    from scapy.layers.l2 import ARP, Ether

    zmac, z4, z6 = "00:00:00:00:00:00", "0.0.0.0", "::"
    ether = Ether(dst=zmac, src=zmac)
    assert packets.TEMPLATES == {
        "arp_request": bytes(ether / ARP(hwsrc=zmac, psrc=z4, hwdst=zmac, pdst=z4)),
        "arp_reply": bytes(ether / ARP(op=packets.ARP_REPLY, hwsrc=zmac, psrc=z4, hwdst=zmac, pdst=z4)),
        "ns": bytes(ether / IPv6(src=z6, dst=z6, hlim=255) / ICMPv6ND_NS(tgt=z6)
                    / ICMPv6NDOptSrcLLAddr(lladdr=zmac)),
        "na": bytes(ether / IPv6(src=z6, dst=z6, hlim=255) / ICMPv6ND_NA(tgt=z6, R=0, S=1, O=1)
                    / ICMPv6NDOptDstLLAddr(lladdr=zmac)),
    }
