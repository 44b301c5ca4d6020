"""`report.html`: one self-contained page a person can read (inline CSS and JS, nothing fetched).

Everything that comes from results (device names, reasons, observations, addresses) is untrusted
and goes through `esc`. A Content-Security-Policy meta tag forbids every network load, so even a
mistake in escaping cannot pull anything in or send anything out.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit

from harness import __version__ as HARNESS_VERSION
from harness.reports.model import (CLAUSE_BY_ID, CLAUSES, FAMILY_NAMES, REPORT_FILE, VERDICTS, Matrix, clause_verdict,
                                   device_matrix,
                                   device_names, family_name, is_matrix_case, load_results, overall_verdict,
                                   status_hex, status_name, worst_verdict)
from harness.reports.summary import MARKS

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
# Cases with these verdicts get an expanded <details> block with status, reason and diff.
PROBLEM_VERDICTS = ("fail", "error", "known")
DIFF_LISTS = (
    ("kept_in_scope", "seeded in scope, still present after the flush"),
    ("removed_out_of_scope", "seeded out of scope, removed or changed (collateral)"),
    ("changed_unseeded", "not seeded by the harness, changed (informational)"),
)
ENTRY_COLUMNS = ("address", "family", "ifindex", "lladdr", "state")
EVIDENCE_INLINE_LIMIT = 8 * 1024 * 1024  # larger evidence is linked, not summarised


def esc(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def case_anchor(case_id: str) -> str:
    # Ids are untrusted text; a hash makes a safe, stable fragment.
    return "case-" + hashlib.sha256(case_id.encode()).hexdigest()[:12]


def row_anchor(case_id: str) -> str:
    return "row-" + hashlib.sha256(case_id.encode()).hexdigest()[:12]


def _static(name: str) -> str:
    return resources.files("harness.reports").joinpath(name).read_text(encoding="utf-8")


def _badge(verdict: str | None, text: str | None = None) -> str:
    css = f"v-{verdict}" if verdict else "v-none"
    return f'<span class="badge {css}">{esc(text if text is not None else verdict or "none")}</span>'


def _safe_relative_href(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or ":" in path:
        return None
    return quote(path)


def _safe_web_href(url: object) -> str | None:
    if isinstance(url, str) and urlsplit(url).scheme in ("http", "https"):
        return url
    return None


def _link(href: str | None, text: object) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text)


def _dl(pairs: list[tuple[str, str]]) -> str:
    """A definition list; values must already be HTML (escaped)."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="kv">{items}</dl>'


def _fmt_seconds(value: object) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _device_flush(case: dict) -> float | None:
    """The judged flush call's own time on the device, in seconds (None: not measured)."""
    value = case.get("flush_elapsed_us")
    return value / 1e6 if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _device_flush_html(case: dict) -> str:
    seconds = _device_flush(case)
    if seconds is None:
        return ""
    trip = (case.get("timings") or {}).get("flush")
    around = f" (round trip from the harness: {esc(_fmt_seconds(trip))})" if isinstance(trip, (int, float)) else ""
    return f"{esc(_fmt_seconds(seconds))}, measured by the agent around the API call{around}"


def _flush_latency_html(results: dict, device: str) -> str:
    """The device's flush latency as its agent measured it, over its judged flush calls."""
    values = sorted(s for c in results["cases"] if c.get("device") == device
                    for s in [_device_flush(c)] if s is not None)
    if not values:
        return ""
    median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    return (f"median {esc(_fmt_seconds(median))}, max {esc(_fmt_seconds(values[-1]))} over {len(values)} "
            f"calls (the API call's own time, measured on the device)")


def _status_html(case: dict) -> str:
    raw = case.get("status_raw")
    space = case.get("status_space")
    outcome = case.get("outcome")
    if raw is None:
        text = "no status returned"
    elif isinstance(raw, int):
        name = status_name(raw, space) or "unknown code"
        text = f"{status_hex(raw)} ({raw}) {name}"
    else:
        text = f"unparsable status {raw!r}"
    parts = [f'<code class="status">{esc(text)}</code>']
    if space:
        parts.append(f"space {esc(space)}")
    if outcome:
        parts.append(f"outcome <strong>{esc(outcome)}</strong>")
    return ", ".join(parts)


