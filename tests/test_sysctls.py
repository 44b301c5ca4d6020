"""The host's sysctl registry: labs that overlap never restore values under each other.

Pure file logic on a stand-in /proc/sys (the real one is exercised by tests/test_lab.py)."""

from __future__ import annotations

import pytest

from harness.lab import sysctls

NAMES = {"net.ipv4.neigh.default.gc_thresh3": 1048576, "net.core.netdev_max_backlog": 65536}


@pytest.fixture
def host(tmp_path, monkeypatch):
    root = tmp_path / "proc-sys"
    for name, value in (("net.ipv4.neigh.default.gc_thresh3", 1024), ("net.core.netdev_max_backlog", 1000)):
        path = root / name.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")
    monkeypatch.setattr(sysctls, "SYSCTL_ROOT", root)
    monkeypatch.setattr(sysctls, "REGISTRY", tmp_path / "registry.json")
    monkeypatch.setattr(sysctls, "LOCK", tmp_path / "registry.lock")
    return tmp_path


def values() -> dict[str, int]:
    return {name: int(sysctls.sysctl_path(name).read_text()) for name in NAMES}


def test_the_last_lab_down_restores_and_not_before(host):
    a, b = host / "lab-a", host / "lab-b"
    a.mkdir(), b.mkdir()
    sysctls.raise_for(a, NAMES)
    assert values() == NAMES
    sysctls.raise_for(b, NAMES)  # already high: nothing new to record
    sysctls.release(a)  # the first lab up goes down first: b is still up
    assert values() == NAMES, "a lab going down must not restore values another lab needs"
    sysctls.release(b)
    assert values() == {"net.ipv4.neigh.default.gc_thresh3": 1024, "net.core.netdev_max_backlog": 1000}
    assert not sysctls.REGISTRY.exists()


def test_a_value_raised_by_someone_else_is_not_ours_to_restore(host):
    a = host / "lab-a"
    a.mkdir()
    sysctls.sysctl_path("net.core.netdev_max_backlog").write_text("70000\n")  # an operator's own setting
    sysctls.raise_for(a, NAMES)
    sysctls.release(a)
    assert values() == {"net.ipv4.neigh.default.gc_thresh3": 1024, "net.core.netdev_max_backlog": 70000}


def test_a_lab_whose_state_is_gone_no_longer_holds_the_values(host):
    a, b = host / "lab-a", host / "lab-b"
    a.mkdir(), b.mkdir()
    sysctls.raise_for(a, NAMES)
    sysctls.raise_for(b, NAMES)
    a.rmdir()  # lab a's state directory vanished without a `lab down`
    sysctls.release(b)
    assert values()["net.ipv4.neigh.default.gc_thresh3"] == 1024
