"""Ethernet frames for neighbor seeding and answering: ARP and IPv6 Neighbor Discovery.

Each frame kind is a constant template: the bytes scapy builds with placeholder addresses
(so scapy's encoder fixed every constant field: lengths, hop limit, option layout; the tests
check them against scapy), split into byte slices. A per-link builder patches the device's
addresses in once, and a per-entry call only joins the changing bytes (seed MAC and address,
plus the ICMPv6 checksum). That is what makes 100k+ frames/s possible from Python: no scapy
object per frame, and no scapy import at run time.

ICMPv6 checksum: the Internet checksum is a one's-complement sum of 16-bit words, so it is
linear in the words it covers (RFC 1071 §2, RFC 1624). The builder sums the constant words
once per link (pseudo-header length and next header, device address as destination and as NS
target, ICMPv6 type/code/reserved, option type/length); per entry it adds only the eleven words
that change (16-byte source address, 6-byte option MAC) and folds. This is correct for any
entry, not only for addresses from the address plan.

Layouts assume untagged Ethernet II (test links are plain access links; no VLAN tags).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ARP_REQUEST = 1
ARP_REPLY = 2

# Offsets of an ARP-over-Ethernet frame (14 + 28 = 42 bytes; the NIC pads to 60).
ARP_FRAME_LEN = 42
_ARP_OP = slice(20, 22)
_ARP_SHA = slice(22, 28)
_ARP_SPA = slice(28, 32)
_ARP_THA = slice(32, 38)
_ARP_TPA = slice(38, 42)

# Offsets of an NS/NA frame with one link-layer address option (14 + 40 + 24 + 8 = 86 bytes).
ND_FRAME_LEN = 86
_IP6_PLEN = slice(18, 20)
_IP6_NH = 20
_IP6_HLIM = 21
_IP6_SRC = slice(22, 38)
_IP6_DST = slice(38, 54)
_ICMP6 = 54  # start of the ICMPv6 message
_ICMP6_TYPE = 54
_ICMP6_CODE = 55
_ICMP6_CKSUM = slice(56, 58)
_ND_TARGET = slice(62, 78)
_ND_OPT_LLADDR = slice(80, 86)
_ND_BODY_LEN = ND_FRAME_LEN - _ICMP6  # 32: the ICMPv6 "upper-layer packet length"

_ZERO_MAC = b"\x00" * 6
_ZERO_V6 = b"\x00" * 16


def mac_bytes(text: str) -> bytes:
    """'02:5e:00:00:00:01' (or with '-') -> 6 bytes; ValueError for anything else."""
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return raw


def mac_text(raw: bytes) -> str:
    return raw.hex(":")


def _sum16(data: bytes) -> int:
    """Unfolded sum of big-endian 16-bit words (data has even length)."""
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _fold_checksum(total: int) -> int:
    """Fold a word sum to 16 bits and complement it, exactly as scapy's checksum() does."""
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmpv6_checksum(src: bytes, dst: bytes, message: bytes) -> int:
    """Checksum of an ICMPv6 message (checksum field zeroed) over the RFC 8200 pseudo-header."""
    pseudo = src + dst + struct.pack("!IxxxB", len(message), IPPROTO_ICMPV6)
    if len(message) % 2:
        message += b"\x00"
    return _fold_checksum(_sum16(pseudo) + _sum16(message))


