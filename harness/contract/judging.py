"""Judging: from the planted entries and the before/after tables to failed clauses.

Pure functions, no I/O, so the rules are easy to read and to unit-test. Seeded entries are
judged exactly (in scope: gone; out of scope: present with the same link-layer address).
Entries the harness did not plant (the SSH peer, multicast entries) may be re-learned by
live traffic at any time, so their changes are reported, never judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from harness.contract.clauses import AF_UNSPEC, FAMILY_CLAUSE
from harness.device.protocol import Key, Neighbor

SHOWN = 5  # entries quoted in a reason; the evidence file has all of them


@dataclass(frozen=True)
class Scope:
    family: int  # AF_UNSPEC, AF_INET or AF_INET6
    ifindex: int  # 0: every interface

    def contains(self, family: int, ifindex: int) -> bool:
        return (self.family == AF_UNSPEC or self.family == family) and \
            (self.ifindex == 0 or self.ifindex == ifindex)

    @property
    def clauses(self) -> list[str]:
        return [FAMILY_CLAUSE[self.family], "IF-ALL" if self.ifindex == 0 else "IF-ONE"]


@dataclass
class Judgement:
    failures: dict[str, str] = field(default_factory=dict)  # clause -> why it failed
    diff: dict[str, Any] = field(default_factory=dict)

    def fail(self, clause: str, why: str) -> None:
        # Several problems can break one clause; keep every reason.
        self.failures[clause] = f"{self.failures[clause]}; {why}" if clause in self.failures else why

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str:
        return "; ".join(f"{clause}: {why}" for clause, why in self.failures.items())


def index(entries: Iterable[Neighbor]) -> dict[Key, Neighbor]:
    return {e.key: e for e in entries}


def _show(entries: list[Neighbor]) -> str:
    text = ", ".join(f"{e.address}@{e.ifindex}" for e in entries[:SHOWN])
    return text + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")


def unseeded_changes(before: dict[Key, Neighbor], after: dict[Key, Neighbor],
                     planted: dict[Key, str]) -> dict[str, list[dict]]:
    """Changes to entries the harness did not plant: reported, never judged."""
    keys_b = {k for k in before if k not in planted}
    keys_a = {k for k in after if k not in planted}
    return {
        "removed": [before[k].to_dict() for k in sorted(keys_b - keys_a)],
        "added": [after[k].to_dict() for k in sorted(keys_a - keys_b)],
    }


def judge_flush(before: dict[Key, Neighbor], after: dict[Key, Neighbor], planted: dict[Key, str],
                scope: Scope) -> Judgement:
    """A successful flush of `scope`: planted entries in scope gone, the others untouched."""
    j = Judgement()
    gone_ok, kept_in_scope, removed_out, changed_out = 0, [], [], []
    for key, lladdr in planted.items():
        family, ifindex, _ = key
        now = after.get(key)
        if scope.contains(family, ifindex):
            if now is None:
                gone_ok += 1
            else:
                kept_in_scope.append(now)
        elif now is None:
            removed_out.append(before.get(key) or Neighbor(key[2], family, ifindex, lladdr, "stale"))
        elif now.lladdr != lladdr:
            changed_out.append(now)
    if kept_in_scope:
        for clause in scope.clauses:
            j.fail(clause, f"{len(kept_in_scope)} seeded entries in scope were not removed "
                           f"({_show(kept_in_scope)})")
    if removed_out:
        wrong_family = [e for e in removed_out if scope.family not in (AF_UNSPEC, e.family)]
        wrong_if = [e for e in removed_out if scope.ifindex not in (0, e.ifindex)]
        if wrong_family:
            j.fail(FAMILY_CLAUSE[scope.family], f"{len(wrong_family)} entries of the other family "
                                               f"were removed ({_show(wrong_family)})")
        if wrong_if:
            j.fail("IF-ONE", f"{len(wrong_if)} entries on other interfaces were removed ({_show(wrong_if)})")
        j.fail("NO-COLLATERAL", f"{len(removed_out)} seeded entries outside the scope were removed "
                                f"({_show(removed_out)})")
    if changed_out:
        j.fail("NO-COLLATERAL", f"{len(changed_out)} entries outside the scope changed link-layer "
                                f"address ({_show(changed_out)})")
    j.diff = {
        "removed_in_scope": gone_ok,
        "kept_in_scope": [e.to_dict() for e in kept_in_scope],
        "removed_out_of_scope": [e.to_dict() for e in removed_out],
        "changed_out_of_scope": [e.to_dict() for e in changed_out],
        "changed_unseeded": unseeded_changes(before, after, planted),
    }
    return j


def judge_unchanged(before: dict[Key, Neighbor], after: dict[Key, Neighbor],
                    planted: dict[Key, str], clause: str = "NOCHANGE-ON-ERROR") -> Judgement:
    """A call that must change nothing: every planted entry still there, same lladdr."""
    j = Judgement()
    missing = [before.get(k) or Neighbor(k[2], k[0], k[1], ll, "stale")
               for k, ll in planted.items() if k not in after]
    changed = [after[k] for k, ll in planted.items() if k in after and after[k].lladdr != ll]
    if missing:
        j.fail(clause, f"{len(missing)} seeded entries were removed ({_show(missing)})")
    if changed:
        j.fail(clause, f"{len(changed)} seeded entries changed link-layer address ({_show(changed)})")
    j.diff = {
        "removed_in_scope": 0,
        "kept_in_scope": [],
        "removed_out_of_scope": [e.to_dict() for e in missing],
        "changed_out_of_scope": [e.to_dict() for e in changed],
        "changed_unseeded": unseeded_changes(before, after, planted),
    }
    return j


def removed_by_state(before: dict[Key, Neighbor], after: dict[Key, Neighbor],
                     keys: Iterable[Key]) -> dict[str, dict[str, int]]:
    """For OBS-STATES: per state seen before the flush, how many entries went and stayed."""
    out: dict[str, dict[str, int]] = {}
    for key in keys:
        entry = before.get(key)
        if entry is None:
            continue
        row = out.setdefault(entry.state, {"removed": 0, "kept": 0})
        row["removed" if key not in after else "kept"] += 1
    return out
