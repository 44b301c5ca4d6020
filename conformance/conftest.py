"""The suite's parametrization and shared fixtures: the cases come from the inventory.

Each case says with marks how it is parametrized (harness/plugin registers them):
- `@pytest.mark.interfaces`: one case per (device, family of `families`, interface selector:
  `all` and each test link; with `interfaces("all", "first")`: `all` and the first link);
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
    interfaces = metafunc.definition.get_closest_marker("interfaces")
    if interfaces is not None:
        # `interfaces`: all, and each test link; `interfaces("all", "first")`: all and the first.
        each = "first" not in interfaces.args
        rows = [(d.name, fam, sel) for d in devices for fam in families.args
                for sel in ("all", *(link.device_if for link in (d.links if each else d.links[:1])))]
        metafunc.parametrize(("device_name", "family", "selector"), rows,
                             ids=[f"{d}-{family_name(f)}-{s}" for d, f, s in rows])
    elif families is not None:
        rows = [(d.name, fam) for d in devices for fam in families.args]
        metafunc.parametrize(("device_name", "family"), rows, ids=[f"{d}-{family_name(f)}" for d, f in rows])
    else:
        metafunc.parametrize("device_name", [d.name for d in devices], ids=[d.name for d in devices])


@pytest.fixture
def planted(request, case, dut):
    """Seed every test link by traffic, verified present (a `scale` case: --scale-entries per
    family per link); the `case` fixture cleans up after the case."""
    if request.node.get_closest_marker("scale") is None:
        return case.plant(dut)
    if not case.scale_entries:
        case.not_applicable("--scale-entries 0: the scale cases are off")
    if (short := dut.too_small_for(case.scale_entries)) is not None:
        case.not_applicable(f"--scale-entries {case.scale_entries} does not fit: {short}")
    return case.plant(dut, case.scale_entries)