# The four frame kinds as scapy builds them with all-zero placeholder addresses (the harness
# fills in the rest per link and per entry). Constants, not built at run time: importing
# scapy's inet6 layer costs 0.5-1 s in every process and xdist worker, more than the rest of a
# small suite run. tests/test_packets.py checks them against scapy byte for byte.
TEMPLATES: Mapping[str, bytes] = MappingProxyType({
    "arp_request": bytes.fromhex("0000000000000000000000000806000108000604000100000000000000000000"
                                 "00000000000000000000"),
    "arp_reply": bytes.fromhex("0000000000000000000000000806000108000604000200000000000000000000"
                               "00000000000000000000"),
    "ns": bytes.fromhex("00000000000000000000000086dd6000000000203aff00000000000000000000"
                        "00000000000000000000000000000000000000000000870077a4000000000000"
                        "00000000000000000000000000000101000000000000"),
    # Solicited + Override, not a router: the answer a host gives for its own address.
    "na": bytes.fromhex("00000000000000000000000086dd6000000000203aff00000000000000000000"
                        "00000000000000000000000000000000000000000000880015a4600000000000"
                        "00000000000000000000000000000201000000000000"),
})
assert len(TEMPLATES["arp_request"]) == len(TEMPLATES["arp_reply"]) == ARP_FRAME_LEN
assert len(TEMPLATES["ns"]) == len(TEMPLATES["na"]) == ND_FRAME_LEN


def _nd_frame_with_checksum(template: bytes, eth_dst: bytes, eth_src: bytes, ip_src: bytes,
                            ip_dst: bytes, target: bytes, lladdr: bytes) -> bytes:
    message = (template[_ICMP6:_ICMP6_CKSUM.start] + b"\x00\x00"
               + template[_ICMP6_CKSUM.stop:_ND_TARGET.start] + target
               + template[_ND_TARGET.stop:_ND_OPT_LLADDR.start] + lladdr)
    cksum = icmpv6_checksum(ip_src, ip_dst, message).to_bytes(2, "big")
    return (eth_dst + eth_src + template[12:_IP6_SRC.start] + ip_src + ip_dst
            + message[:2] + cksum + message[4:])


class ArpSeedBuilder:
    """ARP who-has frames for one link: "who has DEVICE_V4? tell SEED_V4 at SEED_MAC".

    The device answers its own address and, as a side effect, learns the sender (STALE), also
    for senders outside its subnet (measured on Linux 6.x, see DESIGN.md §3).
    """

    # One struct.pack per frame: a third of the time of joining the slices with +.
    _layout = struct.Struct("6s6s10s6s4s10s").pack

    def __init__(self, device_mac: str, device_v4: str) -> None:
        t = TEMPLATES["arp_request"]
        self._eth_dst = mac_bytes(device_mac)
        self._fixed = t[12:_ARP_SHA.start]                       # ethertype .. opcode
        self._tail = t[_ARP_THA] + socket.inet_aton(device_v4)  # THA zero, TPA = device

    def frame(self, seed_mac: bytes, seed_v4: bytes) -> bytes:
        return self._layout(self._eth_dst, seed_mac, self._fixed, seed_mac, seed_v4, self._tail)


class NsSeedBuilder:
    """Unicast Neighbor Solicitations for one link: from SEED_V6 (option: SEED_MAC) asking for
    DEVICE_V6. The device learns the source from the source link-layer address option."""

    _layout = struct.Struct("!6s6s10s16s18sH22s6s").pack

    def __init__(self, device_mac: str, device_v6: str) -> None:
        t = TEMPLATES["ns"]
        dev6 = socket.inet_pton(socket.AF_INET6, device_v6)
        self._eth_dst = mac_bytes(device_mac)
        self._ip_fixed = t[12:_IP6_SRC.start]           # ethertype, version .. hop limit
        self._dev6_type_code = dev6 + t[_ICMP6:_ICMP6_CKSUM.start]
        self._reserved_target_opt = t[_ICMP6_CKSUM.stop:_ND_TARGET.start] + dev6 \
            + t[_ND_TARGET.stop:_ND_OPT_LLADDR.start]
        # Constant part of the checksum: pseudo-header (dst, length, next header) and the
        # ICMPv6 message with checksum, source address and option MAC left at zero.
        constant = icmpv6_checksum(_ZERO_V6, dev6, t[_ICMP6:_ICMP6_CKSUM.start] + b"\x00\x00"
                                   + t[_ICMP6_CKSUM.stop:_ND_TARGET.start] + dev6
                                   + t[_ND_TARGET.stop:_ND_OPT_LLADDR.start] + _ZERO_MAC)
        self._base_sum = ~constant & 0xFFFF  # undo the final complement: a foldable word sum

    def checksum(self, seed_mac: bytes, seed_v6: bytes) -> int:
        # Because 2**16 == 1 (mod 0xFFFF), the 22 changing bytes read as one big integer are
        # congruent to the sum of their 16-bit words: one int.from_bytes and one modulo instead
        # of unpacking eleven words (3x faster). The residue 0 is one's-complement zero, which
        # the folded sum writes as 0xFFFF (the constant words are never all zero); the
        # checksum is the complement of the folded sum.
        total = (self._base_sum + int.from_bytes(seed_v6 + seed_mac, "big")) % 0xFFFF
        return 0xFFFF - (total or 0xFFFF)

    def frame(self, seed_mac: bytes, seed_v6: bytes) -> bytes:
        return self._layout(self._eth_dst, seed_mac, self._ip_fixed, seed_v6,
                            self._dev6_type_code, self.checksum(seed_mac, seed_v6),
                            self._reserved_target_opt, seed_mac)


