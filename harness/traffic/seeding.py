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
from harness.inventory import Device, TestLink
from harness.traffic.packets import ArpSeedBuilder, NsSeedBuilder, mac_bytes
from harness.waits import poll_until

# The default IPv4 pool is off every link's subnet and shared by a device's links: each link
# slot owns a fixed block of it, so plans for different slots never overlap whatever their
# counts. 16,384 is the largest per-link table the harness plans; a /16 therefore holds 4
# slots. A link with its own pool (`seed_v4`/`seed_v6`/`seed_from` in the inventory) uses all
# of it.
DEFAULT_V4_POOL = "198.19.0.0/16"
SLOT_BLOCK_V4 = 16384
# IPv6 seeds: interface identifier 5eSS:0:IIII:IIII (SS = slot, I = index + 1, skipping the
# link's own addresses) inside the link's /64 (or the first /64 of a seed_v6 network of /64
# or wider), a pattern no SLAAC/EUI-64 or hand-picked ::1-style address uses. A seed_v6
# network longer than /64 is used address by address instead.
_V6_IID_MARK = 0x5E00
_IID_LAST = 2 ** 32 - 1
# Fallback when the inventory gives no /64 for the link: one documentation /64 per slot
# (2001:db8:5e00:SS::/64). Off-link NS sources do create entries on Linux 6.x (measured).
_V6_FALLBACK = ipaddress.IPv6Network("2001:db8:5e00::/48")
_MAX_SLOT = 0xFF           # one MAC byte
_MAX_COUNT = 0xFFFFFF      # three MAC bytes
# Static (permanent) entries the cases keep on every test link, one per family (static_plan).
# A link with its own pool gets the pool's last free address (never a seed, and the same
# whatever --entries is). Otherwise the first of these documentation addresses, plus the link
# slot, that is neither one of the link's addresses nor inside its subnet (a static entry must
# never shadow a real neighbor); outside the default pools either way.
STATIC_V4 = ("198.51.100.200", "203.0.113.200", "192.0.2.200")
STATIC_V6 = ("2001:db8:ffff::200", "3fff:ffff:ffff::200")


@dataclass(frozen=True)
class SeedEntry:
    """One neighbor entry the harness plants on the device."""
    family: int    # 2 (IPv4) or 23 (IPv6), Windows numbering
    address: str   # canonical text form
    lladdr: str    # lowercase aa:bb:cc:dd:ee:ff


@dataclass(frozen=True)
class LinkTarget:
    """One test link as the harness sees it (`link_target` builds it from the inventory)."""
    harness_if: str          # harness-side interface name (must be allowlisted)
    device_mac: str          # the device interface's MAC
    device_v4: str | None    # the device's IPv4 address on the link (no prefix length)
    device_v6: str | None    # the device's IPv6 address on the link
    v6_network: str | None   # the link's IPv6 network, e.g. "2001:db8:1::/64"
    v4_network: str | None = None   # the link's IPv4 subnet
    harness_v4: str | None = None   # the harness end's addresses (never seeded), if any
    harness_v6: str | None = None
    seed_v4: tuple[str, ...] = ()   # the link's own IPv4 seed pool; () = the default pool
    seed_v6: tuple[str, ...] = ()   # the link's own IPv6 seed pool; () = the link's /64
    label: str = ""                 # how messages name the link (default: "link <harness_if>")

    @property
    def name(self) -> str:
        return self.label or f"link {self.harness_if}"


