"""The bench's statistics: medians and spread, ratios paired by round, alternation of
contenders, targets and their verdicts, and the host's load."""

from __future__ import annotations

import os
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """Median and spread (p10/p90, inclusive quantiles) of a sample; None values are left out."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {"n": 0, "median": None, "p10": None, "p90": None}
    if len(vals) == 1:
        p10 = p90 = vals[0]
    else:
        cuts = statistics.quantiles(vals, n=10, method="inclusive")
        p10, p90 = cuts[0], cuts[-1]
    return {"n": len(vals), "median": statistics.median(vals), "p10": p10, "p90": p90,
            "min": vals[0], "max": vals[-1]}


def paired_ratio(numerator: Sequence[float | None], denominator: Sequence[float | None]) -> dict[str, Any]:
    """Ratios of samples taken in the same round (load drift cancels), summarized."""
    return summarize([a / b for a, b in zip(numerator, denominator) if a and b])


def rotate(items: Sequence, round_no: int) -> list:
    """A B C, B C A, C A B...: alternation without one contender always going first."""
    k = round_no % len(items)
    return list(items[k:]) + list(items[:k])


@dataclass
class Target:
    name: str
    measured: float | None
    limit: float
    better: str                      # "<=" or ">="
    unit: str = ""
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        ok = self.measured <= self.limit if self.better == "<=" else self.measured >= self.limit
        return "pass" if ok else "short"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def host_load() -> dict[str, Any]:
    """The host's load averages (everyone's jobs, not only the bench's)."""
    one, five, fifteen = os.getloadavg()
    return {"load1": one, "load5": five, "load15": fifteen, "cpus": os.cpu_count(),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()}
