"""Helpers shared by the harness's tests (no tests here): the test modules import from
tests.support, never from each other.

- netns: namespace plumbing (commands, `ip -j`, removal by name and pid, link carrier);
- waits: wait_for, the tests' bounded wait (harness.waits.poll_until underneath);
- seedlab: one veth into a namespace, for seeding and the responder (prefix nckB);
- shimlab: namespaces with directly filled tables and the kernel-table oracle, for the
  Linux shim and the mutant agents (prefix nckA);
- runlab: a private lab (harness.lab.private) that `neighcheck run` runs against, with the
  devices' tables and fault injection (prefix nckF);
- windows_standin: a scripted iphlpapi.dll to run the Windows agent's every path under Wine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_INVENTORY = REPO / "devices.toml"
NEIGHCHECK = REPO / ".venv" / "bin" / "neighcheck"
PYTHON = REPO / ".venv" / "bin" / "python"
SHIM = REPO / "harness" / "device" / "agents" / "linux_shim.sh"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, veth, sshd)")
