"""5. Cost growth: one flush case (every family, the device's one link) at 64 .. 16,384
entries per family, on one of the bench's own devices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.bench.settings import Settings
from harness.bench.stats import rotate
from harness.bench.suite import SuiteRun, one_case_select, one_case_stats, run_suite


def bench_growth(inventory, device: str, settings: Settings, out: Path,
                 log: Callable[[str], None]) -> dict:
    select = one_case_select(device)
    runs: dict[int, list[SuiteRun]] = {n: [] for n in settings.growth_sizes}
    for round_no in range(settings.growth_rounds):
        for size in rotate(list(settings.growth_sizes), round_no):
            runs[size].append(run_suite(f"growth-{size}-{round_no}", inventory.path, [device], out,
                                        entries=size, select=select))
        log(f"growth: round {round_no + 1}/{settings.growth_rounds}")
    sizes = {str(size): one_case_stats(these) for size, these in runs.items()}
    return {"device": device, "select": select, "links": 1, "sizes": sizes}