# --- what the responder hears and says ---------------------------------------------------


class ArpRequest(NamedTuple):
    sender_mac: bytes
    sender_v4: bytes
    target_v4: bytes


class NeighborSolicit(NamedTuple):
    eth_src: bytes
    src_v6: bytes
    target_v6: bytes


_ARP_IPV4_OVER_ETHERNET = struct.pack("!HHHBB", ETH_P_ARP, 1, ETH_P_IPV4, 6, 4)


def parse_arp_request(frame: bytes) -> ArpRequest | None:
    """An ARP request for IPv4 over Ethernet, by fixed offsets; None for anything else."""
    if len(frame) < ARP_FRAME_LEN or frame[12:20] != _ARP_IPV4_OVER_ETHERNET:
        return None
    if int.from_bytes(frame[_ARP_OP], "big") != ARP_REQUEST:
        return None
    return ArpRequest(frame[_ARP_SHA], frame[_ARP_SPA], frame[_ARP_TPA])


def parse_neighbor_solicit(frame: bytes) -> NeighborSolicit | None:
    """An NS straight after the IPv6 header (the only layout NDP uses), by fixed offsets.

    RFC 4861 §7.1.1: hop limit must be 255 and code 0. The checksum is not checked: the worst
    a corrupt NS can cause is one extra advertisement for an address the harness seeded.
    """
    if len(frame) < _ND_TARGET.stop or frame[12:14] != b"\x86\xdd" or frame[14] >> 4 != 6:
        return None
    if (frame[_IP6_NH] != IPPROTO_ICMPV6 or frame[_IP6_HLIM] != 255
            or frame[_ICMP6_TYPE] != ND_NEIGHBOR_SOLICIT or frame[_ICMP6_CODE] != 0):
        return None
    return NeighborSolicit(frame[6:12], frame[_IP6_SRC], frame[_ND_TARGET])


def arp_reply(request: ArpRequest, seed_mac: bytes) -> bytes:
    """"TARGET is at SEED_MAC", sent straight back to the asker."""
    t = TEMPLATES["arp_reply"]
    return (request.sender_mac + seed_mac + t[12:_ARP_SHA.start] + seed_mac + request.target_v4
            + request.sender_mac + request.sender_v4)


def neighbor_advert(solicit: NeighborSolicit, seed_mac: bytes) -> bytes:
    """Solicited + Override NA for solicit.target_v6 with a target link-layer option, sent to
    the soliciting node (unicast, as RFC 4861 §7.2.4 asks for a non-DAD solicitation)."""
    return _nd_frame_with_checksum(TEMPLATES["na"], solicit.eth_src, seed_mac,
                                   solicit.target_v6, solicit.src_v6, solicit.target_v6, seed_mac)
