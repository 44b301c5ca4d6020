"""FlushIpNetTable2 conformance cases. Clause ids: DESIGN.md §1 (harness/contract/clauses.py).

Every case seeds the device's table by traffic (the `planted` fixture; static entries stand on
every test link too), calls the agent, reads the table again and concludes with judged clauses
(pass/fail) and, for the observed clauses, a recorded observation that never fails. Which rule
judges a flush call is decided in one place: conformance/steps.py `judge_call`.
"""

from __future__ import annotations

import itertools
import time

import pytest

from conformance.steps import (call_flush, check_plantable, judge_call, judged_path, one_stack, settle,
                               snapshot, unspec_observation)
from harness.contract.clauses import (AF_INET, AF_INET6, AF_UNSPEC, INVALID_FAMILIES, NOSTACK_CLAUSE,
                                      SCOPE_FAMILIES, STACK_NAME, STACK_OF)
from harness.contract.judging import (Planted, Scope, expect_status, index, judge_durable, judge_flush,
                                      judge_unchanged, removed_by_state, require_planted)
from harness.contract.status import Outcome, describe

INVALID_PROBE = 24  # the invalid family the durable case uses (DESIGN.md §1)


def _ifindex(dut, selector: str) -> int:
    return 0 if selector == "all" else dut.link_by_name(selector).ifindex


def _flush_scope(case, dut, planted, family: int, selector: str) -> None:
    scope = Scope(family, _ifindex(dut, selector))
    check_plantable(dut, planted, scope)
    reply = call_flush(case, dut, family, scope.ifindex)
    after = snapshot(case, dut)
    with case.timing("judge"):
        case.record.clauses, j, observed = judge_call(dut, planted, scope, reply, after)
    case.conclude(j, observed=observed)


@pytest.mark.clauses("FAM-UNSPEC", "FAM-INET", "FAM-INET6", "IF-ALL", "IF-ONE", "RET-SUCCESS",
                     "NO-COLLATERAL")
@pytest.mark.families(*SCOPE_FAMILIES)
@pytest.mark.interfaces
def test_flush_scope(case, dut, planted, device_name, family, selector):
    """Flush one (family, interface) scope: in scope gone, everything else untouched."""
    _flush_scope(case, dut, planted, family, selector)


@pytest.mark.clauses("FAM-UNSPEC", "FAM-INET", "FAM-INET6", "IF-ALL", "IF-ONE", "RET-SUCCESS", "NO-COLLATERAL")
@pytest.mark.families(AF_UNSPEC)
@pytest.mark.interfaces("all", "first")
@pytest.mark.scale
def test_flush_scale(case, dut, planted, device_name, family, selector):
    """The same judgement at --scale-entries per family per link (default 1,024): an
    implementation that stops after a few hundred entries, or one netlink dump, fails here.
    On a one-stack device AF_UNSPEC is open (observed, removals not judged), so the case
    flushes the family the device has: the count is judged there too."""
    if one_stack(dut):
        family = AF_INET if dut.stacks.get("ipv4") else AF_INET6
    _flush_scope(case, dut, planted, family, selector)


@pytest.mark.clauses("RET-INVALID-FAMILY", "NOCHANGE-ON-ERROR")
@pytest.mark.families(*INVALID_FAMILIES)
@pytest.mark.interfaces("all", "first")
def test_invalid_family(case, dut, planted, device_name, family, selector):
    """A family outside {AF_UNSPEC, AF_INET, AF_INET6}, with index 0 or a test link's:
    INVALID_PARAMETER, table untouched."""
    require_planted(Scope(AF_UNSPEC, 0), planted.judged, {})
    reply = call_flush(case, dut, family, _ifindex(dut, selector))
    after = snapshot(case, dut)
    with case.timing("judge"):
        j = judge_unchanged(index(planted.before), after, planted.judged)
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
    planted = case.plant(dut)
    reply = call_flush(case, dut, family, 0)
    after = snapshot(case, dut)
    j = judge_unchanged(index(planted.before), after, planted.judged)
    expect_status(j, reply, Outcome.NOT_SUPPORTED, NOSTACK_CLAUSE[family])
    case.conclude(j)


