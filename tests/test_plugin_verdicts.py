"""Verdict edge cases of the plugin, on a real lab device with one fault injected in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import DEFAULT_INVENTORY, REPO

pytestmark = pytest.mark.lab

FAILING_CLEANUP = """
from harness.device.dut import DeviceUnderTest
from harness.errors import DeviceError

_real = DeviceUnderTest.remove
_calls = {"n": 0}


def remove(self, keys):
    _calls["n"] += 1
    if _calls["n"] == 1:
        raise DeviceError("injected: the cleanup batch failed")
    return _real(self, keys)


DeviceUnderTest.remove = remove
"""


def test_a_case_whose_cleanup_fails_is_an_error_in_the_results(default_lab, tmp_path):
    (tmp_path / "nck_failing_cleanup.py").write_text(FAILING_CLEANUP)
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "nck_failing_cleanup", "-q",
         str(REPO / "conformance"), "--devices", str(DEFAULT_INVENTORY), "--device", "linux-a",
         "--report-dir", str(run_dir), "-k", "test_flush_scope and AF_INET-eth1"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 1, proc.stdout[-2000:]  # pytest reports the teardown error
    [case] = json.loads((run_dir / "results.json").read_text())["cases"]
    assert case["verdict"] == "error"
    assert "cleanup after the case failed" in case["reason"] and "injected" in case["reason"]
    lines = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [c["verdict"] for c in lines] == ["pass", "error"]  # the journal keeps both steps
