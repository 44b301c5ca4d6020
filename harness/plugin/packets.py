"""Packet evidence for a conformance run: each case's test-link traffic (harness/traffic/
capture.py), kept in the evidence as a pcapng file for cases that fail or error (`--pcap all`:
every case; `--pcap off`: none) and linked from the case's results (`pcap`) and the report.

Registered next to the run (harness.plugin.activate). A device's capture sockets are opened at
its first case and closed after its last (the same rule as the device itself). A case's capture
starts when the `dut` fixture has the device open (before the case seeds anything) and ends
with the case's verdict: this plugin's makereport wrapper runs outside the run's own, so it sees
the verdict the run concluded (errata applied) and adds `pcap` before the case is written
anywhere. Capturing is evidence, never a verdict: a capture that cannot be made leaves the case
as it is, and the results say why there is no file (`pcap.error`).
"""

from __future__ import annotations

import pytest

from harness.errors import NeighcheckError
from harness.plugin.outcomes import device_of, evidence_path, record_of

PLUGIN = "neighcheck-packets"
KEPT_VERDICTS = ("fail", "error")


class PacketEvidence:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.mode = config.getoption("pcap")
        self.max_bytes = int(config.getoption("pcap_max") * (1 << 20))
        self.devices: dict[str, object] = {}  # device -> its LinkCapture, while it is open
        self.active: dict[str, object] = {}  # nodeid -> the LinkCapture of that running case
        self.problems: dict[str, str] = {}  # nodeid -> why that case has no capture

    def begin(self, item, dut) -> None:
        """Start capturing the case's traffic on the device's test links."""
        if self.mode == "off" or item.nodeid in self.active:
            return
        from harness.traffic.capture import LinkCapture
        name = dut.device.name
        try:
            if name not in self.devices:
                self.devices[name] = LinkCapture([link.harness_if for link in dut.device.links],
                                                 dut.inventory.test_interfaces, max_bytes=self.max_bytes)
            self.devices[name].start()
        except (OSError, NeighcheckError) as exc:
            self.problems[item.nodeid] = f"no capture: {getattr(exc, 'strerror', None) or exc}"
        else:
            self.active[item.nodeid] = self.devices[name]

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
        elif problem is not None and keep:
            info = {"error": problem}
        if info is not None:
            case["pcap"] = info
            record_of(item).pcap = info  # a later re-publish (cleanup failed) keeps it
        return report

    def pytest_runtest_teardown(self, item, nextitem) -> None:
        self.active.pop(item.nodeid, None)
        self.problems.pop(item.nodeid, None)
        device = device_of(item)
        if device is not None and (nextitem is None or device_of(nextitem) != device):
            self._close(device)  # its last case

    def _close(self, device: str) -> None:
        capture = self.devices.pop(device, None)
        if capture is not None:
            capture.close()

    def pytest_sessionfinish(self, session) -> None:
        for device in list(self.devices):  # (an interrupted run never reached a last teardown)
            self._close(device)


def _relative(path, run_dir) -> str:
    try:
        return str(path.relative_to(run_dir))
    except ValueError:
        return str(path)


def packet_evidence(config: pytest.Config) -> PacketEvidence | None:
    return config.pluginmanager.get_plugin(PLUGIN)
