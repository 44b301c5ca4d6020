"""FlushIpNetTable2 conformance cases. Clause ids: DESIGN.md §1 (harness/verdicts.py).

Every case seeds the device's table by traffic (the `planted` fixture), calls the agent,
reads the table again and concludes with judged clauses (pass/fail) and, for the observed
clauses, a recorded observation that never fails.
"""

from __future__ import annotations

import pytest

from conformance.steps import call_flush, snapshot
from harness.contract.clauses import (AF_INET, AF_INET6, AF_UNSPEC, INVALID_FAMILIES, NOSTACK_CLAUSE,
                                      SCOPE_FAMILIES, STACK_NAME, STACK_OF, family_name)
from harness.contract.judging import Judgement, Scope, index, judge_flush, judge_unchanged, removed_by_state
from harness.contract.status import Outcome, describe
from harness.device.agent import admin_reason


def expect_status(j: Judgement, reply, expected: Outcome, clause: str) -> None:
    if reply.outcome is not expected:
        got = f"{reply.error}: {reply.detail}" if reply.error else describe(reply.raw, reply.space)
        j.fail(clause, f"expected {expected.value}, got {reply.outcome.value} ({got})")


def _ifindex(dut, selector: str) -> int:
    return 0 if selector == "all" else dut.link_by_name(selector).ifindex


@pytest.mark.clauses("FAM-UNSPEC", "FAM-INET", "FAM-INET6", "IF-ALL", "IF-ONE", "RET-SUCCESS",
                     "NO-COLLATERAL")
@pytest.mark.families(*SCOPE_FAMILIES)
@pytest.mark.interfaces
def test_flush_scope(case, dut, planted, device_name, family, selector):
    """Flush one (family, interface) scope: in scope gone, everything else untouched."""
    ifindex = _ifindex(dut, selector)
    scope = Scope(family, ifindex)
    stack = STACK_OF.get(family)
    reply = call_flush(case, dut, family, ifindex)
    after = snapshot(case, dut)
    before = index(planted.before)
    with case.timing("judge"):
        if stack and not dut.stacks[stack]:
            # The family's stack is missing: the contract says NOT_SUPPORTED, and nothing changes.
            case.record.clauses = [NOSTACK_CLAUSE[family], "NOCHANGE-ON-ERROR"]
            j = judge_unchanged(before, after, planted.entries)
            expect_status(j, reply, Outcome.NOT_SUPPORTED, NOSTACK_CLAUSE[family])
            observed = None
        elif family == AF_UNSPEC and not all(dut.stacks.values()):
            # AF_UNSPEC with one stack is open in the reference: record what happens, but
            # other interfaces' entries must survive whatever it does.
            case.record.clauses = ["OBS-UNSPEC-ONE-STACK", "NO-COLLATERAL"]
            j = judge_flush(before, after, planted.entries, scope)
            j.failures = {c: w for c, w in j.failures.items() if c in ("NO-COLLATERAL", "IF-ONE")
                          and ifindex != 0}
            observed = _unspec_observation(reply, j.diff)
        elif reply.outcome is not Outcome.SUCCESS:
            # The call failed: RET-SUCCESS is broken, and a failed call must change nothing.
            case.record.clauses = [*scope.clauses, "RET-SUCCESS", "NOCHANGE-ON-ERROR"]
            j = judge_unchanged(before, after, planted.entries)
            expect_status(j, reply, Outcome.SUCCESS, "RET-SUCCESS")
            observed = None
        else:
            case.record.clauses = [*scope.clauses, "RET-SUCCESS", "NO-COLLATERAL"]
            j = judge_flush(before, after, planted.entries, scope)
            observed = None
    case.conclude(j, observed=observed)


def _unspec_observation(reply, diff) -> dict:
    return {"summary": f"AF_UNSPEC on a one-stack device returned {reply.outcome.value} "
                       f"({describe(reply.raw, reply.space)}); removed {diff['removed_in_scope']} "
                       f"seeded entries in scope",
            "status": describe(reply.raw, reply.space), "removed_in_scope": diff["removed_in_scope"]}


