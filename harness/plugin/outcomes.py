"""From what happened in a conformance case to exactly one verdict.

A case records its evidence and timings through `Case` and concludes with judged clauses
(pass/fail) and, for observed clauses, an observation. Whatever else happens maps to one
verdict here: a skip with a `not-applicable: ` reason is not-applicable, a harness or device
exception is an error, and a case that returns without concluding is an error, never a pass.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.contract.verdicts import CaseRecord, Verdict
from harness.errors import NeighcheckError

CASE_KEY = pytest.StashKey[CaseRecord]()
EVIDENCE_INDENT_MAX = 2048  # table rows up to which evidence files are indented
NOT_APPLICABLE = "not-applicable: "


class JudgedFailure(AssertionError):
    """The implementation broke a judged clause (verdict `fail`)."""


def device_of(item) -> str | None:
    spec = getattr(item, "callspec", None)
    return spec.params.get("device_name") if spec is not None else None


def record_of(item) -> CaseRecord:
    """The item's case record, made on first use from its marks and parameters."""
    record = item.stash.get(CASE_KEY, None)
    if record is None:
        marker = item.get_closest_marker("clauses")
        params = item.callspec.params
        record = CaseRecord(id=item.nodeid, name=item.name, test=item.originalname,
                            device=params["device_name"], clauses=list(marker.args) if marker else [],
                            family=params.get("family"), interface=params.get("selector"))
        item.stash[CASE_KEY] = record
    return record


def conclude_verdict(record: CaseRecord, report, call) -> None:
    excinfo = call.excinfo
    if report.skipped:
        reason = str(excinfo.value) if excinfo else "skipped"
        if reason.startswith(NOT_APPLICABLE):
            record.verdict, record.reason = Verdict.NOT_APPLICABLE.value, reason[len(NOT_APPLICABLE):]
        else:
            record.verdict, record.reason = Verdict.SKIP.value, reason
        return
    if excinfo is not None:
        exc = excinfo.value
        if isinstance(exc, JudgedFailure):
            record.verdict, record.reason = Verdict.FAIL.value, str(exc)
        elif isinstance(exc, NeighcheckError):
            record.verdict, record.reason = Verdict.ERROR.value, str(exc)
        elif isinstance(exc, AssertionError):
            record.verdict, record.reason = Verdict.ERROR.value, f"harness assertion: {exc}"
        else:
            record.verdict = Verdict.ERROR.value
            record.reason = f"harness error: {type(exc).__name__}: {exc}"
        return
    if record.verdict in (Verdict.PASS.value, Verdict.OBSERVED.value):
        return  # only Case.conclude sets these
    # Returned without concluding: a judged case with no verdict is an error, never a pass.
    record.verdict = Verdict.ERROR.value
    record.reason = "the case returned without reaching a verdict"
    report.outcome = "failed"


def short_repr(record: CaseRecord, report):
    if record.verdict == Verdict.FAIL.value:
        return f"FAIL {record.name}: {record.reason}"
    if record.verdict == Verdict.ERROR.value:
        return f"ERROR {record.name}: {record.reason}"
    return report.longrepr


def evidence_path(evidence_dir: Path, device: str, case_name: str, suffix: str) -> Path:
    """Where a case's evidence file of one kind goes (.json; .pcapng for its packets)."""
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in case_name)
    return evidence_dir / device / f"{name}{suffix}"


