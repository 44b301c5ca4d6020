"""Seeding benchmark (a script, not a test): `python tests/bench_seeding.py [--runs N]`.

Needs root. Builds the seeding lab of tests/support/seedlab.py (prefix nckB), then for each
size seeds the device from an empty table and prints medians over the runs:
- send: Seeder.send() wall time, frame building included (end to end), with the default
  workers and with one worker;
- verify: verify_present() reading the table with `ip -j neigh` in the namespace;
- drops: frames lost on the veth (both ends) and in the kernel backlog (softnet_stat).
Sizes are entries per family; the entry count is twice that (IPv4 + IPv6).
Then the responder under a probe burst: every IPv6 seed is probed about 5 s after seeding,
once with the host's netdev_max_backlog and once with it raised (restored afterwards).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from harness.contract.clauses import AF_INET6  # noqa: E402
from harness.traffic.responder import Responder  # noqa: E402
from harness.traffic.seeding import Seeder, address_plan, missing_seeds, verify_present  # noqa: E402
from tests.support.netns import ip_json  # noqa: E402
from tests.support.seedlab import SeedLab, backlog_room, neigh_gc_room, parsed, seed_lab  # noqa: E402
from tests.support.waits import wait_for  # noqa: E402


def link_drops(lab: SeedLab) -> int:
    total = 0
    for ns, name in ((None, lab.harness_if), (lab.netns, lab.device_if)):
        stats = ip_json(ns, "-s", "link", "show", name)[0]["stats64"]
        total += stats["rx"]["dropped"] + stats["tx"]["dropped"]
    return total


def backlog_drops() -> int:
    # Second column of /proc/net/softnet_stat: frames dropped because the backlog was full.
    return sum(int(line.split()[1], 16) for line in Path("/proc/net/softnet_stat").open())


def empty_table(lab: SeedLab, timeout: float = 10.0) -> None:
    def emptied() -> bool:
        lab.flush()
        return not lab.neighbors()
    wait_for(emptied, timeout, "the device table to empty")


def bench_size(lab: SeedLab, seeders: dict[str, Seeder], per_family: int, runs: int) -> dict:
    plan = address_plan(0, per_family, lab.link)
    send: dict[str, list[float]] = {name: [] for name in seeders}
    verify, polls, drops = [], [], []
    for _ in range(runs):
        for name, seeder in seeders.items():  # alternate, so load from elsewhere hits both
            empty_table(lab)
            time.sleep(0.2)  # let the flush's own work settle before timing
            before = link_drops(lab) + backlog_drops()
            started = time.perf_counter()
            seeder.send(lab.link, plan)
            send[name].append(time.perf_counter() - started)
            result = verify_present(lambda: parsed(lab.neighbors()), lab.device_ifindex, plan, timeout=20.0)
            verify.append(result.seconds)
            polls.append(result.polls)
            drops.append(link_drops(lab) + backlog_drops() - before)
    n = len(plan)
    return {"per_family": per_family, "entries": n,
            **{f"send_s_{name}": statistics.median(times) for name, times in send.items()},
            "verify_s": statistics.median(verify), "verify_polls": statistics.median(polls),
            "drops_max": max(drops)}


def bench_responder(lab: SeedLab, seeder: Seeder, per_family: int, wait: float) -> dict:
    """Seed IPv6 entries with the responder serving them; the device probes each one about
    5 s later (DELAY -> PROBE). Count what survived and what the responder saw."""
    plan = [e for e in address_plan(1, per_family, lab.link) if e.family == AF_INET6]
    empty_table(lab)
    with Responder([lab.harness_if]) as responder:
        responder.serve(lab.link, plan)
        seeder.send(lab.link, plan)
        time.sleep(wait)
        rows = lab.neighbors()
        stats = responder.stats
    lost = missing_seeds(parsed(rows), lab.device_ifindex, plan)
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    return {"v6_seeds": len(plan), "after_s": wait, "lost": len(lost), "states": states,
            "answered_ns": stats.answered_ns, "socket_drops": stats.dropped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 8192, 16384],
                        help="entries per family")
    parser.add_argument("--responder-size", type=int, default=16384,
                        help="IPv6 seeds for the probe-burst run (0 skips it)")
    args = parser.parse_args()

    with seed_lab(tag="b") as lab, neigh_gc_room(max(args.sizes + [args.responder_size])), \
            Seeder([lab.harness_if]) as default, Seeder([lab.harness_if], workers=1) as single:
        seeders = {"default": default, "single": single}
        for seeder in seeders.values():  # warm-up: sockets, code paths
            seeder.send(lab.link, address_plan(0, 1024, lab.link))
        print(f"{'per family':>10} {'entries':>8} {'send s':>8} {'send/s':>9} "
              f"{'1 worker/s':>10} {'verify s':>9} {'verify/s':>9} {'polls':>5} {'drops':>5}")
        for size in args.sizes:
            r = bench_size(lab, seeders, size, args.runs)
            n = r["entries"]
            print(f"{r['per_family']:>10} {n:>8} {r['send_s_default']:>8.4f} "
                  f"{n / r['send_s_default']:>9.0f} {n / r['send_s_single']:>10.0f} "
                  f"{r['verify_s']:>9.3f} {n / r['verify_s']:>9.0f} {r['verify_polls']:>5.0f} "
                  f"{r['drops_max']:>5}")
        print(f"medians over {args.runs} runs; send = Seeder.send() with frame building "
              f"(default workers: {default.workers}); verify = verify_present() via "
              f"`ip -j neigh`; drops = frames lost on the veth or backlog, worst run")
        if args.responder_size:
            for label, room in (("host backlog", contextlib.nullcontext()),
                                ("raised backlog", backlog_room(args.responder_size))):
                with room:
                    backlog = Path("/proc/sys/net/core/netdev_max_backlog").read_text().strip()
                    before = backlog_drops()
                    r = bench_responder(lab, default, args.responder_size, wait=12.0)
                print(f"responder, {label} ({backlog}): {r['v6_seeds']} IPv6 seeds, "
                      f"{r['after_s']:.0f} s later {r['lost']} lost, states {r['states']}, "
                      f"answered {r['answered_ns']} NS, socket drops {r['socket_drops']}, "
                      f"backlog drops {backlog_drops() - before}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as exc:  # a lab command failed or a wait timed out: say which
        sys.exit(f"bench failed: {exc}")
