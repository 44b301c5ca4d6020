"""neighcheck's pytest plugin (registered through the pytest11 entry point).

What it adds to pytest:
- options: --devices, --device, --entries, --evidence, --report-dir, --lock-wait, --errata;
- parametrization of the conformance cases from the inventory (one item per device and
  family/interface combination, readable ids such as `linux-a-AF_INET6-eth1`), grouped by
  device for pytest-xdist (`--dist loadgroup`) so one device's cases run on one worker, in order;
- the `dut` fixture (an opened DeviceUnderTest, one per device per worker, closed after the
  device's last case) and the `case` fixture (the case's record, timings and evidence);
- verdicts: every conformance item ends as exactly one of pass, fail, error, skip,
  not-applicable, observed or known; a case that returns without a verdict is an error;
- results: `results.jsonl` appended as each case finishes (a crash loses no finished case),
  `results.json` at the end, and a compact matrix in the terminal summary.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from harness import SUITE_VERSION, __version__
from harness.errors import NeighcheckError, UsageError
from harness.verdicts import CaseRecord, Verdict

CASE_KEY = pytest.StashKey["CaseRecord"]()
MAX_ENTRIES = 16384
EVIDENCE_INDENT_MAX = 2048  # table rows up to which evidence files are indented


# --- options -------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("neighcheck", "neighcheck conformance suite")
    group.addoption("--devices", default="devices.toml", metavar="FILE",
                    help="inventory file (default: ./devices.toml)")
    group.addoption("--device", action="append", default=[], metavar="NAME",
                    help="run only this device (repeatable; default: all)")
    group.addoption("--entries", type=int, default=32, metavar="N",
                    help="seeded entries per family per test link (default 32)")
    group.addoption("--evidence", default=None, metavar="DIR",
                    help="where per-case evidence goes (default: <report dir>/evidence)")
    group.addoption("--report-dir", default=None, metavar="DIR",
                    help="this run's report directory (default: reports/<run-id>)")
    group.addoption("--lock-wait", type=float, default=30.0, metavar="S",
                    help="how long to wait for a device another run is using (default 30 s)")
    group.addoption("--errata", default=None, metavar="FILE",
                    help="known-issues file (default: ./errata.toml when present)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clauses(*ids): the contract clauses this case checks")
    entries = config.getoption("entries")
    if not 1 <= entries <= MAX_ENTRIES:
        raise pytest.UsageError(f"--entries must be 1..{MAX_ENTRIES}, got {entries}")
    if config.getoption("lock_wait") < 0:
        raise pytest.UsageError("--lock-wait must be >= 0")
    config.pluginmanager.register(NeighcheckRun(config), "neighcheck-run")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(3).hex()}"


class NeighcheckRun:
    """Per-process state of one run: inventory, run directory, open devices, results."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self._inventory = None
        self.duts: dict[str, Any] = {}  # device name -> DeviceUnderTest or the error that stopped it
        self.seeder = None
        self.writer: ResultsWriter | None = None
        self._lab_was_down = False
        self._interrupted = False  # Ctrl-C seen (pytest's exit status can miss a second one)
        self._errata = None
        if _is_worker(config):
            self.run_dir = Path(config.workerinput["neighcheck_run_dir"])
            self.run_id = config.workerinput["neighcheck_run_id"]
        else:
            given = config.getoption("report_dir")
            self.run_id = Path(given).name if given else new_run_id()
            self.run_dir = Path(given) if given else Path("reports") / self.run_id
        evidence = config.getoption("evidence")
        self.evidence_dir = Path(evidence) if evidence else self.run_dir / "evidence"
        self.started = datetime.now(timezone.utc)

    # --- inventory and devices ---------------------------------------------------------
    @property
    def inventory(self):
        if self._inventory is None:
            from harness.inventory import load_inventory
            try:
                self._inventory = load_inventory(self.config.getoption("devices"))
                self._devices = self._inventory.select(self.config.getoption("device") or None)
            except UsageError as exc:
                raise pytest.UsageError(str(exc)) from None
        return self._inventory

    @property
    def devices(self):
        _ = self.inventory
        return self._devices

    def open_dut(self, name: str):
        """The opened device for `name`, opening it on first use; re-raises a failed open."""
        known = self.duts.get(name)
        if isinstance(known, Exception):
            raise known
        if known is not None:
            try:
                known.ensure_held()
            except NeighcheckError as lost:
                # Gone mid-run: close what can be closed now; every later case errors at once.
                try:
                    self.close_dut(name)
                except NeighcheckError:
                    pass  # recorded with the device (cleanup) by close_dut
                self.duts[name] = lost
                raise
            return known
        from harness.device import DeviceUnderTest
        from harness.lab import Lab
        from harness.seeding import Seeder
        device = self.inventory.device(name)
        try:
            if device.lab is not None:
                lab = Lab(self.inventory)
                if not lab.is_up((device,)):
                    lab.up((device,))
            if self.seeder is None:
                self.seeder = Seeder(self.inventory.test_interfaces)
            holder = f"{socket.gethostname()} pid {os.getpid()} run {self.run_id}"
            dut = DeviceUnderTest(device, self.inventory, entries=self.config.getoption("entries"),
                                  seeder=self.seeder, holder=holder,
                                  lock_wait=self.config.getoption("lock_wait"))
            try:
                dut.open()
            except BaseException:
                _close_quietly(dut)
                raise
        except NeighcheckError as exc:
            self.duts[name] = exc
            raise
        self.duts[name] = dut
        self._write_device_info(dut)
        return dut

    def close_dut(self, name: str) -> None:
        dut = self.duts.get(name)
        if dut is not None and not isinstance(dut, Exception):
            try:
                dut.close()
            except NeighcheckError as exc:
                # The device may be left dirty: say so in the results, not only in a log.
                self._write_device_info(dut, cleanup=str(exc))
                raise
            except KeyboardInterrupt:
                self._write_device_info(dut, cleanup="interrupted before its cleanup finished")
                raise
            finally:
                self.duts[name] = DeviceClosed(f"device {name!r} was already closed")

    def _write_device_info(self, dut, cleanup: str | None = None) -> None:
        path = self.run_dir / "devices" / f"{dut.device.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "name": dut.device.name, "os": dut.device.os, "fingerprint": dut.fingerprint,
            "stacks": dut.stacks,
            "interfaces": [{"index": link.ifindex, "name": link.config.device_if} for link in dut.links],
        }
        if cleanup is not None:
            info["cleanup_failed"] = cleanup
        path.write_text(json.dumps(info, indent=2))

    # --- errata --------------------------------------------------------------------------
    @property
    def errata(self):
        if self._errata is None:
            path = self.config.getoption("errata")
            self._errata = []
            if path or Path("errata.toml").exists():
                try:
                    from harness.reports.errata import load_errata
                except ImportError:
                    return self._errata
                try:
                    self._errata = load_errata(Path(path or "errata.toml"))
                except UsageError as exc:
                    raise pytest.UsageError(str(exc)) from None
        return self._errata

    # --- hooks ---------------------------------------------------------------------------
    def pytest_configure_node(self, node) -> None:  # xdist controller -> each worker
        node.workerinput["neighcheck_run_dir"] = str(self.run_dir)
        node.workerinput["neighcheck_run_id"] = self.run_id

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config, items) -> None:
        ours = [i for i in items if _device_of(i) is not None]
        if not ours:
            return
        _ = self.errata  # a bad errata file stops the run before any device is touched
        order = {d.name: n for n, d in enumerate(self.devices)}
        # Group by device (stable): one device's cases run back to back, and on one xdist worker.
        items.sort(key=lambda i: order.get(_device_of(i) or "", -1))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config, log):
        """`-n N` (load) or `--dist loadgroup` (what `neighcheck run -n` asks for): one work
        unit per device.

        xdist's own loadgroup reads xdist_group marks through node ids it rewrites, which
        pytest >= 9.2 no longer allows (pytest-xdist#1386): the marks were silently ignored,
        a device's cases were spread over the workers, and these fought for its lock."""
        if config.getvalue("dist") not in ("load", "loadgroup"):  # `-n N` alone means load
            return None
        try:
            names = [d.name for d in self.devices]
        except pytest.UsageError:
            return None  # the workers report the inventory problem
        return _device_scheduling(names)(config, log)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session) -> None:
        """Controller only (xdist workers start later): note whether the lab is down now.
        A lab this run brings up, this run takes down again (hygiene); one that was already
        up (make run, a developer's shell) is left as found."""
        if _is_worker(self.config) or os.geteuid() != 0:
            return
        try:
            from harness.lab import Lab
            lab_devices = tuple(d for d in self.devices if d.lab is not None)
            if lab_devices and not Lab(self.inventory).is_up(lab_devices):
                self._lab_was_down = True
        except (pytest.UsageError, NeighcheckError):
            pass  # not a conformance run, or the error shows when cases are collected

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        # After the fixtures' own teardown (the case's cleanup needs the open device), never
        # before: closing first would reconnect behind the released lock and leak a session.
        try:
            return (yield)
        finally:
            device = _device_of(item)
            if device is not None and (nextitem is None or _device_of(nextitem) != device):
                self.close_dut(device)  # its last case: release the device (lock, responder) now

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        record: CaseRecord | None = item.stash.get(CASE_KEY, None)
        if record is None and _device_of(item) is not None and call.when == "setup":
            record = _new_record(item)
            item.stash[CASE_KEY] = record
        if record is None:
            return report
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
                    item.user_properties = [(k, v) for k, v in item.user_properties if k != "verdict"]
                    item.user_properties.append(("verdict", record.verdict))
                    report.user_properties = list(item.user_properties)
                    report.neighcheck_case = record.to_dict()
            return report
        _conclude(record, report, call)
        if not record.duration_s:  # ended before the case measured itself (e.g. seeding failed)
            record.duration_s = report.duration
        self._apply_errata(record, report)
        report.longrepr = _short_repr(record, report)
        item.user_properties += [("device", record.device), ("clauses", " ".join(record.clauses)),
                                 ("verdict", record.verdict), ("status_raw", str(record.status_raw))]
        report.user_properties = list(item.user_properties)
        report.neighcheck_case = record.to_dict()
        return report

    def _apply_errata(self, record: CaseRecord, report) -> None:
        if record.verdict != Verdict.FAIL.value:
            return
        from harness.reports.errata import covers
        excuse = covers(self.errata, record.to_dict())
        if excuse:
            erratum = excuse[0]
            record.verdict = Verdict.KNOWN.value
            record.reason = f"{record.reason} [known: {erratum.reason}" + \
                (f" {erratum.link}]" if erratum.link else "]")
            report.outcome = "skipped"  # pytest's convention for a known failure: xfail
            report.wasxfail = f"known issue: {erratum.reason}"

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
            self._finish_run(cleanup=not stopped)

    def _finish_run(self, *, cleanup: bool) -> None:
        try:
            for name in list(self.duts) if cleanup else []:
                try:
                    self.close_dut(name)
                except NeighcheckError:
                    pass  # recorded with the device (cleanup_failed) and shown in the summary
        except KeyboardInterrupt:
            self._interrupted, cleanup = True, False
            raise
        finally:
            if not cleanup:
                for dut in self.duts.values():
                    if not isinstance(dut, Exception):
                        self._write_device_info(dut, cleanup="interrupted before its cleanup finished")
            if self.seeder is not None:
                self.seeder.close()
            if self.writer is not None:
                self.results = self.writer.finish(self, interrupted=self._interrupted)
        if self.writer is not None and self._lab_was_down:
            from harness.lab import Lab
            Lab(self.inventory).down()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.writer is None or not getattr(self, "results", None):
            return
        tr = terminalreporter
        try:
            from harness.reports.summary import terminal_matrix
        except ImportError:
            terminal_matrix = None
        tr.section("neighcheck")
        if terminal_matrix is not None:
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


