"""Shared fixtures for the harness's own tests (their helpers are in tests/support/).

`default_lab` brings the default embedded lab (devices.toml) up for the tests that need real
devices, and takes it down at the end if it was not already up. `shim_lab` and `seeded` are
the Linux shim's namespaces (tests/support/shimlab.py), one set per test session.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import DEFAULT_INVENTORY
from tests.support.shimlab import ShimLab, standard_seeds


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


@pytest.fixture(scope="session")
def shim_lab():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("lab tests need root and iproute2")
    lab = ShimLab(f"{os.getpid() % 100000:05d}")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def seeded(shim_lab):
    """The device namespace with the standard seeds in place."""
    shim_lab.fill(shim_lab.dev, standard_seeds())
    return shim_lab