@pytest.mark.clauses("RET-INVALID-FAMILY", "NOCHANGE-ON-ERROR")
@pytest.mark.families(*INVALID_FAMILIES)
def test_invalid_family(case, dut, planted, device_name, family):
    """A family outside {AF_UNSPEC, AF_INET, AF_INET6}: INVALID_PARAMETER, table untouched."""
    reply = call_flush(case, dut, family, 0)
    after = snapshot(case, dut)
    with case.timing("judge"):
        j = judge_unchanged(index(planted.before), after, planted.entries)
        expect_status(j, reply, Outcome.INVALID_PARAMETER, "RET-INVALID-FAMILY")
    case.conclude(j)


@pytest.mark.clauses("RET-NOSTACK-INET", "RET-NOSTACK-INET6", "NOCHANGE-ON-ERROR")
@pytest.mark.families(AF_INET, AF_INET6)
def test_missing_stack(case, dut, device_name, family):
    """No stack for the family: NOT_SUPPORTED, and the other family's entries untouched."""
    stack = STACK_OF[family]
    case.record.clauses = [NOSTACK_CLAUSE[family], "NOCHANGE-ON-ERROR"]
    if dut.stacks[stack]:
        case.not_applicable(f"the device has an {STACK_NAME[stack]} stack")
    planted = case_seed(case, dut)
    try:
        reply = call_flush(case, dut, family, 0)
        after = snapshot(case, dut)
        j = judge_unchanged(index(planted.before), after, planted.entries)
        expect_status(j, reply, Outcome.NOT_SUPPORTED, NOSTACK_CLAUSE[family])
        case.conclude(j)
    finally:
        dut.remove(planted.entries)


def case_seed(case, dut):
    """Seeding inside a case body (for cases that may be not-applicable before seeding)."""
    seeded = dut.seed()
    case.record.timings.update(seeded.timings)
    case.evidence["before"] = [e.to_dict() for e in seeded.before]
    return seeded


@pytest.mark.clauses("RET-ACCESS", "NOCHANGE-ON-ERROR")
def test_access_denied(case, dut, device_name):
    """A caller without admin rights: ACCESS_DENIED, table untouched."""
    account = dut.device.unprivileged
    if account is None:
        case.not_applicable("no non-admin account configured ([device.unprivileged] in the inventory)")
    with dut.unprivileged_agent() as agent:
        reason = admin_reason(agent.info())
        if reason is not None:
            # The account has admin rights after all (an elevated Windows token, or Network
            # Configuration Operators): the clause cannot be judged with it.
            case.not_applicable(f"the configured non-admin account {account.user!r} has admin rights: {reason}")
        planted = case_seed(case, dut)
        try:
            case.evidence["call"] = {"verb": "flush", "family": AF_UNSPEC, "ifindex": 0,
                                     "user": account.user}
            case.record.family, case.record.family_name, case.record.ifindex = AF_UNSPEC, "AF_UNSPEC", 0
            with case.timing("flush"):
                reply = agent.flush(AF_UNSPEC, 0)
            case.status(reply)
            after = snapshot(case, dut)
            j = judge_unchanged(index(planted.before), after, planted.entries)
            expect_status(j, reply, Outcome.ACCESS_DENIED, "RET-ACCESS")
            case.conclude(j)
        finally:
            dut.remove(planted.entries)


@pytest.mark.clauses("IDEMPOTENT", "RET-SUCCESS")
@pytest.mark.families(*SCOPE_FAMILIES)
def test_idempotent(case, dut, planted, device_name, family):
    """Flushing an already empty scope succeeds and changes nothing."""
    stack = STACK_OF.get(family)
    if stack and not dut.stacks[stack]:
        case.not_applicable(f"the device has no {STACK_NAME[stack]} stack")
    ifindex = dut.links[0].ifindex
    first = dut.agent.flush(family, ifindex)
    middle = snapshot(case, dut)
    reply = call_flush(case, dut, family, ifindex)
    after = snapshot(case, dut)
    with case.timing("judge"):
        # Judge the second call against the table the first one left (only what survived it).
        survivors = {k: v for k, v in planted.entries.items() if k in middle}
        j = judge_unchanged(middle, after, survivors, clause="IDEMPOTENT")
        expect_status(j, reply, Outcome.SUCCESS, "RET-SUCCESS")
        if first.outcome is not Outcome.SUCCESS:
            j.fail("RET-SUCCESS", f"the first flush returned {describe(first.raw, first.space)}")
    case.conclude(j)


