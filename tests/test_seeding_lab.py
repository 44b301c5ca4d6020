"""Seeding and the responder against a real kernel: a network namespace plays the device.

The lab (tests/support/seedlab.py): the harness end of a veth pair stays in the test's own
namespace (where Seeder and Responder open their sockets); the device end lives in namespace
nckB-<token> with an IPv4 /24 and an IPv6 /64 (nodad). Every name carries the nckB prefix and
is removed in teardown.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from harness.contract.clauses import AF_INET, AF_INET6
from harness.errors import LinkNotAllowed, SeedingError, UsageError
from harness.traffic.responder import Responder
from harness.traffic.seeding import LinkTarget, SeedEntry, Seeder, address_plan, missing_seeds, verify_present
from tests.support.netns import run
from tests.support.seedlab import DEVICE_V4, DEVICE_V6, V6_NETWORK, SeedLab, neigh_gc_room, parsed, seed_lab

SEED_POOL_V4 = "198.19.0.0/16"

lab_needed = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (network namespaces, veth)")


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[SeedLab]:
    with seed_lab() as the_lab:
        yield the_lab


@pytest.fixture
def clean_lab(lab: SeedLab) -> SeedLab:
    lab.flush()
    assert lab.neighbors() == [], "the device table should start empty"
    return lab


def _by_key(rows: list[dict], ifindex: int) -> dict[tuple[int, str], dict]:
    return {(r["family"], ipaddress.ip_address(r["address"]).compressed): r
            for r in rows if r["ifindex"] == ifindex}


def _gone_or_failed(rows: list[dict], ifindex: int, entries: list[SeedEntry]) -> list[str]:
    """Entries that are still there in a usable state (should be none)."""
    table = _by_key(rows, ifindex)
    alive = []
    for e in entries:
        row = table.get((e.family, e.address))
        if row is not None and row["state"] not in ("failed", "incomplete"):
            alive.append(f"{e.address} {row['state']}")
    return alive


# --- seeding lands exactly the plan -----------------------------------------------------------


@lab_needed
@pytest.mark.lab
@pytest.mark.parametrize("count, workers", [(16, None), (4096, 2), (4096, 1)])
def test_seeding_lands_exactly_the_plan(clean_lab: SeedLab, count: int, workers: int) -> None:
    lab = clean_lab
    plan = address_plan(0, count, lab.link)
    assert len(plan) == 2 * count
    with neigh_gc_room(count), Seeder([lab.harness_if], workers=workers) as seeder:
        stats = seeder.send(lab.link, plan)
        assert stats.frames == 2 * count
        result = verify_present(lambda: parsed(lab.neighbors()), lab.device_ifindex, plan, timeout=5.0)
        assert result.polls >= 1
        rows = lab.neighbors()
    # Nothing missing, right interface and lladdr, and nothing the plan does not contain.
    assert missing_seeds(parsed(rows), lab.device_ifindex, plan) == []
    got = {(r["family"], r["address"], r["ifindex"], r["lladdr"]) for r in rows}
    want = {(e.family, e.address, lab.device_ifindex, e.lladdr) for e in plan}
    assert got == want, (f"missing {sorted(want - got)[:5]} ({len(want - got)}), "
                         f"extra {sorted(got - want)[:5]} ({len(got - want)})")
    assert all(r["state"] in ("stale", "delay", "probe", "reachable") for r in rows)


@lab_needed
@pytest.mark.lab
def test_paced_seeding_takes_its_time_and_lands(clean_lab: SeedLab) -> None:
    lab = clean_lab
    plan = address_plan(0, 500, lab.link)
    with Seeder([lab.harness_if], pace=10_000) as seeder:
        stats = seeder.send(lab.link, plan)
    assert stats.seconds >= 0.09, "1,000 frames at 10,000/s take at least 0.1 s"
    verify_present(lambda: parsed(lab.neighbors()), lab.device_ifindex, plan, timeout=3.0)


class _FlakySocket:
    """Refuses the first `refusals` sends with `error`, then records frames."""

    def __init__(self, refusals: int, error: int) -> None:
        self.refusals, self.error, self.sent = refusals, error, []

    def send(self, frame: bytes) -> int:
        if self.refusals:
            self.refusals -= 1
            raise OSError(self.error, os.strerror(self.error))
        self.sent.append(frame)
        return len(frame)


def test_a_full_queue_is_waited_out_and_nothing_is_lost() -> None:
    frames = [bytes([i]) * 60 for i in range(5)]
    sock = _FlakySocket(refusals=3, error=errno.ENOBUFS)
    retries = Seeder([])._send_all(sock, frames)
    assert retries == 3 and sock.sent == frames


def test_other_send_errors_are_seeding_errors() -> None:
    with pytest.raises(SeedingError, match="sending a seeding frame failed"):
        Seeder([])._send_all(_FlakySocket(refusals=1, error=errno.ENETDOWN), [b"x" * 60])


@lab_needed
@pytest.mark.lab
def test_verify_present_reports_what_did_not_land(clean_lab: SeedLab) -> None:
    lab = clean_lab
    plan = address_plan(1, 8, lab.link)
    with Seeder([lab.harness_if]) as seeder:
        seeder.send(lab.link, plan[:6])  # ten of the sixteen entries are never sent
    started = time.monotonic()
    with pytest.raises(SeedingError) as excinfo:
        verify_present(lambda: parsed(lab.neighbors()), lab.device_ifindex, plan, timeout=0.5)
    assert time.monotonic() - started < 1.5, "verification must give up at its timeout"
    message = str(excinfo.value)
    assert "10 of 16" in message and f"{plan[6].address} (absent)" in message


# --- the responder ------------------------------------------------------------------------------


@lab_needed
@pytest.mark.lab
def test_responder_keeps_seeded_entries_alive(clean_lab: SeedLab) -> None:
    """Served and unserved seeds side by side for 30 s: served IPv6 seeds (probed by the
    device about 5 s after seeding) survive, unserved ones go FAILED. A pinged IPv4 seed is
    probed by unicast ARP the same way."""
    lab = clean_lab
    plan = address_plan(2, 16, lab.link)
    v4 = [e for e in plan if e.family == AF_INET]
    v6 = [e for e in plan if e.family == AF_INET6]
    served, unserved = v4[:8] + v6[:8], v4[8:] + v6[8:]
    pinged_served, pinged_unserved = v4[0], v4[8]
    # An on-link route to the seed pool, so the device talks to IPv4 seeds directly.
    run("ip", "-n", lab.netns, "route", "replace", SEED_POOL_V4, "dev", lab.device_if)
    try:
        with Responder([lab.harness_if]) as responder, Seeder([lab.harness_if]) as seeder:
            responder.serve(lab.link, served)
            seeder.send(lab.link, plan)
            verify_present(lambda: parsed(lab.neighbors()), lab.device_ifindex, plan, timeout=3.0)
            # Using a STALE entry moves it to DELAY and then to unicast probes.
            for entry in (pinged_served, pinged_unserved):
                lab.in_netns("ping", "-c1", "-W1", entry.address, timeout=5)
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
            rows = lab.neighbors()
            stats = responder.stats
    finally:
        run("ip", "-n", lab.netns, "route", "del", SEED_POOL_V4, check=False)
    served_v6 = [e for e in served if e.family == AF_INET6]
    unserved_v6 = [e for e in unserved if e.family == AF_INET6]
    assert missing_seeds(parsed(rows), lab.device_ifindex, served_v6 + [pinged_served]) == []
    assert _gone_or_failed(rows, lab.device_ifindex, unserved_v6 + [pinged_unserved]) == []
    # IPv4 seeds nobody used are never probed: still there, served or not.
    idle_v4 = [e for e in v4 if e not in (pinged_served, pinged_unserved)]
    assert missing_seeds(parsed(rows), lab.device_ifindex, idle_v4) == []
    assert stats.answered_ns >= len(served_v6)
    assert stats.answered_arp >= 1
    assert stats.dropped == 0


@lab_needed
@pytest.mark.lab
def test_responder_answers_broadcast_arp_and_multicast_ns(clean_lab: SeedLab) -> None:
    """Resolution from scratch (no entry yet): broadcast ARP who-has and NS to the
    solicited-node group get answered with the seed MAC; other targets are ignored."""
    lab = clean_lab
    plan = address_plan(3, 2, lab.link)
    run("ip", "-n", lab.netns, "route", "replace", SEED_POOL_V4, "dev", lab.device_if)
    try:
        with Responder([lab.harness_if]) as responder:
            responder.serve(lab.link, plan)
            with Seeder([lab.harness_if]) as seeder:
                # Our own ARP requests and NS leave through the responder's link: it must not
                # hear them (outgoing), and the device's replies must not pass the filter.
                seeder.send(lab.link, address_plan(1, 4, lab.link))
            time.sleep(0.3)
            quiet = responder.stats
            lab.flush()
            pings = [subprocess.Popen(["ip", "netns", "exec", lab.netns, "ping", "-c1", "-W1",
                                       e.address], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for e in plan]
            pings.append(subprocess.Popen(["ip", "netns", "exec", lab.netns, "ping", "-c1",
                                           "-W1", "2001:db8:1::dead"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for p in pings:
                p.wait(timeout=10)
            rows = lab.neighbors()
            stats = responder.stats
    finally:
        run("ip", "-n", lab.netns, "route", "del", SEED_POOL_V4, check=False)
    assert quiet.answered == 0 and quiet.ignored == 0, quiet
    assert missing_seeds(parsed(rows), lab.device_ifindex, plan) == []
    states = {r["address"]: r["state"] for r in rows}
    assert all(states[e.address] == "reachable" for e in plan), states
    assert stats.answered_arp >= 2 and stats.answered_ns >= 2, stats
    assert stats.ignored >= 1, "the NS for a non-seeded target should reach the responder"
    assert _gone_or_failed(rows, lab.device_ifindex,
                           [SeedEntry(AF_INET6, "2001:db8:1::dead", "00:00:00:00:00:00")]) == []


@lab_needed
@pytest.mark.lab
def test_a_responder_that_died_says_so_at_stop(clean_lab: SeedLab) -> None:
    lab = clean_lab
    plan = address_plan(0, 1, lab.link)
    responder = Responder([lab.harness_if])
    responder.serve(lab.link, plan)
    responder._reply_for = lambda state, frame: 1 / 0  # a bug in the answering code
    responder.start()
    lab.in_netns("ping", "-6", "-c1", "-W1", plan[1].address, timeout=5)
    with pytest.raises(SeedingError, match="responder thread failed: ZeroDivisionError"):
        responder.stop()


@lab_needed
@pytest.mark.lab
def test_responder_stops_promptly_and_closes_its_sockets(lab: SeedLab) -> None:
    open_fds = len(os.listdir("/proc/self/fd"))
    responder = Responder([lab.harness_if])
    responder.serve(lab.link, address_plan(0, 4, lab.link))
    responder.start()
    assert len(os.listdir("/proc/self/fd")) == open_fds + 2  # the eventfd and one socket
    started = time.monotonic()
    responder.stop(timeout=2.0)
    assert time.monotonic() - started < 0.5, "stop() must not wait for the poll timeout"
    assert len(os.listdir("/proc/self/fd")) == open_fds
    with pytest.raises(SeedingError, match="stopped"):
        responder.serve(lab.link, [])


# --- only inventory test links carry traffic ----------------------------------------------------


def _link_on(ifname: str, lab_link: LinkTarget | None = None) -> LinkTarget:
    base = lab_link or LinkTarget("x", "02:00:00:00:00:01", DEVICE_V4, DEVICE_V6, V6_NETWORK)
    return LinkTarget(ifname, base.device_mac, base.device_v4, base.device_v6, base.v6_network)


def test_loopback_is_refused_by_seeder_and_responder() -> None:
    link = _link_on("lo")
    plan = address_plan(0, 1, link)
    with Seeder(["nckBhNOPE"]) as seeder:
        with pytest.raises(LinkNotAllowed, match=r"'lo'.*only inventory test links"):
            seeder.send(link, plan)
    responder = Responder(["nckBhNOPE"])
    try:
        with pytest.raises(LinkNotAllowed, match=r"'lo'"):
            responder.serve(link, plan)
    finally:
        responder.stop()


@lab_needed
@pytest.mark.lab
def test_real_link_not_on_the_allowlist_is_refused(lab: SeedLab) -> None:
    with seed_lab(tag="x") as other:
        link = other.link
        plan = address_plan(0, 4, link)
        with Seeder([lab.harness_if]) as seeder:
            with pytest.raises(LinkNotAllowed, match=other.harness_if):
                seeder.send(link, plan)
        responder = Responder([lab.harness_if])
        try:
            with pytest.raises(LinkNotAllowed, match=other.harness_if):
                responder.serve(link, plan)
        finally:
            responder.stop()
        assert other.neighbors() == [], "a refused link must carry no frame"


@lab_needed
@pytest.mark.lab
def test_missing_down_and_carrierless_links_are_refused(lab: SeedLab) -> None:
    with seed_lab(tag="y") as other:
        link = other.link
        plan = address_plan(0, 1, link)
        allowed = [other.harness_if, "nckBhGONE"]
        with Seeder(allowed) as seeder:
            with pytest.raises(UsageError, match="does not exist"):
                seeder.send(_link_on("nckBhGONE", link), plan)
            run("ip", "-n", other.netns, "link", "set", other.device_if, "down")
            with pytest.raises(UsageError, match="no carrier"):
                seeder.send(link, plan)
            run("ip", "link", "set", other.harness_if, "down")
            with pytest.raises(UsageError, match="is down"):
                seeder.send(link, plan)
            responder = Responder(allowed)
            try:
                with pytest.raises(UsageError, match="is down"):
                    responder.serve(link, plan)
            finally:
                responder.stop()
