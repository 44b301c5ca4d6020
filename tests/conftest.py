"""Shared fixtures for the harness's own tests.

`default_lab` brings the default embedded lab (devices.toml) up for the tests that need real
devices, and takes it down at the end if it was not already up.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = REPO / "devices.toml"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, veth, sshd)")


@pytest.fixture(scope="session")
def default_lab():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veth, sshd)")
    from harness.inventory import load_inventory
    from harness.lab.netns import Lab

    inventory = load_inventory(DEFAULT_INVENTORY)
    lab = Lab(inventory)
    was_up = lab.is_up()
    lab.up()
    yield inventory
    if not was_up:
        lab.down()
