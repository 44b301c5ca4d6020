"""report.html in a real browser: headless Debian Chromium driven by playwright (never a downloaded browser).

Checks what a person relies on: the page runs without console errors and loads nothing from the
network, the matrix cells and their colours match results.json, and a failure opens to show its
diff. Screenshots go to reports/test-artifacts/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.reports import html, model

DATA = Path(__file__).resolve().parent / "data"
ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FAIL_ID = "conformance/test_flush.py::test_flush_scope[win-wine-AF_INET-Ethernet 2]"
ERROR_ID = "conformance/test_flush.py::test_flush_scope[win-wine-AF_INET6-all]"

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright not installed: pip install playwright (no browser download needed)")


@pytest.fixture
def page_on_report(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(DATA / "combined", run_dir)
    report = html.write_report(run_dir)
    url = report.as_uri()
    problems: dict[str, list[str]] = {"console": [], "network": []}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
                                             timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            page.on("console", lambda message: message.type == "error" and problems["console"].append(message.text))
            page.on("pageerror", lambda error: problems["console"].append(f"uncaught: {error}"))

            def only_the_report(route):
                # The page may load itself and nothing else; anything more is recorded and refused.
                if route.request.url.split("#")[0] == url:
                    route.continue_()
                else:
                    problems["network"].append(route.request.url)
                    route.abort()

            page.route("**/*", only_the_report)
            page.goto(url, wait_until="load")
            yield page, model.load_results(run_dir), problems
        finally:
            browser.close()


def test_report_in_chromium(page_on_report):
    page, results, problems = page_on_report
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)

    # The matrix: one cell per test_flush_scope case, coloured by its verdict.
    expected = {case["id"]: f"v-{case['verdict']}" for case in results["cases"] if case["test"] == "test_flush_scope"}
    cells = page.locator("td.cell").evaluate_all(
        "cells => cells.map(c => [c.dataset.caseId, Array.from(c.classList)])")
    assert len(cells) == len(expected)
    assert {case_id: next(c for c in classes if c.startswith("v-")) for case_id, classes in cells} == expected
    colours = {verdict: page.locator(f"td.cell.v-{verdict}").first.evaluate("c => getComputedStyle(c).backgroundColor")
               for verdict in ("pass", "fail", "error")}
    assert len(set(colours.values())) == 3, f"verdicts must look different: {colours}"

    # A failure: closed at first; following its matrix cell opens it and shows the diff and raw status.
    failure = page.locator(f"details#{html.case_anchor(FAIL_ID)}")
    assert failure.evaluate("d => d.open") is False
    assert not failure.get_by_text("198.51.100.21").is_visible()
    page.locator("td.cell.v-fail").click()
    page.wait_for_function("id => document.getElementById(id).open", arg=html.case_anchor(FAIL_ID))
    assert failure.get_by_text("198.51.100.21").is_visible()
    assert failure.get_by_text("seeded out of scope, removed or changed (collateral): 2").is_visible()
    assert failure.get_by_text("0x00000000 (0) NO_ERROR").is_visible()
    assert failure.locator("table.before-after").is_visible()
    failure.screenshot(path=str(ARTIFACTS / "report-failure.png"))

    # An error opens by its summary like any <details>.
    error = page.locator(f"details#{html.case_anchor(ERROR_ID)}")
    error.locator("summary").click()
    assert error.evaluate("d => d.open") is True
    assert error.get_by_text("AgentError: agent exited 3").is_visible()

    # The case filter: unticking pass leaves every other case.
    page.locator("input.verdict-filter[value=pass]").uncheck()
    visible = page.locator("#cases-table tbody tr:not([hidden])").count()
    assert visible == len(results["cases"]) - results["summary"]["pass"]
    assert page.locator("#case-count").inner_text() == f"{visible} of {len(results['cases'])} cases"

    assert problems["console"] == []
    assert problems["network"] == []
