"""The bench's report: bench.md (the targets and one table per comparison, also printed) and
the charts (rtt.png, verbs.png, seeding.png, suite.png, scaling.png, growth.png)."""

from __future__ import annotations

from pathlib import Path

from harness.bench.suite import PHASES


def _spread(stats: dict | None, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    """'median (p10-p90)' of a summary in the format `spec`; '-' when nothing was measured."""
    if not stats or stats.get("median") is None:
        return "-"
    median, p10, p90 = (stats[k] * scale for k in ("median", "p10", "p90"))
    return f"{median:{spec}}{suffix} ({p10:{spec}}-{p90:{spec}})"


def _ms(stats: dict | None) -> str:
    return _spread(stats, ".1f", 1e3)


def _s(stats: dict | None, digits: int = 2) -> str:
    return _spread(stats, f".{digits}f")


def _x(stats: dict | None) -> str:
    return _spread(stats, ".2f", suffix="x")


def _pct(stats: dict | None) -> str:
    return _spread(stats, ".0%")


def _rate(stats: dict | None) -> str:
    return _spread(stats, ",.0f")


def render_markdown(data: dict) -> str:
    lines = [f"# neighcheck bench {data['run_id']}", "",
             f"Host {data['host']}, {data['load_start']['cpus']} CPUs; load at start "
             f"{data['load_start']['load1']:.2f}, at end {data['load_end']['load1']:.2f}"
             f"{' (--quick)' if data['settings']['quick'] else ''}. Medians, (p10-p90) in brackets; "
             "ratios are paired within rounds.", "", "## Targets", "",
             "| target | measured | limit | verdict |", "|---|---|---|---|"]
    for t in data["targets"]:
        measured = "-" if t["measured"] is None else f"{t['measured']:,.2f}{t['unit']}"
        lines.append(f"| {t['name']} | {measured} | {t['better']} {t['limit']:,}{t['unit']} | "
                     f"{t['verdict']}{' ' + t['note'] if t['note'] else ''} |")
    rtt = data.get("rtt")
    if rtt:
        lines += ["", f"## 1. Command round trip on {rtt['device']} ({rtt['rounds']} rounds; ms)", "",
                  "| contender | `true` | vs harness | `table` | vs harness |", "|---|---|---|---|---|"]
        for name, row in rtt["commands"]["table"].items():
            true_row = rtt["commands"]["true"].get(name, {})
            lines.append(f"| {name} | {_ms(true_row.get('seconds'))} | {_x(true_row.get('vs_harness'))} | "
                         f"{_ms(row['seconds'])} | {_x(row['vs_harness'])} |")
        for name, why in rtt["skipped"].items():
            lines.append(f"| {name} | skipped: {why} | | | |")
        lines.append(f"\n`table` reply: {rtt['table_reply_bytes']['median']:.0f} bytes (median).")
    for name, row in ((data.get("verbs") or {}).get("devices") or {}).items():
        lines += ["", f"## 1b. Agent verbs on {name} ({row['rounds']} rounds; ms)", "",
                  f"One round trip per verb as the harness makes it; `table` reads {row['table_entries']} "
                  f"entries (family {row['table_family']}). Serve: one resident agent process "
                  f"({row['serve_processes']} started); per call: a command, a shell and the agent "
                  "for every verb.", "",
                  "| contender | `ping` | vs serve | `table` | vs serve |", "|---|---|---|---|---|"]
        for contender, table_row in row["verbs"]["table"].items():
            ping_row = row["verbs"]["ping"][contender]
            lines.append(f"| {contender} | {_ms(ping_row['seconds'])} | {_x(ping_row['vs_serve'])} | "
                         f"{_ms(table_row['seconds'])} | {_x(table_row['vs_serve'])} |")
    seeding = data.get("seeding")
    if seeding:
        lines += ["", f"## 2. Seeding one link ({seeding['device']} {seeding['link']}, "
                  f"{seeding['rounds']} rounds)", "",
                  "| per family | contender | entries | send s | verify s | landed entries/s | "
                  "end-to-end /s | harness speedup | all landed (table reads) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for size, rows in seeding["sizes"].items():
            for name, row in rows.items():
                sampled = f" (sample of {row['frames_sent']:,}, extrapolated)" if row["extrapolated"] else ""
                lines.append(f"| {int(size):,} | {name}{sampled} | {row['entries']:,} | {_s(row['send_s'], 3)} | "
                             f"{_s(row['verify_s'], 3)} | {_rate(row['rate'])} | {_rate(row['rate_end_to_end'])} | "
                             f"{_x(row['harness_speedup'])} | {'yes' if row['landed_all'] else 'NO'} "
                             f"({', '.join(map(str, row['polls']))}) |")
    suite = data.get("suite")
    if suite:
        lines += ["", "## 3. Suite wall time per device (default entries; s)", "",
                  "In cases: pytest's setup + call + teardown of every item (junit.xml); outside: "
                  "process start, imports, collection, report, exit. Other in cases: device "
                  "open/close, cleanup of planted entries, fixtures. CPU: the run's process tree; "
                  "host busy: all CPUs, everyone's load.", "",
                  "| device | runs | cases | wall | in cases | outside cases | "
                  + " | ".join(PHASES) + " | other in cases | CPU s | host busy |",
                  "|---|---|---|---|---|---|" + "---|" * (len(PHASES) + 3)]
        rows = dict(suite["devices"])
        if suite.get("agent_modes"):
            rows[f"{suite['agent_modes']['device']} per call"] = suite["agent_modes"]["per-call"]
        for name, row in rows.items():
            lines.append(f"| {name} | {row['runs']} | {row['cases']} | {_s(row['wall_s'])} | "
                         f"{_s(row['case_total_s'])} | {_s(row['outside_cases_s'])} | "
                         + " | ".join(_s(row["phases_s"][p], 3) for p in PHASES)
                         + f" | {_s(row['case_other_s'], 3)} | {_s(row['cpu_s'])} | {_pct(row['host_busy'])} |")
        modes = suite.get("agent_modes")
        if modes:
            lines += ["", f"Agent modes on {modes['device']}, alternating in the same rounds: serve "
                      f"{_s(modes['serve']['wall_s'])} s, per call {_s(modes['per-call']['wall_s'])} s; "
                      f"per call / serve {_x(modes['per_call_vs_serve'])}. The flush call's own time on "
                      f"the device, over all cases: serve {_ms(modes['serve'].get('flush_device_s'))} ms, "
                      f"per call {_ms(modes['per-call'].get('flush_device_s'))} ms."]
        checks = suite.get("checks")
        if checks:
            lines += ["", f"Issue 12's checks on {suite['reference']}, alternating in the same rounds: every "
                      f"check on (the default) {_s(checks['on']['wall_s'])} s, off (`{checks['off_flags']}`) "
                      f"{_s(checks['off']['wall_s'])} s; on / off {_x(checks['on_vs_off'])}. Each check's own "
                      "cases (pytest setup + call + teardown, summed) in the default runs: "
                      + ", ".join(f"{label} {_s(stats, 3)} s" for label, stats in checks["per_check_s"].items())
                      + "."]
        big = suite.get("big_case")
        if big:
            lines += ["", f"One case at {big['entries_per_family']:,} entries per family on every link of "
                      f"{suite['reference']} (`-k \"{big['select']}\"`): pytest item (setup + call + "
                      f"teardown) {_s(big['case_s'])} s, of which the case record (no evidence, no "
                      f"cleanup) {_s(big['record_duration_s'])} s; process wall {_s(big['wall_s'])} s, "
                      f"CPU {_s(big['cpu_s'])} s; the flush call on the device "
                      f"{_ms(big.get('flush_device_s'))} ms; phases: "
                      + ", ".join(f"{p} {_s(big['phases_s'][p], 3)}" for p in PHASES)]
    scaling = data.get("scaling")
    if scaling:
        lines += ["", "## 4. Scaling (own lab devices, -n = device count)", "",
                  "| devices | wall s | vs one device | CPU s (harness) | host busy |", "|---|---|---|---|---|"]
        for count, row in scaling["devices"].items():
            lines.append(f"| {count} | {_s(row['wall_s'])} | {_x(row['vs_one'])} | {_s(row['cpu_s'])} | "
                         f"{_pct(row['host_busy'])} |")
    growth = data.get("growth")
    if growth:
        lines += ["", f"## 5. Cost growth: one flush case on {growth['device']} (1 link; s)", "",
                  "flush on the device: the flush call's own time as the agent measured it around the "
                  "API call (`elapsed_us`), the cost growth of the implementation under test; flush: "
                  "the harness's round trip around the same call.", "",
                  "| entries/family | flush on the device | pytest item | case record | " + " | ".join(PHASES)
                  + " | process wall |",
                  "|---|---|---|---|" + "---|" * len(PHASES) + "---|"]
        for size, row in growth["sizes"].items():
            lines.append(f"| {int(size):,} | {_s(row.get('flush_device_s'), 4)} | {_s(row['case_s'], 3)} | "
                         f"{_s(row['record_duration_s'], 3)} | "
                         + " | ".join(_s(row["phases_s"][p], 3) for p in PHASES)
                         + f" | {_s(row['wall_s'])} |")
    for name, why in data.get("skipped", {}).items():
        lines.append(f"\n{name}: skipped ({why})")
    failed = _failed_runs(data)
    if failed:
        lines += ["", "Suite runs left out of the numbers (they did not exit 0):", ""]
        lines += [f"- {f}" for f in failed]
    return "\n".join(lines) + "\n"


def _failed_runs(data: dict) -> list[str]:
    rows = list((data.get("suite") or {}).get("devices", {}).values())
    rows += [data["suite"]["big_case"]] if (data.get("suite") or {}).get("big_case") else []
    rows += [data["suite"]["agent_modes"]["per-call"]] if (data.get("suite") or {}).get("agent_modes") else []
    rows += list((data.get("scaling") or {}).get("devices", {}).values())
    rows += list((data.get("growth") or {}).get("sizes", {}).values())
    return [f for row in rows for f in row["failed_runs"]]


def write_charts(data: dict, out: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)

    def log_axis(ax):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())

    def bars(ax, labels, stats, scale=1.0):
        med = [s["median"] * scale for s in stats]
        lo = [(s["median"] - s["p10"]) * scale for s in stats]
        hi = [(s["p90"] - s["median"]) * scale for s in stats]
        ax.barh(labels, med, xerr=[lo, hi], color="#4c78a8", capsize=3)
        ax.invert_yaxis()

    if rtt := data.get("rtt"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for ax, label in zip(axes, ("true", "table")):
            rows = rtt["commands"][label]
            bars(ax, list(rows), [r["seconds"] for r in rows.values()], 1e3)
            log_axis(ax)
            ax.set_xlabel("ms per command (median, p10-p90)")
            ax.set_title(f"`{label}` round trip on {rtt['device']}")
        save(fig, "rtt.png")
    if verbs := (data.get("verbs") or {}).get("devices"):
        fig, axes = plt.subplots(len(verbs), 2, figsize=(11, 2.6 * len(verbs) + 0.6), squeeze=False)
        for row_axes, (name, row) in zip(axes, verbs.items()):
            for ax, verb in zip(row_axes, ("ping", "table")):
                rows = row["verbs"][verb]
                bars(ax, list(rows), [r["seconds"] for r in rows.values()], 1e3)
                log_axis(ax)
                ax.set_xlabel("ms per verb (median, p10-p90)")
                what = f"`table` ({row['table_entries']} entries)" if verb == "table" else "`ping`"
                ax.set_title(f"{what} on {name}")
        save(fig, "verbs.png")
    if seeding := data.get("seeding"):
        sizes = list(seeding["sizes"])
        fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 3.8), squeeze=False)
        for ax, size in zip(axes[0], sizes):
            rows = seeding["sizes"][size]
            ok = {n: r for n, r in rows.items() if r["rate"]["median"]}
            bars(ax, list(ok), [r["rate"] for r in ok.values()])
            log_axis(ax)
            ax.set_xlabel("entries/s landed (median, p10-p90)")
            ax.set_title(f"{int(size):,}/family ({2 * int(size):,} entries)")
        save(fig, "seeding.png")
    if suite := data.get("suite"):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        rows = dict(suite["devices"])
        if suite.get("agent_modes"):
            rows[f"{suite['agent_modes']['device']} per call"] = suite["agent_modes"]["per-call"]
        if suite.get("big_case"):
            rows[f"1 case @ {suite['big_case']['entries_per_family']}"] = suite["big_case"]
        left = [0.0] * len(rows)
        for part in (*PHASES, "other in cases", "outside cases"):
            key = {"other in cases": "case_other_s", "outside cases": "outside_cases_s"}.get(part)
            widths = [(r[key] if key else r["phases_s"][part])["median"] or 0 for r in rows.values()]
            ax.barh(list(rows), widths, left=left, label=part)
            left = [a + b for a, b in zip(left, widths)]
        ax.invert_yaxis()
        ax.set_xlabel("seconds (medians; other in cases = device open/close, cleanup, fixtures; "
                      "outside = start, imports, report)", fontsize=8)
        ax.legend(fontsize=7, ncol=4)
        ax.set_title("suite wall time, by phase")
        save(fig, "suite.png")
    if scaling := data.get("scaling"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        counts = [int(c) for c in scaling["devices"]]
        walls = [r["wall_s"]["median"] for r in scaling["devices"].values()]
        ax.plot(counts, walls, "o-", label="measured")
        ax.plot(counts, [walls[0] * 1.5] * len(counts), "--", label="target: 1.5x one device")
        ax.set_xticks(counts)
        ax.set_xlabel("devices (-n = devices)")
        ax.set_ylabel("wall s")
        ax.legend()
        ax.set_title("scaling")
        save(fig, "scaling.png")
    if growth := data.get("growth"):
        fig, ax = plt.subplots(figsize=(7, 4))
        sizes = [int(s) for s in growth["sizes"]]
        rows = list(growth["sizes"].values())
        ax.plot(sizes, [r["case_s"]["median"] for r in rows], "o-", color="black", label="case total")
        device = [(r.get("flush_device_s") or {}).get("median") for r in rows]
        if any(device):
            # a colour the phases' cycle does not use: this line is the implementation's own cost
            ax.plot([s for s, d in zip(sizes, device) if d], [d for d in device if d], "s-", color="#bcbd22",
                    linewidth=2.5, label="flush on the device (agent's elapsed_us)")
        for phase in PHASES:
            ax.plot(sizes, [max(r["phases_s"][phase]["median"] or 0, 1e-5) for r in rows], ".--", label=phase)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("entries per family on the link")
        ax.set_ylabel("seconds (median)")
        ax.legend(fontsize=7, loc="lower right", ncol=2)
        ax.set_title(f"flush case cost vs entries ({growth['device']})")
        save(fig, "growth.png")
    return written


