"""The `neighcheck` command: lab, doctor, run, report, bench.

Every user-facing failure ends here as one line on stderr and an exit code (2 for usage and
inventory problems, 1 for device problems), never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from harness import __version__
from harness.errors import NeighcheckError, UsageError
from harness.reports.cli import add_report_commands


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own errors: one line, exit 2
        self.exit(2, f"neighcheck: error: {message} (see {self.prog} --help)\n")


def _inventory(args):
    from harness.inventory import load_inventory
    return load_inventory(args.devices)


def cmd_lab(args) -> int:
    from harness.lab.netns import Lab
    lab = Lab(_inventory(args))
    if args.action == "up":
        started = lab.up()
        print(f"lab up: started {', '.join(started)}" if started else "lab up: already up")
    elif args.action == "down":
        removed = lab.down()
        print(f"lab down: removed {', '.join(removed)}" if removed else "lab down: nothing to remove")
    else:
        rows = lab.status()
        if not rows:
            print("no lab devices in the inventory")
        for row in rows:
            links = " ".join(f"{name}:{'up' if ok else 'missing'}" for name, ok in row.links.items())
            print(f"{row.name:12} {'UP' if row.up else 'DOWN':5} netns={'yes' if row.netns else 'no'} "
                  f"sshd={'yes' if row.sshd else 'no'} {links}")
        return 0 if rows and all(r.up for r in rows) else 3
    return 0


def cmd_doctor(args) -> int:
    from harness.doctor import doctor
    return doctor(_inventory(args), args.device, coordinator=args.lg_coordinator)


def cmd_run(args) -> int:
    from harness.run import run_suite
    extra = list(args.pytest_args or [])
    if extra and extra[0] != "--":  # a stray word would reach pytest as a test path
        raise UsageError(f"run: unexpected argument {extra[0]!r}; pytest options go after -- "
                         "(e.g. neighcheck run -- -k scope)")
    return run_suite(args)


def cmd_bench(args) -> int:
    from harness.bench import main as bench_main
    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neighcheck", description="Conformance harness for FlushIpNetTable2.")
    parser.add_argument("--version", action="version", version=f"neighcheck {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parser.set_defaults(subcommands=sub.choices)  # main() reports stray arguments on their verb

    def with_devices(p):
        p.add_argument("--devices", default="devices.toml", metavar="FILE",
                       help="inventory file (default: ./devices.toml)")
        return p

    lab = with_devices(sub.add_parser("lab", help="bring the embedded lab up or down"))
    lab.add_argument("action", choices=["up", "down", "status"])
    lab.set_defaults(func=cmd_lab)

    doc = with_devices(sub.add_parser("doctor", help="check every device is usable"))
    doc.add_argument("--device", action="append", metavar="NAME", help="only this device (repeatable)")
    doc.add_argument("--lg-coordinator", default=None, metavar="HOST:PORT",
                     help="labgrid coordinator for devices with a place (default: $LG_COORDINATOR)")
    doc.set_defaults(func=cmd_doctor)

    run = with_devices(sub.add_parser("run", help="run the conformance suite and write a report"))
    run.add_argument("--device", action="append", metavar="NAME", help="only this device (repeatable)")
    run.add_argument("-n", dest="workers", default=None, metavar="N",
                     help="parallel workers (pytest-xdist; 'auto' = one per device)")
    run.add_argument("--out", default="reports", metavar="DIR", help="report root (default: reports)")
    run.add_argument("--entries", type=int, default=None, metavar="N",
                     help="seeded entries per family per link (default 32)")
    run.add_argument("--scale-entries", type=int, default=None, metavar="N",
                     help="entries per family per link in the scale cases (default 1024; 0: off)")
    run.add_argument("--settle", type=float, default=None, metavar="S",
                     help="settle window before durable effects are judged (default 0.5 s; 0: off)")
    run.add_argument("--errata", default=None, metavar="FILE", help="known-issues file (default: ./errata.toml)")
    run.add_argument("--agent-mode", choices=("serve", "per-call"), default=None,
                     help="serve (default): one resident agent process per device where the agent "
                          "offers it; per-call: start the agent for every call")
    run.add_argument("--shard", default=None, metavar="K/N",
                     help="run only shard K of N of the devices (sorted by name, dealt round robin)")
    run.add_argument("--lg-coordinator", default=None, metavar="HOST:PORT",
                     help="labgrid coordinator for devices with a place (default: $LG_COORDINATOR, "
                          "else 127.0.0.1:20408)")
    from harness.places import DEFAULT_PLACE_WAIT
    run.add_argument("--place-wait", type=float, default=None, metavar="S",
                     help=f"how long to wait for a device's labgrid place (default {DEFAULT_PLACE_WAIT:g} s)")
    from harness.traffic.capture import PCAP_MODES
    run.add_argument("--pcap", choices=PCAP_MODES, default=None,
                     help="keep test-link traffic per case for failed cases (default), all, or none")
    run.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: passed to pytest")
    run.set_defaults(func=cmd_run)

    bench = with_devices(sub.add_parser("bench", help="benchmark the harness against the alternatives"))
    bench.add_argument("--out", default="reports/bench", metavar="DIR")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions")
    bench.set_defaults(func=cmd_bench)

    add_report_commands(sub)
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame the top-level parser; name the verb's help instead
        verb = args.subcommands.get(getattr(args, "command", None), parser)
        verb.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (also for argparse errors, --help and --version)."""
    try:
        args = _parse(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.func(args) or 0)
    except NeighcheckError as exc:
        print(f"neighcheck: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("neighcheck: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