class DeviceClosed(NeighcheckError):
    pass


def _close_quietly(dut) -> None:
    try:
        dut.close()
    except Exception:  # noqa: BLE001 - the open error is the one to report
        pass


def _device_scheduling(devices: list[str]):
    from xdist.scheduler import LoadGroupScheduling

    by_length = sorted(devices, key=len, reverse=True)

    class DeviceScheduling(LoadGroupScheduling):
        """xdist's loadgroup, where a conformance case's group is its device (read from the
        case id, `test_flush_scope[<device>-AF_INET-eth1]`): all of a device's cases go to one
        worker, in collection order (grouped by device)."""

        def _split_scope(self, nodeid: str) -> str:
            if nodeid.endswith("]") and "[" in nodeid:
                param = nodeid[nodeid.rindex("[") + 1:-1]
                for name in by_length:
                    if param == name or param.startswith(name + "-"):
                        return f"neighcheck-device:{name}"
            return super()._split_scope(nodeid)

    return DeviceScheduling


# --- records and verdicts ------------------------------------------------------------------
def _device_of(item) -> str | None:
    spec = getattr(item, "callspec", None)
    return spec.params.get("device_name") if spec is not None else None


def _new_record(item) -> CaseRecord:
    marker = item.get_closest_marker("clauses")
    clauses = list(marker.args) if marker else []
    params = item.callspec.params
    return CaseRecord(id=item.nodeid, name=item.name, test=item.originalname,
                      device=params["device_name"], clauses=clauses,
                      family=params.get("family"), interface=params.get("selector"))


