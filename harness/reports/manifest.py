"""Seal a run directory: SHA-256 of every artifact, so a certification run can be checked later.

`manifest.json` lists every regular file under the run directory (results, report, evidence,
logs) except itself. `verify` re-hashes and names each file that changed, went missing or
appeared, and each evidence file a case points at that is not there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from harness import __version__ as HARNESS_VERSION
from harness.errors import UsageError
from harness.reports.model import MANIFEST_FILE, RESULTS_FILE, STREAM_FILE, load_results

MANIFEST_SCHEMA = "neighcheck-manifest/1"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _walk(run_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """Artifacts by relative POSIX path, and the paths that are not regular files."""
    files, odd = {}, []
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir).as_posix()
        if path.is_symlink():
            # A link can point outside the run and change without the run changing.
            odd.append(relative)
        elif path.is_file() and relative != MANIFEST_FILE:
            files[relative] = path
    return files, odd


def _run_metadata(run_dir: Path) -> dict:
    if not ((run_dir / RESULTS_FILE).is_file() or (run_dir / STREAM_FILE).is_file()):
        return {}
    results = load_results(run_dir)
    return {key: results.get(key) for key in ("run_id", "suite_version", "harness_version", "git_commit")}


def write_manifest(run_dir: Path | str) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a directory")
    files, odd = _walk(run_dir)
    if odd:
        raise UsageError(f"{run_dir}: symbolic links cannot be sealed, copy the file instead: {', '.join(odd)}")
    metadata = _run_metadata(run_dir)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "run_id": metadata.get("run_id"),
        "suite_version": metadata.get("suite_version"),
        "git_commit": metadata.get("git_commit"),
        "harness_version": metadata.get("harness_version"),
        "sealed_by": f"neighcheck {HARNESS_VERSION}",
        "algorithm": "sha256",
        "files": {name: {"sha256": _sha256(path), "size": path.stat().st_size}
                  for name, path in files.items()},
    }
    target = run_dir / MANIFEST_FILE
    temporary = target.with_name(f".{MANIFEST_FILE}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(target)  # atomic: a reader never sees half a manifest
    return target


def _safe_relative(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts


def _evidence_problems(run_dir: Path) -> list[str]:
    if not ((run_dir / RESULTS_FILE).is_file() or (run_dir / STREAM_FILE).is_file()):
        return []
    try:
        results = load_results(run_dir)
    except UsageError as exc:
        return [f"results unreadable: {exc}"]
    problems = []
    for case in results["cases"]:
        pcap = case.get("pcap")
        for evidence in (case.get("evidence"), pcap.get("file") if isinstance(pcap, dict) else None):
            if not evidence:
                continue
            if not isinstance(evidence, str) or not _safe_relative(evidence):
                problems.append(f"evidence path outside the run: {evidence!r} (case {case['id']})")
            elif not (run_dir / evidence).is_file():
                problems.append(f"evidence not found: {evidence} (case {case['id']})")
    return problems


def verify(run_dir: Path | str) -> list[str]:
    """Problems found, one line each; an empty list means the run is intact."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return [f"not a directory: {run_dir}"]
    manifest_path = run_dir / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [f"missing: {MANIFEST_FILE}"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [f"manifest unreadable: {exc}"]
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA \
            or not isinstance(manifest.get("files"), dict):
        return [f"manifest unreadable: not a {MANIFEST_SCHEMA} document"]

    problems = []
    files, odd = _walk(run_dir)
    problems += [f"not a regular file: {name}" for name in odd]
    for name, recorded in sorted(manifest["files"].items()):
        if not _safe_relative(name):
            problems.append(f"bad path in manifest: {name!r}")
        elif name not in files:
            problems.append(f"missing: {name}")
        elif not isinstance(recorded, dict) or _sha256(files[name]) != recorded.get("sha256"):
            problems.append(f"changed: {name}")
    problems += [f"extra: {name}" for name in files if name not in manifest["files"]]
    problems += _evidence_problems(run_dir)
    return problems
