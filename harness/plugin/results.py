"""Results of one conformance run, written on the controller only: results.jsonl as cases
finish (a crash loses no finished case), then results.json, the HTML report and the manifest."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import SUITE_VERSION, __version__
from harness.contract.clauses import RESULTS_SCHEMA
from harness.contract.errata import Erratum, errata_status
from harness.contract.verdicts import count_verdicts


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(3).hex()}"


def _utc(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class ResultsWriter:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = run_dir / "results.jsonl"
        self.cases: dict[str, dict] = {}

    def append(self, case: dict) -> None:
        self.cases[case["id"]] = case
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(case) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self, *, run_id: str, started: datetime, inventory: Any, devices: list[dict],
               entries: int, settle: float, errata: list[Erratum], interrupted: bool) -> dict:
        """results.json, then the sealed report. Errata were applied to each case as it
        finished; here they are only summarised."""
        cases = list(self.cases.values())
        results = {
            "schema": RESULTS_SCHEMA,
            "run_id": run_id,
            "suite_version": SUITE_VERSION,
            "harness_version": __version__,
            "git_commit": _git_commit(),
            "started": _utc(started),
            "finished": _utc(datetime.now(timezone.utc)),
            "interrupted": interrupted,
            "inventory": {"path": str(inventory.path), "sha256": inventory.raw_sha256},
            "entries_per_family": entries,
            "settle_s": settle,
            "devices": devices,
            "cases": cases,
            "summary": count_verdicts(cases),
        }
        if errata:
            results["errata"] = errata_status(errata, cases)
        tmp = self.run_dir / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(self.run_dir / "results.json")
        self._seal()
        return results

    def _seal(self) -> None:
        """The person-readable report, then the manifest (last: it hashes everything else)."""
        from harness.reports.html import write_report
        from harness.reports.manifest import write_manifest
        write_report(self.run_dir)
        write_manifest(self.run_dir)
        latest = self.run_dir.parent / "latest"
        try:
            if latest.is_symlink():
                latest.unlink()
            if not latest.exists():
                latest.symlink_to(self.run_dir.name)
        except OSError:
            pass  # a convenience link only


def _git_commit() -> str | None:
    """The checkout's commit when the harness runs from one; None for an installed copy (whose
    site-packages may sit inside some other git repository: its commit is not ours)."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "pyproject.toml").is_file() or not (checkout / "conformance").is_dir():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=checkout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
