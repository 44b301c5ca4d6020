"""Writes the synthetic run directories under tests/data/ that the report tests read.

    /work/main/.venv/bin/python tests/data/make_fixtures.py

Runs: `combined` (two devices; a fail, an error, a skip, a not-applicable, observed clauses),
`shard-linux-a` and `shard-win-wine` (the same run made on two harness hosts, one device each),
`rerun` (the combined run again, with changes for the diff tests) and `incomplete` (a run that
died: only results.jsonl, its last line cut short). tests/test_reports.py checks that this script
still reproduces the committed files.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent
RUN_NAMES = ("combined", "shard-linux-a", "shard-win-wine", "rerun", "incomplete")
VERDICTS = ("pass", "fail", "error", "skip", "not-applicable", "observed", "known")
FAMILIES = ((0, "AF_UNSPEC"), (2, "AF_INET"), (23, "AF_INET6"))
FAMILY_CLAUSE = {0: "FAM-UNSPEC", 2: "FAM-INET", 23: "FAM-INET6"}
SEEDED_PER_FAMILY_AND_LINK = 16
COMMIT = "3f1c2a9b7d4e5f60718293a4b5c6d7e8f9012345"

DEVICES = {
    "linux-a": {
        "name": "linux-a", "os": "linux", "stacks": {"ipv4": True, "ipv6": True},
        "fingerprint": {"agent": "neighcheck-linux-shim/1", "os": "linux", "kernel": "6.1.0",
                        "hostname": "nck-linux-a"},
        "interfaces": [{"index": 3, "name": "eth1"}, {"index": 4, "name": "eth2"}],
    },
    "win-wine": {
        "name": "win-wine", "os": "windows", "stacks": {"ipv4": True, "ipv6": True},
        "fingerprint": {"agent": "neighcheck-win-agent/1", "os": "windows", "build": "wine-8.0 (10.0.19045)",
                        "hostname": "nck-win-wine"},
        "interfaces": [{"index": 5, "name": "Ethernet 2"}, {"index": 6, "name": "Ethernet 3"}],
    },
}
# Linux shim reports kernel-mode codes, the Windows agent user-mode (iphlpapi) codes.
STATUS = {
    "linux-a": {"space": "ntstatus", "SUCCESS": 0, "INVALID_PARAMETER": 0xC000000D, "ACCESS_DENIED": 0xC0000022},
    "win-wine": {"space": "win32", "SUCCESS": 0, "INVALID_PARAMETER": 87, "ACCESS_DENIED": 5},
}


def entry(address: str, family: int, ifindex: int, lladdr: str, state: str) -> dict:
    return {"address": address, "family": family, "ifindex": ifindex, "lladdr": lladdr, "state": state}


def evidence_path(device: str, name: str) -> str:
    return f"evidence/{device}/{name.replace('[', '-').replace(']', '').replace(' ', '_')}.json"


def case(module: str, test: str, params: str, device: str, clauses: list[str], verdict: str, *,
         outcome: str | None = "SUCCESS", reason: str = "", observation: dict | None = None,
         diff: dict | None = None, family: int | None = None, ifindex: int | None = None,
         interface: str | None = None, duration: float = 0.05) -> dict:
    name = f"{test}[{params}]"
    status = STATUS[device]
    record = {
        "id": f"conformance/{module}::{name}", "name": name, "test": test, "device": device, "clauses": clauses,
        "verdict": verdict,
    }
    if family is not None:
        record.update(family=family, family_name=dict(FAMILIES).get(family))
    if ifindex is not None:
        record.update(ifindex=ifindex, interface=interface)
    record.update(
        status_raw=status[outcome] if outcome else None, status_space=status["space"] if outcome else None,
        outcome=outcome, reason=reason, failed_clauses=[], observation=observation, diff=diff, duration_s=duration,
        timings={"seed": round(duration * 0.3, 4), "verify": round(duration * 0.2, 4),
                 "flush": round(duration * 0.1, 4), "snapshot": round(duration * 0.3, 4),
                 "judge": 0.0001, "evidence": 0.001},
        evidence=evidence_path(device, name),
    )
    return record


def scope_cases(device: str) -> list[dict]:
    interfaces = [(0, "all")] + [(i["index"], i["name"]) for i in DEVICES[device]["interfaces"]]
    cases = []
    for family, family_name in FAMILIES:
        for ifindex, interface in interfaces:
            families = 2 if family == 0 else 1
            links = len(interfaces) - 1 if ifindex == 0 else 1
            clauses = [FAMILY_CLAUSE[family], "IF-ALL" if ifindex == 0 else "IF-ONE", "RET-SUCCESS", "NO-COLLATERAL"]
            diff = {"removed_in_scope": SEEDED_PER_FAMILY_AND_LINK * families * links, "kept_in_scope": [],
                    "removed_out_of_scope": [], "changed_unseeded": []}
            cases.append(case("test_flush.py", "test_flush_scope", f"{device}-{family_name}-{interface}", device,
                              clauses, "pass", diff=diff, family=family, ifindex=ifindex,
                              interface=None if ifindex == 0 else interface,
                              duration=0.2 + 0.01 * len(cases)))
    return cases


def other_cases(device: str) -> list[dict]:
    cases = []
    for family in (1, 24, 65535):
        cases.append(case("test_status.py", "test_invalid_family", f"{device}-{family}", device,
                          ["RET-INVALID-FAMILY", "NOCHANGE-ON-ERROR"], "pass", outcome="INVALID_PARAMETER",
                          family=family, ifindex=0,
                          diff={"removed_in_scope": 0, "kept_in_scope": [], "removed_out_of_scope": [],
                                "changed_unseeded": []}))
    cases.append(case("test_status.py", "test_no_stack", f"{device}-AF_INET6", device, ["RET-NOSTACK-INET6"],
                      "not-applicable", outcome=None, reason="the device has an IPv6 stack; the clause needs one without"))
    if device == "linux-a":
        cases.append(case("test_status.py", "test_access_denied", device, device, ["RET-ACCESS"], "skip",
                          outcome=None, reason="no unprivileged account for linux-a in devices.toml"))
    else:
        cases.append(case("test_status.py", "test_access_denied", device, device,
                          ["RET-ACCESS", "NOCHANGE-ON-ERROR"], "pass", outcome="ACCESS_DENIED"))
    cases.append(case("test_flush.py", "test_idempotent", device, device, ["IDEMPOTENT", "RET-SUCCESS"], "pass",
                      family=0, ifindex=0, diff={"removed_in_scope": 0, "kept_in_scope": [],
                                                "removed_out_of_scope": [], "changed_unseeded": []}))
    permanent = {"linux-a": "permanent entries kept (2 of 2 remain)",
                 "win-wine": "permanent entries removed (2 of 2 gone)"}[device]
    bad_index = {"linux-a": "STATUS_INVALID_PARAMETER, no entry changed",
                 "win-wine": "ERROR_NOT_FOUND (1168), no entry changed"}[device]
    states = {"linux-a": "removed: stale, delay, probe, reachable, failed, incomplete; kept: permanent, noarp",
              "win-wine": "removed: stale, reachable, permanent; kept: none seen"}[device]
    cases.append(case("test_observe.py", "test_observe_permanent", device, device, ["OBS-PERMANENT"], "observed",
                      observation={"summary": permanent, "seeded_permanent": 2,
                                   "remaining_permanent": 2 if device == "linux-a" else 0}))
    cases.append(case("test_observe.py", "test_observe_bad_index", device, device, ["OBS-BAD-INDEX"], "observed",
                      outcome="INVALID_PARAMETER" if device == "linux-a" else None,
                      observation={"summary": bad_index, "ifindex": 9999}))
    cases.append(case("test_observe.py", "test_observe_states", device, device, ["OBS-STATES"], "observed",
                      observation={"summary": states}))
    return cases


def device_cases(device: str) -> list[dict]:
    cases = scope_cases(device) + other_cases(device)
    if device == "win-wine":
        failing = find(cases, "test_flush_scope[win-wine-AF_INET-Ethernet 2]")
        failing.update(verdict="fail", failed_clauses=["NO-COLLATERAL"], reason="2 seeded entries outside the scope were removed: interface 6 "
                                              "(Ethernet 3) lost its IPv4 entries (NO-COLLATERAL)")
        failing["diff"]["removed_out_of_scope"] = [
            entry("198.51.100.21", 2, 6, "02:00:5e:00:53:15", "stale"),
            entry("198.51.100.22", 2, 6, "02:00:5e:00:53:16", "stale"),
        ]
        errored = find(cases, "test_flush_scope[win-wine-AF_INET6-all]")
        errored.update(verdict="error", status_raw=None, status_space=None, outcome=None, diff=None,
                       reason="AgentError: agent exited 3: wineserver not responding after 10 s")
    return cases


def find(cases: list[dict], name: str) -> dict:
    return next(c for c in cases if c["name"] == name)


def run(run_id: str, devices: list[str], *, inventory: str, started: str, finished: str,
        commit: str = COMMIT) -> dict:
    cases = [c for device in devices for c in device_cases(device)]
    return {
        "schema": "neighcheck-results/1", "run_id": run_id, "suite_version": "1", "harness_version": "0.1.0",
        "git_commit": commit, "started": started, "finished": finished, "interrupted": False,
        "inventory": {"path": inventory, "sha256": ("%064x" % (hash_text(inventory)))},
        "devices": [copy.deepcopy(DEVICES[d]) for d in devices],
        "cases": cases,
    }


def hash_text(text: str) -> int:
    # Deterministic stand-in for an inventory digest (Python's hash() is salted).
    value = 0
    for ch in text:
        value = (value * 131 + ord(ch)) % (1 << 256)
    return value


def summarise(results: dict) -> dict:
    counts = dict.fromkeys(VERDICTS, 0)
    for c in results["cases"]:
        counts[c["verdict"]] += 1
    results["summary"] = counts
    return results


def rerun() -> dict:
    results = run("20261125T120000Z-4d5e6f", ["linux-a", "win-wine"], inventory="devices.toml",
                  started="2026-11-25T12:00:00Z", finished="2026-11-25T12:00:41Z",
                  commit="9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807")
    cases = results["cases"]
    find(cases, "test_flush_scope[win-wine-AF_INET-Ethernet 2]").update(verdict="pass", reason="")
    find(cases, "test_flush_scope[win-wine-AF_INET-Ethernet 2]")["diff"]["removed_out_of_scope"] = []
    regressed = find(cases, "test_flush_scope[linux-a-AF_INET6-eth2]")
    regressed.update(verdict="fail", failed_clauses=["FAM-INET6", "IF-ONE"], reason="1 seeded in-scope entry is still present after the flush")
    regressed["diff"]["kept_in_scope"] = [entry("2001:db8:0:2::7", 23, 4, "02:00:5e:00:53:07", "permanent")]
    find(cases, "test_observe_permanent[linux-a]")["observation"] = {
        "summary": "permanent entries removed (2 of 2 gone)", "seeded_permanent": 2, "remaining_permanent": 0}
    cases.remove(find(cases, "test_idempotent[win-wine]"))
    added = case("test_status.py", "test_invalid_family", "linux-a-6", "linux-a",
                 ["RET-INVALID-FAMILY", "NOCHANGE-ON-ERROR"], "pass", outcome="INVALID_PARAMETER", family=6, ifindex=0)
    cases.insert(12, added)
    results["devices"][0]["fingerprint"]["kernel"] = "6.1.12"
    return results


def build_runs() -> dict[str, dict]:
    combined = run("20261124T235959Z-1a2b3c", ["linux-a", "win-wine"], inventory="devices.toml",
                   started="2026-11-24T23:59:59Z", finished="2026-11-25T00:00:43Z")
    shard_a = run("20261124T235959Z-aaaa01", ["linux-a"], inventory="devices-host1.toml",
                  started="2026-11-24T23:59:59Z", finished="2026-11-25T00:00:20Z")
    shard_b = run("20261124T235958Z-bbbb02", ["win-wine"], inventory="devices-host2.toml",
                  started="2026-11-24T23:59:58Z", finished="2026-11-25T00:00:43Z")
    runs = {"combined": combined, "shard-linux-a": shard_a, "shard-win-wine": shard_b, "rerun": rerun()}
    return {name: summarise(results) for name, results in runs.items()}


# Evidence snapshots for the failing case (a few entries, enough for the before/after table).
SNAPSHOTS = {"conformance/test_flush.py::test_flush_scope[win-wine-AF_INET-Ethernet 2]": {
    "before": [entry("198.51.100.11", 2, 5, "02:00:5e:00:53:0b", "stale"),
               entry("198.51.100.12", 2, 5, "02:00:5e:00:53:0c", "stale"),
               entry("198.51.100.21", 2, 6, "02:00:5e:00:53:15", "stale"),
               entry("198.51.100.22", 2, 6, "02:00:5e:00:53:16", "stale"),
               entry("2001:db8:0:5::11", 23, 5, "02:00:5e:00:53:0b", "stale")],
    "after": [entry("2001:db8:0:5::11", 23, 5, "02:00:5e:00:53:0b", "stale")],
    "call": {"argv": ["neighcheck-agent.exe", "flush", "2", "5"], "reply": {"status": 0, "status_space": "win32"}},
}}


def write_run(run_dir: Path, results: dict) -> None:
    run_dir.mkdir(parents=True)
    for c in results["cases"]:
        if c.get("evidence"):
            path = run_dir / c["evidence"]
            path.parent.mkdir(parents=True, exist_ok=True)
            evidence = {"case_id": c["id"], "synthetic": True, "status_raw": c["status_raw"], "diff": c["diff"]}
            evidence.update(SNAPSHOTS.get(c["id"], {}))
            path.write_text(json.dumps(evidence, indent=2) + "\n", encoding="utf-8")
    stream = "".join(json.dumps(c) + "\n" for c in results["cases"])
    (run_dir / "results.jsonl").write_text(stream, encoding="utf-8")
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def write_incomplete(run_dir: Path, combined: dict) -> None:
    """A run that died: five cases streamed, the sixth cut mid-line, no results.json."""
    run_dir.mkdir(parents=True)
    cases = combined["cases"][:6]
    lines = [json.dumps(c) for c in cases]
    (run_dir / "results.jsonl").write_text("\n".join(lines[:5]) + "\n" + lines[5][:40], encoding="utf-8")


def write_all(root: Path) -> None:
    runs = build_runs()
    for name in RUN_NAMES:
        shutil.rmtree(root / name, ignore_errors=True)
    for name, results in runs.items():
        write_run(root / name, results)
    write_incomplete(root / "incomplete", runs["combined"])


if __name__ == "__main__":
    write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA)
