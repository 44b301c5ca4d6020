"""Negative controls: the conformance suite run against deliberately broken agents.

Each mutant in tests/mutants/ wraps the reference shim and injects one bug. The suite runs
against it through the inventory's `agent.command` (the vendor-agent path) on the lab's
linux-a and linux-b, and must fail the clauses the bug breaks. A reference run through the
same path must fail nothing, so the failures are the mutants' and not the path's.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from harness.reports.diff import diff_runs
from harness.reports.manifest import verify
from harness.reports.merge import merge_runs

from tests.support import DEFAULT_INVENTORY, REPO

pytestmark = pytest.mark.lab

MUTANTS = REPO / "tests" / "mutants"
# mutant -> judged clauses that must fail (each mutant breaks at least these)
EXPECTED = {
    "ignore_ifindex": {"IF-ONE", "NO-COLLATERAL"},
    "inet_flushes_inet6": {"FAM-INET", "NO-COLLATERAL"},
    "unspec_only_inet": {"FAM-UNSPEC"},
    "accepts_family_10": {"RET-INVALID-FAMILY", "NOCHANGE-ON-ERROR"},
    "invalid_family_success": {"RET-INVALID-FAMILY"},
    "flush_reports_error": {"RET-SUCCESS", "NOCHANGE-ON-ERROR"},
    "leaves_one_entry": {"FAM-UNSPEC", "FAM-INET", "FAM-INET6", "IF-ALL", "IF-ONE"},
    "collateral_delete": {"NO-COLLATERAL"},
    "nostack_success": {"RET-NOSTACK-INET6"},
    "partial_flush_error": {"RET-SUCCESS", "NOCHANGE-ON-ERROR"},
}


def inventory_with_agent(tmp_path: Path, command: list[str]) -> Path:
    """The default lab inventory with `command` as the Linux devices' agent."""
    text = DEFAULT_INVENTORY.read_text().replace('".lab', f'"{REPO}/.lab')
    agent = "[device.agent]\ncommand = " + json.dumps(command) + "\n[device.lab]"
    head, *devices = re.split(r"^(?=\[\[device\]\]$)", text, flags=re.M)
    devices = [re.sub(r"^\[device\.lab\]$", agent, d, flags=re.M) if 'os = "linux"' in d else d
               for d in devices]
    path = tmp_path / "devices.toml"
    path.write_text(head + "".join(devices))
    return path


def run_suite(tmp_path: Path, command: list[str], devices=("linux-a", "linux-b")) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = inventory_with_agent(tmp_path, command)
    out = tmp_path / "reports"
    selected = [arg for name in devices for arg in ("--device", name)]
    proc = subprocess.run([str(REPO / ".venv/bin/neighcheck"), "run", "--devices", str(inventory),
                           *selected, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.is_dir(), f"the run wrote no report: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    [run_dir] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run_dir / "results.json").read_text())
    results["_exit"] = proc.returncode
    results["_dir"] = run_dir
    results["_output"] = proc.stdout[-3000:] + proc.stderr[-2000:]
    return results


def failed_clauses(results: dict) -> dict[str, list[str]]:
    by_clause = defaultdict(list)
    for case in results["cases"]:
        if case["verdict"] == "fail":
            for clause in case["failed_clauses"]:
                by_clause[clause].append(case["name"])
    return by_clause


REFERENCE = ["sh", str(REPO / "harness/device/agents/linux_shim.sh")]


@pytest.fixture(scope="module")
def reference(default_lab, tmp_path_factory) -> dict:
    return run_suite(tmp_path_factory.mktemp("reference"), REFERENCE)


def test_reference_agent_through_the_vendor_path_fails_nothing(reference):
    results = reference
    verdicts = {c["name"]: c["verdict"] for c in results["cases"]}
    bad = {n: v for n, v in verdicts.items() if v in ("fail", "error")}
    assert not bad, results["_output"]
    assert results["summary"]["pass"] >= 30
    assert results["_exit"] == 0


@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_every_mutant_is_caught(reference, tmp_path, mutant):
    results = run_suite(tmp_path, ["sh", str(MUTANTS / f"{mutant}.sh")])
    caught = failed_clauses(results)
    errors = [c["name"] + ": " + c["reason"] for c in results["cases"] if c["verdict"] == "error"]
    assert not errors, f"a mutant must be judged, not crash the harness: {errors[:3]}"
    missing = EXPECTED[mutant] - set(caught)
    assert not missing, f"{mutant}: clauses not failed: {missing}; failed: {dict(caught)}"
    assert results["_exit"] == 1  # a non-conformant implementation fails the run

    # `report diff` against the reference run names exactly the cases the mutant broke.
    changed = {c.case_id for c in diff_runs(reference["_dir"], results["_dir"]).verdict_changes
               if c.after == "fail"}
    assert changed == {c["id"] for c in results["cases"] if c["verdict"] == "fail"}


def test_merge_of_single_device_runs_equals_the_two_device_run(reference, tmp_path):
    shards = [run_suite(tmp_path / name, REFERENCE, devices=(name,)) for name in ("linux-a", "linux-b")]
    merged = merge_runs([s["_dir"] for s in shards], tmp_path / "merged")
    combined = json.loads((merged / "results.json").read_text())
    verdicts = lambda results: {c["id"]: c["verdict"] for c in results["cases"]}  # noqa: E731
    assert verdicts(combined) == verdicts(reference)
    assert sorted(d["name"] for d in combined["devices"]) == ["linux-a", "linux-b"]
    assert verify(merged) == []