def _conclude(record: CaseRecord, report, call) -> None:
    """Map what happened in the case to exactly one verdict."""
    excinfo = call.excinfo
    if report.skipped:
        reason = str(excinfo.value) if excinfo else "skipped"
        if reason.startswith("not-applicable: "):
            record.verdict, record.reason = Verdict.NOT_APPLICABLE.value, reason[len("not-applicable: "):]
        else:
            record.verdict, record.reason = Verdict.SKIP.value, reason
        return
    if excinfo is not None:
        exc = excinfo.value
        if isinstance(exc, JudgedFailure):
            record.verdict, record.reason = Verdict.FAIL.value, str(exc)
        elif isinstance(exc, NeighcheckError):
            record.verdict, record.reason = Verdict.ERROR.value, str(exc)
        elif isinstance(exc, AssertionError):
            record.verdict, record.reason = Verdict.ERROR.value, f"harness assertion: {exc}"
        else:
            record.verdict = Verdict.ERROR.value
            record.reason = f"harness error: {type(exc).__name__}: {exc}"
        return
    if record.verdict in (Verdict.PASS.value, Verdict.OBSERVED.value) and getattr(record, "_concluded", False):
        return
    # Returned without concluding: a judged case with no verdict is an error, never a pass.
    record.verdict = Verdict.ERROR.value
    record.reason = "the case returned without reaching a verdict"
    report.outcome = "failed"


