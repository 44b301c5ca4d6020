"""Merge runs made on several harness hosts (sharded by device) into one run directory.

Refuses what would make the merged verdicts lie: runs of different suite versions, a device in
two runs (it would be counted twice), runs that did not finish, and runs whose manifest no
longer verifies. Each source run is copied whole under `sources/<run id>/` (its own results,
report, manifest and evidence stay checkable) and every case's evidence path is rewritten to
point there. The summary is recomputed from the cases, never added up from the sources.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path, PurePosixPath

from harness.errors import UsageError
from harness.reports import html, manifest
from harness.reports.model import (MANIFEST_FILE, RESULTS_FILE, RESULTS_SCHEMA, device_names, load_results,
                                   results_for_writing)

SOURCES_DIR = "sources"


def _common(values: list, mixed: object = "mixed") -> object:
    distinct = {json.dumps(v, sort_keys=True) for v in values}
    return values[0] if len(distinct) == 1 else mixed


def _directory_name(run_id: object, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(run_id or "run")).lstrip(".") or "run"
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}-{number}", number + 1
    taken.add(candidate)
    return candidate


def _load_sources(run_dirs: list[Path]) -> list[dict]:
    loaded = []
    for run_dir in run_dirs:
        if not (run_dir / RESULTS_FILE).is_file():
            raise UsageError(f"{run_dir}: no {RESULTS_FILE}: only finished runs can be merged")
        results = load_results(run_dir)
        if results.get("incomplete"):
            raise UsageError(f"{run_dir}: the run was interrupted: only finished runs can be merged")
        if (run_dir / MANIFEST_FILE).exists():
            problems = manifest.verify(run_dir)
            if problems:
                raise UsageError(f"{run_dir}: manifest check failed ({len(problems)} problem(s), first: "
                                 f"{problems[0]}): refusing to merge a run that changed after it was sealed")
        loaded.append(results)
    return loaded


def _check_compatible(run_dirs: list[Path], runs: list[dict]) -> None:
    versions = {str(r.get("suite_version")) for r in runs}
    if len(versions) > 1:
        listing = ", ".join(f"{d} has {r.get('suite_version')!r}" for d, r in zip(run_dirs, runs))
        raise UsageError(f"runs of different suite versions cannot be merged: {listing}")
    owner: dict[str, Path] = {}
    for run_dir, results in zip(run_dirs, runs):
        for device in device_names(results):
            if device in owner:
                raise UsageError(f"device {device!r} is in both {owner[device]} and {run_dir}: "
                                 f"a device is never counted twice; merge runs sharded by device")
            owner[device] = run_dir
    seen: dict[str, Path] = {}
    for run_dir, results in zip(run_dirs, runs):
        for case in results["cases"]:
            if case["id"] in seen:
                raise UsageError(f"case {case['id']!r} is in both {seen[case['id']]} and {run_dir}")
            seen[case["id"]] = run_dir


def _rebase_evidence(evidence: object, prefix: str) -> object:
    if not isinstance(evidence, str) or not evidence:
        return evidence
    path = PurePosixPath(evidence)
    if path.is_absolute() or ".." in path.parts:
        return evidence  # left as recorded; manifest.verify reports it
    return f"{prefix}/{evidence}"


def merge_runs(run_dirs: list[Path | str], out_dir: Path | str) -> Path:
    """Write one merged run (results.json, report.html, manifest.json) into out_dir; return out_dir."""
    run_dirs = [Path(d) for d in run_dirs]
    out_dir = Path(out_dir)
    if not run_dirs:
        raise UsageError("merge needs at least one run directory")
    resolved = [d.resolve() for d in run_dirs]
    if len(set(resolved)) != len(resolved):
        raise UsageError("the same run directory is given twice")
    target = out_dir.resolve()
    for source in resolved:
        if target == source or source in target.parents or target in source.parents:
            raise UsageError(f"--out {out_dir} overlaps the input run {source}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(f"--out {out_dir} exists and is not an empty directory")

    runs = _load_sources(run_dirs)
    _check_compatible(run_dirs, runs)

    taken: set[str] = set()
    names = [_directory_name(r.get("run_id"), taken) for r in runs]
    cases, devices, sources, errata = [], [], [], []
    for name, results in zip(names, runs):
        prefix = f"{SOURCES_DIR}/{name}"
        for case in results["cases"]:
            case = dict(case, evidence=_rebase_evidence(case.get("evidence"), prefix))
            if isinstance(case.get("pcap"), dict) and case["pcap"].get("file"):
                case["pcap"] = dict(case["pcap"], file=_rebase_evidence(case["pcap"]["file"], prefix))
            cases.append(case)
        devices += results.get("devices", [])
        errata += [dict(entry, run_id=results.get("run_id")) for entry in results.get("errata", [])]
        sources.append({key: results.get(key) for key in
                        ("run_id", "git_commit", "harness_version", "started", "finished", "inventory")}
                       | {"devices": device_names(results), "directory": prefix})

    run_ids = sorted(str(r.get("run_id")) for r in runs)
    started = [r["started"] for r in runs if r.get("started")]
    finished = [r["finished"] for r in runs if r.get("finished")]
    merged = {
        "schema": RESULTS_SCHEMA,
        "run_id": "merged-" + hashlib.sha256("\n".join(run_ids).encode()).hexdigest()[:12],
        "suite_version": runs[0].get("suite_version"),
        "harness_version": _common([r.get("harness_version") for r in runs]),
        "git_commit": _common([r.get("git_commit") for r in runs]),
        "started": min(started) if started else None,
        "finished": max(finished) if finished else None,
        "inventory": _common([r.get("inventory") for r in runs], {"path": "(one per source run)", "sha256": None}),
        "devices": devices,
        "cases": cases,
        "merged_from": sources,
    }
    if errata:
        merged["errata"] = errata

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, run_dir in zip(names, run_dirs):
        shutil.copytree(run_dir, out_dir / SOURCES_DIR / name)
    (out_dir / RESULTS_FILE).write_text(json.dumps(results_for_writing(merged), indent=2) + "\n", encoding="utf-8")
    html.write_report(out_dir)
    manifest.write_manifest(out_dir)
    return out_dir
