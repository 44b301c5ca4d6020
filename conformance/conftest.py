"""The suite's parametrization and shared fixtures: the cases come from the inventory.

Each case says with marks how it is parametrized (harness/plugin registers them):
- `@pytest.mark.interfaces`: one case per (device, family of `families`, interface selector:
  `all` and each test link);
- `@pytest.mark.families(...)`: one case per (device, family);
- neither: one case per device.
Ids are readable: test_flush_scope[linux-a-AF_INET6-eth1], test_invalid_family[linux-a-family-24].
"""

from __future__ import annotations

import pytest

from harness.contract.clauses import family_name
from harness.plugin import activate, conformance_run


def pytest_configure(config: pytest.Config) -> None:
    activate(config)  # this is a conformance run: register the run's machinery


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device_name" not in metafunc.fixturenames:
        return
    devices = conformance_run(metafunc.config).selected
    families = metafunc.definition.get_closest_marker("families")
    if metafunc.definition.get_closest_marker("interfaces") is not None:
        rows = [(d.name, fam, sel) for d in devices for fam in families.args
                for sel in ("all", *(link.device_if for link in d.links))]
        metafunc.parametrize(("device_name", "family", "selector"), rows,
                             ids=[f"{d}-{family_name(f)}-{s}" for d, f, s in rows])
    elif families is not None:
        rows = [(d.name, fam) for d in devices for fam in families.args]
        metafunc.parametrize(("device_name", "family"), rows, ids=[f"{d}-{family_name(f)}" for d, f in rows])
    else:
        metafunc.parametrize("device_name", [d.name for d in devices], ids=[d.name for d in devices])


@pytest.fixture
def planted(case, dut):
    """Seed every test link by traffic, verified present; removed again after the case."""
    seeded = dut.seed()
    case.record.timings.update(seeded.timings)
    case.evidence["seeded"] = [{"family": k[0], "ifindex": k[1], "address": k[2], "lladdr": v}
                               for k, v in seeded.entries.items()]
    case.evidence["before"] = [e.to_dict() for e in seeded.before]
    try:
        yield seeded
    finally:
        dut.remove({**seeded.entries, **seeded.static})
