"""What changed between two runs: verdicts per case id, observed behaviours, cases in one run only.

Cases are matched by their id (which names the device and parameters). A verdict or observation
change is what a person reviewing a re-certification needs first; fingerprint changes (a new
kernel, a new agent) explain many of them, so they are listed too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.reports.model import VERDICTS, load_results


@dataclass(frozen=True)
class VerdictChange:
    case_id: str
    device: str | None
    before: str
    after: str
    reason_after: str


@dataclass(frozen=True)
class ObservationChange:
    case_id: str
    device: str | None
    before: str
    after: str


@dataclass(frozen=True)
class DeviceChange:
    device: str
    detail: str


@dataclass
class RunDiff:
    a: dict  # run metadata: run_id, suite_version, git_commit, started, summary
    b: dict
    verdict_changes: list[VerdictChange] = field(default_factory=list)
    observation_changes: list[ObservationChange] = field(default_factory=list)
    only_in_a: list[tuple[str, str]] = field(default_factory=list)  # (case id, verdict)
    only_in_b: list[tuple[str, str]] = field(default_factory=list)
    device_changes: list[DeviceChange] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return bool(self.verdict_changes or self.observation_changes or self.only_in_a
                    or self.only_in_b or self.device_changes)

    def to_dict(self) -> dict:
        return {
            "a": self.a, "b": self.b,
            "verdict_changes": [vars(c) for c in self.verdict_changes],
            "observation_changes": [vars(c) for c in self.observation_changes],
            "only_in_a": [{"case_id": i, "verdict": v} for i, v in self.only_in_a],
            "only_in_b": [{"case_id": i, "verdict": v} for i, v in self.only_in_b],
            "device_changes": [vars(c) for c in self.device_changes],
        }


def observation_text(case: dict) -> str:
    """An observation as one comparable line: its summary, else its whole content."""
    observation = case.get("observation")
    if observation is None:
        return ""
    if isinstance(observation, dict) and isinstance(observation.get("summary"), str):
        return observation["summary"]
    return json.dumps(observation, sort_keys=True)


def _observation_detail(case: dict) -> str:
    observation = case.get("observation")
    return "" if observation is None else json.dumps(observation, sort_keys=True)


def _metadata(results: dict) -> dict:
    meta = {key: results.get(key) for key in ("run_id", "suite_version", "git_commit", "started", "finished")}
    meta["summary"] = results["summary"]
    meta["incomplete"] = bool(results.get("incomplete"))
    return meta


def _flatten(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        flat = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: json.dumps(value, sort_keys=True)}


def _device_changes(a: dict, b: dict) -> list[DeviceChange]:
    def describe(device: dict) -> dict[str, str]:
        interfaces = sorted((i.get("index"), i.get("name")) for i in device.get("interfaces", []))
        flat = _flatten({"os": device.get("os"), "fingerprint": device.get("fingerprint", {}),
                         "stacks": device.get("stacks", {})})
        flat["interfaces"] = ", ".join(f"{index}:{name}" for index, name in interfaces)
        return flat

    devices_a = {d.get("name"): describe(d) for d in a.get("devices", [])}
    devices_b = {d.get("name"): describe(d) for d in b.get("devices", [])}
    changes = []
    for name in [n for n in devices_a if n not in devices_b]:
        changes.append(DeviceChange(str(name), "only in A"))
    for name in [n for n in devices_b if n not in devices_a]:
        changes.append(DeviceChange(str(name), "only in B"))
    for name in [n for n in devices_a if n in devices_b]:
        before, after = devices_a[name], devices_b[name]
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                changes.append(DeviceChange(str(name), f"{key}: {before.get(key, '(none)')} -> "
                                                       f"{after.get(key, '(none)')}"))
    return changes


def diff_runs(a_dir: Path | str, b_dir: Path | str) -> RunDiff:
    a, b = load_results(a_dir), load_results(b_dir)
    cases_a = {case["id"]: case for case in a["cases"]}
    cases_b = {case["id"]: case for case in b["cases"]}
    result = RunDiff(_metadata(a), _metadata(b), device_changes=_device_changes(a, b))
    for case_id, before in cases_a.items():
        after = cases_b.get(case_id)
        if after is None:
            result.only_in_a.append((case_id, before["verdict"]))
            continue
        if before["verdict"] != after["verdict"]:
            result.verdict_changes.append(VerdictChange(
                case_id, after.get("device"), before["verdict"], after["verdict"], str(after.get("reason") or "")))
        if _observation_detail(before) != _observation_detail(after):
            result.observation_changes.append(ObservationChange(
                case_id, after.get("device"), observation_text(before), observation_text(after)))
    result.only_in_b = [(case_id, case["verdict"]) for case_id, case in cases_b.items() if case_id not in cases_a]
    return result


def _summary_line(summary: dict) -> str:
    return "  ".join(f"{verdict} {summary.get(verdict, 0)}" for verdict in VERDICTS)


def render_text(diff: RunDiff) -> str:
    lines = ["neighcheck run diff"]
    for label, meta in (("A", diff.a), ("B", diff.b)):
        state = "  INCOMPLETE" if meta["incomplete"] else ""
        lines.append(f"  {label}: {meta['run_id']}  suite {meta['suite_version']}  commit "
                     f"{(meta['git_commit'] or '?')[:12]}  started {meta['started']}{state}")
        lines.append(f"     {_summary_line(meta['summary'])}")
    if diff.a["suite_version"] != diff.b["suite_version"]:
        lines.append("  note: different suite versions; cases and clauses may not be comparable")
    if not diff.has_changes:
        lines.append("no differences in verdicts, observations, cases or devices")
        return "\n".join(lines) + "\n"
    if diff.verdict_changes:
        lines.append(f"verdict changes ({len(diff.verdict_changes)}):")
        width = max(len(f"{c.before} -> {c.after}") for c in diff.verdict_changes)
        for change in diff.verdict_changes:
            arrow = f"{change.before} -> {change.after}"
            lines.append(f"  {arrow:<{width}}  {change.case_id}")
            if change.reason_after:
                lines.append(f"  {'':<{width}}    {change.reason_after}")
    if diff.observation_changes:
        lines.append(f"observed behaviour changes ({len(diff.observation_changes)}):")
        for change in diff.observation_changes:
            lines += [f"  {change.case_id}", f"    A: {change.before or '(none)'}",
                      f"    B: {change.after or '(none)'}"]
    for label, only in (("A", diff.only_in_a), ("B", diff.only_in_b)):
        if only:
            lines.append(f"only in {label} ({len(only)}):")
            lines += [f"  {verdict:<14}  {case_id}" for case_id, verdict in only]
    if diff.device_changes:
        lines.append(f"device changes ({len(diff.device_changes)}):")
        lines += [f"  {change.device}: {change.detail}" for change in diff.device_changes]
    return "\n".join(lines) + "\n"
