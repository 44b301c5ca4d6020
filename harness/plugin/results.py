"""Results of one conformance run, written on the controller only: results.jsonl as cases
finish (a crash loses no finished case), then results.json, the HTML report and the manifest;
and the suite-level properties of junit.xml (SuiteProperties)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from harness import SUITE_VERSION, __version__
from harness.contract.clauses import RESULTS_SCHEMA
from harness.contract.errata import Erratum, errata_status
from harness.contract.verdicts import count_verdicts


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(3).hex()}"


def _utc(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


class ResultsWriter:
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

    def finish(self, *, run_id: str, started: datetime, inventory: Any, devices: list[dict],
               entries: int, settle: float, errata: list[Erratum], interrupted: bool) -> dict:
        """results.json, then the sealed report. Errata were applied to each case as it
        finished; here they are only summarised."""
        cases = list(self.cases.values())
        results = {
            "schema": RESULTS_SCHEMA,
            "run_id": run_id,
            "suite_version": SUITE_VERSION,
            "harness_version": __version__,
            "git_commit": _git_commit(),
            "started": _utc(started),
            "finished": _utc(datetime.now(timezone.utc)),
            "interrupted": interrupted,
            "inventory": {"path": str(inventory.path), "sha256": inventory.raw_sha256},
            "entries_per_family": entries,
            "settle_s": settle,
            "devices": devices,
            "cases": cases,
            "summary": count_verdicts(cases),
        }
        if errata:
            results["errata"] = errata_status(errata, cases)
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
    """The checkout's commit when the harness runs from one; None for an installed copy (whose
    site-packages may sit inside some other git repository: its commit is not ours)."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "pyproject.toml").is_file() or not (checkout / "conformance").is_dir():
        return None
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=checkout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# --- JUnit suite properties ---------------------------------------------------------------------
PROPERTIES_PLUGIN = "neighcheck-junit-properties"


def suite_properties(run) -> list[tuple[str, str]]:
    """What a CI system should show for the whole run: its id, the suite, the inventory, and
    each device with its fingerprint (and labgrid place)."""
    devices = run.devices.recorded_info(run.selected)
    props = [("run_id", run.run_id), ("suite_version", SUITE_VERSION), ("harness_version", __version__),
             ("git_commit", _git_commit() or ""), ("inventory_sha256", run.inventory.raw_sha256),
             ("devices", " ".join(d["name"] for d in devices))]
    for device in devices:
        props.append((f"device.{device['name']}.fingerprint", json.dumps(device.get("fingerprint", {}),
                                                                         sort_keys=True)))
        if device.get("labgrid"):
            props.append((f"device.{device['name']}.labgrid_place", device["labgrid"]["place"]))
    return props


def add_suite_properties(junit: Path, props: list[tuple[str, str]]) -> None:
    """Put `props` into every <testsuite> of a JUnit file, first (where the schema wants
    <properties>), replacing properties of the same names and keeping the rest."""
    tree = ET.parse(junit)
    root = tree.getroot()
    names = {name for name, _ in props}
    for suite in [root] if root.tag == "testsuite" else root.iter("testsuite"):
        block = suite.find("properties")
        if block is None:
            block = ET.Element("properties")
            suite.insert(0, block)
        for old in [p for p in block.findall("property") if p.get("name") in names]:
            block.remove(old)
        for name, value in props:
            ET.SubElement(block, "property", name=name, value=value)
    tmp = junit.with_name(junit.name + ".tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(junit)


class SuiteProperties:
    """Writes the suite properties into junit.xml on the controller (or the only process).

    pytest's record_testsuite_property does not work under xdist (its fixture runs on a
    worker, and only the controller writes junit.xml), so they are written here, into the
    file pytest wrote. Registered by harness.plugin.activate; its sessionfinish wrapper is
    trylast, inside the run's own wrapper: junitxml has written the file by then, and the run
    seals the manifest only after."""

    def __init__(self, run):
        self.run = run

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        try:
            return (yield)
        finally:
            self._write(session.config)

    def _write(self, config) -> None:
        xmlpath = getattr(config.option, "xmlpath", None)
        if hasattr(config, "workerinput") or not xmlpath or not Path(xmlpath).is_file():
            return
        try:
            add_suite_properties(Path(xmlpath), suite_properties(self.run))
        except (OSError, ET.ParseError) as exc:
            # Not a verdict: the run's results stand; say so once.
            print(f"neighcheck: junit suite properties not written to {xmlpath}: {exc}", file=sys.stderr)
