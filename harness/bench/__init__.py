"""`neighcheck bench`: the harness measured against the alternatives, on this machine.

Six comparisons, one module each: rtt (command round trips), verbs (agent verbs in serve mode,
per call, and through a ControlMaster), seeding (entries/s landing in a table), suite
(`neighcheck run` wall time per device, serve against per-call agent mode, and one case at
16,384 entries per family), scaling (1, 2 and 4 devices) and growth (one case versus entries
per link, with the flush call's own time on the device). Each is
measured in ONE run with its contenders alternating (A B C, B C A, ...; stats.rotate), so load
from other jobs on the machine lands on every contender alike, and each ratio is taken between
samples of the same round (paired), not between runs.

Seeding, scaling and growth run on the bench's own lab (ownlab.py), so they never touch the
shared devices' tables; round trips and the suite run on the reference device (linux-a of
--devices). Output: <out>/<run-id>/bench.json, bench.md and the charts (render.py); the table
is printed. Exit 0 when every judged target passes, 1 when one is short.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.bench.growth import bench_growth
from harness.bench.ownlab import OwnLab
from harness.bench.render import render_markdown, write_charts
from harness.bench.rtt import bench_rtt, reference_lock, rtt_targets
from harness.bench.scaling import bench_scaling, scaling_targets
from harness.bench.seeding import bench_seeding, seeding_targets
from harness.bench.settings import Settings
from harness.bench.stats import host_load
from harness.bench.suite import bench_suite, suite_targets
from harness.bench.verbs import bench_all_verbs, verb_targets
from harness.errors import NeighcheckError, UsageError
from harness.inventory import load_inventory
from harness.lab.netns import Lab
from harness.plugin.results import new_run_id


def _reference_device(inventory):
    names = [d.name for d in inventory.devices]
    if "linux-a" in names:
        return inventory.device("linux-a")
    for device in inventory.devices:
        if device.os == "linux":
            return device
    raise UsageError(f"{inventory.path}: the bench needs a Linux device (has: {', '.join(names)})")


def run_bench(settings: Settings, out_root: Path, *, reference_inventory: Path | None,
              own: OwnLab, lock_wait: float = 600.0, log: Callable[[str], None] = print) -> tuple[int, Path]:
    """Run the benchmark; returns (exit code, run directory).

    reference_inventory: the devices for the round-trip and suite parts (its linux-a, else its
    first Linux device); None: use the bench's own first device for them as well.
    """
    Lab.require_root()
    try:
        import matplotlib  # noqa: F401  (fail before measuring, not after)
    except ImportError:
        raise UsageError("bench: matplotlib is missing (pip install -e '.[bench]'; make bench does)") from None
    if ".." in out_root.parts:
        raise UsageError(f"--out {out_root}: '..' is not allowed")
    run_id = new_run_id()
    out = out_root / run_id
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"schema": "neighcheck-bench/1", "run_id": run_id, "host": socket.gethostname(),
                            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "settings": dataclasses.asdict(settings), "load_start": host_load(),
                            "sections": {}, "skipped": {}}
    ref_inventory = load_inventory(reference_inventory) if reference_inventory else None

    def section(name: str, fn: Callable[[], dict]) -> None:
        before = host_load()
        t0 = time.perf_counter()
        data[name] = fn()
        data["sections"][name] = {"seconds": time.perf_counter() - t0, "load_before": before,
                                  "load_after": host_load()}
        log(f"{name}: done in {data['sections'][name]['seconds']:.1f} s "
            f"(load {before['load1']:.2f} -> {data['sections'][name]['load_after']['load1']:.2f})")

    with own.held(lock_wait, log) as own_lab:
        own_inventory = own_lab.lab.inventory
        shutil.copyfile(own_lab.path, out / "own-lab.toml")
        ref_lab_to_take_down = None
        try:
            if ref_inventory is not None:
                ref_lab = Lab(ref_inventory)
                lab_devices = ref_inventory.lab_devices
                if lab_devices and not ref_lab.is_up(lab_devices):
                    ref_lab.up()
                    ref_lab_to_take_down = ref_lab
            first_own = own_inventory.devices[0]
            reference = _reference_device(ref_inventory) if ref_inventory else first_own
            # On the own lab, the suite part runs on its first device only.
            suite_inventory = ref_inventory or dataclasses.replace(own_inventory, devices=(first_own,))
            data["reference_device"] = reference.name

            def rtt():
                with reference_lock(reference):
                    return bench_rtt(reference, settings, out, log)

            section("rtt", rtt)
            section("verbs", lambda: bench_all_verbs(reference, ref_inventory or own_inventory, settings, log))
            section("seeding", lambda: bench_seeding(own_inventory, first_own, settings, log))
            section("suite", lambda: bench_suite(suite_inventory, reference.name, settings, out, log))
            if settings.scale_counts and own.count >= max(settings.scale_counts):
                section("scaling", lambda: bench_scaling(own_inventory, own.names(), settings, out, log))
            else:
                data["skipped"]["scaling"] = "--quick" if settings.quick else "too few own lab devices"
            section("growth", lambda: bench_growth(own_inventory, first_own.name, settings, out, log))
        finally:
            if ref_lab_to_take_down is not None:
                try:
                    ref_lab_to_take_down.down()
                except NeighcheckError as exc:
                    log(f"bench: lab down: {exc}")
    data["load_end"] = host_load()
    data["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    targets = (rtt_targets(data["rtt"]) + verb_targets(data.get("verbs"))
               + seeding_targets(data.get("seeding"), settings)
               + suite_targets(data["suite"], settings) + scaling_targets(data.get("scaling"), settings))
    data["targets"] = [t.to_dict() for t in targets]
    data["charts"] = write_charts(data, out)
    (out / "bench.json").write_text(json.dumps(data, indent=1))
    table = render_markdown(data)
    (out / "bench.md").write_text(table)
    log(table)
    log(f"bench: {out}")
    return (1 if any(t.verdict == "short" for t in targets) else 0), out


def main(args) -> int:
    settings = Settings.quick_mode() if args.quick else Settings.full()
    devices = Path(args.devices)
    if not devices.is_file():
        raise UsageError(f"{devices}: inventory file not found; pass --devices FILE")
    own = OwnLab(first=1, count=max(settings.scale_counts, default=1))
    code, _ = run_bench(settings, Path(args.out), reference_inventory=devices, own=own)
    return code
