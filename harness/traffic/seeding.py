"""Planting known neighbor entries on a device with real ARP/NDP traffic, and checking they landed.

The harness never writes the device's table directly for seeding: it sends what a neighbor
would send and lets the device's own stack create the entries.
- IPv4: ARP who-has for the device's address from the seeded sender (the device learns the
  sender; Linux does this also for senders outside its subnet, measured in DESIGN.md §3).
- IPv6: a unicast Neighbor Solicitation for the device's address from the seeded source with a
  source link-layer address option.
Frames are built from templates (harness.traffic.packets) and sent on a raw AF_PACKET socket bound to a
test link that the inventory allows (never any other interface).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import ipaddress
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from harness.contract.clauses import AF_INET, AF_INET6
from harness.contract.protocol import NOT_LANDED_STATES, Key, Neighbor
from harness.errors import LinkNotAllowed, SeedingError, UsageError
from harness.traffic.packets import ArpSeedBuilder, NsSeedBuilder, mac_bytes
from harness.waits import poll_until

# Each link slot owns a fixed block of the IPv4 pool, so plans for different slots never
# overlap whatever their counts. 16,384 is the largest per-link table the harness plans; a
# /16 pool therefore holds 4 slots, a wider pool more.
SLOT_BLOCK_V4 = 16384
# IPv6 seeds: interface identifier 5eSS:0:IIII:IIII (SS = slot, I = index + 1, skipping the
# device's own address) inside the link's /64, a pattern no SLAAC/EUI-64 or hand-picked
# ::1-style address uses.
_V6_IID_MARK = 0x5E00
# Fallback when the inventory gives no /64 for the link: one documentation /64 per slot
# (2001:db8:5e00:SS::/64). Off-link NS sources do create entries on Linux 6.x (measured).
_V6_FALLBACK = ipaddress.IPv6Network("2001:db8:5e00::/48")
_MAX_SLOT = 0xFF           # one MAC byte
_MAX_COUNT = 0xFFFFFF      # three MAC bytes


@dataclass(frozen=True)
class SeedEntry:
    """One neighbor entry the harness plants on the device."""
    family: int    # 2 (IPv4) or 23 (IPv6), Windows numbering
    address: str   # canonical text form
    lladdr: str    # lowercase aa:bb:cc:dd:ee:ff


@dataclass(frozen=True)
class LinkTarget:
    """One test link as the harness sees it."""
    harness_if: str          # harness-side interface name (must be allowlisted)
    device_mac: str          # the device interface's MAC
    device_v4: str | None    # the device's IPv4 address on the link (no prefix length)
    device_v6: str | None    # the device's IPv6 address on the link
    v6_network: str | None   # the link's IPv6 /64, e.g. "2001:db8:1::/64"


@dataclass(frozen=True)
class SendStats:
    frames: int        # one frame per entry
    seconds: float     # the whole send(): frame building and sending
    retries: int = 0   # frames the link refused for a moment (ENOBUFS) and that were resent

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class VerifyResult:
    polls: int
    seconds: float


# --- the address plan ---------------------------------------------------------------------


def address_plan(slot: int, count: int, link: LinkTarget, *,
                 v4_pool: str = "198.19.0.0/16") -> list[SeedEntry]:
    """`count` IPv4 and `count` IPv6 seed entries for link slot `slot`; deterministic.

    A family is planned only when the link has a device address for it (ARP and NS seeding
    ask for that address; a device without an IPv6 stack gets an IPv4-only plan). Addresses
    never equal the device's own; MACs are 02:5e:SS:II:II:II (locally administered unicast,
    SS = slot, I = index), shared by the IPv4 and IPv6 entry of one index like a dual-stack
    host. UsageError when the pool or the slot cannot hold the plan.
    """
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= _MAX_SLOT:
        raise UsageError(f"seed slot must be an integer 0..{_MAX_SLOT}, got {slot!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= _MAX_COUNT:
        raise UsageError(f"seed count must be an integer 0..{_MAX_COUNT}, got {count!r}")
    return list(_plan(slot, count, link, v4_pool))


@functools.lru_cache(maxsize=32)
def _plan(slot: int, count: int, link: LinkTarget, v4_pool: str) -> tuple[SeedEntry, ...]:
    macs = [bytes((0x02, 0x5E, slot)) + i.to_bytes(3, "big") for i in range(count)]
    macs_text = [m.hex(":") for m in macs]
    plan: list[SeedEntry] = []
    if link.device_v4:
        addrs = _v4_addresses(slot, count, link, v4_pool)
        plan += [SeedEntry(AF_INET, a, m) for a, m in zip(addrs, macs_text)]
    if link.device_v6:
        addrs = _v6_addresses(slot, count, link)
        plan += [SeedEntry(AF_INET6, a, m) for a, m in zip(addrs, macs_text)]
    return tuple(plan)


def _address_int(kind: type, text: str, what: str) -> int:
    try:
        return int(kind(text))
    except ValueError:
        raise UsageError(f"link {what} {text!r} is not an {kind.__name__[:4]} address") from None


def _v4_addresses(slot: int, count: int, link: LinkTarget, v4_pool: str) -> list[str]:
    try:
        pool = ipaddress.IPv4Network(v4_pool)
    except ValueError as exc:
        raise UsageError(f"v4_pool {v4_pool!r} is not an IPv4 network: {exc}") from None
    block = min(SLOT_BLOCK_V4, pool.num_addresses)
    slots = pool.num_addresses // block
    if slot >= slots:
        raise UsageError(f"IPv4 seed pool {pool} holds {slots} link slot(s) of {block} "
                         f"addresses; slot {slot} does not fit (use a wider v4_pool)")
    reserved = {_address_int(ipaddress.IPv4Address, link.device_v4, "device_v4")}
    first = int(pool.network_address) + slot * block
    candidates = (n for n in range(first, first + block) if n not in reserved)
    chosen = [socket.inet_ntoa(n.to_bytes(4, "big")) for n, _ in zip(candidates, range(count))]
    if len(chosen) < count:
        raise UsageError(f"IPv4 seed pool {pool}: slot {slot} has room for {len(chosen)} "
                         f"entries, {count} asked (use a wider v4_pool or fewer entries)")
    return chosen


def _v6_addresses(slot: int, count: int, link: LinkTarget) -> list[str]:
    if link.v6_network:
        try:
            network = ipaddress.IPv6Network(link.v6_network, strict=False)
        except ValueError as exc:
            raise UsageError(f"v6_network {link.v6_network!r} is not an IPv6 network: {exc}") \
                from None
        if network.prefixlen > 64:
            raise UsageError(f"v6_network {network} is longer than /64; seeds need a /64")
        prefix = int(network.network_address) >> 64 << 64
    else:
        prefix = int(_V6_FALLBACK.network_address) | slot << 64
    reserved = {_address_int(ipaddress.IPv6Address, link.device_v6, "device_v6")}
    first = prefix | (_V6_IID_MARK | slot) << 48
    candidates = (n for n in range(first + 1, first + 2 ** 32) if n not in reserved)
    # inet_ntop writes RFC 5952 canonical text, like ipaddress, at a tenth of the cost.
    return [socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big"))
            for n, _ in zip(candidates, range(count))]


# Static (permanent) entries the cases keep on every test link, for both families: outside the
# seed pools (198.19.0.0/16 and the 5eSS interface identifiers), one address per link slot.
STATIC_V4 = ipaddress.IPv4Address("198.51.100.200")
STATIC_V6 = ipaddress.IPv6Address("2001:db8:ffff::200")


def static_plan(slot: int, link: LinkTarget) -> list[SeedEntry]:
    """The static entries of link slot `slot` (a family only where the link seeds it);
    MACs 02:5e:ff:00:SS:0F (F: 1 for IPv4, 2 for IPv6), never a seed's."""
    out = []
    if link.device_v4:
        out.append(SeedEntry(AF_INET, str(STATIC_V4 + slot), f"02:5e:ff:00:{slot:02x}:01"))
    if link.device_v6:
        out.append(SeedEntry(AF_INET6, str(STATIC_V6 + slot), f"02:5e:ff:00:{slot:02x}:02"))
    return out


