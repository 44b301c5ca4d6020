"""Errata on a real run: applied once, as each case finishes, and carried everywhere.

A real run on the lab's linux-b with a mutant agent (tests/mutants/nostack_success.sh: AF_INET6
on a device without IPv6 answers success) and an errata file that names the clause it breaks.
Each failing case must become `known` and carry its erratum in results.jsonl, results.json and
the report; results.json's errata entry must count the cases it made known; the run exits 0.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support import DEFAULT_INVENTORY, REPO

pytestmark = pytest.mark.lab

ERRATA = """
[[erratum]]
device = "linux-b"
clause = "RET-NOSTACK-INET6"
reason = "the mutant answers success for a missing stack"
link = "https://bugs.example/7"
"""


def test_errata_are_applied_once_and_carried_into_cases_results_and_report(default_lab, tmp_path):
    text = DEFAULT_INVENTORY.read_text().replace('".lab', f'"{REPO}/.lab')
    agent = json.dumps(["sh", str(REPO / "tests/mutants/nostack_success.sh")])
    text = re.sub(r'(name = "linux-b"\nos = "linux"\n)', rf'\1[device.agent]\ncommand = {agent}\n', text)
    inventory = tmp_path / "devices.toml"
    inventory.write_text(text)
    errata = tmp_path / "errata.toml"
    errata.write_text(ERRATA)
    out = tmp_path / "reports"
    proc = subprocess.run([str(REPO / ".venv/bin/neighcheck"), "run", "--devices", str(inventory),
                           "--device", "linux-b", "--errata", str(errata), "--out", str(out),
                           "--", "-k", "missing_stack or AF_INET6 or durable"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    [run_dir] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run_dir / "results.json").read_text())
    known = [c for c in results["cases"] if c["verdict"] == "known"]
    assert known, proc.stdout[-3000:]
    assert {c["name"] for c in known} >= {"test_missing_stack[linux-b-AF_INET6]",
                                          "test_flush_scope[linux-b-AF_INET6-all]"}
    assert all(c["failed_clauses"] == ["RET-NOSTACK-INET6"] for c in known)
    for case in known:
        assert case["erratum"]["index"] == 1 and case["erratum"]["covered_by"] == [1]
        assert case["erratum"]["reason"] == "the mutant answers success for a missing stack"
        assert case["erratum"]["link"] == "https://bugs.example/7"
    assert not [c for c in results["cases"] if c["verdict"] in ("fail", "error")]
    [entry] = results["errata"]
    assert entry["status"] == "applied" and entry["turned_known"] == len(known)
    assert results["summary"]["known"] == len(known)

    journal = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {c["name"] for c in journal if c["verdict"] == "known" and c.get("erratum")} == \
        {c["name"] for c in known}, "the journal carries the erratum as the case finished"
    html = (run_dir / "report.html").read_text()
    assert html.count("known deviation (erratum 1)") == len(known)
    row = re.search(r'<tr class="erratum-applied">(.*?)</tr>', html).group(1)
    made_known = re.findall(r'<td class="num">(\d+)</td>', row)[-1]
    assert int(made_known) == len(known), "the report's made-known column counts them"
    assert proc.returncode == 0, proc.stdout[-3000:]  # only known deviations: the run passes
