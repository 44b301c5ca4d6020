"""The judge without a lab: every rule in harness/contract/judging.py, conformance/steps.py's
`judge_call` (which rule judges a flush) and every code of the status table, each in both
directions (the rule holds: pass; the rule is broken: the named clause fails).

The world every table starts from (`world()`): a two-stack device with two test links, IF1 and
IF2, and a management link MGMT. Seeded (traffic) entries of both families on both test links,
static (permanent) entries the harness added on both test links, two protected entries the
harness did not plant (a permanent one on IF2, a noarp one on IF1), and the SSH peer on MGMT,
which nobody judges. `ideal(scope)` is the table a correct flush of `scope` leaves behind.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from conformance import steps
from harness.contract.clauses import AF_INET, AF_INET6, AF_UNSPEC
from harness.contract.judging import (SHOWN, Judgement, Planted, Scope, Unjudgeable, expect_status, index,
                                      judge_durable, judge_flush, judge_unchanged, protected, removed_by_state,
                                      require_planted, show, unplanted_changes)
from harness.contract.status import STATUS_TABLE, Outcome, code_name, describe, normalise, space_of
from harness.contract.protocol import Neighbor, StatusReply

MGMT, IF1, IF2 = 2, 3, 4
FAMILY_OF = {"4": AF_INET, "6": AF_INET6}


def entry(address: str, ifindex: int, lladdr: str | None, state: str = "stale") -> Neighbor:
    return Neighbor(address, AF_INET6 if ":" in address else AF_INET, ifindex, lladdr, state)


# name -> entry; the name says what it is: s=seeded, t=static, p=protected, u=unplanted;
# 4/6 the family; the interface last.
WORLD = {
    "s4@IF1": entry("198.19.1.1", IF1, "02:5e:00:00:00:01"),
    "s6@IF1": entry("2001:db8:1::a", IF1, "02:5e:00:00:00:01", "reachable"),
    "s4@IF2": entry("198.19.2.1", IF2, "02:5e:01:00:00:01", "delay"),
    "s6@IF2": entry("2001:db8:2::a", IF2, "02:5e:01:00:00:01"),
    "t4@IF1": entry("198.51.100.200", IF1, "02:5e:ff:00:00:01", "permanent"),
    "t6@IF1": entry("2001:db8:ffff::200", IF1, "02:5e:ff:00:00:02", "permanent"),
    "t4@IF2": entry("198.51.100.201", IF2, "02:5e:ff:00:01:01", "permanent"),
    "t6@IF2": entry("2001:db8:ffff::201", IF2, "02:5e:ff:00:01:02", "permanent"),
    "p4@IF2": entry("198.18.2.250", IF2, "02:00:00:aa:00:01", "permanent"),
    "p6@IF1": entry("2001:db8:1::250", IF1, "02:00:00:aa:00:02", "noarp"),
    "u4@MGMT": entry("198.18.200.1", MGMT, "02:00:00:00:00:fe", "reachable"),
    # the kernel's multicast entries: NOARP, made by live traffic, garbage-collected when unused
    "u6@IF2": entry("ff02::16", IF2, "33:33:00:00:00:16", "noarp"),
    "u4@IF1": entry("224.0.0.22", IF1, "01:00:5e:00:00:16", "noarp"),
}
SEEDED = [n for n in WORLD if n[0] == "s"]
STATIC = [n for n in WORLD if n[0] == "t"]
PROTECTED = [n for n in WORLD if n[0] == "p"]


def planted_world() -> Planted:
    return Planted({WORLD[n].key: WORLD[n].lladdr for n in SEEDED},
                   {WORLD[n].key: WORLD[n].lladdr for n in STATIC})


def world() -> dict:
    return index(WORLD.values())


def ideal(scope: Scope) -> dict:
    """What a correct flush of `scope` leaves: the seeded entries in scope are gone (the
    statics and protected entries in scope are kept here, as the reference shim keeps them)."""
    return {k: e for k, e in world().items() if not (k in planted_world().seeded and scope.contains(k[0], k[1]))}


def without(table: dict, *names: str) -> dict:
    return {k: e for k, e in table.items() if k not in {WORLD[n].key for n in names}}


def changed(table: dict, name: str, **fields) -> dict:
    e = WORLD[name]
    return {**table, e.key: e._replace(**fields)}


def with_(table: dict, *names: str) -> dict:
    return {**table, **{WORLD[n].key: WORLD[n] for n in names}}


SCOPES = [Scope(f, i) for f in (AF_UNSPEC, AF_INET, AF_INET6) for i in (0, IF1)]


# --------------------------------------------------------------------------- Scope, Judgement, index, show

@pytest.mark.parametrize("scope,key,inside", [
    (Scope(AF_UNSPEC, 0), (AF_INET, IF1, "x"), True),
    (Scope(AF_UNSPEC, 0), (AF_INET6, MGMT, "x"), True),
    (Scope(AF_UNSPEC, IF1), (AF_INET6, IF1, "x"), True),
    (Scope(AF_UNSPEC, IF1), (AF_INET, IF2, "x"), False),
    (Scope(AF_INET, 0), (AF_INET, IF2, "x"), True),
    (Scope(AF_INET, 0), (AF_INET6, IF2, "x"), False),
    (Scope(AF_INET6, IF2), (AF_INET6, IF2, "x"), True),
    (Scope(AF_INET6, IF2), (AF_INET6, IF1, "x"), False),
    (Scope(AF_INET6, IF2), (AF_INET, IF2, "x"), False),
    (Scope(24, 0), (AF_INET, IF1, "x"), False),  # an invalid family names no entry
])
def test_scope_contains(scope, key, inside):
    assert scope.contains(key[0], key[1]) is inside


def test_scope_families_and_clauses():
    assert Scope(AF_UNSPEC, 0).families == (AF_INET, AF_INET6)
    assert Scope(AF_INET6, IF1).families == (AF_INET6,)
    assert Scope(AF_UNSPEC, 0).clauses == ["FAM-UNSPEC", "IF-ALL"]
    assert Scope(AF_INET, IF1).clauses == ["FAM-INET", "IF-ONE"]
    assert Scope(AF_INET6, 0).clauses == ["FAM-INET6", "IF-ALL"]


def test_judgement_keeps_every_reason_and_merges():
    j = Judgement()
    assert j.passed and j.reason == ""
    j.fail("NO-COLLATERAL", "one")
    j.fail("NO-COLLATERAL", "two")
    j.fail("IF-ONE", "three")
    assert not j.passed
    assert j.failures == {"NO-COLLATERAL": "one; two", "IF-ONE": "three"}
    assert j.reason == "NO-COLLATERAL: one; two; IF-ONE: three"
    other = Judgement()
    other.fail("IF-ONE", "four")
    other.fail("DURABLE", "five")
    assert j.merge(other) is j
    assert j.failures == {"NO-COLLATERAL": "one; two", "IF-ONE": "three; four", "DURABLE": "five"}
    assert Judgement().merge(Judgement()).passed


def test_index_keys_by_family_interface_and_address():
    table = index([WORLD["s4@IF1"], WORLD["s6@IF1"]])
    assert table == {(AF_INET, IF1, "198.19.1.1"): WORLD["s4@IF1"],
                     (AF_INET6, IF1, "2001:db8:1::a"): WORLD["s6@IF1"]}


def test_show_quotes_a_few_entries_and_marks_unusable_states():
    entries = [entry(f"198.19.1.{n}", IF1, "02:5e:00:00:00:01") for n in range(SHOWN + 2)]
    text = show(entries)
    assert text.startswith(f"198.19.1.0@{IF1}, ") and text.endswith(" and 2 more")
    assert text.count("@") == SHOWN
    assert show(entries[:1]) == f"198.19.1.0@{IF1}"
    for state in ("failed", "incomplete", "unreachable"):
        assert show([entry("198.19.1.9", IF1, None, state)]) == f"198.19.1.9@{IF1} ({state})"
    assert show([entry("198.19.1.9", IF1, "02:5e:00:00:00:01", "permanent")]) == f"198.19.1.9@{IF1}"


# --------------------------------------------------------------------------- protected, unplanted changes

def test_protected_is_what_the_harness_did_not_plant_in_permanent_or_noarp_state():
    got = protected(world(), planted_world())
    assert got == {WORLD["p4@IF2"].key: "02:00:00:aa:00:01", WORLD["p6@IF1"].key: "02:00:00:aa:00:02"}
    # neither the statics (planted, permanent) nor the unplanted SSH peer (reachable), nor the
    # kernel's multicast NOARP entries (live traffic makes them; the kernel garbage-collects them)
    assert WORLD["t4@IF1"].key not in got and WORLD["u4@MGMT"].key not in got
    assert WORLD["u6@IF2"].key not in got and WORLD["u4@IF1"].key not in got
    # an address the agent printed in a form that is no IP address is not excused
    odd = entry("not-an-address", IF2, "02:00:00:aa:00:03", "permanent")
    assert protected(index([odd]), Planted({})) == {odd.key: "02:00:00:aa:00:03"}
    # a protected entry without a link-layer address is compared as ""
    bare = entry("198.18.2.251", IF2, None, "noarp")
    assert protected(index([bare]), Planted({})) == {bare.key: ""}


def test_unplanted_changes_are_reported_not_judged():
    after = changed(without(world(), "u4@MGMT", "s4@IF1"), "p4@IF2", lladdr="02:00:00:aa:00:99")
    new = entry("198.18.200.9", MGMT, "02:00:00:00:00:09")
    after[new.key] = new
    got = unplanted_changes(world(), after, planted_world(), guarded=protected(world(), planted_world()))
    assert got == {"removed": [WORLD["u4@MGMT"].to_dict()], "added": [new.to_dict()]}


# --------------------------------------------------------------------------- judge_flush

@pytest.mark.parametrize("scope", SCOPES, ids=str)
def test_judge_flush_passes_a_correct_flush(scope):
    j = judge_flush(world(), ideal(scope), planted_world(), scope)
    assert j.passed, j.reason
    in_scope = [n for n in SEEDED if scope.contains(WORLD[n].family, WORLD[n].ifindex)]
    assert j.diff["removed_in_scope"] == len(in_scope) > 0
    assert j.diff["kept_in_scope"] == [] and j.diff["removed_out_of_scope"] == []
    assert j.diff["changed_out_of_scope"] == []


@pytest.mark.parametrize("scope", SCOPES, ids=str)
def test_judge_flush_fails_the_scope_clauses_for_a_seeded_entry_left_in_scope(scope):
    left = next(n for n in SEEDED if scope.contains(WORLD[n].family, WORLD[n].ifindex))
    j = judge_flush(world(), with_(ideal(scope), left), planted_world(), scope)
    assert set(j.failures) == set(scope.clauses)
    assert "1 seeded entries in scope were not removed" in j.failures[scope.clauses[0]]
    assert WORLD[left].address in j.failures[scope.clauses[1]]
    # one that the flush moved to failed is still there: not removed either
    j = judge_flush(world(), changed(ideal(scope), left, state="failed", lladdr=None), planted_world(), scope)
    assert set(j.failures) == set(scope.clauses)
    assert "(failed)" in j.failures[scope.clauses[0]]


# (scope, how the ideal table is broken, the clauses that must fail, a phrase of the reason)
COLLATERAL = [
    # seeded entries outside the scope
    pytest.param(Scope(AF_INET, IF1), lambda t: without(t, "s6@IF1"), {"FAM-INET", "NO-COLLATERAL"},
                 "entries of the other family were removed", id="seeded-other-family-removed"),
    pytest.param(Scope(AF_INET6, 0), lambda t: without(t, "s4@IF2"), {"FAM-INET6", "NO-COLLATERAL"},
                 "entries outside the scope were removed", id="seeded-other-family-removed-index-0"),
    pytest.param(Scope(AF_INET, IF1), lambda t: without(t, "s4@IF2"), {"IF-ONE", "NO-COLLATERAL"},
                 "entries on other interfaces were removed", id="seeded-other-interface-removed"),
    pytest.param(Scope(AF_UNSPEC, IF1), lambda t: without(t, "s6@IF2"), {"IF-ONE", "NO-COLLATERAL"},
                 "entries on other interfaces were removed", id="seeded-other-interface-removed-unspec"),
    pytest.param(Scope(AF_INET, IF1), lambda t: changed(t, "s4@IF2", lladdr="02:5e:01:00:00:99"),
                 {"NO-COLLATERAL"}, "changed link-layer address", id="seeded-lladdr-changed"),
    pytest.param(Scope(AF_INET, IF1), lambda t: changed(t, "s4@IF2", lladdr=None),
                 {"NO-COLLATERAL"}, "changed link-layer address", id="seeded-lladdr-dropped"),
    pytest.param(Scope(AF_INET6, IF1), lambda t: changed(t, "s4@IF1", state="incomplete"),
                 {"NO-COLLATERAL"}, "made unusable (198.19.1.1@3 (incomplete))", id="seeded-moved-to-incomplete"),
    pytest.param(Scope(AF_INET, IF2), lambda t: changed(t, "s4@IF1", state="failed"),
                 {"NO-COLLATERAL"}, "made unusable (198.19.1.1@3 (failed))", id="seeded-moved-to-failed"),
    pytest.param(Scope(AF_INET, IF2), lambda t: changed(t, "s6@IF1", state="unreachable"),
                 {"NO-COLLATERAL"}, "made unusable", id="seeded-moved-to-unreachable"),
    # as Linux shows them: a failed or incomplete entry has no link-layer address
    pytest.param(Scope(AF_INET, IF2), lambda t: changed(t, "s4@IF1", state="failed", lladdr=None),
                 {"NO-COLLATERAL"}, "1 entries outside the scope were made unusable (198.19.1.1@3 (failed))",
                 id="seeded-moved-to-failed-without-lladdr"),
    pytest.param(Scope(AF_INET, IF1), lambda t: changed(t, "t6@IF2", state="incomplete", lladdr=None),
                 {"NO-COLLATERAL"}, "were made unusable (2001:db8:ffff::201@4 (incomplete))",
                 id="static-moved-to-incomplete-without-lladdr"),
    # static entries outside the scope
    pytest.param(Scope(AF_INET, IF1), lambda t: without(t, "t4@IF2"), {"IF-ONE", "NO-COLLATERAL"},
                 "198.51.100.201@4", id="static-other-interface-removed"),
    pytest.param(Scope(AF_INET6, 0), lambda t: without(t, "t4@IF1"), {"FAM-INET6", "NO-COLLATERAL"},
                 "198.51.100.200@3", id="static-other-family-removed"),
    pytest.param(Scope(AF_INET, IF1), lambda t: changed(t, "t6@IF2", lladdr="02:5e:ff:00:01:99"),
                 {"NO-COLLATERAL"}, "changed link-layer address", id="static-lladdr-changed"),
    pytest.param(Scope(AF_INET, IF1), lambda t: changed(t, "t4@IF2", state="incomplete"),
                 {"NO-COLLATERAL"}, "made unusable", id="static-moved-to-incomplete"),
    # protected entries (not planted) outside the scope
    pytest.param(Scope(AF_INET, IF1), lambda t: without(t, "p4@IF2"), {"IF-ONE", "NO-COLLATERAL"},
                 "198.18.2.250@4", id="protected-permanent-removed"),
    pytest.param(Scope(AF_INET, 0), lambda t: without(t, "p6@IF1"), {"FAM-INET", "NO-COLLATERAL"},
                 "2001:db8:1::250@3", id="protected-noarp-removed"),
    pytest.param(Scope(AF_INET6, IF1), lambda t: changed(t, "p4@IF2", lladdr="02:00:00:aa:00:99"),
                 {"NO-COLLATERAL"}, "changed link-layer address", id="protected-lladdr-changed"),
    pytest.param(Scope(AF_INET6, IF2), lambda t: changed(t, "p6@IF1", state="failed"),
                 {"NO-COLLATERAL"}, "made unusable", id="protected-moved-to-failed"),
]


@pytest.mark.parametrize("scope,break_,clauses,phrase", COLLATERAL)
def test_judge_flush_fails_collateral(scope, break_, clauses, phrase):
    j = judge_flush(world(), break_(ideal(scope)), planted_world(), scope)
    assert set(j.failures) == clauses, j.reason
    assert phrase in j.reason


@pytest.mark.parametrize("scope,untouched", [
    # the same changes inside the scope, or to entries nobody judges: no failure
    (Scope(AF_INET, IF1), lambda t: without(t, "t4@IF1")),  # static in scope: open (OBS-PERMANENT)
    (Scope(AF_UNSPEC, 0), lambda t: without(t, *STATIC)),
    (Scope(AF_INET, IF2), lambda t: without(t, "p4@IF2")),  # protected in scope: recorded
    (Scope(AF_INET6, IF1), lambda t: without(t, "p6@IF1")),
    (Scope(AF_INET, IF1), lambda t: without(t, "u4@MGMT")),  # the SSH peer: re-learned any time
    (Scope(AF_INET, IF1), lambda t: changed(t, "u4@MGMT", state="failed")),
    (Scope(AF_INET, IF1), lambda t: without(t, "u6@IF2", "u4@IF1")),  # multicast: live traffic's
    (Scope(AF_INET6, IF1), lambda t: changed(t, "u4@IF1", state="failed")),
    (Scope(AF_INET, IF1), lambda t: changed(t, "s4@IF2", state="reachable")),  # still usable
    (Scope(AF_INET, IF1), lambda t: changed(t, "s6@IF1", state="probe")),
    (Scope(AF_INET, IF1), lambda t: changed(t, "p4@IF2", state="noarp")),
])
def test_judge_flush_does_not_judge_what_is_open_or_unplanted(scope, untouched):
    j = judge_flush(world(), untouched(ideal(scope)), planted_world(), scope)
    assert j.passed, j.reason


def test_judge_flush_records_static_and_protected_entries_in_scope():
    scope = Scope(AF_INET, IF2)
    j = judge_flush(world(), without(ideal(scope), "t4@IF2"), planted_world(), scope)
    assert j.diff["static_in_scope"] == {"removed": ["198.51.100.201@4"], "kept": []}
    assert j.diff["protected_in_scope"] == {"removed": [], "kept": ["198.18.2.250@4"]}
    j = judge_flush(world(), without(ideal(scope), "u4@MGMT"), planted_world(), scope)
    assert j.diff["changed_unseeded"]["removed"] == [WORLD["u4@MGMT"].to_dict()]


# --------------------------------------------------------------------------- judge_unchanged

@pytest.mark.parametrize("name", SEEDED + STATIC + PROTECTED)
@pytest.mark.parametrize("how,phrase", [
    (lambda t, n: without(t, n), "were removed"),
    (lambda t, n: changed(t, n, lladdr="02:11:22:33:44:55"), "changed link-layer address"),
    (lambda t, n: changed(t, n, state="failed"), "were made unusable"),
    (lambda t, n: changed(t, n, state="incomplete"), "were made unusable"),
], ids=["removed", "lladdr", "failed", "incomplete"])
def test_judge_unchanged_fails_any_change_to_a_judged_entry(name, how, phrase):
    j = judge_unchanged(world(), how(world(), name), planted_world())
    assert set(j.failures) == {"NOCHANGE-ON-ERROR"}
    assert phrase in j.failures["NOCHANGE-ON-ERROR"] and f"{WORLD[name].address}@" in j.reason
    # the clause is the caller's (IDEMPOTENT judges a second flush with the same rule)
    j = judge_unchanged(world(), how(world(), name), planted_world(), clause="IDEMPOTENT")
    assert set(j.failures) == {"IDEMPOTENT"}


@pytest.mark.parametrize("after", [
    lambda t: t,
    lambda t: without(t, "u4@MGMT"),
    lambda t: changed(t, "s4@IF1", state="reachable"),
    lambda t: changed(t, "p4@IF2", state="noarp"),
    lambda t: without(t, "u6@IF2", "u4@IF1"),
], ids=["identical", "unplanted-removed", "seeded-still-usable", "protected-still-usable", "multicast-removed"])
def test_judge_unchanged_passes_an_unchanged_table(after):
    j = judge_unchanged(world(), after(world()), planted_world())
    assert j.passed, j.reason
    assert j.diff["removed_in_scope"] == 0 and j.diff["kept_in_scope"] == []


def test_judge_unchanged_quotes_what_was_removed_from_before():
    j = judge_unchanged(world(), without(world(), "s6@IF2"), planted_world())
    assert j.diff["removed_out_of_scope"] == [WORLD["s6@IF2"].to_dict()]
    # a seeded entry missing from `before` too is still quoted (a stand-in built from the plan)
    j = judge_unchanged({}, {}, Planted({WORLD["s4@IF1"].key: "02:5e:00:00:00:01"}))
    assert "198.19.1.1@3" in j.failures["NOCHANGE-ON-ERROR"]


# --------------------------------------------------------------------------- judge_durable

def flushed_ideal(*scopes: Scope) -> dict:
    table = world()
    for scope in scopes:
        table = {k: e for k, e in table.items() if k in ideal(scope)}
    return table


# (the scopes that succeeded, the table right after the calls, the settled table; the phrase
# of the DURABLE reason, or None: it holds)
DURABLE = [
    pytest.param([Scope(AF_INET, IF1)], flushed_ideal(Scope(AF_INET, IF1)), flushed_ideal(Scope(AF_INET, IF1)),
                 None, id="holds"),
    pytest.param([Scope(AF_INET, IF1), Scope(AF_INET6, IF2), Scope(AF_UNSPEC, IF1)],
                 flushed_ideal(Scope(AF_UNSPEC, IF1), Scope(AF_INET6, IF2)),
                 flushed_ideal(Scope(AF_UNSPEC, IF1), Scope(AF_INET6, IF2)), None, id="holds-three-calls"),
    pytest.param([], world(), world(), None, id="holds-a-failed-call"),
    pytest.param([Scope(AF_INET, IF1)], flushed_ideal(Scope(AF_INET, IF1)),
                 without(flushed_ideal(Scope(AF_INET, IF1)), "u4@MGMT", "u6@IF2", "u4@IF1"), None,
                 id="holds-unplanted-gone"),
    # in a flushed scope, what the call did to static and protected entries must hold
    pytest.param([Scope(AF_UNSPEC, IF1)], without(flushed_ideal(Scope(AF_UNSPEC, IF1)), "t4@IF1"),
                 without(flushed_ideal(Scope(AF_UNSPEC, IF1)), "t4@IF1"), None, id="holds-static-removed-in-scope"),
    pytest.param([Scope(AF_UNSPEC, IF1)], without(flushed_ideal(Scope(AF_UNSPEC, IF1)), "t4@IF1"),
                 flushed_ideal(Scope(AF_UNSPEC, IF1)), None, id="holds-static-re-added-in-scope"),
    pytest.param([Scope(AF_UNSPEC, IF1)], flushed_ideal(Scope(AF_UNSPEC, IF1)),
                 without(flushed_ideal(Scope(AF_UNSPEC, IF1)), "t4@IF1"),
                 "1 entries that had to stay were removed after the settle window (198.51.100.200@3)",
                 id="static-kept-in-scope-then-removed"),
    # a daemon re-adds what the flush removed
    pytest.param([Scope(AF_INET, IF1)], flushed_ideal(Scope(AF_INET, IF1)), world(),
                 "1 entries the flush removed were back after the settle window (198.19.1.1@3)", id="re-added"),
    # ... quicker than the harness's read right after the calls: still DURABLE
    pytest.param([Scope(AF_INET, IF1)], world(), world(),
                 "1 seeded entries in the scope of a successful flush were there after the settle window, "
                 "as right after the calls (198.19.1.1@3)", id="re-added-before-the-read"),
    # a failed call (or the invalid family) flushes later
    pytest.param([], world(), flushed_ideal(Scope(AF_UNSPEC, 0)),
                 "4 entries that had to stay were removed after the settle window", id="flushed-after-an-error"),
    pytest.param([], flushed_ideal(Scope(AF_UNSPEC, 0)), flushed_ideal(Scope(AF_UNSPEC, 0)),
                 "4 entries that had to stay were removed after the settle window, as right after the calls",
                 id="flushed-after-an-error-before-the-read"),
    pytest.param([Scope(24, 0)], world(), flushed_ideal(Scope(AF_UNSPEC, 0)), "were removed after the settle",
                 id="invalid-family-that-succeeded-flushed-later"),
    # out of the flushed scopes: other link-layer address, unusable, protected entries
    pytest.param([Scope(AF_INET, IF1)], flushed_ideal(Scope(AF_INET, IF1)),
                 changed(flushed_ideal(Scope(AF_INET, IF1)), "s4@IF2", lladdr="02:5e:01:00:00:99"),
                 "1 entries that had to stay were given another link-layer address after the settle window",
                 id="seeded-lladdr-changed-later"),
    pytest.param([Scope(AF_INET, IF1)], flushed_ideal(Scope(AF_INET, IF1)),
                 changed(flushed_ideal(Scope(AF_INET, IF1)), "t6@IF2", state="incomplete"),
                 "were made unusable after the settle window (2001:db8:ffff::201@4 (incomplete))",
                 id="static-moved-to-incomplete-later"),
    pytest.param([Scope(AF_INET, IF1)], flushed_ideal(Scope(AF_INET, IF1)),
                 without(flushed_ideal(Scope(AF_INET, IF1)), "p4@IF2", "p6@IF1"),
                 "2 entries that had to stay were removed after the settle window", id="protected-removed-later"),
    pytest.param([Scope(AF_INET, IF1)], without(flushed_ideal(Scope(AF_INET, IF1)), "s4@IF2"),
                 without(flushed_ideal(Scope(AF_INET, IF1)), "s4@IF2"),
                 "1 entries that had to stay were removed after the settle window, as right after the calls",
                 id="collateral-since-the-calls"),
]


@pytest.mark.parametrize("flushed,after,settled,phrase", DURABLE)
def test_judge_durable(flushed, after, settled, phrase):
    j = judge_durable(world(), after, settled, planted_world(), flushed)
    if phrase is None:
        assert j.passed, j.reason
        assert not any(j.diff.values())
    else:
        assert set(j.failures) == {"DURABLE"}
        assert phrase in j.failures["DURABLE"], j.reason
        assert any(j.diff.values())


def test_judge_durable_diff_names_each_kind():
    scope = Scope(AF_INET, IF1)
    settled = changed(with_(without(flushed_ideal(scope), "s6@IF2"), "s4@IF1"), "s4@IF2", state="failed")
    after = without(flushed_ideal(scope), "s6@IF2")
    j = judge_durable(world(), after, settled, planted_world(), [scope])
    assert [e["address"] for e in j.diff["back_after_settle"]] == ["198.19.1.1"]
    assert [e["address"] for e in j.diff["lost_after_settle"]] == ["198.19.2.1"]
    assert [e["address"] for e in j.diff["lost_since_the_calls"]] == ["2001:db8:2::a"]
    assert j.diff["never_removed"] == []


# --------------------------------------------------------------------------- expect_status

@pytest.mark.parametrize("expected", list(Outcome))
@pytest.mark.parametrize("space", ["ntstatus", "win32"])
def test_expect_status_in_both_directions(expected, space):
    for code, (name, outcome) in STATUS_TABLE[space].items():
        j = Judgement()
        expect_status(j, StatusReply(code, space), expected, "RET-X")
        if outcome is expected:
            assert j.passed
        else:
            assert set(j.failures) == {"RET-X"}
            assert j.failures["RET-X"] == f"expected {expected.value}, got {outcome.value} ({describe(code, space)})"


def test_expect_status_quotes_an_agent_error():
    j = Judgement()
    expect_status(j, StatusReply(None, None, "not-exported", "FlushIpNetTable2"), Outcome.SUCCESS, "RET-SUCCESS")
    assert j.failures == {"RET-SUCCESS": "expected SUCCESS, got OTHER (not-exported: FlushIpNetTable2)"}


# --------------------------------------------------------------------------- require_planted

@pytest.mark.parametrize("scope,seeded,unplanted,error", [
    (Scope(AF_UNSPEC, 0), SEEDED, {}, None),
    (Scope(AF_INET6, IF2), ["s6@IF2"], {}, None),
    (Scope(AF_INET6, IF2), ["s6@IF1", "s4@IF2"], {}, "no seeded AF_INET6 entry in the scope"),
    (Scope(AF_UNSPEC, IF1), ["s4@IF2", "s6@IF2"], {}, "no seeded AF_INET or AF_INET6 entry in the scope"),
    (Scope(AF_INET, 0), [], {}, "no seeded AF_INET entry"),
    # a family the device has but the harness cannot plant, in the scope: error ...
    (Scope(AF_UNSPEC, 0), SEEDED, {(AF_INET6, IF2): "IPv6 entries cannot be planted on eth2: no table"},
     "nothing planted in part of the scope: IPv6 entries cannot be planted on eth2: no table"),
    (Scope(AF_INET6, IF2), ["s6@IF2"], {(AF_INET6, IF2): "cannot"}, "nothing planted in part of the scope"),
    # ... outside the scope: judgeable
    (Scope(AF_INET, 0), SEEDED, {(AF_INET6, IF2): "cannot"}, None),
    (Scope(AF_INET6, IF1), SEEDED, {(AF_INET6, IF2): "cannot"}, None),
])
def test_require_planted(scope, seeded, unplanted, error):
    planted = Planted({WORLD[n].key: WORLD[n].lladdr for n in seeded})
    if error is None:
        require_planted(scope, planted, unplanted)
    else:
        with pytest.raises(Unjudgeable, match=error.replace("(", r"\(")):
            require_planted(scope, planted, unplanted)


def test_removed_by_state_counts_per_state_before():
    before = world()
    after = without(before, "s4@IF1", "s4@IF2", "s6@IF2")
    got = removed_by_state(before, after, [WORLD[n].key for n in SEEDED] + [(AF_INET, IF1, "198.19.9.9")])
    assert got == {"stale": {"removed": 2, "kept": 0}, "reachable": {"removed": 0, "kept": 1},
                   "delay": {"removed": 1, "kept": 0}}


# --------------------------------------------------------------------------- status table

ALL_CODES = [(space, code, name, outcome) for space, codes in STATUS_TABLE.items()
             for code, (name, outcome) in codes.items()]


@pytest.mark.parametrize("space,code,name,outcome", ALL_CODES, ids=[c[2] for c in ALL_CODES])
def test_every_code_of_the_status_table(space, code, name, outcome):
    assert normalise(code, space) is outcome
    assert code_name(code, space) == name
    assert describe(code, space) == f"0x{code:08X} ({code}) {name}"
    # The signed 32-bit form an agent may print is the same code.
    signed = code - (1 << 32) if code & 0x80000000 else code
    assert normalise(signed, space) is outcome and code_name(signed, space) == name
    assert describe(signed, space) == describe(code, space)
    # No space given: NTSTATUS error codes are told by their severity bits, Win32 codes are small.
    if code:
        assert space_of(code, None) == space
        assert normalise(code) is outcome and normalise(signed) is outcome
        assert code_name(code) == name
    # The rule broken: the same number in the other space is that space's code, or unknown.
    other = "win32" if space == "ntstatus" else "ntstatus"
    assert normalise(code, other) is STATUS_TABLE[other].get(code, ("", Outcome.OTHER))[1]


def test_every_outcome_has_a_code_in_each_space():
    for space, codes in STATUS_TABLE.items():
        assert {outcome for _, outcome in codes.values()} == set(Outcome), space


@pytest.mark.parametrize("raw,space", [
    (0xC0000002, "ntstatus"), (0xC0000002, None), (-1073741822, None), (1234, "win32"), (1234, None),
    (0x80000005, None), (0x40000000, None), (87, "ntstatus"), (0xC000000D, "win32"),
])
def test_unknown_codes_are_other(raw, space):
    assert normalise(raw, space) is Outcome.OTHER
    assert code_name(raw, space) == ""
    assert describe(raw, space).endswith(" unknown code")
    assert describe(raw, space).startswith(f"0x{raw & 0xFFFFFFFF:08X} ({raw & 0xFFFFFFFF}) ")


def test_zero_without_a_space_is_success_by_either_name():
    assert normalise(0) is Outcome.SUCCESS
    assert code_name(0) == "NO_ERROR" and code_name(0, "ntstatus") == "STATUS_SUCCESS"


@pytest.mark.parametrize("raw", [None, True, False, "0", 0.0, [0]])
def test_no_status_is_other(raw):
    assert normalise(raw) is Outcome.OTHER and normalise(raw, "ntstatus") is Outcome.OTHER
    assert describe(raw) == "no status"
    if raw is not None:
        assert code_name(raw) == ""


def test_a_space_the_table_does_not_know_falls_back_to_the_code():
    assert space_of(0xC000000D, "hresult") == "ntstatus" and space_of(87, "hresult") == "win32"


def test_the_linux_shim_speaks_the_status_table():
    """The shim's status constants are the table's NTSTATUS codes under the same names."""
    from tests.support import SHIM
    constants = dict(line.split("=", 1) for line in SHIM.read_text().splitlines() if line.startswith("ST_"))
    assert len(constants) >= 6
    for constant, value in constants.items():
        assert code_name(int(value), "ntstatus") == "STATUS_" + constant[3:], constant


# --------------------------------------------------------------------------- steps: which rule judges a flush

@dataclass
class FakeLink:
    ifindex: int
    families: frozenset
    unplanted: dict = field(default_factory=dict)


@dataclass
class FakeDut:
    stacks: dict
    links: list

    @property
    def unplanted(self):
        return {(f, link.ifindex): why for link in self.links for f, why in link.unplanted.items()}


def two_stack(**unplanted) -> FakeDut:
    return FakeDut({"ipv4": True, "ipv6": True},
                   [FakeLink(IF1, frozenset({AF_INET, AF_INET6}), unplanted.get("if1", {})),
                    FakeLink(IF2, frozenset({AF_INET, AF_INET6}))])


def one_stack() -> FakeDut:
    """IPv4 only; its table holds only the IPv4 part of the world."""
    return FakeDut({"ipv4": True, "ipv6": False}, [FakeLink(IF1, frozenset({AF_INET})),
                                                   FakeLink(IF2, frozenset({AF_INET}))])


def planted_for(table: dict) -> SimpleNamespace:
    judged = Planted({k: v for k, v in planted_world().seeded.items() if k in table},
                     {k: v for k, v in planted_world().static.items() if k in table})
    return SimpleNamespace(before=tuple(table.values()), judged=judged)


def v4_only(table: dict) -> dict:
    return {k: e for k, e in table.items() if k[0] == AF_INET}


OK = StatusReply(0, "ntstatus")
NOT_SUPPORTED = StatusReply(0xC00000BB, "ntstatus")
UNSUCCESSFUL = StatusReply(0xC0000001, "ntstatus")


@pytest.mark.parametrize("dut,scope,path", [
    (two_stack(), Scope(AF_INET6, IF1), "removal"),
    (two_stack(), Scope(AF_UNSPEC, 0), "removal"),
    (one_stack(), Scope(AF_INET6, 0), "nostack"),
    (FakeDut({"ipv4": False, "ipv6": True}, [FakeLink(IF1, frozenset({AF_INET6}))]), Scope(AF_INET, IF1), "nostack"),
    (one_stack(), Scope(AF_UNSPEC, IF1), "unspec-one-stack"),
    (one_stack(), Scope(AF_INET, IF2), "removal"),
    # IPv6 present but unbound from IF1: nothing to remove there
    (FakeDut({"ipv4": True, "ipv6": True}, [FakeLink(IF1, frozenset({AF_INET})),
                                             FakeLink(IF2, frozenset({AF_INET, AF_INET6}))]),
     Scope(AF_INET6, IF1), "empty"),
    # ... but a family the harness could not plant (e.g. its table unreadable) still expects removals
    (FakeDut({"ipv4": True, "ipv6": True}, [FakeLink(IF1, frozenset({AF_INET}), {AF_INET6: "unreadable"})]),
     Scope(AF_INET6, IF1), "removal"),
])
def test_judged_path(dut, scope, path):
    assert steps.judged_path(dut, scope) == path


def test_check_plantable_refuses_an_empty_scope_that_expects_removals():
    dut = FakeDut({"ipv4": True, "ipv6": True}, [FakeLink(IF1, frozenset({AF_INET}), {AF_INET6: "IPv6 unreadable"})])
    planted = SimpleNamespace(judged=Planted({WORLD["s4@IF1"].key: "02:5e:00:00:00:01"}))
    with pytest.raises(Unjudgeable, match="IPv6 unreadable"):
        steps.check_plantable(dut, planted, Scope(AF_INET6, IF1))
    with pytest.raises(Unjudgeable, match="IPv6 unreadable"):
        steps.check_plantable(dut, planted, Scope(AF_UNSPEC, 0))
    steps.check_plantable(dut, planted, Scope(AF_INET, IF1))
    with pytest.raises(Unjudgeable, match="no seeded AF_INET entry"):
        steps.check_plantable(dut, SimpleNamespace(judged=Planted({})), Scope(AF_INET, IF1))
    # paths that expect no removals need nothing planted
    steps.check_plantable(one_stack(), SimpleNamespace(judged=Planted({})), Scope(AF_INET6, 0))


def judge(dut, scope, reply, before, after):
    return steps.judge_call(dut, planted_for(before), scope, reply, after)


@pytest.mark.parametrize("scope", SCOPES, ids=str)
def test_judge_call_removal(scope):
    clauses, j, observed = judge(two_stack(), scope, OK, world(), ideal(scope))
    assert clauses == [*scope.clauses, "RET-SUCCESS", "NO-COLLATERAL"] and j.passed and observed is None
    # broken: a seeded entry left in scope
    left = next(n for n in SEEDED if scope.contains(WORLD[n].family, WORLD[n].ifindex))
    _, j, _ = judge(two_stack(), scope, OK, world(), with_(ideal(scope), left))
    assert set(j.failures) == set(scope.clauses)
    # broken: an error reply (RET-SUCCESS), and one that changed the table too (NOCHANGE-ON-ERROR)
    clauses, j, _ = judge(two_stack(), scope, UNSUCCESSFUL, world(), world())
    assert clauses == [*scope.clauses, "RET-SUCCESS", "NOCHANGE-ON-ERROR"]
    assert set(j.failures) == {"RET-SUCCESS"} and "STATUS_UNSUCCESSFUL" in j.reason
    _, j, _ = judge(two_stack(), scope, UNSUCCESSFUL, world(), ideal(scope))
    assert set(j.failures) == {"RET-SUCCESS", "NOCHANGE-ON-ERROR"}


@pytest.mark.parametrize("reply,after,failed", [
    (NOT_SUPPORTED, lambda t: t, set()),
    (OK, lambda t: t, {"RET-NOSTACK-INET6"}),
    (NOT_SUPPORTED, lambda t: without(t, "s4@IF1"), {"NOCHANGE-ON-ERROR"}),
    (OK, lambda t: without(t, "s4@IF2"), {"RET-NOSTACK-INET6", "NOCHANGE-ON-ERROR"}),
])
def test_judge_call_missing_stack(reply, after, failed):
    before = v4_only(world())
    clauses, j, observed = judge(one_stack(), Scope(AF_INET6, 0), reply, before, after(before))
    assert clauses == ["RET-NOSTACK-INET6", "NOCHANGE-ON-ERROR"] and observed is None
    assert set(j.failures) == failed, j.reason


@pytest.mark.parametrize("ifindex", [0, IF1])
@pytest.mark.parametrize("reply,after,failed", [
    # defensible both ways: flush the one stack, or refuse with nothing changed
    (OK, lambda t, s: {k: e for k, e in t.items() if not (k[0] == AF_INET and s.contains(*k[:2])
                                                         and e.state != "permanent" and k[2] != "198.18.2.250")},
     set()),
    (OK, lambda t, s: t, set()),  # success that removes nothing: observed, not failed
    (NOT_SUPPORTED, lambda t, s: t, set()),
    # a refusal that flushed anyway
    (NOT_SUPPORTED, lambda t, s: without(t, "s4@IF1"), {"NOCHANGE-ON-ERROR"}),
])
def test_judge_call_unspec_on_a_one_stack_device(ifindex, reply, after, failed):
    before, scope = v4_only(world()), Scope(AF_UNSPEC, ifindex)
    clauses, j, observed = judge(one_stack(), scope, reply, before, after(before, scope))
    assert clauses[0] == "OBS-UNSPEC-ONE-STACK"
    assert clauses[1] == ("NO-COLLATERAL" if reply is OK else "NOCHANGE-ON-ERROR")
    assert set(j.failures) == failed, j.reason
    assert observed["status"] == describe(reply.raw, reply.space)
    assert "only IPv4" in observed["summary"]


def test_judge_call_unspec_on_a_one_stack_device_still_judges_collateral():
    before, scope = v4_only(world()), Scope(AF_UNSPEC, IF1)
    after = without(ideal(scope), "s4@IF2", "s6@IF1", "s6@IF2")
    _, j, _ = judge(one_stack(), scope, OK, before, {k: e for k, e in after.items() if k[0] == AF_INET})
    assert "NO-COLLATERAL" in j.failures and "198.19.2.1@4" in j.failures["NO-COLLATERAL"]


def test_judge_call_empty_scope_judges_status_and_collateral_only():
    dut = FakeDut({"ipv4": True, "ipv6": True}, [FakeLink(IF1, frozenset({AF_INET})),
                                                  FakeLink(IF2, frozenset({AF_INET, AF_INET6}))])
    before = without(world(), "s6@IF1")
    scope = Scope(AF_INET6, IF1)
    clauses, j, _ = judge(dut, scope, OK, before, before)
    assert clauses == ["RET-SUCCESS", "NO-COLLATERAL"] and j.passed
    _, j, _ = judge(dut, scope, OK, before, without(before, "s6@IF2"))
    assert "NO-COLLATERAL" in j.failures
    _, j, _ = judge(dut, scope, UNSUCCESSFUL, before, before)
    assert set(j.failures) == {"RET-SUCCESS"}


# --------------------------------------------------------------------------- settle

@dataclass
class FakeCase:
    settle: float
    record: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(timings={}))

    @contextmanager
    def timing(self, phase):
        t0 = time.perf_counter()
        yield
        self.record.timings[phase] = time.perf_counter() - t0


def test_settle_waits_out_the_rest_of_the_window_from_the_last_call():
    case = FakeCase(settle=0.2)
    t0 = time.perf_counter()
    steps.settle(case, t0 - 0.15)  # 0.15 s of the window already gone
    assert 0.04 <= time.perf_counter() - t0 < 0.2
    t0 = time.perf_counter()
    steps.settle(case, t0 - 1.0)  # the window is over: no wait
    assert time.perf_counter() - t0 < 0.05
    assert set(case.record.timings) == {"settle"}


@pytest.mark.parametrize("raw", [1 << 32, (1 << 32) + 0xC000000D, (1 << 32) + 87, -(1 << 31) - 1, -(1 << 63)])
def test_a_number_outside_32_bits_is_no_status_code(raw):
    """Masked to 32 bits, 2**32 would read as SUCCESS and 2**32 + 0xC000000D as
    INVALID_PARAMETER: an agent printing such a number must not pass a status check."""
    for space in ("ntstatus", "win32", None):
        assert normalise(raw, space) is Outcome.OTHER
        assert code_name(raw, space) == ""
    assert describe(raw) == f"{raw} (not a 32-bit status code)"
    j = Judgement()
    expect_status(j, StatusReply(raw, "ntstatus"), Outcome.SUCCESS, "RET-SUCCESS")
    assert j.failures == {"RET-SUCCESS": f"expected SUCCESS, got OTHER ({raw} (not a 32-bit status code))"}


def test_the_32_bit_edges_are_codes():
    assert describe(-(1 << 31)) == "0x80000000 (2147483648) unknown code"
    assert describe((1 << 32) - 1) == "0xFFFFFFFF (4294967295) unknown code"