def link_target(link: TestLink, device_mac: str, *, ipv4: bool = True, ipv6: bool = True,
                device: str | None = None) -> LinkTarget:
    """The LinkTarget of an inventory test link (ipv4/ipv6 False: plan no seeds of that family,
    e.g. the device has no such stack; `device` names the device in messages). The one place
    `seed_from = "subnet"` is read."""
    v4 = link.device_v4 if ipv4 else None
    v6 = link.device_v6 if ipv6 else None
    subnet = link.seed_from == "subnet"
    return LinkTarget(
        harness_if=link.harness_if, device_mac=device_mac.lower(),
        device_v4=str(v4.ip) if v4 else None, device_v6=str(v6.ip) if v6 else None,
        v6_network=str(v6.network) if v6 else None, v4_network=str(v4.network) if v4 else None,
        harness_v4=str(link.harness_v4.ip) if v4 and link.harness_v4 else None,
        harness_v6=str(link.harness_v6.ip) if v6 and link.harness_v6 else None,
        seed_v4=(str(v4.network),) if v4 and subnet else tuple(map(str, link.seed_v4)),
        seed_v6=(str(v6.network),) if v6 and subnet else tuple(map(str, link.seed_v6)),
        label=f"{f'device {device!r} ' if device else ''}link {link.device_if} ({link.harness_if})",
    )


def check_plans(devices: Iterable[Device], count: int) -> None:
    """Before anything connects: UsageError naming the device, the link, the pool and the
    largest --entries it holds when a test link cannot hold `count` seeds per family."""
    for device in devices:
        for slot, link in enumerate(device.links):
            check_plan(slot, count, link_target(link, "00:00:00:00:00:00", device=device.name))


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


@dataclass(frozen=True)
class Landing:
    """How a wait for seeds to land ended: table reads, seconds, seeds still missing (why)."""
    polls: int
    seconds: float
    missing: list[tuple[SeedEntry, str]]