def _entries_table(entries: list) -> str:
    extra_keys = sorted({k for e in entries if isinstance(e, dict) for k in e} - set(ENTRY_COLUMNS))
    head = "".join(f"<th>{esc(c)}</th>" for c in (*ENTRY_COLUMNS, *extra_keys))
    rows = []
    for entry in entries:
        if not isinstance(entry, dict):
            entry = {"address": json.dumps(entry)}
        cells = []
        for column in (*ENTRY_COLUMNS, *extra_keys):
            value = entry.get(column)
            cells.append(f"<td>{esc(value if not isinstance(value, (dict, list)) else json.dumps(value))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="entries"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _diff_html(diff: object) -> str:
    if not isinstance(diff, dict):
        return '<p class="muted">no table diff recorded (the flush was not judged on table state)</p>'
    parts = [f'<p>seeded in scope and removed: <strong>{esc(diff.get("removed_in_scope", "?"))}</strong></p>']
    for key, title in DIFF_LISTS:
        entries = diff.get(key) or []
        if entries:
            parts.append(f'<h5 class="diff-{esc(key)}">{esc(title)}: {len(entries)}</h5>{_entries_table(entries)}')
        else:
            parts.append(f'<p class="muted">{esc(title)}: none</p>')
    known = {"removed_in_scope", *(key for key, _ in DIFF_LISTS)}
    for key in sorted(set(diff) - known):
        parts.append(f"<p>{esc(key)}: <code>{esc(json.dumps(diff[key], sort_keys=True))}</code></p>")
    return f'<div class="diff">{"".join(parts)}</div>'


def _read_evidence(run_dir: Path, evidence: object) -> dict | None:
    """The case's evidence file, if it is a JSON object inside the run directory and not huge."""
    href = _safe_relative_href(evidence)
    if href is None:
        return None
    path = (run_dir / str(evidence)).resolve()
    try:
        if run_dir.resolve() not in path.parents or path.stat().st_size > EVIDENCE_INLINE_LIMIT:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _before_after_html(evidence: dict | None, interfaces: dict[int, str]) -> str:
    """Table counts before and after the flush, per family and interface, from the evidence snapshots."""
    if not evidence or not isinstance(evidence.get("before"), list) or not isinstance(evidence.get("after"), list):
        return ""

    def keyed(entries: list) -> dict[tuple, dict]:
        return {(e.get("family"), e.get("ifindex"), e.get("address")): e for e in entries if isinstance(e, dict)}

    before, after = keyed(evidence["before"]), keyed(evidence["after"])
    groups: dict[tuple, list[int]] = {}
    for key in set(before) | set(after):
        counts = groups.setdefault(key[:2], [0, 0, 0, 0])  # before, after, gone, new
        counts[0] += key in before
        counts[1] += key in after
        counts[2] += key in before and key not in after
        counts[3] += key in after and key not in before
    rows = []
    for (family, ifindex), (n_before, n_after, gone, new) in sorted(groups.items(), key=lambda g: str(g[0])):
        name = FAMILY_NAMES.get(family, family)
        interface = f"{ifindex} ({interfaces[ifindex]})" if ifindex in interfaces else ifindex
        rows.append(f"<tr><td>{esc(name)}</td><td>{esc(interface)}</td><td class=\"num\">{n_before}</td>"
                    f"<td class=\"num\">{n_after}</td><td class=\"num\">{gone}</td><td class=\"num\">{new}</td></tr>")
    return ('<table class="before-after"><thead><tr><th>family</th><th>interface</th><th>before</th><th>after</th>'
            f'<th>gone</th><th>new</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _timings_html(case: dict) -> str:
    timings = case.get("timings")
    if not isinstance(timings, dict) or not timings:
        return ""
    return " · ".join(f"{esc(phase)} {esc(_fmt_seconds(value))}" for phase, value in timings.items())


def _clauses_html(case: dict) -> str:
    out = []
    failed = case.get("failed_clauses") or []
    for clause_id in case.get("clauses", []):
        clause = CLAUSE_BY_ID.get(clause_id)
        title = clause.requirement if clause else "not in the clause catalog"
        css = "clause failed" if clause_id in failed else "clause"
        title = f"failed: {title}" if clause_id in failed else title
        out.append(f'<span class="{css}" title="{esc(title)}">{esc(clause_id)}</span>')
    return " ".join(out)


def _observation_html(observation: object) -> str:
    if observation is None:
        return ""
    summary = observation.get("summary") if isinstance(observation, dict) else None
    body = esc(json.dumps(observation, indent=2, sort_keys=True))
    head = f"<p>{esc(summary)}</p>" if summary else ""
    return f'{head}<details class="raw"><summary>recorded data</summary><pre>{body}</pre></details>'


def _pcap_html(case: dict, run_dir: Path) -> str:
    """The case's packet capture (pcapng, harness/plugin/packets.py): a link and what it holds."""
    pcap = case.get("pcap")
    if not isinstance(pcap, dict):
        return ""
    if pcap.get("error"):
        return f'<em class="warn">{esc(pcap["error"])}</em>'
    name = pcap.get("file")
    href = _safe_relative_href(name)
    exists = href is not None and (run_dir / str(name)).is_file()
    note = f" ({esc(pcap.get('frames'))} frames on {esc(', '.join(map(str, pcap.get('links') or [])))}"
    if pcap.get("not_kept"):
        note += f'; <em class="warn">{esc(pcap["not_kept"])} not kept: over the size cap</em>'
    return _link(href, name) + note + ")" + ("" if exists else ' <em class="warn">(not found)</em>')


def _case_details(case: dict, run_dir: Path, interfaces: dict[int, str]) -> str:
    verdict = case["verdict"]
    family = case.get("family")
    interface = case.get("interface") or ("all" if case.get("ifindex") == 0 else "")
    pairs = [
        ("device", esc(case.get("device"))),
        ("clauses", _clauses_html(case)),
        ("family", f"{esc(family_name(case))} ({esc(family)})" if family is not None else ""),
        ("interface", f"{esc(interface)} (index {esc(case.get('ifindex'))})" if "ifindex" in case else ""),
        ("status", _status_html(case)),
        ("flush on the device", _device_flush_html(case)),
        ("duration", esc(_fmt_seconds(case.get("duration_s")))),
        ("timings", _timings_html(case)),
    ]
    evidence = case.get("evidence")
    if evidence:
        href = _safe_relative_href(evidence)
        exists = href is not None and (run_dir / evidence).is_file()
        pairs.append(("evidence", _link(href, evidence) + ("" if exists else ' <em class="warn">(not found)</em>')))
    pairs.append(("packets", _pcap_html(case, run_dir)))
    parts = [_dl([(k, v) for k, v in pairs if v])]
    if case.get("reason"):
        parts.append(f'<h5>reason</h5><pre class="reason">{esc(case["reason"])}</pre>')
    erratum = case.get("erratum")
    if isinstance(erratum, dict):
        link = erratum.get("link")
        parts.append(f'<div class="erratum"><h5>known deviation (erratum {esc(erratum.get("index"))})</h5>'
                     f'<p>{esc(erratum.get("reason"))}</p>'
                     + (f"<p>{_link(_safe_web_href(link), link)}</p>" if link else "") + "</div>")
    parts.append("<h5>neighbor table diff</h5>" + _diff_html(case.get("diff")))
    evidence_data = _read_evidence(run_dir, evidence)
    before_after = _before_after_html(evidence_data, interfaces)
    if before_after:
        parts.append("<h5>table before and after the flush (from the evidence)</h5>" + before_after)
    if evidence_data and evidence_data.get("call") is not None:
        call = json.dumps(evidence_data["call"], indent=2, sort_keys=True, default=str)
        parts.append(f'<details class="raw"><summary>agent call</summary><pre>{esc(call)}</pre></details>')
    if case.get("observation") is not None:
        parts.append("<h5>observation</h5>" + _observation_html(case["observation"]))
    return (f'<details class="case v-{esc(verdict)}" id="{case_anchor(case["id"])}" data-case-id="{esc(case["id"])}">'
            f'<summary>{_badge(verdict)} <code>{esc(case["id"])}</code></summary>'
            f'<div class="case-body">{"".join(parts)}</div></details>')


def _case_href(case: dict) -> str:
    anchor = case_anchor(case["id"]) if case["verdict"] in PROBLEM_VERDICTS else row_anchor(case["id"])
    return f"#{anchor}"


def _matrix_html(matrix: Matrix) -> str:
    head = "".join(f'<th scope="col">{esc(column)}</th>' for column in matrix.columns)
    rows = []
    for family in matrix.families:
        cells = []
        for column in matrix.columns:
            cases = matrix.cases_at(family, column)
            if not cases:
                cells.append('<td class="cell-empty" title="no case">–</td>')
                continue
            verdict = matrix.verdict_at(family, column)
            shown = next(case for case in cases if case["verdict"] == verdict)
            ids = " ".join(case["id"] for case in cases)
            title = "; ".join(f"{c['verdict']}: {c.get('reason') or c.get('outcome') or ''}" for c in cases)
            cells.append(f'<td class="cell v-{esc(verdict)}" data-case-id="{esc(ids)}" title="{esc(title)}">'
                         f'<a href="{esc(_case_href(shown))}">{esc(MARKS[verdict])}</a></td>')
        rows.append(f'<tr><th scope="row">{esc(family)}</th>{"".join(cells)}</tr>')
    return (f'<table class="matrix" data-device="{esc(matrix.device)}"><thead><tr><th>family \\ interface</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _device_html(results: dict, device: str) -> str:
    entry = next((d for d in results.get("devices", []) if d.get("name") == device), {})
    fingerprint = entry.get("fingerprint") or {}
    pairs = []
    if entry.get("os") and fingerprint.get("os") not in (None, entry.get("os")):
        # The inventory and the device disagree about what the device is: show both.
        pairs.append(("os (inventory)", esc(entry.get("os"))))
    elif entry.get("os") and "os" not in fingerprint:
        pairs.append(("os", esc(entry.get("os"))))
    pairs += [(str(k), esc(v if not isinstance(v, (dict, list)) else json.dumps(v))) for k, v in fingerprint.items()]
    stacks = entry.get("stacks")
    if isinstance(stacks, dict):
        pairs.append(("stacks", esc(", ".join(f"{k} {'yes' if v else 'no'}" for k, v in stacks.items()))))
    interfaces = ", ".join(f"{esc(i.get('name'))} (index {esc(i.get('index'))})" for i in entry.get("interfaces", []))
    if interfaces:
        pairs.append(("interfaces", interfaces))
    latency = _flush_latency_html(results, device)
    if latency:
        pairs.append(("flush latency", latency))
    place = entry.get("labgrid")
    if isinstance(place, dict):  # reserved through a labgrid coordinator (harness/places.py)
        pairs.append(("labgrid place", esc(f"{place.get('place')} at {place.get('coordinator')}, acquired by "
                                           f"{place.get('acquired_by')} at {place.get('acquired_at')} "
                                           f"after {place.get('waited_s')} s")))
    others = [c for c in results["cases"] if c.get("device") == device and not is_matrix_case(c)]
    other_items = "".join(f'<li>{_badge(c["verdict"])} <a href="{esc(_case_href(c))}">{esc(c.get("name") or c["id"])}'
                          f'</a> {_clauses_html(c)}</li>' for c in others)
    other_html = f'<h4>other cases</h4><ul class="others">{other_items}</ul>' if others else ""
    return (f'<article class="device" data-device="{esc(device)}"><h3>{esc(device)}</h3>'
            f'<div class="device-grid"><div><h4>fingerprint</h4>{_dl(pairs) if pairs else "<p>none recorded</p>"}'
            f'</div><div><h4>flush scope: family × interface</h4>{_matrix_html(device_matrix(results, device))}'
            f"</div></div>{other_html}</article>")


def _clause_table(results: dict, devices: list[str]) -> str:
    catalog = list(CLAUSES)
    listed = {c.id for c in catalog}
    extra = sorted({c for case in results["cases"] for c in case.get("clauses", [])} - listed)
    head = "".join(f"<th>{esc(d)}</th>" for d in devices)
    rows = []
    for clause_id in [c.id for c in catalog] + extra:
        clause = CLAUSE_BY_ID.get(clause_id)
        cells = []
        for device in devices:
            cases = [c for c in results["cases"] if c.get("device") == device and clause_id in c.get("clauses", [])]
            clause_verdicts = [clause_verdict(c, clause_id) for c in cases]
            verdict = worst_verdict(clause_verdicts)
            counts = {v: clause_verdicts.count(v) for v in VERDICTS}
            text = " · ".join(f"{n} {v}" for v, n in counts.items() if n) or "–"
            cells.append(f'<td class="clause-cell v-{esc(verdict or "none")}" data-filter="{esc(clause_id)} '
                         f'{esc(device)}" title="show these cases">{esc(text)}</td>')
        overall = worst_verdict(clause_verdict(c, clause_id) for c in results["cases"]
                                if clause_id in c.get("clauses", []))
        kind = clause.kind if clause else "unknown"
        source = clause.source if clause else "not in the catalog"
        requirement = clause.requirement if clause else ""
        rows.append(f'<tr><th scope="row"><code>{esc(clause_id)}</code></th><td>{esc(source)}</td>'
                    f'<td class="kind-{esc(kind)}">{esc(kind)}</td><td>{esc(requirement)}</td>'
                    f"<td>{_badge(overall)}</td>{''.join(cells)}</tr>")
    return (f'<table class="clauses"><thead><tr><th>clause</th><th>source</th><th>kind</th><th>requirement</th>'
            f'<th>verdict</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def _observed_table(results: dict, devices: list[str]) -> str:
    observed_ids = [c.id for c in CLAUSES if c.kind == "observed"]
    head = "".join(f"<th>{esc(d)}</th>" for d in devices)
    rows = []
    for clause_id in observed_ids:
        cells = []
        for device in devices:
            cases = [c for c in results["cases"] if c.get("device") == device and clause_id in c.get("clauses", [])]
            if not cases:
                cells.append('<td class="muted">not run</td>')
                continue
            items = []
            for case in cases:
                body = _observation_html(case.get("observation")) or f'<p class="muted">{esc(case.get("reason"))}</p>'
                items.append(f'<div class="observation">{_badge(case["verdict"])} <a href="{esc(_case_href(case))}">'
                             f'<code>{esc(case.get("name") or case["id"])}</code></a>{body}</div>')
            cells.append(f"<td>{''.join(items)}</td>")
        requirement = CLAUSE_BY_ID[clause_id].requirement
        rows.append(f'<tr><th scope="row"><code>{esc(clause_id)}</code><br><span class="muted">{esc(requirement)}'
                    f'</span></th>{"".join(cells)}</tr>')
    return (f'<table class="observed"><thead><tr><th>behaviour</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _pcap_cell(case: dict) -> str:
    href = _safe_relative_href((case.get("pcap") or {}).get("file") if isinstance(case.get("pcap"), dict) else None)
    return f' <a class="pcap" href="{esc(href)}" title="packets (pcapng)">pcap</a>' if href else ""


def _cases_table(results: dict) -> str:
    rows = []
    for case in results["cases"]:
        raw = case.get("status_raw")
        status = f"{case.get('outcome') or ''} {status_hex(raw) if isinstance(raw, int) else ''}".strip()
        name = case.get("name") or case["id"]
        rows.append(f'<tr id="{row_anchor(case["id"])}" data-verdict="{esc(case["verdict"])}">'
                    f'<td>{_badge(case["verdict"])}</td><td>{esc(case.get("device"))}</td>'
                    f'<td><a href="{esc(_case_href(case))}" title="{esc(case["id"])}">{esc(name)}</a>'
                    f'{_pcap_cell(case)}</td>'
                    f"<td>{_clauses_html(case)}</td><td>{esc(status)}</td>"
                    f'<td class="num">{esc(_fmt_seconds(_device_flush(case)))}</td>'
                    f'<td class="num">{esc(_fmt_seconds(case.get("duration_s")))}</td>'
                    f'<td class="reason-cell">{esc(case.get("reason"))}</td></tr>')
    boxes = "".join(f'<label><input type="checkbox" class="verdict-filter" value="{v}" checked> {esc(v)}</label>'
                    for v in VERDICTS)
    return (f'<div class="filters"><input type="search" id="case-filter" placeholder="filter: words in any column">'
            f'{boxes}<span id="case-count"></span></div>'
            f'<table class="cases" id="cases-table"><thead><tr><th>verdict</th><th>device</th><th>case</th>'
            f'<th>clauses</th><th>status</th><th title="the flush call\'s own time, measured on the device">'
            f"flush (device)</th><th>duration</th><th>reason</th></tr></thead>"
            f'<tbody>{"".join(rows)}</tbody></table>')


def _run_metadata(results: dict) -> str:
    inventory = results.get("inventory") or {}
    pairs = [
        ("run id", esc(results.get("run_id"))),
        ("suite version", esc(results.get("suite_version"))),
        ("harness version", esc(results.get("harness_version"))),
        ("git commit", f"<code>{esc(results.get('git_commit'))}</code>"),
        ("started", esc(results.get("started"))),
        ("finished", esc(results.get("finished")) if results.get("finished") else '<em class="warn">not finished</em>'),
        ("inventory", f"{esc(inventory.get('path'))} <code>sha256 {esc(inventory.get('sha256'))}</code>"),
        ("entries per family per link", esc(results.get("entries_per_family"))),
    ]
    if "settle_s" in results:
        settle = results["settle_s"]
        pairs.append(("settle window (DURABLE)", f"{esc(settle)} s" if settle else
                      '<em class="warn">off (--settle 0): durable effects were not judged</em>'))
    timings: dict[str, float] = {}
    for case in results["cases"]:
        for phase, value in (case.get("timings") or {}).items():
            if isinstance(value, (int, float)):
                timings[phase] = timings.get(phase, 0.0) + value
    total = sum(c.get("duration_s") or 0 for c in results["cases"] if isinstance(c.get("duration_s"), (int, float)))
    pairs.append(("time in cases", esc(_fmt_seconds(total)) + (" (" + ", ".join(
        f"{esc(k)} {esc(_fmt_seconds(v))}" for k, v in timings.items()) + ")" if timings else "")))
    html = _dl(pairs)
    sources = results.get("merged_from")
    if isinstance(sources, list) and sources:
        rows = "".join(f"<tr><td>{esc(s.get('run_id'))}</td><td>{esc(', '.join(map(str, s.get('devices', []))))}</td>"
                       f"<td><code>{esc(s.get('git_commit'))}</code></td><td>{esc(s.get('harness_version'))}</td>"
                       f"<td>{esc((s.get('inventory') or {}).get('sha256'))}</td></tr>" for s in sources)
        html += (f'<h4>merged from {len(sources)} runs</h4><table class="sources"><thead><tr><th>run</th>'
                 f"<th>devices</th><th>git commit</th><th>harness</th><th>inventory sha256</th></tr></thead>"
                 f"<tbody>{rows}</tbody></table>")
    return html


def _errata_html(results: dict) -> str:
    errata = results.get("errata")
    if not errata:
        return ""
    rows = []
    for entry in errata:
        target = f"case {entry.get('case')}" if entry.get("case") is not None else f"clause {entry.get('clause')}"
        link = entry.get("link")
        rows.append(f'<tr class="erratum-{esc(entry.get("status"))}"><td>{esc(entry.get("index"))}</td>'
                    f'<td>{esc(entry.get("status"))}</td><td>{esc(entry.get("device"))}</td><td>{esc(target)}</td>'
                    f'<td>{esc(entry.get("reason"))}</td><td>{_link(_safe_web_href(link), link) if link else ""}</td>'
                    f'<td class="num">{esc(entry.get("matched"))}</td><td class="num">{esc(entry.get("turned_known"))}'
                    f"</td></tr>")
    return (f'<section id="errata"><h2>Errata</h2><p>Known deviations: a matching <em>fail</em> is shown as '
            f"<em>known</em>. Errata never hide an <em>error</em>; a <em>stale</em> erratum matches only passing "
            f"cases and should be removed.</p><table class=\"errata\"><thead><tr><th>#</th><th>status</th>"
            f"<th>device</th><th>matches</th><th>reason</th><th>link</th><th>matched</th><th>made known</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>")


def _interface_names(results: dict, device: object) -> dict[int, str]:
    entry = next((d for d in results.get("devices", []) if d.get("name") == device), {})
    return {i.get("index"): str(i.get("name")) for i in entry.get("interfaces", []) if isinstance(i, dict)}


def render_report(results: dict, run_dir: Path) -> str:
    devices = device_names(results)
    overall = overall_verdict(results)
    summary = results["summary"]
    counts = " ".join(_badge(v, f"{summary[v]} {v}") for v in VERDICTS if summary[v])
    warnings = "".join(f"<li>{esc(w)}</li>" for w in results.get("warnings", []))
    problems = [c for c in results["cases"] if c["verdict"] in PROBLEM_VERDICTS]
    problems.sort(key=lambda c: PROBLEM_VERDICTS.index(c["verdict"]))
    problem_html = "".join(_case_details(c, run_dir, _interface_names(results, c.get("device"))) for c in problems) or "<p>No failures, errors or known deviations.</p>"
    legend = " ".join(_badge(v, f"{MARKS[v]} = {v}") for v in VERDICTS)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>neighcheck report {esc(results.get("run_id"))}: {esc(overall)}</title>
<style>{_static("report.css")}</style>
</head>
<body>
<header class="banner overall-{esc(overall)}">
<h1>neighcheck conformance report <span class="api">FlushIpNetTable2</span></h1>
<p><span class="overall">{esc(overall)}</span> run <code>{esc(results.get("run_id"))}</code>,
{len(devices)} device(s), {len(results["cases"])} case(s)</p>
<p class="counts">{counts}</p>
</header>
<nav><a href="#run">run</a> <a href="#devices">devices</a> <a href="#clauses">clauses</a>
<a href="#observed">observed behaviours</a> <a href="#problems">failures &amp; errors ({len(problems)})</a>
<a href="#cases">all cases</a></nav>
<main>
{f'<section id="warnings" class="warnings"><h2>Warnings</h2><ul>{warnings}</ul></section>' if warnings else ""}
<section id="run"><h2>Run</h2>{_run_metadata(results)}</section>
<section id="devices"><h2>Devices</h2><p class="legend">{legend}</p>
{"".join(_device_html(results, d) for d in devices) or "<p>No devices.</p>"}</section>
<section id="clauses"><h2>Clauses</h2><p>Worst verdict per clause and device; click a cell to list its cases.</p>
{_clause_table(results, devices)}</section>
<section id="observed"><h2>Observed behaviours</h2><p>The reference leaves these open: they are recorded
side by side, never failed.</p>{_observed_table(results, devices)}</section>
<section id="problems"><h2>Failures, errors and known deviations</h2>{problem_html}</section>
{_errata_html(results)}
<section id="cases"><h2>All cases</h2>{_cases_table(results)}</section>
</main>
<footer>generated by neighcheck {esc(HARNESS_VERSION)} at {generated}; self-contained, loads nothing.</footer>
<script>{_static("report.js")}</script>
</body>
</html>
"""


def write_report(run_dir: Path | str) -> Path:
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    target = run_dir / REPORT_FILE
    temporary = target.with_name(f".{REPORT_FILE}.tmp")
    temporary.write_text(render_report(results, run_dir), encoding="utf-8")
    temporary.replace(target)
    return target
