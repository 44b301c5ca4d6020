"""Packet evidence for a conformance run: each case's test-link traffic (harness/traffic/
capture.py), kept in the evidence as a pcapng file for cases that fail or error (`--pcap all`:
every case; `--pcap off`: none) and linked from the case's results (`pcap`) and the report.

Registered next to the run (harness.plugin.activate). A capture starts when the `dut` fixture
has the device open (before the case seeds anything) and ends with the case's verdict: this
plugin's makereport wrapper runs outside the run's own, so it sees the verdict the run
concluded (errata applied) and adds `pcap` before the case is written anywhere. Capturing is
evidence, never a verdict: a capture that cannot be made leaves the case as it is, and the
results say why there is no file (`pcap.error`).
"""

from __future__ import annotations

import pytest

from harness.errors import NeighcheckError
from harness.plugin.outcomes import evidence_path, record_of

PLUGIN = "neighcheck-packets"
KEPT_VERDICTS = ("fail", "error")


class PacketEvidence:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.mode = config.getoption("pcap")
        self.max_bytes = int(config.getoption("pcap_max") * (1 << 20))
        self.active: dict[str, object] = {}  # nodeid -> LinkCapture
        self.problems: dict[str, str] = {}  # nodeid -> why that case has no capture

    def begin(self, item, dut) -> None:
        """Start capturing the case's traffic on the device's test links."""
        if self.mode == "off" or item.nodeid in self.active:
            return
        from harness.traffic.capture import LinkCapture
        try:
            self.active[item.nodeid] = LinkCapture([link.harness_if for link in dut.device.links],
                                                   dut.inventory.test_interfaces, max_bytes=self.max_bytes)
        except (OSError, NeighcheckError) as exc:
            self.problems[item.nodeid] = f"no capture: {getattr(exc, 'strerror', None) or exc}"

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # outside the run's wrapper: after its verdict
    def pytest_runtest_makereport(self, item, call):
        report = yield
        case = getattr(report, "neighcheck_case", None)
        if case is None or "pcap" in case and case["pcap"] is not None:
            return report
        capture = self.active.pop(item.nodeid, None)
        problem = self.problems.pop(item.nodeid, None)
        keep = self.mode == "all" or case["verdict"] in KEPT_VERDICTS
        info = None
        if capture is not None and keep:
            from harness.plugin import conformance_run
            run = conformance_run(self.config)
            path = evidence_path(run.evidence_dir, case["device"], case["name"], ".pcapng")
            try:
                info = capture.keep(path)
            except OSError as exc:
                info = {"error": f"the capture could not be written: {exc.strerror or exc}"}
            else:
                info["file"] = _relative(path, run.run_dir)
        elif capture is not None:
            capture.discard()
        elif problem is not None and keep:
            info = {"error": problem}
        if info is not None:
            case["pcap"] = info
            record_of(item).pcap = info  # a later re-publish (cleanup failed) keeps it
        return report

    def pytest_runtest_logfinish(self, nodeid, location) -> None:
        # A case that never concluded (e.g. interrupted) leaves no socket open behind it.
        capture = self.active.pop(nodeid, None)
        if capture is not None:
            capture.discard()
        self.problems.pop(nodeid, None)


def _relative(path, run_dir) -> str:
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


def packet_evidence(config: pytest.Config) -> PacketEvidence | None:
    return config.pluginmanager.get_plugin(PLUGIN)
