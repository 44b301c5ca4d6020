"""Tests for harness.reports, on the synthetic runs in tests/data/ (see tests/data/make_fixtures.py)."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.contract import errata
from harness.reports import cli, diff, html, manifest, merge, model, summary

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parents[1]
FAIL_ID = "conformance/test_flush.py::test_flush_scope[win-wine-AF_INET-Ethernet 2]"
ERROR_ID = "conformance/test_flush.py::test_flush_scope[win-wine-AF_INET6-all]"


def copy_run(name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    target = tmp_path / (as_name or name)
    shutil.copytree(DATA / name, target)
    return target


def verdicts(results: dict) -> dict[str, str]:
    return {case["id"]: case["verdict"] for case in results["cases"]}


def edit_results(run_dir: Path, change) -> None:
    path = run_dir / model.RESULTS_FILE
    results = json.loads(path.read_text())
    change(results)
    path.write_text(json.dumps(results, indent=2))


# --- fixtures stay what the generator says ------------------------------------------------------

def test_fixtures_are_reproduced_by_their_generator(tmp_path):
    spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.write_all(tmp_path)
    for name in generator.RUN_NAMES:
        comparison = filecmp.dircmp(tmp_path / name, DATA / name)
        stack, mismatches = [comparison], []
        while stack:
            current = stack.pop()
            mismatches += current.left_only + current.right_only + current.diff_files
            stack += current.subdirs.values()
        assert not mismatches, f"tests/data/{name} differs from make_fixtures.py output: {mismatches}"


# --- model --------------------------------------------------------------------------------------

def test_load_results_recomputes_summary_and_warns_when_the_recorded_one_lies(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    edit_results(run_dir, lambda r: r["summary"].update({"fail": 0, "error": 0, "pass": 27}))
    results = model.load_results(run_dir)
    assert results["summary"]["fail"] == 1 and results["summary"]["error"] == 1
    assert any("disagrees" in warning for warning in results["warnings"])
    assert model.overall_verdict(results) == "FAIL"


def test_load_results_rejects_unknown_verdict_and_missing_run(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    edit_results(run_dir, lambda r: r["cases"][0].update(verdict="passed"))
    with pytest.raises(UsageError, match="unknown verdict 'passed'"):
        model.load_results(run_dir)
    with pytest.raises(UsageError, match="not a neighcheck run directory"):
        model.load_results(tmp_path / "nothing-here")


def test_duplicate_case_ids_are_reported(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    edit_results(run_dir, lambda r: r["cases"].append(dict(r["cases"][0])))
    warnings = model.load_results(run_dir)["warnings"]
    assert any("more than once" in w and "linux-a-AF_UNSPEC-all" in w for w in warnings)


def test_incomplete_run_loads_from_the_stream_and_is_never_a_pass():
    results = model.load_results(DATA / "incomplete")
    assert results["incomplete"] is True
    assert len(results["cases"]) == 5 and results["summary"]["pass"] == 5
    assert any("cut short" in warning for warning in results["warnings"])
    assert model.overall_verdict(results) == "INCOMPLETE"


def test_interrupted_run_is_incomplete(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    edit_results(run_dir, lambda r: r.update(interrupted=True))
    results = model.load_results(run_dir)
    assert model.overall_verdict(results) == "INCOMPLETE"
    assert any("interrupted" in warning for warning in results["warnings"])
    with pytest.raises(UsageError, match="interrupted"):
        merge.merge_runs([run_dir], tmp_path / "merged")
    # The plugin hands terminal_matrix the raw results dict, not a loaded one.
    raw = json.loads((run_dir / model.RESULTS_FILE).read_text())
    assert summary.terminal_matrix(raw).splitlines()[-1].startswith("neighcheck INCOMPLETE:")


def test_clause_verdict_credits_clauses_a_failing_case_did_not_fail():
    case = {"verdict": "fail", "clauses": ["FAM-INET", "RET-SUCCESS", "NO-COLLATERAL"],
            "failed_clauses": ["NO-COLLATERAL"]}
    assert model.clause_verdict(case, "NO-COLLATERAL") == "fail"
    assert model.clause_verdict(case, "RET-SUCCESS") == "pass"
    assert model.clause_verdict(dict(case, failed_clauses=[]), "RET-SUCCESS") == "fail"
    assert model.clause_verdict(dict(case, verdict="error"), "RET-SUCCESS") == "error"


def test_run_with_nothing_judged_is_not_a_pass():
    results = {"cases": [{"id": "x", "verdict": "skip"}, {"id": "y", "verdict": "observed"}]}
    assert model.overall_verdict(results) == "NOTHING-JUDGED"


@pytest.mark.parametrize(("raw", "space", "hex_text", "name"), [
    (0xC000000D, "ntstatus", "0xC000000D", "STATUS_INVALID_PARAMETER"),
    (-1073741637, "ntstatus", "0xC00000BB", "STATUS_NOT_SUPPORTED"),  # signed C int from an agent
    (87, "win32", "0x00000057", "ERROR_INVALID_PARAMETER"),
    (0, "win32", "0x00000000", "NO_ERROR"),
    (12345, "win32", "0x00003039", ""),
])
def test_status_formatting(raw, space, hex_text, name):
    assert model.status_hex(raw) == hex_text
    assert model.status_name(raw, space) == name


def test_clause_catalog_matches_design():
    design = (REPO.parent / "shared" / "DESIGN.md")
    if not design.is_file():
        design = Path("/work/shared/DESIGN.md")
    if not design.is_file():
        pytest.skip("DESIGN.md not found beside the repository")
    rows = [line.split("|")[1:4] for line in design.read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isupper()]
    catalog = {(c.id, c.source, c.requirement) for c in model.CLAUSES}
    assert catalog == {tuple(cell.strip() for cell in row) for row in rows}
    assert {c.id for c in model.CLAUSES if c.kind == "observed"} == {c.id for c in model.CLAUSES
                                                                   if c.source == "observed"}


# --- manifest -----------------------------------------------------------------------------------

def test_manifest_of_an_untouched_run_verifies(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    written = manifest.write_manifest(run_dir)
    document = json.loads(written.read_text())
    assert document["suite_version"] == "1" and document["git_commit"].startswith("3f1c2a9b")
    assert "evidence/win-wine/test_flush_scope-win-wine-AF_INET-Ethernet_2.json" in document["files"]
    assert len(document["files"]) == sum(1 for p in run_dir.rglob("*") if p.is_file()) - 1
    assert manifest.verify(run_dir) == []


def test_tampered_artifacts_fail_verify(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    manifest.write_manifest(run_dir)
    evidence = "evidence/win-wine/test_flush_scope-win-wine-AF_INET-Ethernet_2.json"
    (run_dir / evidence).write_text('{"diff": "nothing to see"}')
    removed = "evidence/linux-a/test_idempotent-linux-a.json"
    (run_dir / removed).unlink()
    (run_dir / "evidence" / "planted.json").write_text("{}")
    edit_results(run_dir, lambda r: r["cases"][0].update(verdict="pass"))  # same verdict, new bytes
    problems = manifest.verify(run_dir)
    assert f"changed: {evidence}" in problems
    assert f"missing: {removed}" in problems
    assert "extra: evidence/planted.json" in problems
    assert "changed: results.json" in problems
    assert any(p.startswith("evidence not found: " + removed) for p in problems)


def test_verify_without_manifest_and_with_symlink(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    assert manifest.verify(run_dir) == ["missing: manifest.json"]
    manifest.write_manifest(run_dir)
    (run_dir / "link.json").symlink_to(run_dir / "results.json")
    assert "not a regular file: link.json" in manifest.verify(run_dir)
    with pytest.raises(UsageError, match="symbolic links"):
        manifest.write_manifest(run_dir)


def test_manifest_reports_evidence_that_was_never_written(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    (run_dir / "evidence/linux-a/test_idempotent-linux-a.json").unlink()
    manifest.write_manifest(run_dir)
    assert manifest.verify(run_dir) == [
        "evidence not found: evidence/linux-a/test_idempotent-linux-a.json "
        "(case conformance/test_flush.py::test_idempotent[linux-a])"]


# --- diff ---------------------------------------------------------------------------------------

def test_diff_shows_the_changed_cases():
    result = diff.diff_runs(DATA / "combined", DATA / "rerun")
    changes = {(c.case_id, c.before, c.after) for c in result.verdict_changes}
    assert changes == {
        ("conformance/test_flush.py::test_flush_scope[linux-a-AF_INET6-eth2]", "pass", "fail"),
        (FAIL_ID, "fail", "pass"),
    }
    assert [(c.case_id, c.before, c.after) for c in result.observation_changes] == [
        ("conformance/test_observe.py::test_observe_permanent[linux-a]",
         "permanent entries kept (2 of 2 remain)", "permanent entries removed (2 of 2 gone)")]
    assert result.only_in_a == [("conformance/test_flush.py::test_idempotent[win-wine]", "pass")]
    assert result.only_in_b == [("conformance/test_status.py::test_invalid_family[linux-a-6]", "pass")]
    assert [(c.device, c.detail) for c in result.device_changes] == [
        ("linux-a", 'fingerprint.kernel: "6.1.0" -> "6.1.12"')]
    text = diff.render_text(result)
    assert "pass -> fail  conformance/test_flush.py::test_flush_scope[linux-a-AF_INET6-eth2]" in text
    assert f"fail -> pass  {FAIL_ID}" in text
    assert "only in A (1):" in text and "only in B (1):" in text
    json.dumps(result.to_dict())  # serialisable for --json


def test_diff_of_a_run_with_itself_is_empty():
    result = diff.diff_runs(DATA / "combined", DATA / "combined")
    assert not result.has_changes
    assert "no differences" in diff.render_text(result)


# --- merge --------------------------------------------------------------------------------------

def test_merge_of_shards_equals_the_combined_run(tmp_path):
    out = merge.merge_runs([DATA / "shard-linux-a", DATA / "shard-win-wine"], tmp_path / "merged")
    merged = model.load_results(out)
    combined = model.load_results(DATA / "combined")
    assert verdicts(merged) == verdicts(combined)
    assert merged["summary"] == combined["summary"]
    assert merged["warnings"] == []
    assert [d["name"] for d in merged["devices"]] == ["linux-a", "win-wine"]
    assert [s["run_id"] for s in merged["merged_from"]] == ["20261124T235959Z-aaaa01", "20261124T235958Z-bbbb02"]
    assert merged["started"] == "2026-11-24T23:59:58Z" and merged["finished"] == "2026-11-25T00:00:43Z"
    assert merged["inventory"]["sha256"] is None  # two hosts, two inventories: no single digest
    assert (out / "report.html").is_file()
    # Evidence now lives under sources/ and every path resolves; the manifest covers it.
    assert manifest.verify(out) == []
    failing = next(c for c in merged["cases"] if c["id"] == FAIL_ID)
    assert failing["evidence"].startswith("sources/20261124T235958Z-bbbb02/evidence/")
    assert manifest.verify(out / "sources" / "20261124T235958Z-bbbb02") == ["missing: manifest.json"]


def test_merge_refuses_a_device_present_in_two_runs(tmp_path):
    with pytest.raises(UsageError, match="device 'linux-a' is in both"):
        merge.merge_runs([DATA / "shard-linux-a", DATA / "combined"], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_different_suite_versions(tmp_path):
    other = copy_run("shard-win-wine", tmp_path)
    edit_results(other, lambda r: r.update(suite_version="2"))
    with pytest.raises(UsageError, match="different suite versions"):
        merge.merge_runs([DATA / "shard-linux-a", other], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_a_tampered_sealed_run_an_incomplete_run_and_a_used_out_dir(tmp_path):
    sealed = copy_run("shard-win-wine", tmp_path)
    manifest.write_manifest(sealed)
    (sealed / "evidence/win-wine/test_idempotent-win-wine.json").write_text("{}")
    with pytest.raises(UsageError, match="manifest check failed"):
        merge.merge_runs([DATA / "shard-linux-a", sealed], tmp_path / "merged")
    with pytest.raises(UsageError, match="only finished runs"):
        merge.merge_runs([DATA / "incomplete", DATA / "shard-win-wine"], tmp_path / "merged")
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not an empty directory"):
        merge.merge_runs([DATA / "shard-linux-a", DATA / "shard-win-wine"], used)
    with pytest.raises(UsageError, match="given twice"):
        merge.merge_runs([DATA / "shard-linux-a", DATA / "shard-linux-a"], tmp_path / "merged")


# --- errata -------------------------------------------------------------------------------------

def write_errata(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "errata.toml"
    path.write_text(text)
    return path


def test_default_errata_cover_only_the_wine_device_and_only_by_clause():
    entries = errata.load_errata(REPO / "errata.toml")
    assert entries, "the default errata record Wine's missing FlushIpNetTable2 export"
    assert {e.device for e in entries} == {"win-wine"}
    assert all(e.clause and e.case is None and "FlushIpNetTable2" in e.reason for e in entries)


def test_clause_errata_must_cover_every_failed_clause(tmp_path):
    path = write_errata(tmp_path, '''
[[erratum]]
device = "*"
clause = "RET-SUCCESS"
reason = "known status bug"
''')
    entries = errata.load_errata(path)
    only_status = {"device": "d", "name": "n", "verdict": "fail", "failed_clauses": ["RET-SUCCESS"]}
    also_collateral = dict(only_status, failed_clauses=["RET-SUCCESS", "NO-COLLATERAL"])
    assert errata.covers(entries, only_status)
    assert errata.covers(entries, also_collateral) == []  # never hides the collateral damage


def test_erratum_turns_a_fail_into_known_and_keeps_the_reason(tmp_path):
    path = write_errata(tmp_path, '''
[[erratum]]
device = "win-wine"
case = "test_flush_scope[win-wine-AF_INET-*]"
reason = "wine flushes every interface"
link = "https://bugs.example/42"
''')
    results = model.load_results(DATA / "combined")
    applied = errata.apply(results, errata.load_errata(path))
    case = next(c for c in applied["cases"] if c["id"] == FAIL_ID)
    assert case["verdict"] == "known"
    assert case["reason"].startswith("2 seeded entries outside the scope")
    assert case["erratum"]["reason"] == "wine flushes every interface"
    assert case["erratum"]["link"] == "https://bugs.example/42"
    assert applied["summary"]["fail"] == 0 and applied["summary"]["known"] == 1
    assert applied["errata"][0]["status"] == "applied" and applied["errata"][0]["turned_known"] == 1
    assert verdicts(results)[FAIL_ID] == "fail", "apply must not modify its input"
    assert model.overall_verdict(applied) == "FAIL", "the error still fails the run"
    again = errata.apply(applied, errata.load_errata(path))  # results the plugin already applied it to
    assert again["errata"][0]["status"] == "applied" and verdicts(again) == verdicts(applied)


def test_clause_erratum_and_wildcard_device(tmp_path):
    path = write_errata(tmp_path, '[[erratum]]\ndevice = "*"\nclause = "NO-COLLATERAL"\nreason = "r"\n')
    applied = errata.apply(model.load_results(DATA / "combined"), errata.load_errata(path))
    assert [c["id"] for c in applied["cases"] if c["verdict"] == "known"] == [FAIL_ID]


def test_clause_erratum_excuses_only_the_clauses_a_case_failed(tmp_path):
    # The failing case checks RET-SUCCESS too, but failed NO-COLLATERAL: RET-SUCCESS errata don't cover it.
    path = write_errata(tmp_path, '[[erratum]]\ndevice = "win-wine"\nclause = "RET-SUCCESS"\nreason = "r"\n')
    (erratum,) = errata.load_errata(path)
    applied = errata.apply(model.load_results(DATA / "combined"), [erratum])
    assert verdicts(applied)[FAIL_ID] == "fail"
    assert applied["errata"][0]["status"] == "inconclusive"  # it also matches the error case
    # The plugin's call shape: matches(device, name, clauses).
    assert erratum.matches("win-wine", "test_anything[x]", ["RET-SUCCESS"])
    assert not erratum.matches("linux-a", "test_anything[x]", ["RET-SUCCESS"])
    assert not erratum.matches("win-wine", "test_anything[x]", ["NO-COLLATERAL"])


def test_stale_erratum_is_flagged(tmp_path):
    path = write_errata(tmp_path, '''
[[erratum]]
device = "linux-a"
case = "test_flush_scope[*]"
reason = "fixed in shim 2"
[[erratum]]
device = "nobody"
clause = "RET-SUCCESS"
reason = "device not in this run"
''')
    results = model.load_results(DATA / "combined")
    applied = errata.apply(results, errata.load_errata(path))
    assert [(e["index"], e["status"]) for e in applied["errata"]] == [(1, "stale"), (2, "unmatched")]
    assert applied["errata"][0]["matched"] == 9
    assert verdicts(applied) == verdicts(results)
    assert [e["index"] for e in errata.stale(applied)] == [1]
    assert "stale erratum 1" in summary.terminal_matrix(applied)


def test_errata_never_hide_an_error(tmp_path):
    path = write_errata(tmp_path, '[[erratum]]\ndevice = "win-wine"\ncase = "test_flush_scope[win-wine-AF_INET6-*]"\n'
                                  'reason = "wineserver is flaky"\n')
    applied = errata.apply(model.load_results(DATA / "combined"), errata.load_errata(path))
    assert verdicts(applied)[ERROR_ID] == "error"
    assert "erratum" not in next(c for c in applied["cases"] if c["id"] == ERROR_ID)
    # Two passes and an error: not stale (the error hides whether the bug is still there).
    assert applied["errata"][0]["status"] == "inconclusive"


def test_case_globs_treat_brackets_literally():
    assert errata.glob_match("test_flush_scope[*]", "test_flush_scope[linux-a-AF_INET-eth1]")
    assert errata.glob_match("test_flush_scope[*-eth?]", "test_flush_scope[linux-a-AF_INET-eth1]")
    assert not errata.glob_match("test_flush_scope[*]", "test_flush_scope_extra[x]")
    assert not errata.glob_match("[ab]", "a")


@pytest.mark.parametrize(("text", "expected"), [
    ('[[erratum]]\ndevice = "a"\nclause = "FAM-INET"\nreason = "r"\n'
     '[[erratum]]\ndevice = "a"\nclause = "FAM-NOPE"\nreason = "r"\n', "erratum 2: key 'clause': unknown clause"),
    ('[[erratum]]\ndevice = "a"\ncase = "x"\nclause = "FAM-INET"\nreason = "r"\n', "erratum 1: key 'case'/'clause'"),
    ('[[erratum]]\ndevice = "a"\nreason = "r"\n', "erratum 1: key 'case'/'clause'"),
    ('[[erratum]]\ndevice = "a"\ncase = "x"\n', "erratum 1: key 'reason': required"),
    ('[[erratum]]\ncase = "x"\nreason = "r"\n', "erratum 1: key 'device': required"),
    ('[[erratum]]\ndevice = "a"\ncase = "x"\nreason = "r"\nurl = "u"\n', "erratum 1: key 'url': unknown key"),
    ('[[erratum]]\ndevice = "a"\ncase = "x"\nreason = 3\n', "erratum 1: key 'reason': must be a string"),
    ('[[errata]]\ndevice = "a"\n', "key 'errata': unknown top-level key"),
    ('[[erratum]\n', "not valid TOML"),
])
def test_errata_validation_names_file_entry_and_key(tmp_path, text, expected):
    path = write_errata(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        errata.load_errata(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_missing_errata_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        errata.load_errata(tmp_path / "none.toml")


# --- terminal summary ---------------------------------------------------------------------------

def test_terminal_matrix_places_verdicts_in_their_cells():
    text = summary.terminal_matrix(model.load_results(DATA / "combined"))
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("win-wine")))
    header, unspec, inet, inet6 = lines[start + 1:start + 5]
    assert header.split() == ["all", "Ethernet", "2", "Ethernet", "3"]
    assert inet.split() == ["AF_INET", "ok", "FAIL", "ok"]
    assert inet6.split() == ["AF_INET6", "ERR", "ok", "ok"]
    assert lines[-1] == "neighcheck FAIL: pass 25  fail 1  error 1  skip 1  not-applicable 2  observed 6"
    assert "other cases: pass 4  skip 1  not-applicable 1  observed 3" in text


# --- HTML ---------------------------------------------------------------------------------------

class CellCollector(HTMLParser):
    """Collects matrix cells, tags and attributes, the way a browser would see them."""

    def __init__(self):
        super().__init__()
        self.cells, self.tags, self.attributes = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.attributes.append((tag, attrs))
        classes = (attrs.get("class") or "").split()
        if tag == "td" and "cell" in classes:
            self.cells.append((attrs["data-case-id"], classes))


def parse(page: str) -> CellCollector:
    collector = CellCollector()
    collector.feed(page)
    return collector


def test_report_matrix_cells_match_results(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    page = html.write_report(run_dir).read_text()
    results = model.load_results(run_dir)
    expected = {c["id"]: f"v-{c['verdict']}" for c in results["cases"] if c["test"] == "test_flush_scope"}
    cells = parse(page).cells
    assert len(cells) == len(expected) == 18
    assert {case_id: next(c for c in classes if c.startswith("v-")) for case_id, classes in cells} == expected
    assert f'<details class="case v-fail" id="{html.case_anchor(FAIL_ID)}"' in page
    assert "0x00000000 (0) NO_ERROR" in page and "198.51.100.21" in page
    assert "AgentError: agent exited 3" in page
    assert "permanent entries kept (2 of 2 remain)" in page and "permanent entries removed (2 of 2 gone)" in page
    assert '<span class="clause failed" title="failed: entries outside the (family, interface) scope' in page
    # Before/after counts from the evidence snapshots: interface 6 lost its 2 IPv4 entries.
    assert ('<tr><td>AF_INET</td><td>6 (Ethernet 3)</td><td class="num">2</td><td class="num">0</td>'
            '<td class="num">2</td><td class="num">0</td></tr>') in page
    assert ('<tr><td>AF_INET6</td><td>5 (Ethernet 2)</td><td class="num">1</td><td class="num">1</td>'
            '<td class="num">0</td><td class="num">0</td></tr>') in page
    assert "neighcheck-agent.exe" in page
    # Clause table: the failing case fails NO-COLLATERAL; for RET-SUCCESS it counts as a pass.
    assert 'data-filter="NO-COLLATERAL win-wine" title="show these cases">7 pass · 1 fail · 1 error</td>' in page
    assert 'data-filter="RET-SUCCESS win-wine" title="show these cases">9 pass · 1 error</td>' in page


def test_report_is_self_contained(tmp_path):
    page = html.write_report(copy_run("combined", tmp_path)).read_text()
    collector = parse(page)
    assert "link" not in collector.tags and "img" not in collector.tags and "iframe" not in collector.tags
    assert not [attrs for _, attrs in collector.attributes if "src" in attrs]
    assert "default-src 'none'" in page
    external = [attrs["href"] for tag, attrs in collector.attributes
                if tag == "a" and attrs.get("href", "").startswith(("http:", "https:", "//"))]
    assert external == []


def test_report_shows_the_flush_calls_own_time_on_the_device(tmp_path):
    """Issue 15: the agent's `elapsed_us` per case (results: flush_elapsed_us), and per device
    the median and max over its cases; a case without one shows nothing, not a zero."""
    run = copy_run("combined", tmp_path)
    timed = [c["id"] for c in json.loads((run / model.RESULTS_FILE).read_text())["cases"]
             if c["device"] == "linux-a"][:3]
    elapsed = dict(zip(timed, (1500, 4200, 2500))) | {FAIL_ID: 900}

    def add(results):
        for case in results["cases"]:
            if case["id"] in elapsed:
                case["flush_elapsed_us"] = elapsed[case["id"]]
                case.setdefault("timings", {})["flush"] = 0.0071

    edit_results(run, add)
    page = html.write_report(run).read_text()
    assert "median 2.5 ms, max 4.2 ms over 3 calls" in page  # linux-a
    assert "median 0.9 ms, max 0.9 ms over 1 calls" in page  # win-wine
    details = page[page.index(f'id="{html.case_anchor(FAIL_ID)}"'):]
    assert "0.9 ms, measured by the agent around the API call (round trip from the harness: 7.1 ms)" \
        in details[:details.index("</details>")]
    rows = {row["id"]: row for row in parse_rows(page)}
    assert rows[timed[1]]["flush (device)"] == "4.2 ms"
    assert [rows[i]["flush (device)"] for i in rows if i not in elapsed] == [""] * (len(rows) - 4)


def parse_rows(page: str) -> list[dict[str, str]]:
    """The all-cases table as {header: cell text} per row, with the row's case id."""
    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.head, self.rows, self.cell, self.in_table = [], [], None, False

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table" and attrs.get("id") == "cases-table":
                self.in_table = True
            elif self.in_table and tag == "tr" and attrs.get("id"):
                self.rows.append({"_cells": []})
            elif self.in_table and tag in ("th", "td"):
                self.cell = []
            elif self.in_table and tag == "a" and attrs.get("title") and self.rows:
                self.rows[-1]["id"] = attrs["title"]

        def handle_endtag(self, tag):
            if tag == "table":
                self.in_table = False
            elif self.in_table and tag in ("th", "td") and self.cell is not None:
                text = "".join(self.cell).strip()
                (self.head if tag == "th" else self.rows[-1]["_cells"]).append(text)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

    parser = Rows()
    parser.feed(page)
    return [dict(zip(parser.head, row.pop("_cells")), **row) for row in parser.rows]