@pytest.mark.clauses("RET-ACCESS", "NOCHANGE-ON-ERROR")
def test_access_denied(case, dut, device_name):
    """A caller without admin rights, with parameters that are otherwise valid (a family the
    device has): ACCESS_DENIED, table untouched. Which error wins when another parameter is
    wrong too is not asked: the reference does not say."""
    account = dut.device.unprivileged
    if account is None:
        case.not_applicable("no non-admin account configured ([device.unprivileged] in the inventory)")
    family = AF_INET if dut.stacks.get("ipv4") else AF_INET6
    with dut.unprivileged_agent() as agent:
        info = agent.info()
        if info.get("admin") is True:
            # The account has admin rights after all (an elevated token, or a member of
            # Network Configuration Operators): the clause cannot be judged with it.
            why = ", ".join(k.replace("_", " ") for k in ("elevated", "network_config_operator") if info.get(k))
            case.not_applicable(f"the configured non-admin account {account.user!r} has admin rights"
                                + (f" ({why})" if why else ""))
        planted = case.plant(dut)
        reply = call_flush(case, dut, family, 0, agent=agent)
        case.evidence["call"]["user"] = account.user
        after = snapshot(case, dut)
        j = judge_unchanged(index(planted.before), after, planted.judged)
        expect_status(j, reply, Outcome.ACCESS_DENIED, "RET-ACCESS")
        case.conclude(j)


@pytest.mark.clauses("IDEMPOTENT", "RET-SUCCESS")
@pytest.mark.families(*SCOPE_FAMILIES)
def test_idempotent(case, dut, planted, device_name, family):
    """Flushing an already empty scope succeeds and changes nothing."""
    stack = STACK_OF.get(family)
    if stack and not dut.stacks[stack]:
        case.not_applicable(f"the device has no {STACK_NAME[stack]} stack")
    ifindex = dut.links[0].ifindex
    # A family the harness cannot plant (e.g. its table unreadable) would look empty: error.
    check_plantable(dut, planted, Scope(family, ifindex))
    first = dut.agent.flush(family, ifindex)
    middle = snapshot(case, dut, "middle")
    reply = call_flush(case, dut, family, ifindex)
    after = snapshot(case, dut)
    with case.timing("judge"):
        # Judge the second call against the table the first one left (only what survived it).
        survivors = Planted({k: v for k, v in planted.entries.items() if k in middle},
                            {k: v for k, v in planted.static.items() if k in middle})
        if judged_path(dut, Scope(family, ifindex)) == "unspec-one-stack" \
                and first.outcome is not Outcome.SUCCESS:
            # AF_UNSPEC refused on a one-stack device (defensible: the reference is silent):
            # observed; both calls must still change nothing.
            case.record.clauses = ["OBS-UNSPEC-ONE-STACK", "NOCHANGE-ON-ERROR"]
            j = judge_unchanged(index(planted.before), after, planted.judged)
            case.conclude(j, observed=unspec_observation(dut, reply, j.diff))
            return
        j = judge_unchanged(middle, after, survivors, clause="IDEMPOTENT")
        expect_status(j, reply, Outcome.SUCCESS, "RET-SUCCESS")
        if first.outcome is not Outcome.SUCCESS:
            j.fail("RET-SUCCESS", f"the first flush returned {describe(first.raw, first.space)}")
    case.conclude(j)


def _durable_phases(dut) -> list[list[tuple[int, int]]]:
    """The calls of the durable case, in phases that each end with one settle window.

    Successful calls, one per family the device can flush, each on one interface, chosen so
    that entries survive them; then an invalid family, which must change nothing, also late.
    With a single (family, link) planted nothing can survive a successful call: the invalid
    call gets a phase of its own first."""
    pairs = {(f, link.ifindex) for link in dut.links for f in link.families}
    families = [f for f in (AF_INET, AF_INET6) if any(p[0] == f for p in pairs)]
    if len(families) == 2:
        families.append(AF_UNSPEC)  # on a one-stack device AF_UNSPEC is open: not asked here
    links = sorted({i for _, i in pairs})
    for choice in itertools.product(links, repeat=len(families)):  # at most 3 families: tiny
        left, useful = set(pairs), True
        for family, ifindex in zip(families, choice):
            after = {p for p in left if not Scope(family, ifindex).contains(*p)}
            useful, left = useful and after != left, after
        if useful and left:
            return [[*zip(families, choice), (INVALID_PROBE, 0)]]
    first = {f: next(i for g, i in sorted(pairs) if f in (AF_UNSPEC, g)) for f in families}
    return [[(INVALID_PROBE, 0)], list(first.items())]


