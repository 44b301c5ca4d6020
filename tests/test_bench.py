"""The benchmark's own plumbing: statistics, targets, and one tiny run on a lab of its own.

The smoke run uses the bench's own-lab identity nckP-5 (namespace nck-nckP-5, links nck-p5-*,
198.18.225.0/24 and 198.18.235.0/24), never the shared devices, with --quick-like tiny settings.
It checks that every part measured something real, that relations which must hold on any
machine hold, that the files are written, and that nothing is left behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest

from harness.bench import run_bench
from harness.bench.ownlab import OwnLab
from harness.bench.settings import Settings
from harness.bench.stats import Target, paired_ratio, rotate, summarize
from harness.cli import main as cli_main


# --- pure parts -------------------------------------------------------------------------------
def test_summary_gives_median_and_inclusive_p10_p90():
    stats = summarize([float(v) for v in range(1, 12)])  # 1..11
    assert (stats["n"], stats["median"], stats["p10"], stats["p90"]) == (11, 6.0, 2.0, 10.0)
    assert summarize([3.0])["p10"] == summarize([3.0])["p90"] == 3.0
    assert summarize([])["median"] is None


def test_ratios_are_paired_by_round():
    # Round 2 ran under load for both contenders: paired ratios stay 4x, unpaired medians would not.
    assert paired_ratio([4.0, 40.0, 4.0], [1.0, 10.0, 1.0])["median"] == 4.0
    assert paired_ratio([1.0, None], [2.0, 1.0])["n"] == 1


def test_target_verdicts():
    assert Target("t", 1.2, 1.3, "<=").verdict == "pass"
    assert Target("t", 1.31, 1.3, "<=").verdict == "short"
    assert Target("t", 2.9, 3, ">=").verdict == "short"
    assert Target("t", None, 3, ">=").verdict == "not measured"


def test_contenders_alternate_and_take_turns_going_first():
    assert [rotate("ABC", n) for n in range(3)] == [list("ABC"), list("BCA"), list("CAB")]


def test_bench_with_a_missing_inventory_is_a_usage_error(tmp_path, capsys):
    assert cli_main(["bench", "--devices", str(tmp_path / "missing.toml")]) == 2
    assert "inventory file not found" in capsys.readouterr().err


# --- a tiny run against a lab of its own -------------------------------------------------------
SMOKE_LAB = OwnLab(first=5, count=1)
TINY = dataclasses.replace(Settings.quick_mode(), rtt_rounds=3, rtt_warmup=1, seed_sizes=(64,),
                           sendp_sample=10, growth_sizes=(64,), verb_rounds=5)


@pytest.mark.lab
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, veth, sshd)")
def test_quick_bench_measures_every_part_and_leaves_nothing_behind(tmp_path):
    lines: list[str] = []
    code, out = run_bench(TINY, tmp_path, reference_inventory=None, own=SMOKE_LAB,
                          lock_wait=120, log=lines.append)
    data = json.loads((out / "bench.json").read_text())

    # 1. round trips: every contender ran both commands, and a connection per command costs
    # more than a command on a kept connection (a handshake against none, on any machine).
    rtt = data["rtt"]["commands"]
    for label in ("true", "table"):
        for name, row in rtt[label].items():
            assert row["seconds"]["n"] == TINY.rtt_rounds and row["seconds"]["median"] > 0, (label, name)
        assert (rtt[label]["OpenSSH fresh connection"]["seconds"]["median"]
                > rtt[label]["paramiko + TCP_NODELAY (floor)"]["seconds"]["median"])
    assert data["rtt"]["table_reply_bytes"]["median"] > 20

    # 1b. agent verbs: serve answered every round from one process, the table read was topped
    # up to its size, and a verb through serve costs less than a process started for it.
    [verbs] = data["verbs"]["devices"].values()
    assert (verbs["serve_processes"], verbs["table_entries"]) == (1, 20)
    for verb in ("ping", "table"):
        rows = verbs["verbs"][verb]
        assert set(rows) == {"serve (resident agent)", "per call (harness)", "per call via OpenSSH ControlMaster"}
        assert all(r["seconds"]["n"] == TINY.verb_rounds for r in rows.values())
        assert rows["per call (harness)"]["vs_serve"]["median"] > 1, verb

    # 2. seeding: every contender's entries were seen in the device table.
    rows = data["seeding"]["sizes"]["64"]
    assert set(rows) == {"harness Seeder", "raw AF_PACKET, prebuilt (floor)", "scapy L2 socket, reused",
                         "scapy sendp(list)", "scapy sendp per packet"}
    for name, row in rows.items():
        assert row["landed_all"], name
        assert row["rate"]["median"] > 0 and row["verify_s"]["median"] >= 0
    assert rows["scapy sendp per packet"]["extrapolated"] and rows["scapy sendp per packet"]["frames_sent"] == 10
    assert rows["harness Seeder"]["landed"] == [128]

    # 3 and 5. suite runs passed, and their breakdown adds up to no more than the wall time.
    suite = data["suite"]["devices"][SMOKE_LAB.names()[0]]
    assert suite["failed_runs"] == [] and suite["cases"] > 10
    modes = data["suite"]["agent_modes"]
    assert (modes["serve"]["agent_modes"], modes["per-call"]["agent_modes"]) == (["serve"], ["per-call"])
    assert modes["per-call"]["failed_runs"] == [] and modes["per_call_vs_serve"]["n"] == TINY.suite_rounds
    assert modes["serve"]["flush_device_s"]["n"] > 5 and modes["serve"]["flush_device_s"]["median"] > 0
    phases = sum(p["median"] for p in suite["phases_s"].values())
    assert 0 < phases <= suite["case_total_s"]["median"] <= suite["wall_s"]["median"]
    assert data["growth"]["sizes"]["64"]["case_s"]["median"] > 0
    assert 0 < data["growth"]["sizes"]["64"]["flush_device_s"]["median"] < data["growth"]["sizes"]["64"]["case_s"]["median"]
    assert data["skipped"] == {"scaling": "--quick"}

    # Targets: judged where measured; the exit code says whether one is short.
    verdicts = {t["name"]: t["verdict"] for t in data["targets"]}
    assert verdicts["seeding 16,384/family: harness entries/s landed"] == "not measured"
    assert verdicts["rtt `true`: fresh ssh / harness"] in ("pass", "short")
    assert code == (1 if "short" in verdicts.values() else 0)

    # Files: the Markdown table (also printed) and real PNG charts.
    table = (out / "bench.md").read_text()
    assert "| target | measured | limit | verdict |" in table and table in "\n".join(lines) + "\n"
    for chart in ("rtt.png", "verbs.png", "seeding.png", "suite.png", "growth.png"):
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
    assert data["load_start"]["cpus"] and "load average" in data["load_start"]["uptime"]

    # Nothing left: namespace, links, the lab's state and inventory, the ControlMaster.
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "nck-nckP-5" not in netns
    assert not [link for link in os.listdir("/sys/class/net") if link.startswith("nck-p5-")]
    assert not SMOKE_LAB.state_dir.exists() and not SMOKE_LAB.inventory_path.exists()
    masters = subprocess.run(["pgrep", "-f", data["rtt"]["control_path"]], capture_output=True)
    assert masters.returncode == 1, "the ControlMaster is still running"
