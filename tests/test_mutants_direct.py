"""Each mutant agent in tests/mutants shows its one bug against a directly filled table, and
passes every other verb through to the real shim unchanged.

The conformance suite has to catch these bugs on its own; this file only proves that each
mutant really carries its bug (so a suite that reports it "pass" is wrong, not the mutant).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.test_linux_shim import (  # the lab and the kernel-table oracle are shared
    AF_INET,
    AF_INET6,
    AF_UNSPEC,
    INVALID_PARAMETER,
    NOT_FOUND,
    NOT_SUPPORTED,
    REPO,
    SUCCESS,
    UNSUCCESSFUL,
    Seed,
    assert_flush_effect,
    assert_unchanged,
    changes,
    flush_removes,
    kernel_table,
    seeded,  # noqa: F401  (fixture)
    shim,
    shim_lab,  # noqa: F401  (fixture)
    shim_run,
    standard_seeds,
)

pytestmark = pytest.mark.lab

MUTANTS_DIR = REPO / "tests" / "mutants"
MUTANTS = ("ignore_ifindex", "inet_flushes_inet6", "unspec_only_inet", "accepts_family_10",
           "invalid_family_success", "flush_reports_error", "leaves_one_entry", "collateral_delete",
           "nostack_success", "partial_flush_error")


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


# --------------------------------------------------------------------------- pass-through

@pytest.mark.parametrize("name", MUTANTS)
def test_other_verbs_pass_through(seeded, name):
    ns = seeded.dev
    for args in (("interfaces",), ("stacks",), ("info",), ("table", 24)):
        assert shim(ns, *args, agent=agent(name)) == shim(ns, *args), args
    for _ in range(3):  # the kernel may add a multicast entry between the two reads
        got, want = shim(ns, "table", AF_UNSPEC, agent=agent(name)), shim(ns, "table", AF_UNSPEC)
        if got == want:
            break
    assert got == want
    eth2 = seeded.ifindex(ns, "eth2")
    assert shim(ns, "add", AF_INET, eth2, "203.0.113.90", "02:00:5e:02:00:5a", agent=agent(name)) == \
        {"status": SUCCESS, "status_space": "ntstatus"}
    assert (AF_INET, eth2, "203.0.113.90") in kernel_table(ns)
    assert shim(ns, "delete", AF_INET, eth2, "203.0.113.90", agent=agent(name)) == \
        {"status": SUCCESS, "status_space": "ntstatus", "results": [{"address": "203.0.113.90", "status": SUCCESS}]}
    assert (AF_INET, eth2, "203.0.113.90") not in kernel_table(ns)
    for bad in (("flush", "x", "0"), ("flush", "2"), ("bogus",)):
        proc = shim_run(ns, *bad, agent=agent(name))
        assert proc.returncode == 2 and '"bad-argument"' in proc.stdout, (bad, proc.stdout)