@pytest.mark.clauses("DURABLE")
def test_durable(case, dut, planted, device_name):
    """What the calls did still holds after the settle window (--settle): removed entries stay
    removed (no daemon re-adds them), and a call that failed still changed nothing (no flush
    after an error reply). Judged against what the calls had to do (judge_durable), so a late
    effect that lands before the harness's own read is caught too."""
    if case.settle <= 0:
        case.not_applicable("the settle window is 0 (--settle 0): durable effects are not judged")
    # Durable effects need something planted, not every family: the plan uses what is there.
    require_planted(Scope(AF_UNSPEC, 0), planted.judged, {})
    total, record = None, []
    for n, phase in enumerate(_durable_phases(dut)):
        current = planted if n == 0 else case.plant(dut)
        flushed = []  # the scopes of the calls that succeeded: what they had to remove
        for family, ifindex in phase:
            with case.timing("flush"):
                reply = dut.agent.flush(family, ifindex)
            if reply.outcome is Outcome.SUCCESS:
                flushed.append(Scope(family, ifindex))
            record.append({"family": family, "ifindex": ifindex, "status": describe(reply.raw, reply.space),
                           "elapsed_us": reply.elapsed_us})
        last_call = time.perf_counter()
        after = snapshot(case, dut, f"after_phase{n + 1}")
        settle(case, last_call)
        settled = snapshot(case, dut, f"settled_phase{n + 1}")
        j = judge_durable(index(current.before), after, settled, current.judged, flushed)
        for key, entries in j.diff.items():  # every phase's entries in one diff, each with its phase
            j.diff[key] = [{**e, "phase": n + 1} for e in entries]
        if total is None:
            total = j
        else:
            total.diff = {k: total.diff.get(k, []) + v for k, v in j.diff.items()}
            total.merge(j)
    case.evidence["calls"] = record
    case.conclude(total)


@pytest.mark.clauses("OBS-PERMANENT")
def test_observe_permanent(case, dut, planted, device_name):
    """Are static (permanent) entries removed by a flush of their interface? Recorded, never failed."""
    link = dut.links[0]
    statics = [k for k in planted.static if k[1] == link.ifindex]
    reply = call_flush(case, dut, AF_UNSPEC, link.ifindex)
    after = snapshot(case, dut)
    removed = [k for k in statics if k not in after]
    kept = [k for k in statics if k in after]
    if not statics:
        summary = f"no static entries could be planted ({dut.fingerprint.get('static_entries', 'none planned')})"
    else:
        summary = (f"flush {describe(reply.raw, reply.space)}: {len(removed)} static entries removed, "
                   f"{len(kept)} kept")
    case.conclude(None, observed={"summary": summary, "removed": [k[2] for k in removed],
                                  "kept": [k[2] for k in kept]})


@pytest.mark.clauses("OBS-BAD-INDEX", "NOCHANGE-ON-ERROR")
def test_observe_bad_index(case, dut, planted, device_name):
    """An interface index that does not exist: status and effect recorded; an error changes nothing."""
    missing = dut.missing_ifindex()
    reply = call_flush(case, dut, AF_UNSPEC, missing)
    after = snapshot(case, dut)
    j = judge_unchanged(index(planted.before), after, planted.judged)
    if reply.outcome is Outcome.SUCCESS:
        j.failures.clear()  # a success that flushes nothing or everything is an observation only
    summary = (f"index {missing}: {describe(reply.raw, reply.space)}; "
               f"{len(j.diff['removed_out_of_scope'])} planted entries removed")
    case.conclude(j, observed={"summary": summary, "ifindex": missing,
                               "status": describe(reply.raw, reply.space),
                               "removed": len(j.diff["removed_out_of_scope"])})


@pytest.mark.clauses("OBS-UNSPEC-ONE-STACK")
def test_observe_unspec_one_stack(case, dut, planted, device_name):
    """AF_UNSPEC when only one stack exists: status and effect recorded."""
    if not one_stack(dut):
        case.not_applicable("the device has both stacks" if all(dut.stacks.values()) else "the device has no stack")
    reply = call_flush(case, dut, AF_UNSPEC, 0)
    after = snapshot(case, dut)
    j = judge_flush(index(planted.before), after, planted.judged, Scope(AF_UNSPEC, 0))
    j.failures.clear()  # observed: recorded, never failed
    case.conclude(j, observed=unspec_observation(dut, reply, j.diff))


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
