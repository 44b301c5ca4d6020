"""3. The suite as a user runs it: `neighcheck run --device X` in a child process, wall time per
device with the per-case breakdown summed from its results.json and junit.xml, and one flush
case at 16,384 entries per family. Scaling and growth (scaling.py, growth.py) time their runs
with the same run_suite and suite_stats."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.bench.settings import Settings
from harness.bench.stats import Target, paired_ratio, rotate, summarize
from harness.errors import DeviceError

CHECKOUT = Path(__file__).resolve().parents[2]  # the child runs from here, as `make run` does
PHASES = ("seed", "verify", "flush", "snapshot", "judge", "evidence")


@dataclass
class SuiteRun:
    label: str
    wall: float
    exit_code: int
    cases: int
    verdicts: dict[str, int]
    phases: dict[str, float]           # summed over cases (results.json timings)
    case_total: float                  # sum of pytest items' setup + call + teardown (junit.xml)
    case_durations: dict[str, float]   # per item, setup + call + teardown
    record_durations: dict[str, float]  # per case, results.json duration_s (no evidence, no teardown)
    cpu_s: float                       # CPU time of the run's process tree (user + system)
    host_busy: float                   # share of all host CPUs busy during the run (everyone's)
    error: str | None = None
    # per case, the judged flush call's own time as the agent measured it on the device (s)
    flush_device: dict[str, float] = field(default_factory=dict)
    agent_mode: str | None = None      # as the device's fingerprint says

    @property
    def outside_cases(self) -> float:
        """Process start, imports, collection, report writing, exit."""
        return self.wall - self.case_total


def run_suite(label: str, inventory_path: Path, devices: Sequence[str], out: Path, *,
              workers: int = 1, entries: int | None = None, select: str | None = None,
              agent_mode: str | None = None, extra: Sequence[str] = (), timeout: float = 300) -> SuiteRun:
    """`neighcheck run` in a child process, as a user runs it; numbers from its results.json."""
    run_root = (out / label).resolve()  # absolute: the child runs from the checkout
    argv = [sys.executable, "-m", "harness.cli", "run", "--devices", str(inventory_path),
            "--out", str(run_root)]
    for name in devices:
        argv += ["--device", name]
    if workers > 1:
        argv += ["-n", str(workers)]
    if entries is not None:
        argv += ["--entries", str(entries)]
    if agent_mode is not None:
        argv += ["--agent-mode", agent_mode]
    argv += [*extra, "--", "--lock-wait", "60"]
    if select:
        argv += ["-k", select]
    cpu0, busy0 = _children_cpu(), _host_cpu()
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=CHECKOUT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"bench: suite run {label} did not finish within {timeout:g} s") from None
    wall = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    busy1 = _host_cpu()
    host_busy = (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1)
    runs = sorted(p for p in run_root.glob("*/results.json"))
    if not runs:
        raise DeviceError(f"bench: suite run {label} wrote no results (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-400:]}")
    results = json.loads(runs[-1].read_text())
    phases = {p: 0.0 for p in PHASES}
    record_durations, flush_device = {}, {}
    for case in results["cases"]:
        for phase, seconds in case.get("timings", {}).items():
            phases[phase] = phases.get(phase, 0.0) + seconds
        record_durations[case["name"]] = case.get("duration_s") or 0.0
        if isinstance(case.get("flush_elapsed_us"), int):
            flush_device[case["name"]] = case["flush_elapsed_us"] / 1e6
    modes = {(d.get("fingerprint") or {}).get("agent_mode") for d in results.get("devices", [])}
    durations = _junit_item_seconds(runs[-1].parent / "junit.xml")
    summary = {k: v for k, v in results["summary"].items() if v}
    error = None
    if proc.returncode != 0:
        error = f"exit {proc.returncode}: {summary}"
    # Keep results.json only: a 16,384-entry run's evidence is tens of MB.
    kept = out / "runs" / f"{label}.json"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runs[-1], kept)
    shutil.rmtree(run_root, ignore_errors=True)
    return SuiteRun(label, wall, proc.returncode, len(results["cases"]), summary, phases,
                    sum(durations.values()), durations, record_durations, cpu, host_busy, error,
                    flush_device, modes.pop() if len(modes) == 1 else None)


def _junit_item_seconds(path: Path) -> dict[str, float]:
    """pytest's own time per item: setup + call + teardown (junit_duration_report=total)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    return {case.get("name", ""): float(case.get("time", 0)) for case in root.iter("testcase")}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def suite_stats(runs: list[SuiteRun]) -> dict:
    good = [r for r in runs if r.error is None]
    return {
        "runs": len(runs), "failed_runs": [f"{r.label}: {r.error}" for r in runs if r.error],
        "wall_s": summarize([r.wall for r in good]),
        "cases": good[0].cases if good else None,
        "verdicts": good[0].verdicts if good else None,
        "case_total_s": summarize([r.case_total for r in good]),
        "cpu_s": summarize([r.cpu_s for r in good]),
        "host_busy": summarize([r.host_busy for r in good]),
        "outside_cases_s": summarize([r.outside_cases for r in good]),
        # Inside cases but in no timed phase: fixtures, the agent calls of observed cases.
        "case_other_s": summarize([r.case_total - sum(r.phases.values()) for r in good]),
        "phases_s": {p: summarize([r.phases.get(p, 0.0) for r in good]) for p in PHASES},
        "agent_modes": sorted({r.agent_mode or "unknown" for r in good}),
        # the flush call's own time on the device, over every case of every run
        "flush_device_s": summarize([s for r in good for s in r.flush_device.values()]),
        "samples": [asdict(r) | {"outside_cases": r.outside_cases} for r in runs],
    }


