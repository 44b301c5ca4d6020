"""Verdicts and the per-case record that travels from a case to the reports.

A case is judged by the harness, not by pytest's pass/fail alone: a case has to conclude
with a verdict, and a case that returns without one is an `error` (never a pass).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Iterable


class Verdict(str, Enum):
    PASS = "pass"
    FAIL = "fail"  # the implementation broke a judged clause
    ERROR = "error"  # the harness or the device could not run the case
    SKIP = "skip"
    NOT_APPLICABLE = "not-applicable"
    OBSERVED = "observed"  # an observed clause: recorded, never failed
    KNOWN = "known"  # a failure matched by an erratum (errata.toml)


# Every verdict a case can carry, in the order the summary lists them.
VERDICTS = tuple(v.value for v in Verdict)


def count_verdicts(cases: Iterable[dict]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for case in cases:
        counts[case["verdict"]] += 1
    return counts


@dataclass
class CaseRecord:
    """Everything the reports need about one case (results.json `cases[]`)."""

    id: str
    name: str
    test: str
    device: str
    clauses: list[str]
    verdict: str = Verdict.ERROR.value
    family: int | None = None
    family_name: str | None = None
    ifindex: int | None = None
    interface: str | None = None
    status_raw: int | None = None
    status_space: str | None = None
    outcome: str | None = None
    reason: str = ""
    failed_clauses: list[str] = field(default_factory=list)
    observation: dict[str, Any] | None = None
    diff: dict[str, Any] | None = None
    duration_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    # The judged flush call's own time as the agent measured it on the device (the
    # `elapsed_us` extension); None when the agent does not say. timings["flush"] is the
    # harness's view of the same call: the round trip around it.
    flush_elapsed_us: int | None = None
    evidence: str | None = None
    erratum: dict[str, Any] | None = None  # set when errata made a fail `known`
    pcap: dict[str, Any] | None = None  # packet evidence kept for the case (harness/plugin/packets.py)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
