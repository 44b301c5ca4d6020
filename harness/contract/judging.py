"""Judging: from what the harness planted and the tables before and after a call to failed clauses.

Pure functions, no I/O, so the rules are easy to read and to unit-test (tests/test_judging.py
holds one table-driven test per rule). Every entry the judge looks at is one of:
- seeded: planted by traffic; judged exactly. In scope: gone. Out of scope: present, same
  link-layer address, and not moved to a state in which it is unusable (failed, incomplete,
  unreachable).
- static: planted with the agent's `add` (permanent). Out of scope: the same as seeded. In
  scope: the reference is silent (OBS-PERMANENT): recorded, never judged.
- protected: entries the harness did not plant, in states live traffic cannot recreate
  (permanent, noarp), for a unicast address. Out of scope: they must survive. In scope: recorded.
  (The kernel makes a NOARP entry for every multicast address it sends to, and garbage-collects
  it when unused: those are live traffic's, below.)
- anything else the harness did not plant (the SSH peer, multicast entries) may be re-learned
  by live traffic at any time: changes are reported, never judged.
A call that fails must change none of the seeded, static or protected entries.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from harness.contract.clauses import AF_INET, AF_INET6, AF_UNSPEC, FAMILY_CLAUSE, family_name
from harness.contract.status import Outcome, describe
from harness.contract.protocol import NOT_LANDED_STATES, Key, Neighbor
from harness.errors import NeighcheckError

SHOWN = 5  # entries quoted in a reason; the evidence file has all of them
PROTECTED_STATES = frozenset({"permanent", "noarp"})  # live traffic cannot recreate these
Table = Mapping[Key, Neighbor]


class Unjudgeable(NeighcheckError):
    """The case cannot judge what it is for (e.g. nothing planted in its scope): an `error`."""


@dataclass(frozen=True)
class Scope:
    family: int  # AF_UNSPEC, AF_INET or AF_INET6
    ifindex: int  # 0: every interface

    def contains(self, family: int, ifindex: int) -> bool:
        return (self.family == AF_UNSPEC or self.family == family) and \
            (self.ifindex == 0 or self.ifindex == ifindex)

    @property
    def families(self) -> tuple[int, ...]:
        return (AF_INET, AF_INET6) if self.family == AF_UNSPEC else (self.family,)

    @property
    def clauses(self) -> list[str]:
        return [FAMILY_CLAUSE[self.family], "IF-ALL" if self.ifindex == 0 else "IF-ONE"]


@dataclass(frozen=True)
class Planted:
    """What the harness planted for a case, as the judge sees it (key -> link-layer address)."""

    seeded: Mapping[Key, str]
    static: Mapping[Key, str] = field(default_factory=dict)


@dataclass
class Judgement:
    failures: dict[str, str] = field(default_factory=dict)  # clause -> why it failed
    diff: dict[str, Any] = field(default_factory=dict)

    def fail(self, clause: str, why: str) -> None:
        # Several problems can break one clause; keep every reason.
        self.failures[clause] = f"{self.failures[clause]}; {why}" if clause in self.failures else why

    def merge(self, other: "Judgement") -> "Judgement":
        for clause, why in other.failures.items():
            self.fail(clause, why)
        return self

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str:
        return "; ".join(f"{clause}: {why}" for clause, why in self.failures.items())


def index(entries: Iterable[Neighbor]) -> dict[Key, Neighbor]:
    return {e.key: e for e in entries}


def show(entries: list[Neighbor]) -> str:
    text = ", ".join(f"{e.address}@{e.ifindex}" + (f" ({e.state})" if e.state in NOT_LANDED_STATES else "")
                     for e in entries[:SHOWN])
    return text + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")


def protected(before: Table, planted: Planted) -> dict[Key, str]:
    """Entries the harness did not plant whose state live traffic cannot recreate."""
    return {k: (e.lladdr or "") for k, e in before.items()
            if e.state in PROTECTED_STATES and k not in planted.seeded and k not in planted.static
            and not _multicast(k[2])}


def _multicast(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_multicast
    except ValueError:
        return False  # kept as the agent printed it: not ours to excuse


def _survivor_problem(now: Neighbor | None, lladdr: str) -> str | None:
    """Why an entry that had to survive did not: gone, another lladdr, or made unusable."""
    if now is None:
        return "removed"
    if now.state in NOT_LANDED_STATES:  # first: Linux drops the lladdr of a failed/incomplete entry
        return f"moved to {now.state}"
    if (now.lladdr or "") != lladdr:
        return "changed link-layer address"
    return None


def _stand_in(before: Table, key: Key, lladdr: str) -> Neighbor:
    return before.get(key) or Neighbor(key[2], key[0], key[1], lladdr, "stale")


def _survivors(before: Table, after: Table, must_survive: Mapping[Key, str]) -> dict[str, list[Neighbor]]:
    """Per problem (removed, changed link-layer address, moved to a state), the entries."""
    out: dict[str, list[Neighbor]] = {}
    for key, lladdr in must_survive.items():
        now = after.get(key)
        problem = _survivor_problem(now, lladdr)
        if problem is not None:
            out.setdefault(_grouped(problem), []).append(now if now is not None else _stand_in(before, key, lladdr))
    return out


def _grouped(problem: str) -> str:
    return "made unusable" if problem.startswith("moved") else problem


def _verb(problem: str) -> str:
    """'removed', 'made unusable', or 'changed link-layer address' after 'were'."""
    return "given another link-layer address" if problem == "changed link-layer address" else problem


def unplanted_changes(before: Table, after: Table, planted: Planted, guarded: Iterable[Key] = ()) -> dict:
    """Changes to entries nobody judges (not planted, not protected): reported only."""
    skip = set(planted.seeded) | set(planted.static) | set(guarded)
    keys_b = {k for k in before if k not in skip}
    keys_a = {k for k in after if k not in skip}
    return {"removed": [before[k].to_dict() for k in sorted(keys_b - keys_a)],
            "added": [after[k].to_dict() for k in sorted(keys_a - keys_b)]}


def judge_flush(before: Table, after: Table, planted: Planted, scope: Scope) -> Judgement:
    """A successful flush of `scope`: seeded entries in scope gone; out of scope every seeded,
    static and protected entry untouched. Static and protected entries in scope are recorded
    (diff `static_in_scope`, `protected_in_scope`), never judged."""
    j = Judgement()
    kept_in_scope = [after[k] for k in planted.seeded if scope.contains(k[0], k[1]) and k in after]
    gone = sum(1 for k in planted.seeded if scope.contains(k[0], k[1]) and k not in after)
    guard = protected(before, planted)
    outside = {k: v for k, v in {**planted.seeded, **planted.static, **guard}.items()
               if not scope.contains(k[0], k[1])}
    problems = _survivors(before, after, outside)
    if kept_in_scope:
        for clause in scope.clauses:
            j.fail(clause, f"{len(kept_in_scope)} seeded entries in scope were not removed "
                           f"({show(kept_in_scope)})")
    removed_out = problems.get("removed", [])
    if removed_out:
        wrong_family = [e for e in removed_out if scope.family not in (AF_UNSPEC, e.family)]
        wrong_if = [e for e in removed_out if scope.ifindex not in (0, e.ifindex)]
        if wrong_family:
            j.fail(FAMILY_CLAUSE[scope.family], f"{len(wrong_family)} entries of the other family "
                                               f"were removed ({show(wrong_family)})")
        if wrong_if:
            j.fail("IF-ONE", f"{len(wrong_if)} entries on other interfaces were removed ({show(wrong_if)})")
    for problem, entries in problems.items():
        j.fail("NO-COLLATERAL", f"{len(entries)} entries outside the scope were {problem} ({show(entries)})"
               if problem != "changed link-layer address" else
               f"{len(entries)} entries outside the scope changed link-layer address ({show(entries)})")
    j.diff = {
        "removed_in_scope": gone,
        "kept_in_scope": [e.to_dict() for e in kept_in_scope],
        "removed_out_of_scope": [e.to_dict() for e in removed_out],
        "changed_out_of_scope": [e.to_dict() for p, es in problems.items() if p != "removed" for e in es],
        "static_in_scope": _in_scope(after, planted.static, scope),
        "protected_in_scope": _in_scope(after, guard, scope),
        "changed_unseeded": unplanted_changes(before, after, planted, guard),
    }
    return j


def _in_scope(after: Table, entries: Mapping[Key, str], scope: Scope) -> dict[str, list[str]]:
    keys = [k for k in entries if scope.contains(k[0], k[1])]
    return {"removed": [f"{k[2]}@{k[1]}" for k in keys if k not in after],
            "kept": [f"{k[2]}@{k[1]}" for k in keys if k in after]}


def judge_unchanged(before: Table, after: Table, planted: Planted,
                    clause: str = "NOCHANGE-ON-ERROR") -> Judgement:
    """A call that must change nothing: every seeded, static and protected entry still there,
    with the same link-layer address and usable."""
    j = Judgement()
    guard = protected(before, planted)
    problems = _survivors(before, after, {**planted.seeded, **planted.static, **guard})
    for problem, entries in problems.items():
        j.fail(clause, f"{len(entries)} planted or protected entries were {problem} ({show(entries)})"
               if problem != "changed link-layer address" else
               f"{len(entries)} planted or protected entries changed link-layer address ({show(entries)})")
    j.diff = {
        "removed_in_scope": 0,
        "kept_in_scope": [],
        "removed_out_of_scope": [e.to_dict() for e in problems.get("removed", [])],
        "changed_out_of_scope": [e.to_dict() for p, es in problems.items() if p != "removed" for e in es],
        "changed_unseeded": unplanted_changes(before, after, planted, guard),
    }
    return j


def judge_durable(before: Table, after: Table, settled: Table, planted: Planted,
                  flushed: Iterable[Scope]) -> Judgement:
    """DURABLE, after the settle window, against what the calls had to do (`flushed`: the
    scopes of the calls that returned SUCCESS; a call that failed had to change nothing):
    - seeded entries in a flushed scope are gone;
    - every seeded, static and protected entry outside the flushed scopes is there, with its
      link-layer address, usable;
    - static and protected entries in a flushed scope (open: OBS-PERMANENT) that were there
      and usable right after the calls still are.
    Judged against the plan, not against the read right after the calls: a daemon quicker than
    that read (a slow harness, a busy device) would otherwise hide in it. The reason says
    which entries were already wrong right after the calls (the cases that judge the calls
    themselves fail those too)."""
    flushed = tuple(flushed)

    def inside(key: Key) -> bool:
        return any(s.contains(key[0], key[1]) for s in flushed)

    j = Judgement()
    guard = protected(before, planted)
    gone = [k for k in planted.seeded if inside(k)]
    stay = {k: v for k, v in {**planted.seeded, **planted.static, **guard}.items() if not inside(k)}
    stay.update({k: after[k].lladdr or "" for k in (*planted.static, *guard)
                 if inside(k) and k in after and after[k].state not in NOT_LANDED_STATES})
    back = [settled[k] for k in gone if k in settled and k not in after]
    never = [settled[k] for k in gone if k in settled and k in after]
    if back:
        j.fail("DURABLE", f"{len(back)} entries the flush removed were back after the settle window "
                          f"({show(back)})")
    if never:
        j.fail("DURABLE", f"{len(never)} seeded entries in the scope of a successful flush were there "
                          f"after the settle window, as right after the calls ({show(never)})")
    late: dict[str, list[Neighbor]] = {}
    early: dict[str, list[Neighbor]] = {}
    for key, lladdr in stay.items():
        problem = _survivor_problem(settled.get(key), lladdr)
        if problem is not None:
            bucket = early if _survivor_problem(after.get(key), lladdr) else late
            bucket.setdefault(_grouped(problem), []).append(settled.get(key) or _stand_in(before, key, lladdr))
    for problem, entries in late.items():
        j.fail("DURABLE", f"{len(entries)} entries that had to stay were {_verb(problem)} after the settle "
                          f"window ({show(entries)})")
    for problem, entries in early.items():
        j.fail("DURABLE", f"{len(entries)} entries that had to stay were {_verb(problem)} after the settle "
                          f"window, as right after the calls ({show(entries)})")
    j.diff = {"back_after_settle": [e.to_dict() for e in back],
              "never_removed": [e.to_dict() for e in never],
              "lost_after_settle": [e.to_dict() for es in late.values() for e in es],
              "lost_since_the_calls": [e.to_dict() for es in early.values() for e in es]}
    return j


def expect_status(j: Judgement, reply, expected: Outcome, clause: str) -> None:
    """The call's outcome must be `expected`; the reason quotes the raw status."""
    if reply.outcome is not expected:
        got = f"{reply.error}: {reply.detail}" if reply.error else describe(reply.raw, reply.space)
        j.fail(clause, f"expected {expected.value}, got {reply.outcome.value} ({got})")


