"""The results model every report module shares: clause catalog, verdicts, loading a run.

A run directory holds `results.json` (written when the run ends) and `results.jsonl` (one case
per line, appended as cases finish). A run that died before the end has only the stream; it is
loaded, marked incomplete and never presented as a finished run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.contract.clauses import CLAUSE_BY_ID, CLAUSES, FAMILY_NAMES, RESULTS_SCHEMA, family_name as _family_label
from harness.contract.status import code_name
from harness.contract.verdicts import VERDICTS, count_verdicts
from harness.errors import UsageError

RESULTS_FILE = "results.json"
STREAM_FILE = "results.jsonl"
REPORT_FILE = "report.html"
MANIFEST_FILE = "manifest.json"

# When several cases meet in one cell or clause, the most alarming one is shown.
_SEVERITY = {"error": 6, "fail": 5, "known": 4, "pass": 3, "observed": 2, "not-applicable": 1, "skip": 0}
# Verdicts that mean "the implementation was actually judged".
JUDGED_VERDICTS = ("pass", "fail", "error", "known")

SCOPE_TEST = "test_flush_scope"
MATRIX_FAMILIES = tuple(FAMILY_NAMES.values())
ALL_INTERFACES = "all"


def status_name(raw: int | None, space: str | None) -> str:
    """The symbolic name of a raw status, or "" when the code is not known."""
    return "" if raw is None else code_name(raw, space)


def status_hex(raw: int | None) -> str:
    # NTSTATUS values are 32-bit; a negative raw (signed C int) shows as its unsigned bits.
    return "" if raw is None else f"0x{raw & 0xFFFFFFFF:08X}"


def severity(verdict: str) -> int:
    return _SEVERITY.get(verdict, _SEVERITY["error"])


def worst_verdict(verdicts: Iterable[str]) -> str | None:
    verdicts = list(verdicts)
    return max(verdicts, key=severity) if verdicts else None


def clause_verdict(case: dict, clause_id: str) -> str:
    """The case's verdict as it bears on one clause.

    A failing case that names the clauses it failed (`failed_clauses`) passed the others it checks:
    a collateral-damage failure is not a RET-SUCCESS failure.
    """
    verdict = case["verdict"]
    failed = case.get("failed_clauses")
    if verdict in ("fail", "known") and failed and clause_id not in failed:
        return "pass"
    return verdict


def overall_verdict(results: dict) -> str:
    """One word for the whole run. A run with nothing judged never reads as a pass."""
    counts = count_verdicts(results["cases"])
    if results.get("incomplete") or results.get("interrupted"):
        return "INCOMPLETE"
    if counts["fail"] or counts["error"]:
        return "FAIL"
    if counts["pass"] + counts["known"] == 0:
        return "NOTHING-JUDGED"
    return "PASS"


def family_name(case: dict) -> str:
    name = case.get("family_name")
    if name:
        return str(name)
    return _family_label(case.get("family"))


def interface_column(case: dict) -> str:
    if case.get("ifindex") == 0:
        return ALL_INTERFACES
    if case.get("interface"):
        return str(case["interface"])
    return f"if{case.get('ifindex')}"


def is_matrix_case(case: dict) -> bool:
    return case.get("test") == SCOPE_TEST and family_name(case) in MATRIX_FAMILIES


@dataclass
class Matrix:
    """One device's family x interface grid of test_flush_scope cases."""

    device: str
    families: tuple[str, ...]
    columns: list[str]
    cells: dict[tuple[str, str], list[dict]]

    def cases_at(self, family: str, column: str) -> list[dict]:
        return self.cells.get((family, column), [])

    def verdict_at(self, family: str, column: str) -> str | None:
        return worst_verdict(case["verdict"] for case in self.cases_at(family, column))


def device_names(results: dict) -> list[str]:
    """Devices in inventory order, then any device that appears only in cases."""
    names = [str(device["name"]) for device in results.get("devices", [])]
    for case in results["cases"]:
        device = case.get("device")
        if device is not None and str(device) not in names:
            names.append(str(device))
    return names