class Case:
    """What a conformance case uses to record timings, evidence and its verdict."""

    def __init__(self, record: CaseRecord, run_dir: Path, evidence_dir: Path, *, settle: float,
                 scale_entries: int, device_output: Callable[[], list[tuple[str, str]]] | None = None):
        self.record = record
        self.run_dir = run_dir
        self.evidence_dir = evidence_dir
        self.settle = settle  # seconds to wait before judging durable effects (0: off)
        self.scale_entries = scale_entries  # entries per family per link in the scale cases
        self.evidence: dict[str, Any] = {}
        self._planted: list[tuple[Any, Any, int | None]] = []
        self._t0 = time.perf_counter()
        # What the device printed before agent replies (a login banner): this case's share.
        self._device_output = device_output
        self._device_output_mark = len(device_output()) if device_output else 0

    def plant(self, dut, count: int | None = None):
        """Seed the device (dut.seed) and record what was planted in the evidence."""
        seeded = dut.seed(count)
        self._planted.append((dut, seeded, count))
        for phase, seconds in seeded.timings.items():
            self.record.timings[phase] = self.record.timings.get(phase, 0.0) + seconds
        if "before" not in self.evidence:
            self.evidence["seeded"] = [{"family": k[0], "ifindex": k[1], "address": k[2], "lladdr": v}
                                       for k, v in seeded.entries.items()]
            self.evidence["static"] = [{"family": k[0], "ifindex": k[1], "address": k[2], "lladdr": v}
                                       for k, v in seeded.static.items()]
            self.evidence["before"] = [e.to_dict() for e in seeded.before]
        return seeded

    def cleanup(self) -> None:
        """After the case: a case that passed leaves its seeds for the next one, which seeds the
        same plan (the device closes with everything removed); any other case, and a scale
        case, removes what it seeded. Static entries stand until the device closes."""
        keep = self.record.verdict in (Verdict.PASS.value, Verdict.OBSERVED.value)
        for dut, seeded, count in self._planted:
            if count or not keep:
                dut.remove(seeded.entries)
        self._planted.clear()

    @contextmanager
    def timing(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record.timings[phase] = self.record.timings.get(phase, 0.0) + time.perf_counter() - t0

    def status(self, reply) -> None:
        """The judged flush call's reply: its status, and its own time on the device."""
        self.record.status_raw = reply.raw
        self.record.status_space = reply.space
        self.record.outcome = reply.outcome.value
        self.record.flush_elapsed_us = reply.elapsed_us
        if reply.elapsed_us is not None and isinstance(self.evidence.get("call"), dict):
            self.evidence["call"]["elapsed_us"] = reply.elapsed_us
        if reply.error:
            self.evidence["agent_error"] = {"error": reply.error, "detail": reply.detail}

    def _finish(self) -> None:
        self.record.duration_s = time.perf_counter() - self._t0
        t0 = time.perf_counter()
        path = evidence_path(self.evidence_dir, self.record.device, self.record.name, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.evidence["case"] = {k: v for k, v in self.record.to_dict().items() if k != "evidence"}
        if self._device_output is not None:
            seen = self._device_output()[self._device_output_mark:]
            if seen:
                texts: dict[str, list[str]] = {}
                for call, text in seen:
                    texts.setdefault(text, []).append(call)
                self.evidence["device_output_before_replies"] = [
                    {"text": text, "calls": calls} for text, calls in texts.items()]
        # Indented while a person would read it; past that, json's C encoder (indent forces
        # the pure-Python one: 3x slower, 1.3 s for a 65k-entry case).
        small = len(self.evidence.get("before", ())) <= EVIDENCE_INDENT_MAX
        path.write_text(json.dumps(self.evidence, indent=1 if small else None, default=str))
        self.record.timings["evidence"] = time.perf_counter() - t0
        try:
            self.record.evidence = str(path.relative_to(self.run_dir))
        except ValueError:
            self.record.evidence = str(path)

    def conclude(self, judgement, *, observed: dict[str, Any] | None = None) -> None:
        """Judged clauses decide pass/fail; an observation makes a passing case `observed`."""
        rec = self.record
        rec.diff = judgement.diff if judgement is not None else rec.diff
        self.evidence["diff"] = rec.diff
        if observed is not None:
            rec.observation = observed
            self.evidence["observation"] = observed
        self._finish()
        if judgement is not None and not judgement.passed:
            rec.failed_clauses = list(judgement.failures)
            raise JudgedFailure(judgement.reason)
        rec.verdict = Verdict.OBSERVED.value if observed is not None else Verdict.PASS.value
        rec.reason = observed.get("summary", "") if observed else ""

    def not_applicable(self, why: str) -> None:
        self._finish()
        pytest.skip(NOT_APPLICABLE + why)
