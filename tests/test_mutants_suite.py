"""Negative controls: the conformance suite run against deliberately broken agents.

Each mutant in tests/mutants/ wraps the reference shim and injects one bug. The suite runs
against it through the inventory's `agent.command` (the vendor-agent path) on the lab's
linux-a and linux-b, and must fail the clauses the bug breaks. A reference run through the
same path must fail nothing, so the failures are the mutants' and not the path's.

The issue-12 mutants (CATCHES) run on the smallest selection of devices and cases that shows
the catch (`neighcheck run ... -- -k ...`): exactly the cases named fail, with at least the
clauses named; a mutant that makes a family's table unreadable ends in `error`, never green;
and the defensible one-stack variant gives a green run.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.reports.diff import diff_runs
from harness.reports.manifest import verify
from harness.reports.merge import merge_runs

from tests.support import DEFAULT_INVENTORY, REPO

pytestmark = pytest.mark.lab

MUTANTS = REPO / "tests" / "mutants"
# mutant -> judged clauses that must fail (each mutant breaks at least these)
EXPECTED = {
    "ignore_ifindex": {"IF-ONE", "NO-COLLATERAL"},
    "inet_flushes_inet6": {"FAM-INET", "NO-COLLATERAL"},
    "unspec_only_inet": {"FAM-UNSPEC"},
    "accepts_family_10": {"RET-INVALID-FAMILY", "NOCHANGE-ON-ERROR"},
    "invalid_family_success": {"RET-INVALID-FAMILY"},
    "flush_reports_error": {"RET-SUCCESS", "NOCHANGE-ON-ERROR"},
    "leaves_one_entry": {"FAM-UNSPEC", "FAM-INET", "FAM-INET6", "IF-ALL", "IF-ONE"},
    "collateral_delete": {"NO-COLLATERAL"},
    "nostack_success": {"RET-NOSTACK-INET6"},
    "partial_flush_error": {"RET-SUCCESS", "NOCHANGE-ON-ERROR"},
}


def inventory_with_agent(tmp_path: Path, command: list[str]) -> Path:
    """The default lab inventory with `command` as the Linux devices' agent."""
    text = DEFAULT_INVENTORY.read_text().replace('".lab', f'"{REPO}/.lab')
    agent = "[device.agent]\ncommand = " + json.dumps(command) + "\n[device.lab]"
    head, *devices = re.split(r"^(?=\[\[device\]\]$)", text, flags=re.M)
    devices = [re.sub(r"^\[device\.lab\]$", agent, d, flags=re.M) if 'os = "linux"' in d else d
               for d in devices]
    path = tmp_path / "devices.toml"
    path.write_text(head + "".join(devices))
    return path