def require_planted(scope: Scope, planted: Planted, unplanted: Mapping[tuple[int, int], str]) -> None:
    """A case that expects removals must have something planted for every family its scope
    names, on its interfaces; else it is `error` (Unjudgeable), never a vacuous pass.

    `unplanted`: (family, ifindex) pairs the device should have entries for but the harness
    could not plant, with why (e.g. the agent cannot read that family's table)."""
    missing = [why for (family, ifindex), why in sorted(unplanted.items())
               if scope.contains(family, ifindex)]
    if missing:
        raise Unjudgeable(f"nothing planted in part of the scope: {'; '.join(missing)}")
    for family in scope.families:
        if any(k[0] == family and scope.contains(k[0], k[1]) for k in planted.seeded):
            return
    names = " or ".join(family_name(f) for f in scope.families)
    raise Unjudgeable(f"no seeded {names} entry in the scope: the case cannot show that the flush removes anything")


def removed_by_state(before: Table, after: Table, keys: Iterable[Key]) -> dict[str, dict[str, int]]:
    """For OBS-STATES: per state seen before the flush, how many entries went and stayed."""
    out: dict[str, dict[str, int]] = {}
    for key in keys:
        entry = before.get(key)
        if entry is None:
            continue
        row = out.setdefault(entry.state, {"removed": 0, "kept": 0})
        row["removed" if key not in after else "kept"] += 1
    return out