# --- the address plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    """Where one family's seeds of one link come from: inclusive ranges of addresses (as
    integers) taken in order, minus `reserved` (the link's own addresses, the subnet's
    network and broadcast addresses) and minus `static` (the link's static entry)."""
    family: int
    text: str                             # as messages and doctor show it
    where: str                            # "off-subnet", "in-subnet", "partly in-subnet", "link-local"
    ranges: tuple[tuple[int, int], ...]
    reserved: frozenset[int]
    static: int

    @property
    def capacity(self) -> int:
        """The largest number of seeds (per family, so the largest --entries) it holds."""
        taken = self.reserved | {self.static}
        size = sum(last - first + 1 for first, last in self.ranges)
        return max(0, size - sum(1 for n in taken if any(a <= n <= b for a, b in self.ranges)))

    def addresses(self, count: int) -> list[int]:
        """The first `count` seed addresses, ascending within each range."""
        skip = self.reserved | {self.static}
        out: list[int] = []
        for first, last in self.ranges:
            wanted = count - len(out)
            # Enough candidates for what is left plus every skip that may fall inside.
            stop = min(last, first + wanted + len(skip) - 1)
            out += [n for n in range(first, stop + 1) if n not in skip][:wanted]
            if len(out) == count:
                break
        return out

    def describe(self) -> str:
        return (f"{'IPv4' if self.family == AF_INET else 'IPv6'} {self.text}: {self.where}, "
                f"holds {self.capacity:,}, static {self.static_text}")

    @property
    def static_text(self) -> str:
        return _text(self.family, self.static)


def _text(family: int, n: int) -> str:
    # inet_ntop writes RFC 5952 canonical text, like ipaddress, at a tenth of the cost.
    if family == AF_INET:
        return socket.inet_ntoa(n.to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big"))


def _check_plan_args(slot: int, count: int) -> None:
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= _MAX_SLOT:
        raise UsageError(f"seed slot must be an integer 0..{_MAX_SLOT}, got {slot!r}")
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= _MAX_COUNT:
        raise UsageError(f"seed count must be an integer 0..{_MAX_COUNT}, got {count!r}")


def address_plan(slot: int, count: int, link: LinkTarget, *,
                 v4_pool: str = DEFAULT_V4_POOL) -> list[SeedEntry]:
    """`count` IPv4 and `count` IPv6 seed entries for link slot `slot`; deterministic.

    A family is planned only when the link has a device address for it (ARP and NS seeding
    ask for that address; a device without an IPv6 stack gets an IPv4-only plan). Addresses
    come from the family's pool (`seed_pools`): never the link's own, never its static entry;
    MACs are 02:5e:SS:II:II:II (locally administered unicast, SS = slot, I = index), shared by
    the IPv4 and IPv6 entry of one index like a dual-stack host. UsageError naming the link,
    the pool and the largest count it holds when it cannot hold the plan. `v4_pool` replaces
    the default IPv4 pool (links without a seed_v4 of their own).
    """
    _check_plan_args(slot, count)
    return list(_plan(slot, count, link, v4_pool))


def seed_pools(slot: int, link: LinkTarget, *,
               v4_pool: str = DEFAULT_V4_POOL) -> dict[int, Pool]:
    """The pool of each family the link plans seeds for (AF_INET, AF_INET6 -> Pool)."""
    _check_plan_args(slot, 0)
    pools = {}
    if link.device_v4:
        pools[AF_INET] = _v4_pool(slot, link, v4_pool)
    if link.device_v6:
        pools[AF_INET6] = _v6_pool(slot, link)
    return pools


def static_plan(slot: int, link: LinkTarget) -> list[SeedEntry]:
    """The static entries of link slot `slot`, one per family the link seeds (see STATIC_V4):
    addresses no seed takes; MACs 02:5e:ff:00:SS:0F (F: 1 for IPv4, 2 for IPv6), never a
    seed's (a seed's slot byte would be ff only on a device's 256th link)."""
    return [SeedEntry(family, pool.static_text, f"02:5e:ff:00:{slot:02x}:{1 if family == AF_INET else 2:02x}")
            for family, pool in seed_pools(slot, link).items()]


def check_plan(slot: int, count: int, link: LinkTarget, *,
               v4_pool: str = DEFAULT_V4_POOL) -> None:
    """UsageError naming the link, the pool and the largest count it holds, when a family's
    pool cannot hold `count` seeds (cheap: no addresses are made)."""
    _check_plan_args(slot, count)
    for pool in seed_pools(slot, link, v4_pool=v4_pool).values():
        _check_room(link, pool, count)


def _check_room(link: LinkTarget, pool: Pool, count: int) -> None:
    if count > pool.capacity:
        name, key = ("IPv4", "seed_v4") if pool.family == AF_INET else ("IPv6", "seed_v6")
        raise UsageError(
            f"{link.name}: the {name} seed pool {pool.text} has room for "
            f"{pool.capacity} entries, {count} asked (the link's own addresses and its static "
            f"entry {pool.static_text} are never seeds): the largest --entries this link holds "
            f"is {pool.capacity}; give it a wider {key} for more")


@functools.lru_cache(maxsize=32)
def _plan(slot: int, count: int, link: LinkTarget, v4_pool: str) -> tuple[SeedEntry, ...]:
    macs_text = [(bytes((0x02, 0x5E, slot)) + i.to_bytes(3, "big")).hex(":") for i in range(count)]
    plan: list[SeedEntry] = []
    for family, pool in seed_pools(slot, link, v4_pool=v4_pool).items():
        _check_room(link, pool, count)
        numbers = pool.addresses(count)
        if family == AF_INET:
            ntoa = socket.inet_ntoa
            texts = [ntoa(n.to_bytes(4, "big")) for n in numbers]
        else:
            ntop, af6 = socket.inet_ntop, socket.AF_INET6
            texts = [ntop(af6, n.to_bytes(16, "big")) for n in numbers]
        plan += [SeedEntry(family, a, m) for a, m in zip(texts, macs_text)]
    return tuple(plan)


def _address_int(kind: type, text: str, what: str) -> int:
    try:
        return int(kind(text))
    except ValueError:
        raise UsageError(f"link {what} {text!r} is not an {kind.__name__[:4]} address") from None


def _networks(kind: type, texts: tuple[str, ...], link: LinkTarget, key: str) -> list:
    try:
        return [kind(t) for t in texts]
    except ValueError as exc:
        raise UsageError(f"{link.name}: {key} {texts!r} is not a list of "
                         f"{kind.__name__[:4]} networks: {exc}") from None


def _where(networks: list, subnet) -> str:
    if all(n.is_link_local for n in networks):
        return "link-local"
    if subnet is None or not any(n.overlaps(subnet) for n in networks):
        return "off-subnet"
    return "in-subnet" if all(n.subnet_of(subnet) for n in networks) else "partly in-subnet"


@functools.lru_cache(maxsize=64)
def _v4_pool(slot: int, link: LinkTarget, v4_pool: str) -> Pool:
    reserved = {_address_int(ipaddress.IPv4Address, link.device_v4, "device_v4")}
    if link.harness_v4:
        reserved.add(_address_int(ipaddress.IPv4Address, link.harness_v4, "harness_v4"))
    subnet = ipaddress.IPv4Network(link.v4_network, strict=False) if link.v4_network else None
    if subnet is not None and subnet.prefixlen <= 30:
        reserved |= {int(subnet.network_address), int(subnet.broadcast_address)}
    if link.seed_v4:
        networks = _networks(ipaddress.IPv4Network, link.seed_v4, link, "seed_v4")
        ranges = tuple((int(n.network_address), int(n.broadcast_address)) for n in networks)
        static = _last_free(ranges, reserved, link, "seed_v4")
        return Pool(AF_INET, ", ".join(map(str, networks)), _where(networks, subnet), ranges,
                    frozenset(reserved), static)
    try:
        pool = ipaddress.IPv4Network(v4_pool)
    except ValueError as exc:
        raise UsageError(f"v4_pool {v4_pool!r} is not an IPv4 network: {exc}") from None
    block = min(SLOT_BLOCK_V4, pool.num_addresses)
    slots = pool.num_addresses // block
    if slot >= slots:
        raise UsageError(f"{link.name}: the default IPv4 seed pool {pool} holds {slots} "
                         f"link slot(s) of {block} addresses and this link is slot {slot}; give "
                         f"it a seed_v4 of its own (or seed_from = \"subnet\")")
    first = int(pool.network_address) + slot * block
    text = f"{ipaddress.IPv4Network((first, 32 - (block.bit_length() - 1)))} (block {slot} of {pool})"
    static = _documentation_static(STATIC_V4, ipaddress.IPv4Address, reserved, subnet, link, slot)
    return Pool(AF_INET, text, _where([pool], subnet), ((first, first + block - 1),),
                frozenset(reserved), static)


@functools.lru_cache(maxsize=64)
def _v6_pool(slot: int, link: LinkTarget) -> Pool:
    reserved = {_address_int(ipaddress.IPv6Address, link.device_v6, "device_v6")}
    if link.harness_v6:
        reserved.add(_address_int(ipaddress.IPv6Address, link.harness_v6, "harness_v6"))
    subnet = None
    if link.v6_network:
        try:
            subnet = ipaddress.IPv6Network(link.v6_network, strict=False)
        except ValueError as exc:
            raise UsageError(f"v6_network {link.v6_network!r} is not an IPv6 network: {exc}") \
                from None
        reserved.add(int(subnet.network_address))  # the Subnet-Router anycast address
    iid = (_V6_IID_MARK | slot) << 48
    if link.seed_v6:
        networks = _networks(ipaddress.IPv6Network, link.seed_v6, link, "seed_v6")
        ranges = tuple(
            (int(n.network_address) | iid | 1, int(n.network_address) | iid | _IID_LAST)
            if n.prefixlen <= 64 else (int(n.network_address) + 1, int(n.broadcast_address))
            for n in networks)
        static = _last_free(ranges, reserved, link, "seed_v6")
        text = ", ".join(f"{n} (interface IDs 5e{slot:02x}:0:*)" if n.prefixlen <= 64 else str(n)
                         for n in networks)
        return Pool(AF_INET6, text, _where(networks, subnet), ranges, frozenset(reserved), static)
    if subnet is not None:
        if subnet.prefixlen > 64:
            raise UsageError(f"{link.name}: its IPv6 network {subnet} is longer than "
                             f"/64, and the default seeds need a /64; give the link a seed_v6 "
                             f"(seed_from = \"subnet\" seeds inside {subnet})")
        prefix = int(subnet.network_address) >> 64 << 64
    else:
        prefix = int(_V6_FALLBACK.network_address) | slot << 64
    net64 = ipaddress.IPv6Network((prefix, 64))
    static = _documentation_static(STATIC_V6, ipaddress.IPv6Address, reserved, subnet, link, slot)
    return Pool(AF_INET6, f"{net64} (interface IDs 5e{slot:02x}:0:*)", _where([net64], subnet),
                ((prefix | iid | 1, prefix | iid | _IID_LAST),), frozenset(reserved), static)


def _last_free(ranges: tuple[tuple[int, int], ...], reserved: set[int], link: LinkTarget,
               key: str) -> int:
    for first, last in reversed(ranges):
        for n in range(last, max(first, last - len(reserved)) - 1, -1):
            if n not in reserved:
                return n
    raise UsageError(f"{link.name}: {key} holds only the link's own addresses; give "
                     f"it free addresses for the seeds and the static entry")


def _documentation_static(candidates: tuple[str, ...], kind: type, reserved: set[int], subnet,
                          link: LinkTarget, slot: int) -> int:
    for text in candidates:
        address = kind(text) + slot
        if int(address) not in reserved and (subnet is None or address not in subnet):
            return int(address)
    key = "seed_v4" if kind is ipaddress.IPv4Address else "seed_v6"
    raise UsageError(f"{link.name}: its subnet {subnet} holds every default static "
                     f"address ({', '.join(candidates)}); give the link a {key}")


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


def seed_frames(link: LinkTarget, entries: Sequence[SeedEntry]) -> list[bytes]:
    """The seeding frame of each entry on `link`: its IPv4 entries' ARP requests, then its IPv6
    entries' Neighbor Solicitations (each family in the order given)."""
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

    @property
    def workers(self) -> int:
        return self._workers

    def send(self, link: LinkTarget, entries: Sequence[SeedEntry]) -> SendStats:
        """Send one seeding frame per entry; seconds covers frame building and sending."""
        check_test_link(link.harness_if, self._allowed)
        self._check_entries(link, entries)
        shards = self._workers if len(entries) >= _PARALLEL_MIN else 1
        sockets = self._link_sockets(link.harness_if, shards)
        start = time.perf_counter()
        if shards == 1:
            retries = self._send_all(sockets[0], seed_frames(link, entries))
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
                frames = seed_frames(link, entries[index::shards])
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
            raise UsageError(f"{link.name}: IPv4 seeds need the device's IPv4 "
                             f"address on the link")
        if AF_INET6 in families and not link.device_v6:
            raise UsageError(f"{link.name}: IPv6 seeds need the device's IPv6 "
                             f"address on the link")

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


def wait_landed(read_table: Callable[[], Iterable[Neighbor]], ifindex: int,
                seeds: Sequence[SeedEntry], *, timeout: float = 5.0, delay: float = 0.02,
                max_delay: float = 0.5) -> Landing:
    """Poll read_table (delay doubling up to max_delay) until every seed landed on `ifindex`
    (missing_seeds) or `timeout` passed; what was still missing at the end, never an error."""
    start = time.monotonic()
    polls, missing = 0, []

    def landed() -> bool:
        nonlocal polls, missing
        polls += 1
        missing = missing_seeds(read_table(), ifindex, seeds)
        return not missing

    poll_until(landed, timeout=timeout, delay=delay, max_delay=max_delay, backoff=2)
    return Landing(polls, time.monotonic() - start, missing)


def verify_present(read_table: Callable[[], Iterable[Neighbor]], ifindex: int,
                   seeds: Sequence[SeedEntry], *, timeout: float = 5.0) -> VerifyResult:
    """Poll read_table until every seed landed on `ifindex` (missing_seeds); SeedingError
    naming the shortfall after `timeout`."""
    landing = wait_landed(read_table, ifindex, seeds, timeout=timeout)
    if landing.missing:
        first = ", ".join(f"{e.address} ({why})" for e, why in landing.missing[:5])
        raise SeedingError(
            f"{len(landing.missing)} of {len(seeds)} seeded entries missing on ifindex {ifindex} "
            f"after {landing.seconds:.1f} s ({landing.polls} polls); first: {first}")
    return VerifyResult(landing.polls, landing.seconds)