# --- test links -------------------------------------------------------------------------------

_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1
_IFF_RUNNING = 0x40


def ensure_test_link(ifname: str, allowed: Iterable[str]) -> None:
    """Raise unless `ifname` is an inventory test link (the one rule for which interfaces the
    harness sends test traffic on, answers on, or captures)."""
    if ifname not in allowed:
        raise LinkNotAllowed(
            f"refusing to send test traffic on interface {ifname!r}: it is not a test link of "
            f"the inventory; only inventory test links may carry test traffic "
            f"(allowed: {', '.join(sorted(allowed)) or 'none'})")
    if not ifname or len(ifname.encode()) > 15 or "/" in ifname:
        raise UsageError(f"test link {ifname!r} is not a valid interface name")


def check_test_link(ifname: str, allowed: Iterable[str]) -> int:
    """The interface index of `ifname` if it may carry test traffic and can; raise otherwise.

    Checks through the kernel of the calling thread's network namespace (ioctl, not /sys, which
    shows the namespace sysfs was mounted in).
    """
    ensure_test_link(ifname, allowed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            ifreq = fcntl.ioctl(probe, _SIOCGIFFLAGS, struct.pack("16sH", ifname.encode(), 0))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise UsageError(f"test link {ifname!r} does not exist on the harness host "
                                 f"(check the inventory's test links)") from None
            raise
    flags = struct.unpack_from("16sH", ifreq)[1]
    if not flags & _IFF_UP:
        raise UsageError(f"test link {ifname!r} is down; bring it up (ip link set {ifname} up)")
    if not flags & _IFF_RUNNING:
        raise UsageError(f"test link {ifname!r} is up but has no carrier "
                         f"(cable unplugged or the peer is down)")
    return socket.if_nametoindex(ifname)


def open_link_socket(ifname: str) -> socket.socket:
    """A raw AF_PACKET socket bound to ifname for sending; protocol 0 queues nothing received."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((ifname, 0))
    except OSError:
        sock.close()
        raise
    return sock


# --- sending ------------------------------------------------------------------------------------

_ENOBUFS_BACKOFF_MAX = 0.01
_ENOBUFS_GIVE_UP = 5.0
# Below this many entries one thread is as fast: starting threads costs more than it saves.
_PARALLEL_MIN = 2048


class Seeder:
    """Sends seeding frames on allowlisted test links, raw sockets per link (reused).

    workers: threads that build and send shards of one send() call, each on its own socket.
    send() releases the GIL in the kernel, where most of the time goes when the device's own
    receive path runs on this host (veth lab: about 7 of 9 us per frame), so two workers on two
    cores send about 1.5x faster; against a remote device the kernel part is small and extra
    workers neither help nor hurt much. Default: min(2, CPUs).
    pace: maximum frames per second for devices that drop bursts (None: as fast as the link
    takes them; implies one worker). On a veth the receive path runs synchronously in each
    send() (softirq on bh-enable), so nothing is lost at full speed (measured: 0 drops at
    32,768 frames); a real NIC whose queue fills answers ENOBUFS, and the frame is resent.
    """

    def __init__(self, allowed_ifaces: Iterable[str], *, pace: float | None = None,
                 workers: int | None = None) -> None:
        self._allowed = frozenset(allowed_ifaces)
        self._pace = pace
        self._workers = 1 if pace else max(1, workers or min(2, os.cpu_count() or 1))
        self._sockets: dict[str, list[socket.socket]] = {}

    def send(self, link: LinkTarget, entries: Sequence[SeedEntry]) -> SendStats:
        """Send one seeding frame per entry; seconds covers frame building and sending."""
        check_test_link(link.harness_if, self._allowed)
        self._check_entries(link, entries)
        shards = self._workers if len(entries) >= _PARALLEL_MIN else 1
        sockets = self._link_sockets(link.harness_if, shards)
        start = time.perf_counter()
        if shards == 1:
            retries = self._send_all(sockets[0], self._frames(link, entries))
        else:
            retries = self._send_sharded(link, entries, sockets)
        return SendStats(len(entries), time.perf_counter() - start, retries)

    def _link_sockets(self, ifname: str, count: int) -> list[socket.socket]:
        sockets = self._sockets.setdefault(ifname, [])
        while len(sockets) < count:
            sockets.append(open_link_socket(ifname))
        return sockets[:count]

    def _send_sharded(self, link: LinkTarget, entries: Sequence[SeedEntry],
                      sockets: list[socket.socket]) -> int:
        # Interleaved shards: each worker gets both families, so the kernel work is balanced.
        shards = len(sockets)
        results: list[int | BaseException] = [0] * shards

        def work(index: int) -> None:
            try:
                frames = self._frames(link, entries[index::shards])
                results[index] = self._send_all(sockets[index], frames)
            except BaseException as exc:  # handed to the caller's thread below
                results[index] = exc

        threads = [threading.Thread(target=work, args=(i,), name=f"neighcheck-seeder-{i}")
                   for i in range(shards)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(results)  # type: ignore[arg-type]

    @staticmethod
    def _check_entries(link: LinkTarget, entries: Sequence[SeedEntry]) -> None:
        families = {e.family for e in entries}
        if families - {AF_INET, AF_INET6}:
            bad = next(e for e in entries if e.family not in (AF_INET, AF_INET6))
            raise UsageError(f"seed entry {bad} has family {bad.family}; only 2 and 23 seed")
        if AF_INET in families and not link.device_v4:
            raise UsageError(f"link {link.harness_if}: IPv4 seeds need the device's IPv4 "
                             f"address on the link")
        if AF_INET6 in families and not link.device_v6:
            raise UsageError(f"link {link.harness_if}: IPv6 seeds need the device's IPv6 "
                             f"address on the link")

    @staticmethod
    def _frames(link: LinkTarget, entries: Sequence[SeedEntry]) -> list[bytes]:
        frames: list[bytes] = []
        v4 = [e for e in entries if e.family == AF_INET]
        if v4:
            arp = ArpSeedBuilder(link.device_mac, link.device_v4).frame
            aton = socket.inet_aton
            frames += [arp(mac_bytes(e.lladdr), aton(e.address)) for e in v4]
        v6 = [e for e in entries if e.family == AF_INET6]
        if v6:
            ns = NsSeedBuilder(link.device_mac, link.device_v6).frame
            pton, af6 = socket.inet_pton, socket.AF_INET6
            frames += [ns(mac_bytes(e.lladdr), pton(af6, e.address)) for e in v6]
        return frames

    def _send_all(self, sock: socket.socket, frames: list[bytes]) -> int:
        if self._pace:
            return self._send_paced(sock, frames, self._pace)
        retries = 0
        send = sock.send
        for frame in frames:
            try:
                send(frame)
            except OSError as exc:
                retries += self._resend(sock, frame, exc)
        return retries

    def _send_paced(self, sock: socket.socket, frames: list[bytes], rate: float) -> int:
        # Sleep between bursts of 64 frames: sleeping per frame would cost more than a frame.
        burst, retries, start = 64, 0, time.perf_counter()
        for first in range(0, len(frames), burst):
            due = start + first / rate
            if (lag := due - time.perf_counter()) > 0:
                time.sleep(lag)
            for frame in frames[first:first + burst]:
                try:
                    sock.send(frame)
                except OSError as exc:
                    retries += self._resend(sock, frame, exc)
        return retries

    @staticmethod
    def _resend(sock: socket.socket, frame: bytes, exc: OSError) -> int:
        """The queue was full: back off and resend the same frame. Returns the retry count."""
        if exc.errno not in (errno.ENOBUFS, errno.EAGAIN):
            raise SeedingError(f"sending a seeding frame failed: {exc}") from exc
        deadline, backoff, tries = time.monotonic() + _ENOBUFS_GIVE_UP, 0.0002, 0
        while True:
            time.sleep(backoff)
            tries += 1
            try:
                sock.send(frame)
                return tries
            except OSError as again:
                if again.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise SeedingError(f"sending a seeding frame failed: {again}") from again
                if time.monotonic() > deadline:
                    raise SeedingError(f"the test link refused frames for {_ENOBUFS_GIVE_UP} s "
                                       f"(ENOBUFS); is the link congested?") from again
                backoff = min(backoff * 2, _ENOBUFS_BACKOFF_MAX)

    def close(self) -> None:
        for sockets in self._sockets.values():
            for sock in sockets:
                sock.close()
        self._sockets.clear()

    def __enter__(self) -> Seeder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- verifying --------------------------------------------------------------------------------


def missing_seeds(table: Iterable[Neighbor] | Mapping[Key, Neighbor], ifindex: int,
                  seeds: Sequence[SeedEntry]) -> list[tuple[SeedEntry, str]]:
    """The one rule for "a seed landed": the table shows it on `ifindex`, with its seeded
    link-layer address, in a usable state (not failed, incomplete or unreachable). Returns the
    seeds that did not land, each with why. `table` is the agent's parsed entries (canonical
    addresses), or an index of them by key."""
    seen = table if isinstance(table, Mapping) else {e.key: e for e in table}
    missing = []
    for seed in seeds:  # seeds carry canonical addresses (the plan writes them so)
        entry = seen.get((seed.family, ifindex, seed.address))
        if entry is None:
            missing.append((seed, "absent"))
        elif entry.state in NOT_LANDED_STATES:
            missing.append((seed, f"state {entry.state}"))
        elif entry.lladdr != seed.lladdr:
            missing.append((seed, f"lladdr {entry.lladdr}, seeded {seed.lladdr}"))
    return missing


def verify_present(read_table: Callable[[], Iterable[Neighbor]], ifindex: int,
                   seeds: Sequence[SeedEntry], *, timeout: float = 5.0) -> VerifyResult:
    """Poll read_table until every seed landed on `ifindex` (missing_seeds); SeedingError
    naming the shortfall after `timeout`."""
    start = time.monotonic()
    polls, missing = 0, []

    def landed() -> bool:
        nonlocal polls, missing
        polls += 1
        missing = missing_seeds(read_table(), ifindex, seeds)
        return not missing

    if not poll_until(landed, timeout=timeout, delay=0.02, max_delay=0.5, backoff=2):
        first = ", ".join(f"{e.address} ({why})" for e, why in missing[:5])
        raise SeedingError(
            f"{len(missing)} of {len(seeds)} seeded entries missing on ifindex {ifindex} "
            f"after {time.monotonic() - start:.1f} s ({polls} polls); first: {first}")
    return VerifyResult(polls, time.monotonic() - start)
