"""Known deviations (errata): a documented `fail` becomes `known`, visibly, with its reason and link.

    [[erratum]]
    device = "win-wine"            # a device name, or a glob such as "*"
    case = "test_flush_scope[*]"   # glob on the case name ... or instead:
    clause = "RET-SUCCESS"         # every case that checks this clause
    reason = "Wine's iphlpapi does not export FlushIpNetTable2"
    link = "https://bugs.example/123"   # optional

Globs know `*` and `?` only: `[` and `]` are literal, because pytest case names are full of them
(`test_flush_scope[*]` means "every parametrisation", as a reader expects).

Errata never touch `error` verdicts: an error means the harness could not judge, and a known
bug must not hide a broken lab. An erratum whose matching cases all pass is reported as stale,
so fixed bugs do not keep their excuse.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from harness.errors import UsageError
from harness.contract.clauses import CLAUSE_BY_ID
from harness.contract.verdicts import count_verdicts

_KEYS = {"device", "case", "clause", "reason", "link"}


@dataclass(frozen=True)
class Erratum:
    index: int  # 1-based position in the file, as people count entries
    device: str
    reason: str
    case: str | None = None
    clause: str | None = None
    link: str = ""
    source: str = ""

    def matches(self, device: str, name: str, clauses: Iterable[str]) -> bool:
        """Does this erratum cover case `name` on `device`, judged on `clauses`?"""
        if not glob_match(self.device, str(device or "")):
            return False
        if self.case is not None:
            return glob_match(self.case, str(name or ""))
        return self.clause in clauses

    def matches_case(self, case: dict) -> bool:
        # A failed case is excused only for the clauses it failed, when it names them: an erratum
        # for RET-SUCCESS must not hide collateral damage found by the same case.
        clauses = case.get("clauses", [])
        if case.get("verdict") == "fail" and case.get("failed_clauses"):
            clauses = case["failed_clauses"]
        return self.matches(case.get("device"), case.get("name"), clauses)

    @property
    def label(self) -> str:
        target = f"case {self.case}" if self.case is not None else f"clause {self.clause}"
        return f"erratum {self.index} (device {self.device}, {target})"


def glob_match(pattern: str, text: str) -> bool:
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def _entry(path: Path, index: int, raw: object) -> Erratum:
    where = f"{path}: erratum {index}"
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: must be a table ([[erratum]])")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise UsageError(f"{where}: key {unknown[0]!r}: unknown key (allowed: {', '.join(sorted(_KEYS))})")
    for key in _KEYS & set(raw):
        if not isinstance(raw[key], str):
            raise UsageError(f"{where}: key {key!r}: must be a string")
    for key in ("device", "reason"):
        if not raw.get(key, "").strip():
            raise UsageError(f"{where}: key {key!r}: required and must not be empty")
    if ("case" in raw) == ("clause" in raw):
        raise UsageError(f"{where}: key 'case'/'clause': give exactly one of them")
    if "case" in raw and not raw["case"].strip():
        raise UsageError(f"{where}: key 'case': must not be empty")
    if "clause" in raw and raw["clause"] not in CLAUSE_BY_ID:
        raise UsageError(f"{where}: key 'clause': unknown clause {raw['clause']!r}")
    return Erratum(index=index, device=raw["device"], reason=raw["reason"].strip(), case=raw.get("case"),
                   clause=raw.get("clause"), link=raw.get("link", ""), source=str(path))


def load_errata(path: Path | str) -> list[Erratum]:
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: errata file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read errata file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - {"erratum"})
    if unknown:
        raise UsageError(f"{path}: key {unknown[0]!r}: unknown top-level key (only [[erratum]] entries)")
    entries = document.get("erratum", [])
    if not isinstance(entries, list):
        raise UsageError(f"{path}: key 'erratum': must be a list of [[erratum]] tables")
    return [_entry(path, index, raw) for index, raw in enumerate(entries, start=1)]


def covers(errata: list[Erratum], case: dict) -> list[Erratum]:
    """The errata that together excuse a failed case, or [] when they do not excuse all of it.

    A case erratum covers the whole case; clause errata cover only their clauses, and every
    clause the case failed must be covered: an erratum for RET-SUCCESS must not hide a
    NO-COLLATERAL failure found by the same case.
    """
    device, name = case.get("device"), case.get("name")
    failed = set(case.get("failed_clauses") or case.get("clauses") or [])
    for erratum in errata:
        if erratum.case is not None and erratum.matches(device, name, failed):
            return [erratum]
    by_clause = [e for e in errata if e.clause is not None and e.matches(device, name, failed)]
    return by_clause if failed and failed <= {e.clause for e in by_clause} else []


def excuse(errata: list[Erratum], case: dict) -> dict | None:
    """The one place errata are applied: a failed case that the errata cover becomes `known`
    and carries its erratum (the first that covers it; `covered_by` lists every one used).
    Returns that erratum as recorded with the case, or None."""
    if case.get("verdict") != "fail":
        return None
    used = covers(errata, case)
    if not used:
        return None
    recorded = {key: value for key, value in asdict(used[0]).items() if value is not None}
    recorded["covered_by"] = [e.index for e in used]
    case["verdict"] = "known"
    case["erratum"] = recorded
    return recorded


def errata_status(errata: list[Erratum], cases: list[dict]) -> list[dict]:
    """What each erratum did in a run whose cases were already excused (`excuse`): applied
    (it made at least one fail known), stale (every judged case it matches passes), unmatched
    (it matches no case) or inconclusive (it matches only errors, skips or observations)."""
    turned_by: dict[int, int] = {}
    for case in cases:
        for index in (case.get("erratum") or {}).get("covered_by", []):
            turned_by[index] = turned_by.get(index, 0) + 1
    report = []
    for erratum in errata:
        matched = [case for case in cases if erratum.matches_case(case)]
        turned = turned_by.get(erratum.index, 0)
        judged = [case["verdict"] for case in matched if case["verdict"] in ("pass", "fail", "known")]
        if turned:
            status = "applied"
        elif not matched:
            status = "unmatched"
        elif judged and all(verdict == "pass" for verdict in judged) \
                and not any(case["verdict"] == "error" for case in matched):
            status = "stale"
        else:
            status = "inconclusive"
        entry = {key: value for key, value in asdict(erratum).items() if value is not None}
        entry.update(status=status, matched=len(matched), turned_known=turned,
                     matched_passing=sum(1 for v in judged if v == "pass"))
        report.append(entry)
    return report


def apply(results: dict, errata: list[Erratum]) -> dict:
    """A copy of finished results with errata applied (offline: `report html --errata`) and
    `results["errata"]` saying what each did. Cases already excused keep their erratum."""
    results = copy.deepcopy(results)
    for case in results["cases"]:
        excuse(errata, case)
    results["errata"] = errata_status(errata, results["cases"])
    results["summary"] = count_verdicts(results["cases"])
    return results


def stale(results: dict) -> list[dict]:
    return [entry for entry in results.get("errata", []) if entry.get("status") == "stale"]
