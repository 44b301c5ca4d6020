"""One veth into a namespace that plays the device, for seeding and the responder against a
real kernel (tests/test_seeding_lab.py and the tests/bench_seeding.py script).

The harness end of the veth stays in the caller's namespace (where Seeder and Responder open
their sockets); the device end lives in namespace nckB-<token> with an IPv4 /24 and an IPv6
/64 (nodad). Every name carries the nckB prefix and is removed at the end.
"""

from __future__ import annotations

import contextlib
import tempfile
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.contract.clauses import AF_INET, AF_INET6
from harness.contract.protocol import parse_neighbor
from harness.lab import sysctls
from harness.traffic.seeding import LinkTarget
from tests.support.netns import carrier, ip_json, links_by_name, remove_netns, run
from tests.support.waits import wait_for

PREFIX = "nckB"
DEVICE_V4, DEVICE_V4_PREFIXLEN = "192.0.2.1", 24
DEVICE_V6, V6_NETWORK = "2001:db8:1::1", "2001:db8:1::/64"
CMD_TIMEOUT = 15


@dataclass
class SeedLab:
    netns: str
    harness_if: str
    device_if: str
    device_ifindex: int
    link: LinkTarget

    def neighbors(self) -> list[dict]:
        """The device's table in protocol form (what an agent's `table 0` returns)."""
        ifindex = links_by_name(self.netns)
        rows = []
        for row in ip_json(self.netns, "neigh", "show"):
            address = row["dst"]
            rows.append({
                "address": address,
                "family": AF_INET6 if ":" in address else AF_INET,
                "ifindex": ifindex.get(row.get("dev", self.device_if)),
                "lladdr": row.get("lladdr"),
                "state": (row.get("state") or ["none"])[0].lower(),
            })
        return rows

    def flush(self) -> None:
        run("ip", "-n", self.netns, "neigh", "flush", "all", timeout=CMD_TIMEOUT)

    def in_netns(self, *args: str, timeout: float = CMD_TIMEOUT):
        return run("ip", "netns", "exec", self.netns, *args, check=False, timeout=timeout)


def parsed(rows: list[dict]) -> list:
    """The rows as an agent's table read delivers them to the harness."""
    return [parse_neighbor(r) for r in rows if r["state"] != "none"]


def _token() -> str:
    # Unique among concurrent test processes (pytest-xdist workers, other helpers' runs).
    return f"{os.getpid() & 0xFFFFF:05x}"


@contextlib.contextmanager
def seed_lab(tag: str = "") -> Iterator[SeedLab]:
    token = _token() + tag
    netns, harness_if, device_if = f"{PREFIX}-{token}", f"{PREFIX}h{token}", f"{PREFIX}d{token}"
    assert len(harness_if) <= 15 and len(device_if) <= 15
    remove_netns(netns, harness_if)  # leftovers of a crashed run with the same token
    try:
        run("ip", "netns", "add", netns)
        run("ip", "link", "add", harness_if, "type", "veth", "peer", "name", device_if,
            "netns", netns)
        # The harness end carries only frames the harness builds: no IPv6 of its own, so the
        # host stack sends nothing (RS, MLD, DAD) that the device could learn from.
        run("sysctl", "-qw", f"net.ipv6.conf.{harness_if}.disable_ipv6=1")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        run("ip", "netns", "exec", netns, "sysctl", "-qw",
            f"net.ipv6.conf.{device_if}.disable_ipv6=0")
        run("ip", "-n", netns, "addr", "add", f"{DEVICE_V4}/{DEVICE_V4_PREFIXLEN}",
            "dev", device_if)
        run("ip", "-n", netns, "addr", "add", f"{DEVICE_V6}/64", "dev", device_if, "nodad")
        run("ip", "-n", netns, "link", "set", device_if, "up")
        run("ip", "link", "set", harness_if, "up")
        info = ip_json(netns, "link", "show", device_if)[0]
        link = LinkTarget(harness_if, info["address"], DEVICE_V4, DEVICE_V6, V6_NETWORK)
        lab = SeedLab(netns, harness_if, device_if, info["ifindex"], link)
        wait_for(lambda: carrier(harness_if), 5.0, f"{harness_if} to come up", step=0.02)
        yield lab
    finally:
        remove_netns(netns, harness_if)


@contextlib.contextmanager
def host_sysctls_at_least(minimums: dict[str, int]) -> Iterator[None]:
    """Raise host-global sysctls (paths under /proc/sys) that are below `minimums`, in the
    order given, while the block runs. Through the host's registry (harness.lab.sysctls), so a
    lab that is up meanwhile is never left with the values restored under it."""
    names = {str(Path(path).relative_to(sysctls.SYSCTL_ROOT)).replace("/", "."): value
             for path, value in minimums.items()}
    user = Path(tempfile.mkdtemp(prefix="nckB-sysctls-"))
    try:
        sysctls.raise_for(user, names)
        yield
    finally:
        sysctls.release(user)
        user.rmdir()


def neigh_gc_room(entries_per_family: int) -> contextlib.AbstractContextManager[None]:
    """Room for a big table. The neighbor tables are host-global (every namespace's entries
    count against one gc_thresh set): past gc_thresh3 nothing more is created, past gc_thresh2
    entries older than 5 s are evicted, past gc_thresh1 the periodic gc removes STALE ones.
    thresh3 goes first so the kernel never sees thresh2 > thresh3 on the way up."""
    n = entries_per_family
    return host_sysctls_at_least({
        f"/proc/sys/net/ipv{v}/neigh/default/gc_thresh{i}": factor * n
        for v in (4, 6) for i, factor in ((3, 8), (2, 4), (1, 2))})


def backlog_room(frames: int) -> contextlib.AbstractContextManager[None]:
    """A veth hands frames to the per-CPU backlog (net.core.netdev_max_backlog, default
    1000). Frames sent from a process are processed synchronously, but the device's probe
    timers fire together in one softirq (about 5 s after seeding, timer-wheel granularity
    hundreds of ms), so a big table's probe burst overflows the backlog and those probes never
    reach the responder (measured: 8,376 of 16,384 IPv6 seeds FAILED at the default)."""
    return host_sysctls_at_least({"/proc/sys/net/core/netdev_max_backlog": 2 * frames})