@pytest.mark.clauses("OBS-PERMANENT")
def test_observe_permanent(case, dut, planted, device_name):
    """Are static (permanent) entries removed by a flush? Recorded, never failed."""
    link = dut.links[0]
    added = {}
    for n, (family, stack) in enumerate(((AF_INET, "ipv4"), (AF_INET6, "ipv6"))):
        if not dut.stacks[stack]:
            continue
        address = "198.51.100.200" if family == AF_INET else "2001:db8:ffff::200"
        lladdr = f"02:5e:ff:00:00:{n + 1:02x}"
        reply = dut.add_static(planted, link, family, address, lladdr)
        added[family_name(family)] = {"address": address, "status": describe(reply.raw, reply.space),
                                      "error": reply.error}
    before_table = dut.table()
    static_keys = list(planted.static)
    present_before = {k for k in static_keys if k in index(before_table)}
    reply = call_flush(case, dut, AF_UNSPEC, link.ifindex)
    after = snapshot(case, dut)
    removed = [k for k in present_before if k not in after]
    kept = [k for k in present_before if k in after]
    if not present_before:
        summary = "the agent could not add static entries, so nothing to observe"
    else:
        summary = (f"flush {describe(reply.raw, reply.space)}: {len(removed)} static entries removed, "
                   f"{len(kept)} kept")
    case.conclude(None, observed={"summary": summary, "added": added,
                                  "removed": [k[2] for k in removed], "kept": [k[2] for k in kept]})


@pytest.mark.clauses("OBS-BAD-INDEX", "NOCHANGE-ON-ERROR")
def test_observe_bad_index(case, dut, planted, device_name):
    """An interface index that does not exist: status and effect recorded; an error changes nothing."""
    missing = dut.missing_ifindex()
    reply = call_flush(case, dut, AF_UNSPEC, missing)
    after = snapshot(case, dut)
    j = judge_unchanged(index(planted.before), after, planted.entries)
    if reply.outcome is Outcome.SUCCESS:
        j.failures.clear()  # a success that flushes nothing or everything is an observation only
    summary = (f"index {missing}: {describe(reply.raw, reply.space)}; "
               f"{len(j.diff['removed_out_of_scope'])} seeded entries removed")
    case.conclude(j, observed={"summary": summary, "ifindex": missing,
                               "status": describe(reply.raw, reply.space),
                               "removed": len(j.diff["removed_out_of_scope"])})


@pytest.mark.clauses("OBS-UNSPEC-ONE-STACK")
def test_observe_unspec_one_stack(case, dut, planted, device_name):
    """AF_UNSPEC when only one stack exists: status and effect recorded."""
    if all(dut.stacks.values()):
        case.not_applicable("the device has both stacks")
    reply = call_flush(case, dut, AF_UNSPEC, 0)
    after = snapshot(case, dut)
    j = judge_flush(index(planted.before), after, planted.entries, Scope(AF_UNSPEC, 0))
    j.failures.clear()  # observed: recorded, never failed
    case.conclude(j, observed=_unspec_observation(reply, j.diff))


@pytest.mark.clauses("OBS-STATES")
def test_observe_states(case, dut, planted, device_name):
    """Which neighbor states does a flush remove? Recorded per state seen before the flush."""
    before = index(dut.table())
    reply = call_flush(case, dut, AF_UNSPEC, 0)
    after = snapshot(case, dut)
    # Only test-link entries: live traffic on the management link re-learns its neighbor at once.
    test_ifs = {link.ifindex for link in dut.links}
    states = removed_by_state(before, after, [k for k in before if k[1] in test_ifs])
    summary = ", ".join(f"{state}: {row['removed']} removed/{row['kept']} kept"
                        for state, row in sorted(states.items()))
    case.conclude(None, observed={"summary": f"{describe(reply.raw, reply.space)}; {summary}",
                                  "by_state": states})
