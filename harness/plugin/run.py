"""One conformance run's hooks: devices opened and closed around their cases, one verdict per
case (with errata applied once, as it finishes), results written on the controller, and a
lab this run brought up taken down again.

Registered by `harness.plugin.activate` for conformance runs only.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.contract.errata import excuse, load_errata
from harness.contract.verdicts import Verdict
from harness.errors import NeighcheckError
from harness.inventory import load_inventory
from harness.plugin.devices import DeviceSessions
from harness.plugin.outcomes import Case, conclude_verdict, device_of, record_of, short_repr
from harness.plugin.results import ResultsWriter, new_run_id
from harness.traffic.seeding import check_plans
from harness.traffic.capability import require_raw_sockets


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class ConformanceRun:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.inventory = load_inventory(config.getoption("devices"))
        self.selected = self.inventory.select(config.getoption("device") or None)
        require_raw_sockets(self.selected)  # `pytest conformance` stops at once too
        check_plans(self.selected, config.getoption("entries"))  # a link too small: one clear error now
        errata_path = config.getoption("errata") or ("errata.toml" if Path("errata.toml").exists() else None)
        self.errata = load_errata(Path(errata_path)) if errata_path else []
        if _is_worker(config):
            self.run_dir = Path(config.workerinput["neighcheck_run_dir"])
            self.run_id = config.workerinput["neighcheck_run_id"]
        else:
            given = config.getoption("report_dir")
            self.run_id = Path(given).name if given else new_run_id()
            self.run_dir = Path(given) if given else Path("reports") / self.run_id
        evidence = config.getoption("evidence")
        self.evidence_dir = Path(evidence) if evidence else self.run_dir / "evidence"
        self.settle = config.getoption("settle")
        self.started = datetime.now(timezone.utc)
        self.devices = DeviceSessions(self.inventory, run_dir=self.run_dir, run_id=self.run_id,
                                      entries=config.getoption("entries"),
                                      scale_entries=config.getoption("scale_entries"),
                                      lock_wait=config.getoption("lock_wait"),
                                      serve=config.getoption("agent_mode") == "serve",
                                      coordinator=config.getoption("lg_coordinator", None),
                                      place_wait=config.getoption("place_wait"))
        self.writer: ResultsWriter | None = None
        self.results: dict | None = None
        self._lab_was_down = False
        self._interrupted = False  # Ctrl-C seen (pytest's exit status can miss a second one)

    def case_for(self, item) -> Case:
        record = record_of(item)
        return Case(record, self.run_dir, self.evidence_dir, settle=self.settle,
                    scale_entries=self.config.getoption("scale_entries"),
                    device_output=lambda: self.devices.output_before_replies(record.device))

    # --- set-up --------------------------------------------------------------------------
    def pytest_configure_node(self, node) -> None:  # xdist controller -> each worker
        node.workerinput["neighcheck_run_dir"] = str(self.run_dir)
        node.workerinput["neighcheck_run_id"] = self.run_id

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items) -> None:
        order = {d.name: n for n, d in enumerate(self.selected)}
        # Group by device (stable): one device's cases run back to back, and on one xdist worker.
        items.sort(key=lambda i: order.get(device_of(i) or "", -1))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config, log):
        """`-n N` (load) or `--dist loadgroup` (what `neighcheck run -n` asks for): one work
        unit per device."""
        if config.getvalue("dist") not in ("load", "loadgroup"):  # `-n N` alone means load
            return None
        from harness.plugin.scheduling import device_scheduling
        return device_scheduling([d.name for d in self.selected])(config, log)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session) -> None:
        """Controller only (xdist workers start later): note whether the lab is down now.
        A lab this run brings up, this run takes down again (hygiene); one that was already
        up (make run, a developer's shell) is left as found."""
        lab_devices = tuple(d for d in self.selected if d.lab is not None)
        if _is_worker(self.config) or os.geteuid() != 0 or not lab_devices:
            return
        from harness.lab.netns import Lab
        try:
            self._lab_was_down = not Lab(self.inventory).is_up(lab_devices)
        except NeighcheckError:
            pass  # shows when the device is opened

    # --- each case -----------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        # After the fixtures' own teardown (the case's cleanup needs the open device), never
        # before: closing first would reconnect behind the released lock and leak a session.
        try:
            return (yield)
        finally:
            device = device_of(item)
            if device is not None and (nextitem is None or device_of(nextitem) != device):
                self.devices.close(device)  # its last case: release the device (lock, responder) now

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if device_of(item) is None:
            return report
        record = record_of(item)
        if call.when == "setup" and report.passed:
            return report  # the verdict comes with the call phase
        if call.when == "teardown":
            if report.failed:
                why = call.excinfo.value if call.excinfo else report.longrepr
                report.longrepr = f"teardown: {why}"
                if record.verdict not in (Verdict.FAIL.value, Verdict.ERROR.value, Verdict.KNOWN.value):
                    # The case's own verdict stood, but what it planted may still be on the
                    # device: say so in the results, not only in pytest's output.
                    record.verdict = Verdict.ERROR.value
                    record.reason = f"cleanup after the case failed: {why}"
                    self._publish(item, report, record)
            return report
        conclude_verdict(record, report, call)
        if not record.duration_s:  # ended before the case measured itself (e.g. seeding failed)
            record.duration_s = report.duration
        case = record.to_dict()
        erratum = excuse(self.errata, case)
        if erratum is not None:
            record.verdict, record.erratum = case["verdict"], erratum
            report.outcome = "skipped"  # pytest's convention for a known failure: xfail
            report.wasxfail = f"known issue: {erratum['reason']}"
        report.longrepr = short_repr(record, report)
        self._publish(item, report, record)
        return report

    @staticmethod
    def _publish(item, report, record) -> None:
        """The record on the report (it travels from xdist workers) and as JUnit properties."""
        props = {"device": record.device, "clauses": " ".join(record.clauses),
                 "verdict": record.verdict, "status_raw": str(record.status_raw)}
        item.user_properties = [(k, v) for k, v in item.user_properties if k not in props]
        item.user_properties += list(props.items())
        report.user_properties = list(item.user_properties)
        report.neighcheck_case = record.to_dict()

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(self, config, report):
        data = yield
        if data is not None and hasattr(report, "neighcheck_case"):
            data["neighcheck_case"] = report.neighcheck_case
        return data

    @pytest.hookimpl(wrapper=True)
    def pytest_report_from_serializable(self, config, data):
        report = yield
        if report is not None and "neighcheck_case" in data:
            report.neighcheck_case = data["neighcheck_case"]
        return report

    def pytest_runtest_logreport(self, report) -> None:
        # On the controller (xdist) or the only process: workers' reports arrive here too.
        if hasattr(report, "neighcheck_case") and not _is_worker(self.config):
            if self.writer is None:
                self.writer = ResultsWriter(self.run_dir)
            self.writer.append(report.neighcheck_case)

    # --- the end -------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)  # before the terminal's slow traceback formatting
    def pytest_keyboard_interrupt(self, excinfo) -> None:
        self._interrupted = True

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session, exitstatus):
        """Around pytest's own teardown of the cases' fixtures (their cleanup needs the open
        devices); whatever happens in there, the devices are closed and the results written.

        Ctrl-C: the first one stops the cases and the cleanup still runs (bounded by the
        command timeouts). One that comes while the cleanup runs stops it at once: the
        devices left as they are are named in the results, which are still written."""
        if exitstatus == pytest.ExitCode.INTERRUPTED or isinstance(sys.exc_info()[1], KeyboardInterrupt):
            # (a second Ctrl-C while pytest handles the first leaves its exit status OK)
            self._interrupted = True
        stopped = False
        try:
            return (yield)
        except KeyboardInterrupt:
            self._interrupted = stopped = True
            raise
        finally:
            self._finish(cleanup=not stopped)

    def _finish(self, *, cleanup: bool) -> None:
        try:
            self.devices.close_all(cleanup=cleanup)
        except KeyboardInterrupt:
            self._interrupted = True
            self.devices.close_all(cleanup=False)
            raise
        finally:
            if self.writer is not None:
                self.results = self.writer.finish(
                    run_id=self.run_id, started=self.started, inventory=self.inventory,
                    devices=self.devices.recorded_info(self.selected),
                    entries=self.config.getoption("entries"), settle=self.settle,
                    errata=self.errata, interrupted=self._interrupted)
        if self.writer is not None and self._lab_was_down:
            from harness.lab.netns import Lab
            Lab(self.inventory).down()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.results:
            return
        from harness.reports.summary import terminal_matrix
        tr = terminalreporter
        tr.section("neighcheck")
        tr.write_line(terminal_matrix(self.results))
        counts = ", ".join(f"{n} {v}" for v, n in self.results["summary"].items() if n)
        tr.write_line(f"verdicts: {counts or 'none'}")
        for erratum in self.results.get("errata", []):
            if erratum["status"] == "stale":
                tr.write_line(f"stale erratum (its cases now pass; remove it): {erratum}", yellow=True)
        for device in self.results.get("devices", []):
            if device.get("cleanup_failed"):
                tr.write_line(f"device {device['name']} may be left dirty: {device['cleanup_failed']}",
                              red=True)
        tr.write_line(f"report: {self.run_dir / 'report.html'}")