def one_case_select(device: str) -> str:
    """The -k selection of one flush case: every family, every link of `device`."""
    return f"test_flush_scope and {device}-AF_UNSPEC-all"


def one_case_stats(runs: list[SuiteRun]) -> dict:
    """suite_stats of runs that selected one case, plus that case's own times."""
    good = [r for r in runs if not r.error]
    return suite_stats(runs) | {
        "case_s": summarize([_only_case(r.case_durations) for r in good]),
        "record_duration_s": summarize([_only_case(r.record_durations) for r in good]),
        "flush_device_s": summarize([_only_case(r.flush_device) for r in good])}


def _only_case(values: dict[str, float]) -> float | None:
    """The one selected case's number (None when the selection ran not exactly one case)."""
    return next(iter(values.values())) if len(values) == 1 else None


def bench_suite(inventory, reference: str, settings: Settings, out: Path,
                log: Callable[[str], None]) -> dict:
    names = [d.name for d in inventory.devices if d.os == "linux"] or [reference]
    names = [reference] + [n for n in names if n != reference]
    # Every device in the default (serve) agent mode; the reference also per call, and with the
    # checks issue 12 added turned off (CHECKS_OFF), in the same rounds, so that each is compared
    # under the same load.
    contenders = [(n, None) for n in names] + [(reference, "per-call"), (reference, "checks-off")]
    runs: dict[tuple[str, str | None], list[SuiteRun]] = {c: [] for c in contenders}
    for round_no in range(settings.suite_rounds):
        for name, mode in rotate(contenders, round_no):
            label = f"suite-{name}-{mode or 'default'}-{round_no}"
            runs[(name, mode)].append(run_suite(
                label, inventory.path, [name], out, agent_mode=None if mode == "checks-off" else mode,
                extra=CHECKS_OFF if mode == "checks-off" else ()))
        log(f"suite: round {round_no + 1}/{settings.suite_rounds} ({', '.join(names)}; "
            f"{reference} also per call)")
    result: dict[str, Any] = {"reference": reference,
                              "devices": {n: suite_stats(runs[(n, None)]) for n in names}}
    per_call = runs[(reference, "per-call")]
    result["agent_modes"] = {
        "device": reference,
        "serve": result["devices"][reference],
        "per-call": suite_stats(per_call),
        "per_call_vs_serve": paired_ratio([r.wall if not r.error else None for r in per_call],
                                          [r.wall if not r.error else None for r in runs[(reference, None)]])}
    result["checks"] = check_costs(runs[(reference, None)], runs[(reference, "checks-off")])
    if settings.big_entries:
        select = one_case_select(reference)
        big = [run_suite(f"big-{reference}-{i}", inventory.path, [reference], out,
                         entries=settings.big_entries, select=select) for i in range(settings.big_rounds)]
        result["big_case"] = one_case_stats(big) | {"entries_per_family": settings.big_entries,
                                                    "select": select}
        log(f"suite: {settings.big_rounds} runs of one case at {settings.big_entries} entries")
    return result


# Issue 12's checks, off: the settle window (DURABLE) and the scale cases. What they cost is also
# read per case from the default runs (CHECK_CASES), with the static entries' planting.
CHECKS_OFF = ("--settle", "0", "--scale-entries", "0")
CHECK_CASES = {"DURABLE (settle window)": lambda name: name.startswith("test_durable["),
               "scale cases (--scale-entries)": lambda name: name.startswith("test_flush_scale["),
               "invalid families at a link's index": lambda name: name.startswith("test_invalid_family[")
               and not name.endswith("-all]")}


def check_costs(default: list[SuiteRun], off: list[SuiteRun]) -> dict:
    """The suite with every check on (the default) against the checks off, in the same rounds,
    and each check's own cases' time (pytest setup + call + teardown) in the default runs."""
    good = [r for r in default if not r.error]
    per_check = {label: summarize([sum(v for k, v in r.case_durations.items() if match(k)) for r in good])
                 for label, match in CHECK_CASES.items()}
    per_check["static entries (planting)"] = summarize([r.phases.get("statics", 0.0) for r in good])
    return {"off_flags": " ".join(CHECKS_OFF), "off": suite_stats(off), "on": suite_stats(default),
            "on_vs_off": paired_ratio([r.wall if not r.error else None for r in default],
                                      [r.wall if not r.error else None for r in off]),
            "per_check_s": per_check}


def suite_targets(suite: dict, settings: Settings) -> list[Target]:
    ref = suite["reference"]
    wall = suite["devices"][ref]["wall_s"]["median"]
    targets = [Target(f"suite on {ref}: wall time, every check on", wall, 4.0, "<=", "s")]
    big = suite.get("big_case")
    targets.append(Target(f"one flush case on {ref} at 16,384/family", big["case_s"]["median"] if big else None,
                          1.5, "<=", "s", "" if big else "skipped (--quick)"))
    modes = suite.get("agent_modes")
    if modes:
        targets.append(Target(f"suite on {ref}: per-call / serve wall time", modes["per_call_vs_serve"]["median"],
                              1.5, ">=", "x"))
    return targets

