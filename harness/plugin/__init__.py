"""neighcheck's pytest plugin (registered through the pytest11 entry point).

Thin by design: options, markers and the two fixtures live here. The run's machinery (devices,
verdicts, results, xdist scheduling) is registered only for a conformance run: the suite's own
conftest asks for it (`activate`), as pytest's junitxml registers only when asked, so any other
pytest session (the project's own tests included) never reads an inventory or probes a lab.
"""

from __future__ import annotations

import pytest

from harness.contract.clauses import MAX_ENTRIES
from harness.errors import UsageError

RUN_PLUGIN = "neighcheck-run"
DEFAULT_SETTLE = 0.5
DEFAULT_ENTRIES = 32
AGENT_MODES = ("serve", "per-call")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("neighcheck", "neighcheck conformance suite")
    group.addoption("--devices", default="devices.toml", metavar="FILE",
                    help="inventory file (default: ./devices.toml)")
    group.addoption("--device", action="append", default=[], metavar="NAME",
                    help="run only this device (repeatable; default: all)")
    group.addoption("--entries", type=int, default=DEFAULT_ENTRIES, metavar="N",
                    help=f"seeded entries per family per test link (default {DEFAULT_ENTRIES})")
    group.addoption("--scale-entries", type=int, default=1024, metavar="N",
                    help="seeded entries per family per test link in the scale cases (default 1024; 0: no scale cases)")
    group.addoption("--settle", type=float, default=DEFAULT_SETTLE, metavar="S",
                    help=f"seconds after a flush before durable effects are judged (default {DEFAULT_SETTLE}; 0: off)")
    group.addoption("--evidence", default=None, metavar="DIR",
                    help="where per-case evidence goes (default: <report dir>/evidence)")
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="this run's report directory (default: reports/<run-id>)")
    group.addoption("--lock-wait", type=float, default=30.0, metavar="S",
                    help="how long to wait for a device another run is using (default 30 s)")
    group.addoption("--agent-mode", choices=AGENT_MODES, default="serve",
                    help="serve: one resident agent process per device where the agent offers it "
                         "(default); per-call: start the agent for every call")
    group.addoption("--errata", default=None, metavar="FILE",
                    help="known-issues file (default: ./errata.toml when present)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clauses(*ids): the contract clauses this case checks")
    config.addinivalue_line("markers", "families(*numbers): the families a case is run with, one case each")
    config.addinivalue_line("markers", "interfaces: the case runs once per interface selector (all, and each test link)")
    config.addinivalue_line("markers", "scale: the case seeds --scale-entries entries per family per link")
    for option, low, high in (("entries", 1, MAX_ENTRIES), ("scale_entries", 0, MAX_ENTRIES)):
        value = config.getoption(option)
        if not low <= value <= high:
            raise pytest.UsageError(f"--{option.replace('_', '-')} must be {low}..{high}, got {value}")
    for option, high in (("lock_wait", 3600), ("settle", 60)):  # seconds; NaN fails too
        if not 0 <= config.getoption(option) <= high:
            raise pytest.UsageError(f"--{option.replace('_', '-')} must be 0..{high} seconds")


def activate(config: pytest.Config) -> None:
    """Register the conformance run (called by the suite's conftest, once per process)."""
    if config.pluginmanager.get_plugin(RUN_PLUGIN) is None:
        from harness.plugin.run import ConformanceRun
        try:
            run = ConformanceRun(config)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.pluginmanager.register(run, RUN_PLUGIN)


def conformance_run(config: pytest.Config):
    run = config.pluginmanager.get_plugin(RUN_PLUGIN)
    if run is None:
        raise pytest.UsageError("neighcheck: the `dut` and `case` fixtures belong to the conformance "
                                "suite (its conftest activates the run); run `neighcheck run` or "
                                "`pytest conformance`")
    return run


@pytest.fixture
def dut(request):
    """The opened device under test of this case (one per device per process)."""
    return conformance_run(request.config).devices.open(request.node.callspec.params["device_name"])


@pytest.fixture
def case(request):
    """The case's record, timings, evidence and verdict; after it, what it planted is cleaned up."""
    case = conformance_run(request.config).case_for(request.node)
    yield case
    case.cleanup()
