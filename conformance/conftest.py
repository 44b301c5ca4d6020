"""The suite's parametrization and shared steps: the cases come from the inventory.

One item per (device, family, interface selector) for the scope matrix; one per device and
probe for the other clauses. Ids are readable: test_flush_scope[linux-a-AF_INET6-eth1].
"""

from __future__ import annotations

import pytest

from harness.agent import AF_INET, AF_INET6, family_name
from harness.cases import INVALID_FAMILIES, SCOPE_FAMILIES


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device_name" not in metafunc.fixturenames:
        return
    run = metafunc.config.pluginmanager.get_plugin("neighcheck-run")
    devices = run.devices
    name = metafunc.function.__name__
    if name == "test_flush_scope":
        rows = [(d.name, fam, sel) for d in devices for fam in SCOPE_FAMILIES
                for sel in ("all", *(link.device_if for link in d.links))]
        metafunc.parametrize(("device_name", "family", "selector"), rows,
                             ids=[f"{d}-{family_name(f)}-{s}" for d, f, s in rows])
    elif "family" in metafunc.fixturenames:
        families = {"test_invalid_family": INVALID_FAMILIES,
                    "test_missing_stack": (AF_INET, AF_INET6),
                    "test_idempotent": SCOPE_FAMILIES}[name]
        rows = [(d.name, fam) for d in devices for fam in families]
        label = (lambda f: f"family-{f}") if name == "test_invalid_family" else family_name
        metafunc.parametrize(("device_name", "family"), rows, ids=[f"{d}-{label(f)}" for d, f in rows])
    else:
        metafunc.parametrize("device_name", [d.name for d in devices], ids=[d.name for d in devices])


@pytest.fixture
def planted(case, dut):
    """Seed every test link by traffic, verified present; removed again after the case."""
    with case.timing("seed+verify"):
        seeded = dut.seed()
    case.record.timings.update(seeded.timings)
    case.record.timings.pop("seed+verify", None)
    case.evidence["seeded"] = [{"family": k[0], "ifindex": k[1], "address": k[2], "lladdr": v}
                               for k, v in seeded.entries.items()]
    case.evidence["before"] = [e.to_dict() for e in seeded.before]
    try:
        yield seeded
    finally:
        dut.remove({**seeded.entries, **seeded.static})
