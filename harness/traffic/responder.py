"""Answering the device's ARP requests and Neighbor Solicitations for seeded addresses.

Without it, a seeded IPv6 entry dies: the device answers the seeding NS, which moves the new
entry to DELAY, then PROBE (unicast NS to the seed MAC), then FAILED after about 8 s (DESIGN.md
§3). With it, each probe gets a solicited NA and the entry turns REACHABLE, then STALE. ARP
requests (broadcast resolution or unicast probes) get ARP replies the same way.

One thread serves every link: a raw AF_PACKET socket per link whose classic BPF filter lets
only ARP requests and NS through, so the thread wakes for nothing else (the device's pings to
seeded addresses, our own seeding frames). Frames are parsed at fixed offsets (no scapy per
packet) and answered only for addresses the harness seeded on that link, and only when the
device asks: on a segment shared with other hosts (a switch, a bridge) a bystander that
resolves a seeded address must not learn a seed (its Ethernet source is not the device's).
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.errors import SeedingError
from harness.traffic.packets import (
    ARP_REQUEST,
    ETH_P_ALL,
    ETH_P_ARP,
    ETH_P_IPV6,
    IPPROTO_ICMPV6,
    ND_NEIGHBOR_SOLICIT,
    arp_reply,
    mac_bytes,
    neighbor_advert,
    parse_arp_request,
    parse_neighbor_solicit,
)
from harness.contract.clauses import AF_INET, AF_INET6
from harness.traffic.seeding import LinkTarget, SeedEntry, check_test_link

SOL_PACKET = 263
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
PACKET_ADD_MEMBERSHIP = 1
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23    # Linux >= 4.20
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4

# A device probing thousands of seeded entries sends a burst; the default receive buffer
# (about 270 small frames) would drop most of it before the thread runs.
_RCVBUF = 8 * 1024 * 1024
_POLL_MS = 200          # upper bound on how long stop() waits for the thread to notice
_BATCH = 512            # frames drained per socket per wakeup (keeps links fair)
_UNSPECIFIED_V6 = bytes(16)

# Classic BPF, hand-assembled: accept ARP requests and ICMPv6 NS (next header straight after
# the fixed IPv6 header, which is how NDP is sent), drop everything else.
_BPF_LD_H_ABS, _BPF_LD_B_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x28, 0x30, 0x15, 0x06
REQUEST_FILTER = [
    (_BPF_LD_H_ABS, 0, 0, 12),                      # 0: A = ethertype
    (_BPF_JEQ_K, 0, 2, ETH_P_ARP),                  # 1: ARP? -> 2, else -> 4
    (_BPF_LD_H_ABS, 0, 0, 20),                      # 2: A = ARP opcode
    (_BPF_JEQ_K, 5, 6, ARP_REQUEST),                # 3: request -> accept, else drop
    (_BPF_JEQ_K, 0, 5, ETH_P_IPV6),                 # 4: IPv6? -> 5, else drop
    (_BPF_LD_B_ABS, 0, 0, 20),                      # 5: A = next header
    (_BPF_JEQ_K, 0, 3, IPPROTO_ICMPV6),             # 6: ICMPv6? -> 7, else drop
    (_BPF_LD_B_ABS, 0, 0, 54),                      # 7: A = ICMPv6 type
    (_BPF_JEQ_K, 0, 1, ND_NEIGHBOR_SOLICIT),        # 8: NS -> accept, else drop
    (_BPF_RET_K, 0, 0, 0x40000),                    # 9: accept (whole frame)
    (_BPF_RET_K, 0, 0, 0),                          # 10: drop
]


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; } (native layout)
    fprog = struct.pack("HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies buf


def open_listen_socket(ifname: str) -> socket.socket:
    """Non-blocking AF_PACKET socket on ifname that sees only ARP requests and NS, inbound."""
    # Protocol 0 queues nothing until bind(); the filter is attached before that, so no
    # unfiltered frame can slip in between socket() and setsockopt().
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        _attach_filter(sock, REQUEST_FILTER)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass  # older kernel: the receive loop skips PACKET_OUTGOING itself
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, _RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind((ifname, ETH_P_ALL))
        # Promiscuous for this socket's lifetime (the kernel drops it on close): a real NIC
        # otherwise discards unicast probes to seed MACs and NS to their multicast groups.
        mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname), PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class ResponderStats:
    answered_arp: int = 0
    answered_ns: int = 0
    ignored: int = 0     # ARP requests / NS that passed the filter but were not for a seed
    dropped: int = 0     # frames the kernel dropped because the socket buffer was full

    @property
    def answered(self) -> int:
        return self.answered_arp + self.answered_ns


class _LinkState:
    def __init__(self, ifname: str, sock: socket.socket) -> None:
        self.ifname = ifname
        self.sock = sock
        self.v4: dict[bytes, bytes] = {}   # packed address -> seed MAC
        self.v6: dict[bytes, bytes] = {}
        self.device_mac = b""              # only the device's own requests are answered


class Responder:
    """Answers ARP requests and NS (unicast and multicast) for seeded addresses on test links."""

    def __init__(self, allowed_ifaces: Iterable[str]) -> None:
        self._allowed = frozenset(allowed_ifaces)
        self._links: dict[str, _LinkState] = {}
        self._lock = threading.Lock()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._answered_arp = self._answered_ns = self._ignored = self._dropped = 0
        self._failure: BaseException | None = None

    # --- what to answer ---------------------------------------------------------------------

    def serve(self, link: LinkTarget, entries: Sequence[SeedEntry]) -> None:
        """Answer for exactly `entries` on link.harness_if from now on (replaces the old set)."""
        check_test_link(link.harness_if, self._allowed)
        v4 = {socket.inet_aton(e.address): mac_bytes(e.lladdr)
              for e in entries if e.family == AF_INET}
        v6 = {socket.inet_pton(socket.AF_INET6, e.address): mac_bytes(e.lladdr)
              for e in entries if e.family == AF_INET6}
        with self._lock:
            if self._wake < 0:
                raise SeedingError("the responder is stopped; create a new one")
            state = self._links.get(link.harness_if)
            if state is None:
                state = _LinkState(link.harness_if, open_listen_socket(link.harness_if))
                self._links[link.harness_if] = state
            # Swapping whole dicts is atomic for the reader thread: no lock on the hot path.
            state.v4, state.v6, state.device_mac = v4, v6, mac_bytes(link.device_mac)
            os.eventfd_write(self._wake, 1)  # let a running thread poll the new socket

    @property
    def stats(self) -> ResponderStats:
        with self._lock:
            for state in self._links.values():
                self._dropped += self._read_drops(state.sock)
            return ResponderStats(self._answered_arp, self._answered_ns, self._ignored,
                                  self._dropped)

    @staticmethod
    def _read_drops(sock: socket.socket) -> int:
        # struct tpacket_stats { unsigned tp_packets, tp_drops; }; reading resets it.
        return struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))[1]

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="neighcheck-responder",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (promptly: it waits on an eventfd too) and close every socket."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            os.eventfd_write(self._wake, 1)
            thread.join(timeout)
        with self._lock:
            for state in self._links.values():
                self._dropped += self._read_drops(state.sock)
                state.sock.close()
            self._links.clear()
            if self._wake >= 0:
                os.close(self._wake)
                self._wake = -1
        if thread is not None and thread.is_alive():
            raise SeedingError(f"the responder thread did not stop within {timeout} s")
        if self._failure is not None:
            raise SeedingError(f"the responder thread failed: {self._failure!r}; seeded "
                               f"entries may have decayed") from self._failure

    def __enter__(self) -> Responder:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve_forever()
        except BaseException as exc:  # surfaced by stop(): a dead responder must not go unseen
            self._failure = exc

    def _serve_forever(self) -> None:
        poller = select.poll()
        poller.register(self._wake, select.POLLIN)
        watched: dict[int, _LinkState] = {}
        # Requests queued before start() are stale (the device may have moved on): drop them.
        self._sync(poller, watched, drain=True)
        while not self._stopping.is_set():
            for fd, _events in poller.poll(_POLL_MS):
                if fd == self._wake:
                    os.eventfd_read(self._wake)
                    self._sync(poller, watched, drain=False)
                elif (state := watched.get(fd)) is not None:
                    self._drain(state)

    def _sync(self, poller: select.poll, watched: dict[int, _LinkState], *, drain: bool) -> None:
        with self._lock:
            current = {s.sock.fileno(): s for s in self._links.values()}
        for fd, state in current.items():
            if fd not in watched:
                if drain:
                    self._discard_queued(state.sock)
                poller.register(fd, select.POLLIN)
                watched[fd] = state

    @staticmethod
    def _discard_queued(sock: socket.socket) -> None:
        try:
            while True:
                sock.recv(2048)
        except (BlockingIOError, OSError):
            pass

    def _drain(self, state: _LinkState) -> None:
        sock = state.sock
        for _ in range(_BATCH):
            try:
                frame, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            except OSError:
                return  # closed under us by stop(); the loop ends on the next check
            if addr[2] == PACKET_OUTGOING:
                continue
            reply = self._reply_for(state, frame)
            if reply is not None:
                try:
                    sock.send(reply)
                except OSError:
                    pass  # queue full for a moment: the device probes again

    def _reply_for(self, state: _LinkState, frame: bytes) -> bytes | None:
        if frame[6:12] != state.device_mac:
            self._ignored += 1  # a bystander on the segment: it must never learn a seed
            return None
        if frame[12:14] == b"\x08\x06":
            request = parse_arp_request(frame)
            mac = state.v4.get(request.target_v4) if request else None
            if mac is not None:
                self._answered_arp += 1
                return arp_reply(request, mac)
        else:
            solicit = parse_neighbor_solicit(frame)
            # A DAD probe (unspecified source) asks whether an address is free: a seed MAC
            # must not claim an address the device is trying to configure.
            if solicit is not None and solicit.src_v6 != _UNSPECIFIED_V6:
                mac = state.v6.get(solicit.target_v6)
                if mac is not None:
                    self._answered_ns += 1
                    return neighbor_advert(solicit, mac)
        self._ignored += 1
        return None
