"""A compact text summary for the end of a pytest run: one matrix per device, then the counts."""

from __future__ import annotations

from harness.reports.model import (VERDICTS, count_verdicts, device_matrix, device_names, is_matrix_case,
                                   overall_verdict)

# Short marks; failures are upper case so they stand out in a wall of "ok".
MARKS = {"pass": "ok", "fail": "FAIL", "error": "ERR", "skip": "skip", "not-applicable": "n/a",
         "observed": "obs", "known": "known", None: "-"}


def _fingerprint_line(results: dict, device: str) -> str:
    for entry in results.get("devices", []):
        if entry.get("name") == device:
            fingerprint = entry.get("fingerprint") or {}
            parts = [entry.get("os") or fingerprint.get("os"), fingerprint.get("kernel"), fingerprint.get("agent")]
            return ", ".join(str(p) for p in parts if p)
    return ""


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.center(widths[i]) for i, cell in enumerate(row[1:], 1)]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{verdict} {counts[verdict]}" for verdict in VERDICTS if counts[verdict]) or "no cases"


def terminal_matrix(results: dict) -> str:
    lines = []
    for device in device_names(results):
        matrix = device_matrix(results, device)
        fingerprint = _fingerprint_line(results, device)
        lines.append(f"{device}" + (f" ({fingerprint})" if fingerprint else ""))
        rows = [["", *matrix.columns]]
        rows += [[family, *(MARKS[matrix.verdict_at(family, column)] for column in matrix.columns)]
                 for family in matrix.families]
        lines += _table(rows)
        others = [case for case in results["cases"] if case.get("device") == device and not is_matrix_case(case)]
        if others:
            lines.append(f"  other cases: {_counts(count_verdicts(others))}")
    unattached = [case for case in results["cases"] if case.get("device") is None]
    if unattached:
        lines.append(f"cases without a device: {_counts(count_verdicts(unattached))}")
    for entry in results.get("errata", []):
        if entry.get("status") == "stale":
            lines.append(f"stale erratum {entry['index']}: every case it matches passes; remove it "
                         f"({entry.get('reason', '')})")
    lines.append(f"neighcheck {overall_verdict(results)}: {_counts(count_verdicts(results['cases']))}")
    return "\n".join(lines) + "\n"
