"""Each mutant agent in tests/mutants shows its one bug against a directly filled table, and
passes every other verb through to the real shim unchanged.

The conformance suite has to catch these bugs on its own; this file only proves that each
mutant really carries its bug (so a suite that reports it "pass" is wrong, not the mutant).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from harness.waits import poll_until
from tests.support import REPO
from tests.support.netns import run
from tests.support.shimlab import (ACCESS_DENIED, AF_INET, AF_INET6, AF_UNSPEC, INVALID_PARAMETER, NOBODY,
                                   NOT_FOUND, NOT_SUPPORTED, SUCCESS, UNSUCCESSFUL, Seed, assert_flush_effect,
                                   assert_unchanged, changes, env_with, flush_removes, in_scope, kernel_table,
                                   shim, shim_run, standard_seeds)

pytestmark = pytest.mark.lab

MUTANTS_DIR = REPO / "tests" / "mutants"
MUTANTS = ("ignore_ifindex", "inet_flushes_inet6", "unspec_only_inet", "accepts_family_10",
           "invalid_family_success", "flush_reports_error", "leaves_one_entry", "collateral_delete",
           "nostack_success", "partial_flush_error",
           # issue 12: durable effects, collateral on every entry, an unreadable family, scale,
           # parameter combinations, one-stack devices
           "readds_later", "error_then_flush", "static_removed", "static_relabelled", "static_incomplete",
           "seeded_failed", "protected_removed", "unreadable_inet6", "stops_after_300",
           "invalid_family_with_index", "access_swallowed", "unspec_one_stack_refused",
           "unspec_one_stack_flushes")
TABLE_MUTANTS = {"unreadable_inet6"}  # their bug is in `table` too
SLOW = "1.5"  # NCK_MUTANT_DELAY for the background mutants here: the window the tests look in


def agent(name: str) -> Path:
    return MUTANTS_DIR / f"{name}.sh"


def flush(lab, ns: str, name: str, family: int, ifindex: int):
    """(reply, before, after) of one flush through the mutant."""
    before = kernel_table(ns)
    reply = shim(ns, "flush", family, ifindex, agent=agent(name))
    return reply, before, kernel_table(ns)


def test_every_mutant_is_tested():
    assert sorted(p.stem for p in MUTANTS_DIR.glob("*.sh") if p.name != "lib.sh") == sorted(MUTANTS)


def test_ignore_ifindex_flushes_other_interfaces(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "ignore_ifindex", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    assert gone == flush_removes(before, AF_INET, 0)
    assert gone > flush_removes(before, AF_INET, eth1), "eth2's IPv4 entries should be gone too"
    # and a missing index is not refused
    missing = seeded.missing_ifindex(ns)
    assert shim(ns, "flush", AF_INET, missing, agent=agent("ignore_ifindex"))["status"] == SUCCESS
    assert shim(ns, "flush", AF_INET, missing)["status"] == NOT_FOUND


def test_inet_flushes_inet6(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "inet_flushes_inet6", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    assert gone == flush_removes(before, AF_UNSPEC, eth1)
    assert any(k[0] == AF_INET6 for k in gone)


def test_unspec_only_inet(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "unspec_only_inet", AF_UNSPEC, eth1)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    assert gone == flush_removes(before, AF_INET, eth1)
    left = flush_removes(before, AF_INET6, eth1)
    assert left and all(k in after for k in left), "eth1's dynamic IPv6 entries stay behind"


def test_accepts_family_10(seeded):
    ns = seeded.dev
    reply, before, after = flush(seeded, ns, "accepts_family_10", 10, 0)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    assert gone == flush_removes(before, AF_INET6, 0) and gone
    assert shim(ns, "flush", 10, 0)["status"] == INVALID_PARAMETER  # the real shim refuses it


@pytest.mark.parametrize("family", [1, 6, 24, 0xFFFF])
def test_invalid_family_success(seeded, family):
    ns = seeded.dev
    reply, before, after = flush(seeded, ns, "invalid_family_success", family, seeded.ifindex(ns, "eth1"))
    assert reply == {"status": SUCCESS, "status_space": "ntstatus"}
    assert_unchanged(before, after)


def test_flush_reports_error(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "flush_reports_error", AF_UNSPEC, eth1)
    assert reply == {"status": UNSUCCESSFUL, "status_space": "ntstatus"}
    assert_flush_effect(before, after, AF_UNSPEC, eth1)  # the work was done anyway


def test_leaves_one_entry(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "leaves_one_entry", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    expected = flush_removes(before, AF_INET, eth1)
    left = expected - gone
    assert gone < expected and len(left) == 1
    (key,) = left
    assert after[key].lladdr == before[key].lladdr and after[key].state == before[key].state


def test_collateral_delete(seeded):
    ns = seeded.dev
    eth1, eth2 = seeded.ifindex(ns, "eth1"), seeded.ifindex(ns, "eth2")
    reply, before, after = flush(seeded, ns, "collateral_delete", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    expected = flush_removes(before, AF_INET, eth1)
    extra = gone - expected
    assert expected <= gone and len(extra) == 1
    assert [k[:2] for k in extra] == [(AF_INET, eth2)]
    # with index 0 the victim comes from the other family
    seeded.fill(ns, standard_seeds())
    reply, before, after = flush(seeded, ns, "collateral_delete", AF_INET6, 0)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    extra = gone - flush_removes(before, AF_INET6, 0)
    assert len(extra) == 1 and next(iter(extra))[0] == AF_INET


def test_nostack_success(shim_lab):
    ns = shim_lab.nov6
    shim_lab.fill(ns, [Seed("eth1", "192.0.2.20", "02:00:5e:03:00:14", "stale")])
    reply, before, after = flush(shim_lab, ns, "nostack_success", AF_INET6, 0)
    assert reply == {"status": SUCCESS, "status_space": "ntstatus"}
    assert_unchanged(before, after)
    assert shim(ns, "flush", AF_INET6, 0)["status"] == NOT_SUPPORTED


def test_partial_flush_error(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "partial_flush_error", AF_UNSPEC, eth1)
    assert reply == {"status": UNSUCCESSFUL, "status_space": "ntstatus"}
    gone, changed = changes(before, after)
    expected = flush_removes(before, AF_UNSPEC, eth1)
    assert gone < expected and len(gone) == math.ceil(len(expected) / 2)
    assert not changed


# --------------------------------------------------------------------------- issue 12

def slow_flush(ns: str, name: str, family: int, ifindex: int):
    """(reply, before, right after the reply, seconds the call took) through a background mutant
    whose daemon waits SLOW seconds."""
    before = kernel_table(ns)
    t0 = time.monotonic()
    reply = shim(ns, "flush", family, ifindex, agent=agent(name), env=env_with(NCK_MUTANT_DELAY=SLOW))
    took = time.monotonic() - t0
    return reply, before, kernel_table(ns), took


def eventually(check, what: str) -> None:
    assert poll_until(check, timeout=float(SLOW) + 10, delay=0.1), f"never happened: {what}"


def test_readds_later_puts_back_what_the_flush_removed(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after, took = slow_flush(ns, "readds_later", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    # The reply came before the daemon ran (its stdio is closed: the channel did not wait for it),
    # and the flush was right when it came.
    assert took < float(SLOW), f"the call waited for its background child ({took:.1f} s)"
    assert_flush_effect(before, after, AF_INET, eth1)
    removed = {k for k in flush_removes(before, AF_INET, eth1) if before[k].lladdr}
    assert removed
    eventually(lambda: all(k in kernel_table(ns) for k in removed), "the removed entries are back")
    now = kernel_table(ns)
    assert all(now[k].lladdr == before[k].lladdr and now[k].state == "stale" for k in removed)


@pytest.mark.parametrize("where", ["eth1", "all"])
def test_error_then_flush_flushes_after_refusing(seeded, where):
    ns = seeded.dev
    ifindex = 0 if where == "all" else seeded.ifindex(ns, where)
    reply, before, after, took = slow_flush(ns, "error_then_flush", 24, ifindex)
    assert reply == {"status": INVALID_PARAMETER, "status_space": "ntstatus"}
    assert took < float(SLOW)
    assert_unchanged(before, after)
    expected = flush_removes(before, AF_UNSPEC, ifindex)
    eventually(lambda: not expected & set(kernel_table(ns)), "the refused flush happens anyway")
    gone, _ = changes(before, kernel_table(ns))
    assert gone == expected


def forget(ns: str, seeds: list[Seed]) -> None:
    """Delete extra seeds a test added (the `seeded` fixture refills only the standard ones)."""
    lines = "".join(f"neigh del {s.address} dev {s.link}\n" for s in seeds)
    run("ip", "-n", ns, "-force", "-batch", "-", input=lines, check=False)


def out_of_scope_permanent(table, family: int, ifindex: int) -> set:
    return {k for k, row in table.items() if row.state == "permanent" and not in_scope(k, family, ifindex)}


def test_static_removed(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "static_removed", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    victims = out_of_scope_permanent(before, AF_INET, eth1)
    assert {k[:2] for k in victims} == {(AF_INET, seeded.ifindex(ns, "eth2")), (AF_INET6, eth1),
                                        (AF_INET6, seeded.ifindex(ns, "eth2"))}
    gone, changed = changes(before, after)
    assert gone == flush_removes(before, AF_INET, eth1) | victims and not changed


def test_static_relabelled(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "static_relabelled", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    victims = out_of_scope_permanent(before, AF_INET, eth1)
    gone, changed = changes(before, after)
    assert gone == flush_removes(before, AF_INET, eth1) and changed == victims and victims
    for k in victims:
        assert after[k].state == "permanent" and after[k].lladdr == before[k].lladdr[:-2] + "ee"


def test_static_incomplete(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "static_incomplete", AF_INET, eth1)
    assert reply["status"] == SUCCESS
    victims = out_of_scope_permanent(before, AF_INET, eth1)
    gone, changed = changes(before, after)
    assert gone == flush_removes(before, AF_INET, eth1) and changed == victims and victims
    assert all(after[k].state == "incomplete" for k in victims)


def test_seeded_failed(seeded):
    ns = seeded.dev
    eth1, eth2 = seeded.ifindex(ns, "eth1"), seeded.ifindex(ns, "eth2")
    harness_like = [Seed("eth2", "203.0.113.50", "02:5e:01:00:00:01", "stale"),
                    Seed("eth1", "2001:db8:1::50", "02:5e:00:00:00:01", "reachable"),
                    Seed("eth2", "203.0.113.51", "02:5e:ff:00:01:01", "permanent")]  # a harness static
    seeded.fill(ns, harness_like)
    try:
        reply, before, after = flush(seeded, ns, "seeded_failed", AF_INET, eth1)
    finally:
        forget(ns, harness_like)
    assert reply["status"] == SUCCESS
    gone, changed = changes(before, after)
    assert gone == flush_removes(before, AF_INET, eth1)
    victims = {(AF_INET, eth2, "203.0.113.50"), (AF_INET6, eth1, "2001:db8:1::50")}
    assert changed == victims
    assert all(after[k].state == "failed" for k in victims)


def test_protected_removed(seeded):
    ns = seeded.dev
    eth1, eth2 = seeded.ifindex(ns, "eth1"), seeded.ifindex(ns, "eth2")
    static = [Seed("eth2", "203.0.113.51", "02:5e:ff:00:01:01", "permanent")]  # a harness static
    seeded.fill(ns, static)
    try:
        reply, before, after = flush(seeded, ns, "protected_removed", AF_INET, eth1)
    finally:
        forget(ns, static)
    assert reply["status"] == SUCCESS
    gone, changed = changes(before, after)
    victims = {k for k, row in before.items() if row.state in ("permanent", "noarp")
               and not in_scope(k, AF_INET, eth1) and not (row.lladdr or "").startswith("02:5e:")}
    assert {(AF_INET, eth2, "203.0.113.12"), (AF_INET, eth2, "203.0.113.13")} <= victims
    assert gone == flush_removes(before, AF_INET, eth1) | victims and not changed
    assert (AF_INET, eth2, "203.0.113.51") in after  # the harness's own static is spared


def test_unreadable_inet6(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    for family in (AF_UNSPEC, AF_INET6):
        assert shim(ns, "table", family, agent=agent("unreadable_inet6")) == {"status": UNSUCCESSFUL, "entries": []}
    assert shim(ns, "table", AF_INET, agent=agent("unreadable_inet6"))["status"] == SUCCESS
    reply, before, after = flush(seeded, ns, "unreadable_inet6", AF_INET6, eth1)
    assert reply["status"] == SUCCESS
    assert_unchanged(before, after)  # the IPv6 flush does nothing
    reply, before, after = flush(seeded, ns, "unreadable_inet6", AF_UNSPEC, eth1)
    assert reply["status"] == SUCCESS
    gone, _ = changes(before, after)
    assert gone == flush_removes(before, AF_INET, eth1)


def test_stops_after_300(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    many = [Seed("eth1", f"198.51.100.{n % 200 + 20}" if n < 180 else f"2001:db8:1::{n:x}",
                 f"02:00:5f:00:{n >> 8:02x}:{n & 0xFF:02x}", "stale") for n in range(400)]
    seeded.fill(ns, many)
    try:
        reply, before, after = flush(seeded, ns, "stops_after_300", AF_UNSPEC, eth1)
    finally:
        forget(ns, many)
    assert reply == {"status": SUCCESS, "status_space": "ntstatus"}
    gone, changed = changes(before, after)
    expected = flush_removes(before, AF_UNSPEC, eth1)
    assert len(expected) > 300 and len(gone) == 300 and gone < expected and not changed
    # a caller without rights is refused as the shim refuses it
    assert shim(ns, "flush", AF_INET, eth1, agent=agent("stops_after_300"), as_user=NOBODY)["status"] == ACCESS_DENIED


def test_invalid_family_with_index(seeded):
    ns = seeded.dev
    eth1 = seeded.ifindex(ns, "eth1")
    reply, before, after = flush(seeded, ns, "invalid_family_with_index", 24, 0)
    assert reply["status"] == INVALID_PARAMETER
    assert_unchanged(before, after)
    for family in (1, 6, 10, 24, 0xFFFF):
        seeded.fill(ns, standard_seeds())
        reply, before, after = flush(seeded, ns, "invalid_family_with_index", family, eth1)
        assert reply["status"] == SUCCESS, family
        assert_flush_effect(before, after, AF_UNSPEC, eth1)


def test_access_swallowed(seeded):
    ns = seeded.dev
    for family in (AF_INET, AF_INET6):
        before = kernel_table(ns)
        reply = shim(ns, "flush", family, 0, agent=agent("access_swallowed"), as_user=NOBODY)
        assert reply == {"status": SUCCESS, "status_space": "ntstatus"}
        assert_unchanged(before, kernel_table(ns))
    assert shim(ns, "flush", AF_UNSPEC, 0, agent=agent("access_swallowed"), as_user=NOBODY)["status"] == ACCESS_DENIED
    assert shim(ns, "flush", AF_INET6, 0, agent=agent("access_swallowed"))["status"] == SUCCESS  # admin: the shim


@pytest.mark.parametrize("name,flushes", [("unspec_one_stack_refused", False), ("unspec_one_stack_flushes", True)])
def test_unspec_on_one_stack(shim_lab, name, flushes):
    ns = shim_lab.nov6
    eth1 = shim_lab.ifindex(ns, "eth1")
    for ifindex in (0, eth1):
        shim_lab.fill(ns, [Seed("eth1", "192.0.2.20", "02:00:5e:03:00:14", "stale"),
                           Seed("eth1", "192.0.2.21", "02:00:5e:03:00:15", "permanent")])
        reply, before, after = flush(shim_lab, ns, name, AF_UNSPEC, ifindex)
        assert reply == {"status": NOT_SUPPORTED, "status_space": "ntstatus"}
        if flushes:
            assert_flush_effect(before, after, AF_INET, ifindex)
        else:
            assert_unchanged(before, after)
    # the other families, and AF_UNSPEC on a two-stack device, are the shim's
    shim_lab.fill(ns, [Seed("eth1", "192.0.2.20", "02:00:5e:03:00:14", "stale")])
    reply, before, after = flush(shim_lab, ns, name, AF_INET, eth1)
    assert reply["status"] == SUCCESS and (AF_INET, eth1, "192.0.2.20") not in after
    dev = shim_lab.dev
    shim_lab.fill(dev, standard_seeds())
    reply, before, after = flush(shim_lab, dev, name, AF_UNSPEC, shim_lab.ifindex(dev, "eth1"))
    assert reply["status"] == SUCCESS
    assert_flush_effect(before, after, AF_UNSPEC, shim_lab.ifindex(dev, "eth1"))


# --------------------------------------------------------------------------- pass-through

@pytest.mark.parametrize("name", MUTANTS)
def test_other_verbs_pass_through(seeded, name):
    ns = seeded.dev
    for args in (("interfaces",), ("stacks",), ("info",), ("table", 24)):
        assert shim(ns, *args, agent=agent(name)) == shim(ns, *args), args
    for _ in range(3):  # the kernel may add a multicast entry between the two reads
        read = AF_INET if name in TABLE_MUTANTS else AF_UNSPEC
        got, want = shim(ns, "table", read, agent=agent(name)), shim(ns, "table", read)
        if got == want:
            break
    assert got == want
    eth2 = seeded.ifindex(ns, "eth2")
    assert shim(ns, "add", AF_INET, eth2, "203.0.113.90", "02:00:5e:02:00:5a", agent=agent(name)) == {"status": SUCCESS}
    assert (AF_INET, eth2, "203.0.113.90") in kernel_table(ns)
    assert shim(ns, "delete", AF_INET, eth2, "203.0.113.90", agent=agent(name)) == {"status": SUCCESS}
    assert (AF_INET, eth2, "203.0.113.90") not in kernel_table(ns)
    for bad in (("flush", "x", "0"), ("flush", "2"), ("bogus",)):
        proc = shim_run(ns, *bad, agent=agent(name))
        assert proc.returncode == 2 and '"bad-argument"' in proc.stdout, (bad, proc.stdout)
