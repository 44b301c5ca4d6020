"""`neighcheck run`: the conformance suite through pytest, then the report files.

The run directory is reports/<run-id>/ (results.jsonl, results.json, junit.xml, evidence/,
report.html, manifest.json) and reports/latest points at the newest run. The exit code is 0
only when no case failed or errored (failures covered by errata count as known).

`--shard K/N` runs the K-th of N deterministic, disjoint subsets of the selected devices, so N
CI jobs (on the harness hosts wired to their devices) split a lab, and `neighcheck report
merge` joins their runs into one. The assignment (shard_devices) is by name: the devices sorted
by name, the i-th (from 0) in shard i mod N + 1. It depends only on the names, never on the
host, the order of the inventory or the time, and shard sizes differ by one at most.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

from harness.contract.clauses import MAX_ENTRIES
from harness.plugin import DEFAULT_ENTRIES
from harness.errors import UsageError
from harness.inventory import load_inventory
from harness.plugin.results import new_run_id
from harness.traffic.capability import require_raw_sockets

SUITE_PACKAGE = "conformance"


def suite_dir() -> Path:
    """The conformance suite's directory: the `conformance` package installed beside the
    harness (site-packages from a wheel, the checkout's own with an editable install)."""
    spec = importlib.util.find_spec(SUITE_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(p) for p in locations if (Path(p) / "test_flush.py").is_file()]
    if not found:
        raise UsageError(f"the conformance suite (package {SUITE_PACKAGE!r}) is not installed "
                         "beside the harness; reinstall neighcheck (pip install .)")
    return found[0].resolve()


def _out_dir(value: str) -> Path:
    path = Path(value)
    if ".." in path.parts:
        raise UsageError(f"--out {value!r}: '..' is not allowed in the report directory; "
                         "give a plain or absolute path")
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {value!r} exists and is not a directory")
    return path


def parse_shard(value: str) -> tuple[int, int]:
    """`K/N` -> (K, N), 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if not match:
        raise UsageError(f"--shard {value!r}: write it as K/N, e.g. --shard 2/3 (the second of three)")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n <= 1024:
        raise UsageError(f"--shard {value!r}: K must be 1..N (and N at most 1024), e.g. --shard 1/{max(n, 2)}")
    return k, n


def shard_devices(names: list[str], k: int, n: int) -> list[str]:
    """The names of shard K of N: sorted by name, the i-th (from 0) goes to shard i mod N + 1."""
    return [name for i, name in enumerate(sorted(names)) if i % n == k - 1]


def _workers(value: str | None, device_count: int) -> list[str]:
    if value is None:
        return []
    if value == "auto":
        n = device_count  # devices run in parallel; one device's cases stay on one worker
    else:
        try:
            n = int(value)
        except ValueError:
            raise UsageError(f"-n {value!r}: give a number of workers or 'auto'") from None
        if not 0 <= n <= 64:
            raise UsageError(f"-n {n}: use 0..64 workers")
    return ["-n", str(n), "--dist", "loadgroup"] if n > 1 else []


def run_suite(args) -> int:
    import pytest

    inventory = load_inventory(args.devices)
    devices = inventory.select(args.device)
    selected = list(args.device or [])
    if args.shard:
        k, n = parse_shard(args.shard)
        if n > len(devices):
            raise UsageError(f"--shard {k}/{n}: only {len(devices)} device(s) are selected, so a shard "
                             f"would be empty; use at most {len(devices)} shards")
        selected = shard_devices([d.name for d in devices], k, n)
        devices = inventory.select(selected)
        print(f"shard {k}/{n}: {', '.join(selected)}")
    if args.entries is not None and not 1 <= args.entries <= MAX_ENTRIES:
        raise UsageError(f"--entries {args.entries}: use 1..{MAX_ENTRIES}")
    if args.scale_entries is not None and not 0 <= args.scale_entries <= MAX_ENTRIES:
        raise UsageError(f"--scale-entries {args.scale_entries}: use 0..{MAX_ENTRIES} (0: no scale cases)")
    if args.settle is not None and not 0 <= args.settle <= 60:
        raise UsageError(f"--settle {args.settle:g}: use 0..60 seconds (0: DURABLE not judged)")
    from harness.traffic.seeding import check_plans
    check_plans(devices, args.entries if args.entries is not None else DEFAULT_ENTRIES)
    if args.errata and not Path(args.errata).is_file():
        raise UsageError(f"--errata {args.errata}: file not found")
    suite = suite_dir()
    require_raw_sockets(devices)
    out = _out_dir(args.out)
    run_id = new_run_id()
    run_dir = out / run_id
    passthrough = list(args.pytest_args or [])
    if passthrough[:1] == ["--"]:
        passthrough = passthrough[1:]
    # Pinned to the suite wherever it is installed: the same test ids as in a checkout, and no
    # ini file (-c: an empty one) or conftest.py from the directories above it (a venv may sit
    # inside someone else's project).
    # labgrid's own pytest plugin (targets, strategies) is not used: neighcheck talks to the
    # coordinator through labgrid's client library. Loaded, it costs 0.7 s per process.
    argv = [str(suite), "-p", "no:cacheprovider", "-p", "no:labgrid", "-q", "--rootdir", str(suite.parent),
            "-c", os.devnull, "--confcutdir", str(suite),
            # Installed from a wheel, pytest marks the harness (its plugin) for assertion
            # rewriting after this command imported it, and says so in every run's summary.
            "-W", "ignore:Module already imported so cannot be rewritten; harness:pytest.PytestAssertRewriteWarning",
            "--devices", str(inventory.path), "--report-dir", str(run_dir),
            "--junitxml", str(run_dir / "junit.xml"), "-o", "junit_family=xunit2",
            "-o", "junit_suite_name=neighcheck"]
    for name in selected:
        argv += ["--device", name]
    if args.entries is not None:
        argv += ["--entries", str(args.entries)]
    if args.scale_entries is not None:
        argv += ["--scale-entries", str(args.scale_entries)]
    if args.settle is not None:
        argv += ["--settle", f"{args.settle:g}"]
    if args.errata:
        argv += ["--errata", args.errata]
    if args.agent_mode:
        argv += ["--agent-mode", args.agent_mode]
    if args.lg_coordinator:
        argv += ["--lg-coordinator", args.lg_coordinator]
    if args.place_wait is not None:
        argv += ["--place-wait", str(args.place_wait)]
    if args.pcap:
        argv += ["--pcap", args.pcap]
    argv += _workers(args.workers, len(devices)) + passthrough
    code = pytest.main(argv)
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.NO_TESTS_COLLECTED):
        return 2
    results_path = run_dir / "results.json"
    if not results_path.exists():
        print(f"neighcheck: no results were written (pytest exit {int(code)})")
        return 130 if code == pytest.ExitCode.INTERRUPTED else 1
    results = json.loads(results_path.read_text())
    summary = results["summary"]
    print(f"report: {run_dir}/report.html" if (run_dir / "report.html").exists() else f"report: {run_dir}")
    if code == pytest.ExitCode.INTERRUPTED:
        return 130
    return 0 if summary.get("fail", 0) == 0 and summary.get("error", 0) == 0 and code == 0 else 1