def test_report_escapes_a_hostile_device_name(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    hostile = '<script>alert("pwned")</script>'
    reason = '<img src=x onerror=alert(1)> & "quotes"'

    def poison(results):
        for device in results["devices"]:
            if device["name"] == "win-wine":
                device["name"] = hostile
                device["interfaces"][0]["name"] = '"><b>iface</b>'
        for case in results["cases"]:
            if case["device"] == "win-wine":
                case["device"] = hostile
                case["id"] = case["id"].replace("win-wine", hostile)
                if case["verdict"] == "fail":
                    case["reason"] = reason
                    case["evidence"] = "javascript:alert(1)"
                if case.get("interface") == "Ethernet 2":
                    case["interface"] = '"><b>iface</b>'
    edit_results(run_dir, poison)
    page = html.write_report(run_dir).read_text()
    collector = parse(page)
    assert hostile not in page and reason not in page and "<b>iface</b>" not in page
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;" in page
    assert collector.tags.count("script") == 1  # ours, at the end
    assert "b" not in collector.tags and "img" not in collector.tags
    assert not [attrs for _, attrs in collector.attributes if attrs.get("href", "").startswith("javascript:")]
    hostile_cells = [case_id for case_id, _ in collector.cells if hostile in case_id]
    assert len(hostile_cells) == 9  # attribute values round-trip to the original text


def test_report_of_an_incomplete_run_says_so(tmp_path):
    page = html.write_report(copy_run("incomplete", tmp_path)).read_text()
    assert '<span class="overall">INCOMPLETE</span>' in page
    assert "cut short" in page
    assert len(parse(page).cells) == 5


def test_report_shows_errata_and_merged_sources(tmp_path):
    run_dir = copy_run("combined", tmp_path)
    path = write_errata(tmp_path, '[[erratum]]\ndevice = "win-wine"\nclause = "NO-COLLATERAL"\nreason = "wine bug"\n'
                                  'link = "https://bugs.example/7"\n[[erratum]]\ndevice = "linux-a"\n'
                                  'case = "test_idempotent[*]"\nreason = "old"\n')
    applied = errata.apply(model.load_results(run_dir), errata.load_errata(path))
    (run_dir / "results.json").write_text(json.dumps(model.results_for_writing(applied)))
    page = html.write_report(run_dir).read_text()
    assert f'<details class="case v-known" id="{html.case_anchor(FAIL_ID)}"' in page
    assert '<a href="https://bugs.example/7">' in page
    assert '<tr class="erratum-stale">' in page
    merged = merge.merge_runs([DATA / "shard-linux-a", DATA / "shard-win-wine"], tmp_path / "merged")
    assert "merged from 2 runs" in (merged / "report.html").read_text()


# --- CLI ----------------------------------------------------------------------------------------

def test_cli_verify_exit_codes(tmp_path, capsys):
    run_dir = copy_run("combined", tmp_path)
    manifest.write_manifest(run_dir)
    assert cli.main(["verify", str(run_dir)]) == 0
    assert "OK" in capsys.readouterr().out
    (run_dir / "results.jsonl").write_text("")
    assert cli.main(["verify", str(run_dir)]) == 1
    assert "changed: results.jsonl" in capsys.readouterr().out


def test_cli_diff_merge_html(tmp_path, capsys):
    assert cli.main(["diff", str(DATA / "combined"), str(DATA / "rerun")]) == 0
    assert "verdict changes (2):" in capsys.readouterr().out
    assert cli.main(["diff", "--json", str(DATA / "combined"), str(DATA / "rerun")]) == 0
    assert len(json.loads(capsys.readouterr().out)["verdict_changes"]) == 2
    out = tmp_path / "merged"
    assert cli.main(["merge", str(DATA / "shard-linux-a"), str(DATA / "shard-win-wine"), "--out", str(out)]) == 0
    assert cli.main(["verify", str(out)]) == 0
    # Regenerating the report of a sealed, intact run re-seals it.
    assert cli.main(["html", str(out)]) == 0
    assert manifest.verify(out) == []


def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    code = cli.main(["merge", str(DATA / "shard-linux-a"), str(DATA / "combined"), "--out", str(tmp_path / "m")])
    error = capsys.readouterr().err
    assert code == 2
    assert error.count("\n") == 1 and error.startswith("neighcheck: error: device 'linux-a' is in both")
    assert cli.main(["html", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    sealed = copy_run("combined", tmp_path)
    manifest.write_manifest(sealed)
    (sealed / "results.jsonl").write_text("")
    assert cli.main(["html", str(sealed)]) == 2, "must not re-seal a changed run"
    with pytest.raises(SystemExit) as caught:
        cli.main(["merge", str(DATA / "shard-linux-a")])  # --out missing: argparse's own usage error
    assert caught.value.code == 2


def test_add_report_commands_plugs_into_a_parent_parser(tmp_path):
    import argparse

    parser = argparse.ArgumentParser(prog="neighcheck")
    commands = parser.add_subparsers(dest="command", required=True)
    cli.add_report_commands(commands)
    run_dir = copy_run("combined", tmp_path)
    args = parser.parse_args(["report", "html", str(run_dir)])
    assert cli.dispatch(args) == 0 and (run_dir / "report.html").is_file()
    assert cli.dispatch(parser.parse_args(["report", "verify", str(run_dir)])) == 1  # never sealed
