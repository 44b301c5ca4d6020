"""Reports for neighcheck runs: the HTML report, the manifest, run diffs, merging, errata, summaries.

    from harness.reports import write_report, write_manifest, verify, diff_runs, merge_runs
"""

from harness.reports.diff import RunDiff, diff_runs, render_text
from harness.contract.errata import Erratum, apply as apply_errata, load_errata
from harness.reports.html import write_report
from harness.reports.manifest import verify, write_manifest
from harness.reports.merge import merge_runs
from harness.reports.model import CLAUSES, VERDICTS, load_results
from harness.reports.summary import terminal_matrix

__all__ = ["CLAUSES", "Erratum", "RunDiff", "VERDICTS", "apply_errata", "diff_runs", "load_errata", "load_results",
           "merge_runs", "render_text", "terminal_matrix", "verify", "write_manifest", "write_report"]
