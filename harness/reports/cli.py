"""`neighcheck report ...`: verify, diff, merge and html, as argparse subcommands.

`add_report_commands(subparsers)` registers `report` with its verbs; each verb sets
`args.func(args) -> int` and raises UsageError for bad input. `dispatch(args)` runs one and turns
a NeighcheckError into one line on stderr and its exit code (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.errors import NeighcheckError, UsageError
from harness.reports import diff, html, manifest, merge
from harness.reports.model import MANIFEST_FILE


def _existing_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"{value}: not a directory")
    return path


def _verify(args: argparse.Namespace) -> int:
    run_dir = _existing_dir(args.dir)
    problems = manifest.verify(run_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{run_dir}: {len(problems)} problem(s): the run does not match its manifest", file=sys.stderr)
        return 1
    count = len(json.loads((run_dir / MANIFEST_FILE).read_text(encoding="utf-8"))["files"])
    print(f"{run_dir}: OK, {count} files match {MANIFEST_FILE}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    result = diff.diff_runs(_existing_dir(args.a), _existing_dir(args.b))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        sys.stdout.write(diff.render_text(result))
    return 0


def _merge(args: argparse.Namespace) -> int:
    out = merge.merge_runs([_existing_dir(d) for d in args.runs], Path(args.out))
    print(f"merged {len(args.runs)} runs into {out}")
    return 0


def _html(args: argparse.Namespace) -> int:
    run_dir = _existing_dir(args.dir)
    sealed = (run_dir / MANIFEST_FILE).exists()
    if sealed:
        # Re-sealing a run that changed since it was sealed would bless the change.
        problems = manifest.verify(run_dir)
        if problems:
            raise UsageError(f"{run_dir}: manifest check failed ({len(problems)} problem(s), first: {problems[0]}); "
                             f"not regenerating the report of a changed run")
    report = html.write_report(run_dir)
    if sealed:
        manifest.write_manifest(run_dir)
    print(report)
    return 0


def _add_verbs(verbs: argparse._SubParsersAction) -> None:
    verify = verbs.add_parser("verify", help="check a run directory against its manifest.json (exit 1 if not)")
    verify.add_argument("dir", help="run directory")
    verify.set_defaults(func=_verify)

    compare = verbs.add_parser("diff", help="what changed between two runs")
    compare.add_argument("a", help="older run directory")
    compare.add_argument("b", help="newer run directory")
    compare.add_argument("--json", action="store_true", help="print the diff as JSON")
    compare.set_defaults(func=_diff)

    combine = verbs.add_parser("merge", help="merge runs sharded by device into one run directory")
    combine.add_argument("runs", nargs="+", metavar="RUN", help="run directories")
    combine.add_argument("--out", required=True, metavar="DIR", help="new (or empty) output directory")
    combine.set_defaults(func=_merge)

    page = verbs.add_parser("html", help="(re)write report.html for a run directory")
    page.add_argument("dir", help="run directory")
    page.set_defaults(func=_html)


def add_report_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `report {verify,diff,merge,html}` on the caller's subparsers; return the `report` parser."""
    report = subparsers.add_parser("report", help="verify, compare, merge and render run reports")
    verbs = report.add_subparsers(dest="report_command", metavar="{verify,diff,merge,html}", required=True)
    _add_verbs(verbs)
    return report


def dispatch(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except NeighcheckError as exc:
        print(f"neighcheck: error: {exc}", file=sys.stderr)
        return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m harness.reports verify DIR`), for use before the main CLI wires it in."""
    parser = argparse.ArgumentParser(prog="python -m harness.reports", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="report_command", metavar="{verify,diff,merge,html}", required=True)
    _add_verbs(verbs)
    return dispatch(parser.parse_args(argv))
