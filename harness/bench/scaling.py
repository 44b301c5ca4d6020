"""4. Scaling: the suite on 1, 2 and 4 of the bench's own devices with `-n` equal to the
device count; the wall time against one device's, paired by round."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from harness.bench.settings import Settings
from harness.bench.stats import Target, paired_ratio, rotate
from harness.bench.suite import SuiteRun, run_suite, suite_stats


def bench_scaling(inventory, devices: Sequence[str], settings: Settings, out: Path,
                  log: Callable[[str], None]) -> dict:
    """`devices`: the inventory's devices to use, in order (the first N for N devices)."""
    runs: dict[int, list[SuiteRun]] = {n: [] for n in settings.scale_counts}
    for round_no in range(settings.scale_rounds):
        for count in rotate(list(settings.scale_counts), round_no):
            runs[count].append(run_suite(f"scale-{count}-{round_no}", inventory.path,
                                         list(devices[:count]), out, workers=count))
        log(f"scaling: round {round_no + 1}/{settings.scale_rounds}")
    one = [r.wall for r in runs[settings.scale_counts[0]]]
    return {"devices": {str(n): suite_stats(r) | {"vs_one": paired_ratio([x.wall for x in r], one)}
                        for n, r in runs.items()}}


def scaling_targets(scaling: dict | None, settings: Settings) -> list[Target]:
    row = (scaling or {}).get("devices", {}).get("4")
    return [Target("scaling: 4 devices / 1 device wall time", row["vs_one"]["median"] if row else None,
                   1.5, "<=", "x", "" if row else "skipped (--quick)")]
