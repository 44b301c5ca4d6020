"""Packet evidence: the test links' traffic during one case, as a pcapng file.

A failing case's report says what the table did; the capture shows what was on the wire (the
seeding ARP requests and NS, the device's answers and probes, the responder's replies). One
raw AF_PACKET socket per test link of the device stays open while the device is (closing one
costs the kernel an RCU grace period, about 10 ms: too much per case). Nothing is read while a
case runs: the kernel queues what each socket sees, both directions, in the socket's receive
buffer, so capturing costs the case no Python work per frame.

- start(): when a case starts (the device is open, nothing seeded yet), whatever is queued from
  before is dropped (read without copying).
- keep(): the case failed or errored (or `--pcap all`): the queues are drained into one pcapng
  file (Wireshark and tcpdump read it): an interface block per test link, named after it, and
  each frame with its kernel timestamp and direction (inbound/outbound). A passing case is not
  read at all: the next start() drops its frames.

Bounded twice: the receive buffer limits what the kernel queues (frames past it are dropped and
counted by the kernel), and the file stops growing at `max_bytes` (frames past that are counted,
not written). Only inventory test links are captured, by the seeder's own allow-list: never the
management link.
"""

from __future__ import annotations

import heapq
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.traffic.packets import ETH_P_ALL
from harness.traffic.seeding import ensure_test_link

# What --pcap keeps: the capture of cases that fail or error (the default), of every case, or none.
PCAP_MODES = ("failed", "all", "off")
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # = SCM_TIMESTAMPNS: a struct timespec with each frame
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
# What the kernel may queue per link while a case runs. A small frame costs about 1 KiB of
# buffer (skb overhead), so this holds tens of thousands of frames: a 1,024-entry scale case
# fits, a 16,384-entry one is cut (and says so).
MIN_QUEUE = 8 << 20
MAX_QUEUE = 64 << 20

# pcapng block types and options (draft-ietf-opsawg-pcapng)
_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_END, _OPT_IF_NAME, _OPT_IF_TSRESOL, _OPT_EPB_FLAGS = 0, 2, 9, 2
_INBOUND, _OUTBOUND = 0b01, 0b10


@dataclass(frozen=True)
class Frame:
    ns: int  # kernel receive time, ns since the epoch
    link: int  # index into the capture's links
    outbound: bool
    data: bytes


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def pcapng_header(links: Sequence[str]) -> bytes:
    """Section header, then one Ethernet interface per link, named, with ns timestamps."""
    out = _block(_SHB, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1))
    for name in links:
        options = _option(_OPT_IF_NAME, name.encode()) + _option(_OPT_IF_TSRESOL, bytes([9]))
        out += _block(_IDB, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, SNAPLEN) + options
                      + _option(_OPT_END, b""))
    return out


def pcapng_frame(frame: Frame) -> bytes:
    flags = _option(_OPT_EPB_FLAGS, struct.pack("<I", _OUTBOUND if frame.outbound else _INBOUND))
    body = struct.pack("<IIIII", frame.link, frame.ns >> 32, frame.ns & 0xFFFFFFFF, len(frame.data),
                       len(frame.data))
    return _block(_EPB, body + frame.data + b"\0" * (-len(frame.data) % 4) + flags + _option(_OPT_END, b""))


def _open(ifname: str, queue: int) -> socket.socket:
    # Protocol 0 until bind(): a socket made with ETH_P_ALL would queue every interface's
    # frames (the management link's too) until it is bound to the test link.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, queue)
        except OSError:  # without CAP_NET_ADMIN: as much as rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, queue)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class LinkCapture:
    """The traffic of some test links, case by case: start(), then keep() (or not)."""

    def __init__(self, links: Sequence[str], allowed: Iterable[str], *, max_bytes: int):
        allowed = frozenset(allowed)
        for name in links:
            ensure_test_link(name, allowed)  # raises LinkNotAllowed for anything else
        self.links = list(links)
        self.max_bytes = max_bytes
        queue = max(MIN_QUEUE, min(MAX_QUEUE, 4 * max_bytes))
        self._socks: list[socket.socket] = []
        try:
            for name in self.links:
                self._socks.append(_open(name, queue))
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        self._socks = []

    def start(self) -> None:
        """From now on: drop what is queued, and the kernel's drop count with it."""
        scrap = bytearray(1)
        for sock in self._socks:
            try:
                while True:
                    sock.recv_into(scrap)  # one frame each, cut to one byte
            except BlockingIOError:
                pass
            sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reading resets the counters

    def _drain(self, index: int, sock: socket.socket) -> tuple[list[Frame], int]:
        frames, buf = [], bytearray(SNAPLEN)
        ancillary = socket.CMSG_SPACE(16)
        while True:
            try:
                size, anc, _flags, address = sock.recvmsg_into([buf], ancillary)
            except BlockingIOError:
                break
            ns = 0
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack_from("qq", data)
                    ns = sec * 1_000_000_000 + nsec
            frames.append(Frame(ns, index, address[2] == PACKET_OUTGOING, bytes(buf[:size])))
        # struct tpacket_stats {tp_packets, tp_drops}: what the full queue made the kernel drop
        dropped = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]
        return frames, dropped

    def keep(self, path: Path) -> dict:
        """Write what was captured since start() to `path` (pcapng); what was written and what
        was not."""
        per_link, dropped = [], 0
        for index, sock in enumerate(self._socks):
            frames, lost = self._drain(index, sock)
            per_link.append(frames)
            dropped += lost
        path.parent.mkdir(parents=True, exist_ok=True)
        written, not_written = 0, 0
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as fh:
            size = fh.write(pcapng_header(self.links))
            for frame in heapq.merge(*per_link, key=lambda f: f.ns):
                block = pcapng_frame(frame)
                if size + len(block) > self.max_bytes:
                    not_written += 1
                    continue
                size += fh.write(block)
                written += 1
        os.replace(tmp, path)
        return {"frames": written, "bytes": size, "not_kept": not_written + dropped,
                "links": list(self.links)}