def run_suite(tmp_path: Path, command: list[str], devices=("linux-a", "linux-b"), pytest_args=()) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inventory = inventory_with_agent(tmp_path, command)
    out = tmp_path / "reports"
    selected = [arg for name in devices for arg in ("--device", name)]
    extra = ["--", *pytest_args] if pytest_args else []
    proc = subprocess.run([str(REPO / ".venv/bin/neighcheck"), "run", "--devices", str(inventory),
                           *selected, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.is_dir(), f"the run wrote no report: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    [run_dir] = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    results = json.loads((run_dir / "results.json").read_text())
    results["_exit"] = proc.returncode
    results["_dir"] = run_dir
    results["_output"] = proc.stdout[-3000:] + proc.stderr[-2000:]
    return results


def failed_clauses(results: dict) -> dict[str, list[str]]:
    by_clause = defaultdict(list)
    for case in results["cases"]:
        if case["verdict"] == "fail":
            for clause in case["failed_clauses"]:
                by_clause[clause].append(case["name"])
    return by_clause


REFERENCE = ["sh", str(REPO / "harness/device/agents/linux_shim.sh")]

# Entries an operator made on linux-a's eth2 before the run: the harness did not plant them, and
# a flush outside their scope must leave them (the judge's protected entries).
OPERATOR_ENTRIES = (("198.18.2.250", "02:00:00:aa:00:01", "permanent"), ("198.18.2.251", "02:00:00:aa:00:02", "noarp"))


@contextmanager
def operator_entries(inventory):
    """OPERATOR_ENTRIES on linux-a for one run. Planted right before it: Linux garbage-collects
    a NOARP entry nobody used for 60 s once the host's table is past gc_thresh1."""
    ns = inventory.device("linux-a").netns
    for address, lladdr, nud in OPERATOR_ENTRIES:
        subprocess.run(["ip", "-n", ns, "neigh", "replace", address, "lladdr", lladdr, "dev", "eth2", "nud", nud],
                       check=True, timeout=10)
    try:
        yield
    finally:
        for address, _, _ in OPERATOR_ENTRIES:
            subprocess.run(["ip", "-n", ns, "neigh", "del", address, "dev", "eth2"], timeout=10)


@pytest.fixture(scope="module")
def reference(default_lab, tmp_path_factory) -> dict:
    with operator_entries(default_lab):  # a correct agent leaves them: no failure from them
        return run_suite(tmp_path_factory.mktemp("reference"), REFERENCE)


def test_reference_agent_through_the_vendor_path_fails_nothing(reference):
    results = reference
    verdicts = {c["name"]: c["verdict"] for c in results["cases"]}
    bad = {n: v for n, v in verdicts.items() if v in ("fail", "error")}
    assert not bad, results["_output"]
    assert results["summary"]["pass"] >= 30
    assert results["_exit"] == 0


@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_every_mutant_is_caught(reference, tmp_path, mutant):
    results = run_suite(tmp_path, ["sh", str(MUTANTS / f"{mutant}.sh")])
    caught = failed_clauses(results)
    errors = [c["name"] + ": " + c["reason"] for c in results["cases"] if c["verdict"] == "error"]
    assert not errors, f"a mutant must be judged, not crash the harness: {errors[:3]}"
    missing = EXPECTED[mutant] - set(caught)
    assert not missing, f"{mutant}: clauses not failed: {missing}; failed: {dict(caught)}"
    assert results["_exit"] == 1  # a non-conformant implementation fails the run

    # `report diff` against the reference run names exactly the cases the mutant broke.
    changed = {c.case_id for c in diff_runs(reference["_dir"], results["_dir"]).verdict_changes
               if c.after == "fail"}
    assert changed == {c["id"] for c in results["cases"] if c["verdict"] == "fail"}


def test_merge_of_single_device_runs_equals_the_two_device_run(reference, tmp_path):
    shards = [run_suite(tmp_path / name, REFERENCE, devices=(name,)) for name in ("linux-a", "linux-b")]
    merged = merge_runs([s["_dir"] for s in shards], tmp_path / "merged")
    combined = json.loads((merged / "results.json").read_text())
    verdicts = lambda results: {c["id"]: c["verdict"] for c in results["cases"]}  # noqa: E731
    assert verdicts(combined) == verdicts(reference)
    assert sorted(d["name"] for d in combined["devices"]) == ["linux-a", "linux-b"]
    assert verify(merged) == []


# --------------------------------------------------------------------------- issue 12

SCALE_ARGS = ("--scale-entries", "400")  # above the mutant's 300, far below the kernel's gc limits


@dataclass(frozen=True)
class Catch:
    """A mutant on a small selection, and what its run must show."""

    mutant: str
    devices: tuple[str, ...]
    select: str  # pytest -k
    fails: dict[str, set[str]]  # exactly these cases fail, each with at least these clauses
    passes: tuple[str, ...] = ()  # and these pass in the same run (the catch is the named rule's)
    errors: tuple[str, ...] = ()  # exactly these cases end in `error` (nothing can be judged)
    args: tuple[str, ...] = ()  # more pytest args
    said: dict[str, tuple[str, ...]] = field(default_factory=dict)  # case -> words of its reason or diff
    operator: bool = False  # OPERATOR_ENTRIES planted for the run
    env: tuple[str, ...] = ()  # VAR=value for the mutant on the device


A, B = "linux-a", "linux-b"
CATCHES = [
    # (1) durable effects
    Catch("readds_later", (A, B), "test_durable",
          {"test_durable[linux-a]": {"DURABLE"}, "test_durable[linux-b]": {"DURABLE"}}),
    # ... also when the daemon is quicker than the harness's read right after the calls (a slow
    # harness): DURABLE is judged against what the calls had to do, not against that read
    Catch("readds_later", (A, B), "test_durable",
          {"test_durable[linux-a]": {"DURABLE"}, "test_durable[linux-b]": {"DURABLE"}}, env=("NCK_MUTANT_DELAY=0",)),
    Catch("error_then_flush", (A, B), "test_durable",
          {"test_durable[linux-a]": {"DURABLE"}, "test_durable[linux-b]": {"DURABLE"}},
          said={"test_durable[linux-a]": ("had to stay were removed",),
                "test_durable[linux-b]": ("had to stay were removed",)}),
    Catch("error_then_flush", (A, B), "test_durable",
          {"test_durable[linux-a]": {"DURABLE"}, "test_durable[linux-b]": {"DURABLE"}}, env=("NCK_MUTANT_DELAY=0",)),
    # (2) collateral on every entry
    Catch("static_removed", (A,), "test_flush_scope and AF_INET-eth1",
          {"test_flush_scope[linux-a-AF_INET-eth1]": {"NO-COLLATERAL", "IF-ONE", "FAM-INET"}},
          said={"test_flush_scope[linux-a-AF_INET-eth1]": ("198.51.100.201@", "2001:db8:ffff::200@")}),
    Catch("static_relabelled", (A,), "test_flush_scope and AF_INET-eth1",
          {"test_flush_scope[linux-a-AF_INET-eth1]": {"NO-COLLATERAL"}},
          said={"test_flush_scope[linux-a-AF_INET-eth1]": ("changed link-layer address", "02:5e:ff:00:01:ee")}),
    Catch("static_incomplete", (A,), "test_flush_scope and AF_INET-eth1",
          {"test_flush_scope[linux-a-AF_INET-eth1]": {"NO-COLLATERAL"}},
          said={"test_flush_scope[linux-a-AF_INET-eth1]": ("made unusable", "198.51.100.201@", "(incomplete)")}),
    Catch("seeded_failed", (A,), "test_flush_scope and AF_INET-eth1",
          {"test_flush_scope[linux-a-AF_INET-eth1]": {"NO-COLLATERAL"}},
          said={"test_flush_scope[linux-a-AF_INET-eth1]": ("made unusable", "(failed)")}),
    Catch("protected_removed", (A,), "test_flush_scope and AF_INET-eth1",
          {"test_flush_scope[linux-a-AF_INET-eth1]": {"NO-COLLATERAL", "IF-ONE"}},
          said={"test_flush_scope[linux-a-AF_INET-eth1]": ('"198.18.2.250"', '"198.18.2.251"')}, operator=True),
    # (3) an empty scope: a family whose table cannot be read is an error, never green
    Catch("unreadable_inet6", (A,), "test_flush_scope and not AF_INET- or test_idempotent", {},
          passes=("test_idempotent[linux-a-AF_INET]",),
          errors=("test_flush_scope[linux-a-AF_UNSPEC-all]", "test_flush_scope[linux-a-AF_UNSPEC-eth1]",
                  "test_flush_scope[linux-a-AF_UNSPEC-eth2]", "test_flush_scope[linux-a-AF_INET6-all]",
                  "test_flush_scope[linux-a-AF_INET6-eth1]", "test_flush_scope[linux-a-AF_INET6-eth2]",
                  "test_idempotent[linux-a-AF_UNSPEC]", "test_idempotent[linux-a-AF_INET6]"),
          said={"test_idempotent[linux-a-AF_INET6]": ("the agent cannot read the IPv6 table",)}),
    # (4) scale: on the one-stack device, where AF_UNSPEC is open and the case flushes AF_INET
    Catch("stops_after_300", (B,), "test_flush_scale or test_flush_scope and AF_INET-all",
          {"test_flush_scale[linux-b-AF_UNSPEC-all]": {"FAM-INET", "IF-ALL"},
           "test_flush_scale[linux-b-AF_UNSPEC-eth1]": {"FAM-INET", "IF-ONE"}},
          passes=("test_flush_scope[linux-b-AF_INET-all]",), args=SCALE_ARGS,
          said={"test_flush_scale[linux-b-AF_UNSPEC-all]": ("seeded entries in scope were not removed",)}),
    # (5) parameter combinations
    Catch("invalid_family_with_index", (A,), "test_invalid_family and family-24",
          {"test_invalid_family[linux-a-family-24-eth1]": {"RET-INVALID-FAMILY", "NOCHANGE-ON-ERROR"}},
          passes=("test_invalid_family[linux-a-family-24-all]",)),
    Catch("access_swallowed", (A, B), "test_access_denied",
          {"test_access_denied[linux-a]": {"RET-ACCESS"}, "test_access_denied[linux-b]": {"RET-ACCESS"}}),
    # (6) one-stack devices: NOT_SUPPORTED for AF_UNSPEC is defensible only if nothing changed
    Catch("unspec_one_stack_flushes", (B,), "AF_UNSPEC and not scale",
          {"test_flush_scope[linux-b-AF_UNSPEC-all]": {"NOCHANGE-ON-ERROR"},
           "test_flush_scope[linux-b-AF_UNSPEC-eth1]": {"NOCHANGE-ON-ERROR"},
           "test_idempotent[linux-b-AF_UNSPEC]": {"NOCHANGE-ON-ERROR"}}),
]


def mutant_run(tmp_path: Path, catch: Catch, inventory) -> dict:
    args = (*catch.args, "-k", catch.select)
    command = [*(("env", *catch.env) if catch.env else ()), "sh", str(MUTANTS / f"{catch.mutant}.sh")]
    if catch.operator:
        with operator_entries(inventory):
            return run_suite(tmp_path, command, devices=catch.devices, pytest_args=args)
    return run_suite(tmp_path, command, devices=catch.devices, pytest_args=args)


@pytest.mark.parametrize("catch", CATCHES, ids=[c.mutant + "".join(f"-{e}" for e in c.env) for c in CATCHES])
def test_issue12_mutant_is_caught(reference, default_lab, tmp_path, catch):
    results = mutant_run(tmp_path, catch, default_lab)
    cases = {c["name"]: c for c in results["cases"]}
    by_verdict = defaultdict(set)
    for name, case in cases.items():
        by_verdict[case["verdict"]].add(name)
    out = results["_output"]
    # The cases named fail, with (at least) the clauses the bug breaks; no other case fails.
    assert by_verdict["fail"] == set(catch.fails), f"{catch.mutant}: failed {sorted(by_verdict['fail'])}\n{out}"
    for name, clauses in catch.fails.items():
        missing = clauses - set(cases[name]["failed_clauses"])
        assert not missing, f"{name}: {missing} not failed: {cases[name]['reason']}"
    # An unreadable table is an error, never a pass; nothing else errors.
    assert by_verdict["error"] == set(catch.errors), \
        {n: cases[n]["reason"] for n in by_verdict["error"] ^ set(catch.errors) if n in cases}
    for name in catch.passes:
        assert cases[name]["verdict"] == "pass", (name, cases[name]["reason"])
    for name, words in catch.said.items():
        text = cases[name]["reason"] + json.dumps(cases[name]["diff"])
        for word in words:
            assert word in text, f"{name}: {word!r} not in {text[:1500]}"
    assert results["_exit"] == 1  # never a green run

    # `report diff` against the reference run names exactly the cases the mutant broke.
    changed = {c.case_id for c in diff_runs(reference["_dir"], results["_dir"]).verdict_changes
               if c.after == "fail"}
    assert changed == {c["id"] for c in results["cases"] if c["verdict"] == "fail"}


def test_unspec_refused_on_a_one_stack_device_is_defensible(reference, default_lab, tmp_path):
    """A correct variant: AF_UNSPEC on linux-b (IPv4 only) answers NOT_SUPPORTED and changes
    nothing. The whole suite on linux-b is green: the AF_UNSPEC cases are observed."""
    results = run_suite(tmp_path, ["sh", str(MUTANTS / "unspec_one_stack_refused.sh")], devices=(B,),
                        pytest_args=SCALE_ARGS)
    bad = {c["name"]: c["reason"] for c in results["cases"] if c["verdict"] in ("fail", "error")}
    assert not bad, results["_output"]
    assert results["_exit"] == 0
    verdicts = {c["name"]: c for c in results["cases"]}
    for name in ("test_flush_scope[linux-b-AF_UNSPEC-all]", "test_flush_scope[linux-b-AF_UNSPEC-eth1]",
                 "test_idempotent[linux-b-AF_UNSPEC]", "test_observe_unspec_one_stack[linux-b]"):
        assert verdicts[name]["verdict"] == "observed", name
        assert "returned NOT_SUPPORTED" in verdicts[name]["reason"] and "removed 0 seeded" in verdicts[name]["reason"]
    for name in ("test_access_denied[linux-b]", "test_idempotent[linux-b-AF_INET]", "test_durable[linux-b]",
                 "test_flush_scale[linux-b-AF_UNSPEC-all]", "test_flush_scope[linux-b-AF_INET-eth1]"):
        assert verdicts[name]["verdict"] == "pass", (name, verdicts[name]["reason"])