def device_matrix(results: dict, device: str) -> Matrix:
    columns = [ALL_INTERFACES]
    for entry in results.get("devices", []):
        if entry.get("name") == device:
            interfaces = sorted(entry.get("interfaces", []), key=lambda i: i.get("index", 0))
            columns += [str(i["name"]) for i in interfaces if str(i["name"]) not in columns]
    cells: dict[tuple[str, str], list[dict]] = {}
    for case in results["cases"]:
        if case.get("device") != device or not is_matrix_case(case):
            continue
        column = interface_column(case)
        if column not in columns:
            columns.append(column)
        cells.setdefault((family_name(case), column), []).append(case)
    return Matrix(device, MATRIX_FAMILIES, columns, cells)


def _check_case(case: Any, where: str) -> None:
    if not isinstance(case, dict):
        raise UsageError(f"{where}: a case is not a JSON object")
    for key in ("id", "verdict"):
        if not isinstance(case.get(key), str):
            raise UsageError(f"{where}: case {case.get('id')!r} has no string {key!r}")
    if case["verdict"] not in VERDICTS:
        raise UsageError(f"{where}: case {case['id']!r} has unknown verdict {case['verdict']!r}")
    if not isinstance(case.get("clauses", []), list):
        raise UsageError(f"{where}: case {case['id']!r}: 'clauses' is not a list")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read results: {exc}") from exc


def _read_stream(path: Path) -> tuple[list[dict], list[str]]:
    """Cases from results.jsonl. A torn last line (the run died mid-write) is a warning."""
    cases, warnings = [], []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cases.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                warnings.append(f"{path.name} line {number} is cut short (run interrupted?): ignored")
                continue
            raise UsageError(f"{path}: line {number}: {exc}") from exc
    return cases, warnings


def load_results(run_dir: Path | str) -> dict:
    """The run's results, validated. Adds `warnings` (list of str) and `incomplete` (bool)."""
    run_dir = Path(run_dir)
    final, stream = run_dir / RESULTS_FILE, run_dir / STREAM_FILE
    warnings: list[str] = []
    if final.is_file():
        results = _read_json(final)
        if not isinstance(results, dict):
            raise UsageError(f"{final}: results are not a JSON object")
        if results.get("schema") != RESULTS_SCHEMA:
            raise UsageError(f"{final}: schema is {results.get('schema')!r}, expected {RESULTS_SCHEMA!r}")
        if not isinstance(results.get("cases"), list):
            raise UsageError(f"{final}: 'cases' is not a list")
        where = str(final)
        # The suite marks a run stopped by Ctrl-C or a crash as interrupted: never a finished run.
        results["incomplete"] = bool(results.get("incomplete") or results.get("interrupted"))
        if results.get("interrupted"):
            warnings.append("the run was interrupted: cases that had not finished are missing")
    elif stream.is_file():
        cases, warnings = _read_stream(stream)
        results = {"schema": RESULTS_SCHEMA, "run_id": run_dir.name, "cases": cases, "incomplete": True}
        warnings.insert(0, f"no {RESULTS_FILE}: the run did not finish; showing the {len(cases)} "
                           f"cases streamed to {STREAM_FILE}")
        where = str(stream)
    else:
        raise UsageError(f"{run_dir}: no {RESULTS_FILE} or {STREAM_FILE}: not a neighcheck run directory")
    for case in results["cases"]:
        _check_case(case, where)
    duplicates = sorted(i for i, n in Counter(case["id"] for case in results["cases"]).items() if n > 1)
    if duplicates:
        warnings.append(f"case ids recorded more than once: {', '.join(duplicates)}")
    recomputed = count_verdicts(results["cases"])
    recorded = results.get("summary")
    if recorded is not None and {k: recorded.get(k, 0) for k in VERDICTS} != recomputed:
        # Never trust a summary over the cases it summarises.
        warnings.append(f"the recorded summary {json.dumps(recorded, sort_keys=True)} disagrees with "
                        f"the cases; the counts shown are recomputed from the cases")
    results["summary"] = recomputed
    unknown = sorted({c for case in results["cases"] for c in case.get("clauses", [])} - set(CLAUSE_BY_ID))
    if unknown:
        warnings.append(f"clauses not in the catalog: {', '.join(unknown)}")
    results["warnings"] = list(results.get("warnings", [])) + warnings
    return results


def results_for_writing(results: dict) -> dict:
    """Results as results.json holds them: without the loader's bookkeeping keys."""
    clean = {key: value for key, value in results.items() if key not in ("warnings", "incomplete")}
    if results.get("incomplete"):
        clean["incomplete"] = True
    clean["summary"] = count_verdicts(results["cases"])
    return clean