def _short_repr(record: CaseRecord, report):
    if record.verdict == Verdict.FAIL.value:
        return f"FAIL {record.name}: {record.reason}"
    if record.verdict == Verdict.ERROR.value:
        return f"ERROR {record.name}: {record.reason}"
    return report.longrepr


class JudgedFailure(AssertionError):
    """The implementation broke a judged clause (verdict `fail`)."""


# --- the case fixture ------------------------------------------------------------------------
class Case:
    """What a conformance case uses to record timings, evidence and its verdict."""

    def __init__(self, record: CaseRecord, run: NeighcheckRun):
        self.record = record
        self.run = run
        self.evidence: dict[str, Any] = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def timing(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.record.timings[phase] = self.record.timings.get(phase, 0.0) + time.perf_counter() - t0

    def status(self, reply) -> None:
        self.record.status_raw = reply.raw
        self.record.status_space = reply.space
        self.record.outcome = reply.outcome.value
        if reply.error:
            self.evidence["agent_error"] = {"error": reply.error, "detail": reply.detail}

    def _finish(self) -> None:
        self.record.duration_s = time.perf_counter() - self._t0
        t0 = time.perf_counter()
        name = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.record.name)
        path = self.run.evidence_dir / self.record.device / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.evidence["case"] = {k: v for k, v in self.record.to_dict().items() if k != "evidence"}
        # Indented while a person would read it; past that, json's C encoder (indent forces
        # the pure-Python one: 3x slower, 1.3 s for a 65k-entry case).
        small = len(self.evidence.get("before", ())) <= EVIDENCE_INDENT_MAX
        path.write_text(json.dumps(self.evidence, indent=1 if small else None, default=str))
        self.record.timings["evidence"] = time.perf_counter() - t0
        try:
            self.record.evidence = str(path.relative_to(self.run.run_dir))
        except ValueError:
            self.record.evidence = str(path)

    def conclude(self, judgement, *, observed: dict[str, Any] | None = None) -> None:
        """Judged clauses decide pass/fail; an observation makes a passing case `observed`."""
        rec = self.record
        rec.diff = judgement.diff if judgement is not None else rec.diff
        self.evidence["diff"] = rec.diff
        if observed is not None:
            rec.observation = observed
            self.evidence["observation"] = observed
        self._finish()
        if judgement is not None and not judgement.passed:
            rec.failed_clauses = list(judgement.failures)
            raise JudgedFailure(judgement.reason)
        rec.verdict = Verdict.OBSERVED.value if observed is not None else Verdict.PASS.value
        rec.reason = observed.get("summary", "") if observed else ""
        rec._concluded = True  # type: ignore[attr-defined]

    def not_applicable(self, why: str) -> None:
        self._finish()
        pytest.skip(f"not-applicable: {why}")


