"""neighcheck's pytest plugin (registered through the pytest11 entry point).

Thin by design: options, markers and the two fixtures live here. The run's machinery (devices,
verdicts, results, xdist scheduling) is registered only for a conformance run: the suite's own
conftest asks for it (`activate`), as pytest's junitxml registers only when asked, so any other
pytest session (the project's own tests included) never reads an inventory or probes a lab.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import threading

import pytest

from harness.contract.clauses import MAX_ENTRIES
from harness.errors import UsageError
from harness.places import DEFAULT_PLACE_WAIT

RUN_PLUGIN = "neighcheck-run"
DEFAULT_SETTLE = 0.5
DEFAULT_ENTRIES = 32
AGENT_MODES = ("serve", "per-call")
DEFAULT_PCAP_MAX_MIB = 8.0


def _labgrid_adds_its_options(pluginmanager) -> bool:
    """Whether labgrid's own pytest plugin is (or is about to be) loaded: it defines
    --lg-coordinator, and defining it twice would stop pytest."""
    if pluginmanager.has_plugin("labgrid") or pluginmanager.has_plugin("labgrid.pytestplugin"):
        return True
    config = pluginmanager.get_plugin("pytestconfig")
    known = getattr(config, "known_args_namespace", None)
    if pluginmanager.is_blocked("labgrid") or os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") \
            or getattr(known, "disable_plugin_autoload", False):
        return False
    return any(ep.name == "labgrid" for ep in importlib.metadata.entry_points(group="pytest11"))


def pytest_addoption(parser: pytest.Parser, pluginmanager) -> None:
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
    group.addoption("--place-wait", type=float, default=DEFAULT_PLACE_WAIT, metavar="S",
                    help=f"how long to wait for a device's labgrid place (default {DEFAULT_PLACE_WAIT:g} s)")
    from harness.traffic.capture import PCAP_MODES
    group.addoption("--pcap", choices=PCAP_MODES, default=PCAP_MODES[0],
                    help="keep each case's test-link traffic as a pcapng file: for failed and errored "
                         "cases (default), all cases, or none")
    group.addoption("--pcap-max", type=float, default=DEFAULT_PCAP_MAX_MIB, metavar="MIB",
                    help=f"largest pcapng file per case (default {DEFAULT_PCAP_MAX_MIB:g} MiB)")
    if not _labgrid_adds_its_options(pluginmanager):
        # Spelled as labgrid's plugin spells it, so one command line works with and without it.
        group.addoption("--lg-coordinator", dest="lg_coordinator", metavar="COORDINATOR_ADDRESS",
                        help="labgrid coordinator HOST[:PORT] (default: $LG_COORDINATOR, else 127.0.0.1:20408)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clauses(*ids): the contract clauses this case checks")
    config.addinivalue_line("markers", "families(*numbers): the families a case is run with, one case each")
    config.addinivalue_line("markers", "interfaces: the case runs once per interface selector (all, and each test link)")
    config.addinivalue_line("markers", "scale: the case seeds --scale-entries entries per family per link")
    for option, low, high in (("entries", 1, MAX_ENTRIES), ("scale_entries", 0, MAX_ENTRIES)):
        value = config.getoption(option)
        if not low <= value <= high:
            raise pytest.UsageError(f"--{option.replace('_', '-')} must be {low}..{high}, got {value}")
    for option, high in (("lock_wait", 3600), ("settle", 60), ("place_wait", 86400)):  # seconds; NaN fails too
        if not 0 <= config.getoption(option) <= high:
            raise pytest.UsageError(f"--{option.replace('_', '-')} must be 0..{high} seconds")
    if not 0.01 <= config.getoption("pcap_max") <= 4096:
        raise pytest.UsageError("--pcap-max must be 0.01..4096 MiB")


def activate(config: pytest.Config) -> None:
    """Register the conformance run (called by the suite's conftest, once per process)."""
    if config.pluginmanager.get_plugin(RUN_PLUGIN) is None:
        from harness.plugin.run import ConformanceRun
        try:
            run = ConformanceRun(config)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.pluginmanager.register(run, RUN_PLUGIN)
        from harness.plugin.packets import PLUGIN as PACKETS, PacketEvidence
        from harness.plugin.results import PROPERTIES_PLUGIN, SuiteProperties
        config.pluginmanager.register(PacketEvidence(config), PACKETS)
        config.pluginmanager.register(SuiteProperties(run), PROPERTIES_PLUGIN)
        _sigterm_as_ctrl_c()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _sigterm_as_ctrl_c() -> None:
    """CI systems cancel a job with SIGTERM: handled as Ctrl-C, so what the run planted is
    removed and its devices (labgrid places too) are released, where SIGTERM's default would end
    the process on the spot and leave a shared lab's place acquired. Only in the main thread,
    and never over a handler someone else installed."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def conformance_run(config: pytest.Config):
    run = config.pluginmanager.get_plugin(RUN_PLUGIN)
    if run is None:
        raise pytest.UsageError("neighcheck: the `dut` and `case` fixtures belong to the conformance "
                                "suite (its conftest activates the run); run `neighcheck run` or "
                                "`pytest conformance`")
    return run


@pytest.fixture
def dut(request):
    """The opened device under test of this case (one per device per process); the case's
    packet capture starts once it is open, before anything is seeded."""
    opened = conformance_run(request.config).devices.open(request.node.callspec.params["device_name"])
    from harness.plugin.packets import packet_evidence
    capture = packet_evidence(request.config)
    if capture is not None:
        capture.begin(request.node, opened)
    return opened


@pytest.fixture
def case(request):
    """The case's record, timings, evidence and verdict; after it, what it planted is cleaned up."""
    case = conformance_run(request.config).case_for(request.node)
    yield case
    case.cleanup()
