"""Steps shared by the conformance cases: the flush and snapshot steps that record evidence and
timings as they go, and the one rule for which clauses a flush call is judged on."""

from __future__ import annotations

import time

from harness.contract.clauses import AF_UNSPEC, NOSTACK_CLAUSE, STACK_NAME, STACK_OF, family_name
from harness.contract.judging import (Judgement, Scope, expect_status, index, judge_flush, judge_unchanged,
                                      require_planted)
from harness.contract.status import Outcome, describe


def snapshot(case, dut, key: str = "after") -> dict:
    with case.timing("snapshot"):
        table = dut.table()
    case.evidence[key] = [e.to_dict() for e in table]
    return index(table)


def call_flush(case, dut, family: int, ifindex: int, agent=None):
    case.record.family = family
    case.record.family_name = family_name(family)
    case.record.ifindex = ifindex
    case.evidence["call"] = {"verb": "flush", "family": family, "ifindex": ifindex}
    with case.timing("flush"):
        reply = (agent or dut.agent).flush(family, ifindex)
    case.status(reply)
    return reply


def one_stack(dut) -> bool:
    return sum(bool(v) for v in dut.stacks.values()) == 1


def scope_expected(dut, scope: Scope) -> bool:
    """Some interface in the scope has (or should have) entries of a family the scope names."""
    return any(scope.contains(family, link.ifindex)
               for link in dut.links for family in (*link.families, *link.unplanted))


def check_plantable(dut, planted, scope: Scope) -> None:
    """Before a call that is judged on removals: something must be planted where it looks
    (harness.contract.judging.require_planted), else the case is an error."""
    if judged_path(dut, scope) == "removal":
        require_planted(scope, planted.judged, dut.unplanted)


def judged_path(dut, scope: Scope) -> str:
    """Which rule judges a flush of `scope` on this device:
    - "nostack": the family's stack is missing (RET-NOSTACK-*: NOT_SUPPORTED, nothing changes);
    - "unspec-one-stack": AF_UNSPEC on a one-stack device, open in the reference: observed,
      never failed, while what it does outside the scope (or, failing, anywhere) is judged;
    - "empty": no interface in the scope has a family it names (e.g. IPv6 unbound from the
      adapter): nothing to remove, so only the status and collateral are judged;
    - "removal": everything else."""
    stack = STACK_OF.get(scope.family)
    if stack and not dut.stacks.get(stack):
        return "nostack"
    if scope.family == AF_UNSPEC and one_stack(dut):
        return "unspec-one-stack"
    if not scope_expected(dut, scope):
        return "empty"
    return "removal"


def judge_call(dut, planted, scope: Scope, reply, after: dict) -> tuple[list[str], Judgement, dict | None]:
    """The clauses a flush of `scope` is judged on, the judgement, and an observation (or None)."""
    before = index(planted.before)
    path = judged_path(dut, scope)
    if path == "nostack":
        clause = NOSTACK_CLAUSE[scope.family]
        j = judge_unchanged(before, after, planted.judged)
        expect_status(j, reply, Outcome.NOT_SUPPORTED, clause)
        return [clause, "NOCHANGE-ON-ERROR"], j, None
    if path == "unspec-one-stack":
        if reply.outcome is Outcome.SUCCESS:
            j = judge_flush(before, after, planted.judged, scope)
            j.failures = {c: w for c, w in j.failures.items() if c in ("NO-COLLATERAL", "IF-ONE")
                          and "were not removed" not in w}
            clauses = ["OBS-UNSPEC-ONE-STACK", "NO-COLLATERAL"]
        else:
            j = judge_unchanged(before, after, planted.judged)
            clauses = ["OBS-UNSPEC-ONE-STACK", "NOCHANGE-ON-ERROR"]
        return clauses, j, unspec_observation(dut, reply, j.diff)
    if reply.outcome is not Outcome.SUCCESS:
        # The call failed: RET-SUCCESS is broken, and a failed call must change nothing.
        j = judge_unchanged(before, after, planted.judged)
        expect_status(j, reply, Outcome.SUCCESS, "RET-SUCCESS")
        return [*scope.clauses, "RET-SUCCESS", "NOCHANGE-ON-ERROR"], j, None
    j = judge_flush(before, after, planted.judged, scope)
    if path == "empty":
        return ["RET-SUCCESS", "NO-COLLATERAL"], j, None
    return [*scope.clauses, "RET-SUCCESS", "NO-COLLATERAL"], j, None


def unspec_observation(dut, reply, diff) -> dict:
    stack = next(STACK_NAME[s] for s, present in dut.stacks.items() if present)
    return {"summary": f"AF_UNSPEC on a device with only {stack} returned {reply.outcome.value} "
                       f"({describe(reply.raw, reply.space)}); removed {diff.get('removed_in_scope', 0)} "
                       f"seeded entries in scope",
            "status": describe(reply.raw, reply.space), "removed_in_scope": diff.get("removed_in_scope", 0)}


def settle(case, since: float) -> None:
    """Wait out the rest of the settle window that started at `since` (perf_counter)."""
    with case.timing("settle"):
        left = case.settle - (time.perf_counter() - since)
        if left > 0:
            time.sleep(left)