@pytest.fixture
def dut(request):
    run: NeighcheckRun = request.config.pluginmanager.get_plugin("neighcheck-run")
    name = request.node.callspec.params["device_name"]
    return run.open_dut(name)


@pytest.fixture
def case(request):
    run: NeighcheckRun = request.config.pluginmanager.get_plugin("neighcheck-run")
    record = request.node.stash.get(CASE_KEY, None)
    if record is None:
        record = _new_record(request.node)
        request.node.stash[CASE_KEY] = record
    return Case(record, run)


# --- results -------------------------------------------------------------------------------
class ResultsWriter:
    """results.jsonl as cases finish; results.json when the run ends (also when interrupted)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = run_dir / "results.jsonl"
        self.cases: dict[str, dict] = {}

    def append(self, case: dict) -> None:
        self.cases[case["id"]] = case
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(case) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self, run: NeighcheckRun, *, interrupted: bool) -> dict:
        devices = []
        for device in run.devices:
            info_path = self.run_dir / "devices" / f"{device.name}.json"
            try:
                devices.append(json.loads(info_path.read_text()))
            except (OSError, ValueError):
                devices.append({"name": device.name, "os": device.os, "fingerprint": {}, "interfaces": []})
        summary = {v.value: 0 for v in Verdict}
        for case in self.cases.values():
            summary[case["verdict"]] = summary.get(case["verdict"], 0) + 1
        results = {
            "schema": "neighcheck-results/1",
            "run_id": run.run_id,
            "suite_version": SUITE_VERSION,
            "harness_version": __version__,
            "git_commit": _git_commit(),
            "started": run.started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "interrupted": interrupted,
            "inventory": {"path": str(run.inventory.path), "sha256": run.inventory.raw_sha256},
            "entries_per_family": run.config.getoption("entries"),
            "devices": devices,
            "cases": list(self.cases.values()),
            "summary": summary,
        }
        if run.errata:
            from harness.reports.errata import apply
            results = apply(results, run.errata)  # records which errata applied and which are stale
        tmp = self.run_dir / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(self.run_dir / "results.json")
        self._seal()
        return results

    def _seal(self) -> None:
        """The person-readable report, then the manifest (last: it hashes everything else)."""
        from harness.reports.html import write_report
        from harness.reports.manifest import write_manifest
        write_report(self.run_dir)
        write_manifest(self.run_dir)
        latest = self.run_dir.parent / "latest"
        try:
            if latest.is_symlink():
                latest.unlink()
            if not latest.exists():
                latest.symlink_to(self.run_dir.name)
        except OSError:
            pass  # a convenience link only


def _git_commit() -> str | None:
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
