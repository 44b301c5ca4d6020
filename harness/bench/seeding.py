"""2. Seeding one link: entries/s landing in a device table, for the harness Seeder, scapy
`sendp` per packet, scapy `sendp(list)`, a reused scapy L2 socket, and the floor (prebuilt
frames on a raw AF_PACKET socket). Every contender sends byte-identical frames (checked). An
entry counts when the agent's `table` shows it (the harness's one rule, missing_seeds); send
and verify time are reported apart; the link is flushed between contenders. scapy's cost is
per packet whatever the table size, so past a cap it sends a sample and its rate is
extrapolated (marked so)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from harness.bench.settings import Settings
from harness.bench.stats import Target, paired_ratio, rotate, summarize
from harness.contract.clauses import AF_INET
from harness.contract.status import Outcome
from harness.device.agent import make_agent
from harness.errors import DeviceError, SeedingError
from harness.ssh import SshSession
from harness.traffic.responder import Responder
from harness.traffic.seeding import (LinkTarget, Seeder, address_plan, check_test_link, open_link_socket,
                                     seed_frames, wait_landed)
from harness.waits import poll_until

SEED_FAMILIES = 2  # every plan seeds IPv4 and IPv6: entries on a link = 2 x entries per family


@dataclass
class SeedSample:
    contender: str
    size: int                # entries per family
    sent: int                # frames sent (= entries asked for)
    send_s: float
    verify_s: float
    landed: int
    polls: int                         # table reads until all showed (1: landed during the send)
    build_s: float | None = None       # scapy contenders: building the packets (inside send_s)
    extrapolated: bool = False

    @property
    def rate(self) -> float | None:
        return self.landed / self.send_s if self.landed == self.sent and self.send_s > 0 else None

    @property
    def rate_end_to_end(self) -> float | None:
        total = self.send_s + self.verify_s
        return self.landed / total if self.landed == self.sent and total > 0 else None


class SeedBench:
    """One link of one own-lab device, its agent, and the contenders that seed it."""

    VERIFY_TIMEOUT = 20.0

    def __init__(self, inventory, device):
        self.inventory, self.device = inventory, device
        self.allowed = inventory.test_interfaces
        self.session = SshSession(device.name, device.ssh)
        self.session.connect()
        self.agent = make_agent(device, self.session, inventory)
        link = device.links[0]
        iface = next(i for i in self.agent.interfaces() if i["name"] == link.device_if)
        self.ifindex = int(iface["index"])
        self.target = LinkTarget(harness_if=link.harness_if, device_mac=str(iface["mac"]).lower(),
                                 device_v4=str(link.device_v4.ip), device_v6=str(link.device_v6.ip),
                                 v6_network=str(link.device_v6.network))
        self.seeder = Seeder(self.allowed)
        self.responder = None
        self._l2 = None

    def close(self) -> None:
        if self.responder is not None:
            self.responder.stop()
        if self._l2 is not None:
            self._l2.close()
        self.seeder.close()
        try:
            self.agent.flush(0, self.ifindex)
        finally:
            self.session.close()

    # --- table side -----------------------------------------------------------------------
    def rows(self):
        return self.agent.table(0).entries

    def verify(self, entries) -> tuple[float, int, int]:
        """Seconds until the table shows every entry as seeded, how many landed, table reads."""
        landing = wait_landed(self.rows, self.ifindex, entries, timeout=self.VERIFY_TIMEOUT,
                              delay=0.01, max_delay=0.25)
        return landing.seconds, len(entries) - len(landing.missing), landing.polls

    def flush(self, plan) -> None:
        """Flush the link and wait (bounded) until no seeded address is left on it."""
        wanted = {(e.family, e.address) for e in plan}
        left: list = []

        def emptied() -> bool:
            nonlocal left
            reply = self.agent.flush(0, self.ifindex)
            if reply.outcome is not Outcome.SUCCESS:
                raise DeviceError(f"bench: flush on {self.device.name} returned {reply.raw}")
            left = [r for r in self.rows() if r.ifindex == self.ifindex and (r.family, r.address) in wanted]
            return not left

        if not poll_until(emptied, timeout=10, delay=0.05):
            raise SeedingError(f"bench: {len(left)} seeded entries survive flushes on {self.device.name}")

    # --- contenders ---------------------------------------------------------------------------
    def serve(self, plan) -> None:
        if self.responder is None:
            self.responder = Responder(self.allowed)
            self.responder.start()
        self.responder.serve(self.target, plan)  # keeps IPv6 seeds alive (DESIGN.md §3)

    def harness(self, plan) -> tuple[float, float | None]:
        stats = self.seeder.send(self.target, plan)
        return stats.seconds, None

    def floor(self, plan) -> tuple[float, float | None]:
        frames = seed_frames(self.target, plan)  # prebuilt: only sending is timed
        check_test_link(self.target.harness_if, self.allowed)
        with open_link_socket(self.target.harness_if) as sock:
            send = sock.send
            t0 = time.perf_counter()
            for frame in frames:
                send(frame)
            return time.perf_counter() - t0, None

    def scapy_packets(self, plan) -> list:
        from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
        from scapy.layers.l2 import ARP, Ether
        t = self.target
        return [Ether(dst=t.device_mac, src=e.lladdr)
                / ARP(hwsrc=e.lladdr, psrc=e.address, hwdst="00:00:00:00:00:00", pdst=t.device_v4)
                if e.family == AF_INET else
                Ether(dst=t.device_mac, src=e.lladdr) / IPv6(src=e.address, dst=t.device_v6, hlim=255)
                / ICMPv6ND_NS(tgt=t.device_v6) / ICMPv6NDOptSrcLLAddr(lladdr=e.lladdr)
                for e in plan]

    def check_same_frames(self, plan) -> None:
        """Every contender must send the very same bytes, or the comparison is not fair."""
        # Both families, in seed_frames' order (IPv4 first).
        sample = sorted(plan[:3] + plan[-3:], key=lambda e: e.family)
        scapy_frames = [bytes(p) for p in self.scapy_packets(sample)]
        if scapy_frames != seed_frames(self.target, sample):
            raise SeedingError("bench: scapy-built frames differ from the harness's; "
                               "the seeding comparison would not be fair")

    def scapy_l2(self, plan) -> tuple[float, float | None]:
        from scapy.config import conf
        check_test_link(self.target.harness_if, self.allowed)
        if self._l2 is None:
            self._l2 = conf.L2socket(iface=self.target.harness_if)  # opened once, reused
        t0 = time.perf_counter()
        packets = self.scapy_packets(plan)
        t1 = time.perf_counter()
        for packet in packets:
            self._l2.send(packet)
        return time.perf_counter() - t0, t1 - t0

    def scapy_sendp_list(self, plan) -> tuple[float, float | None]:
        from scapy.sendrecv import sendp
        check_test_link(self.target.harness_if, self.allowed)
        t0 = time.perf_counter()
        packets = self.scapy_packets(plan)
        t1 = time.perf_counter()
        sendp(packets, iface=self.target.harness_if, verbose=False)
        return time.perf_counter() - t0, t1 - t0

    def scapy_sendp_each(self, plan) -> tuple[float, float | None]:
        from scapy.sendrecv import sendp
        check_test_link(self.target.harness_if, self.allowed)
        t0 = time.perf_counter()
        for packet in self.scapy_packets(plan):
            sendp(packet, iface=self.target.harness_if, verbose=False)
        return time.perf_counter() - t0, None


def _sample_plan(plan, count: int):
    """`count` entries taken evenly from both families of a plan."""
    v4 = [e for e in plan if e.family == AF_INET]
    v6 = [e for e in plan if e.family != AF_INET]
    half = count // 2
    return v4[:half] + v6[:count - half]


def bench_seeding(inventory, device, settings: Settings, log: Callable[[str], None]) -> dict:
    bench = SeedBench(inventory, device)
    samples: list[SeedSample] = []
    try:
        contenders: dict[str, Callable] = {
            "harness Seeder": bench.harness,
            "raw AF_PACKET, prebuilt (floor)": bench.floor,
            "scapy L2 socket, reused": bench.scapy_l2,
            "scapy sendp(list)": bench.scapy_sendp_list,
            "scapy sendp per packet": bench.scapy_sendp_each,
        }
        warm = address_plan(0, 8, bench.target)
        bench.check_same_frames(warm)
        bench.serve(warm)
        for send in contenders.values():  # imports, templates, sockets: not what is measured
            send(warm[:2])
        # scapy spends its time per packet (building and encoding objects), whatever the
        # table size: past a cap it is sampled and its rate extrapolated, or one 16,384 run
        # of it would take half a minute.
        caps = {"scapy sendp per packet": settings.sendp_sample,
                "scapy L2 socket, reused": settings.scapy_cap, "scapy sendp(list)": settings.scapy_cap}
        for size in settings.seed_sizes:
            plan = address_plan(0, size, bench.target)
            bench.serve(plan)
            for round_no in range(settings.seed_rounds):
                for name in rotate(list(contenders), round_no):
                    sent = plan
                    extrapolated = caps.get(name, len(plan)) < len(plan)
                    if extrapolated:
                        sent = _sample_plan(plan, caps[name])
                    bench.flush(plan)
                    send_s, build_s = contenders[name](sent)
                    verify_s, landed, polls = bench.verify(sent)
                    samples.append(SeedSample(name, size, len(sent), send_s, verify_s, landed,
                                              polls, build_s, extrapolated))
                log(f"seeding: {size} per family, round {round_no + 1}/{settings.seed_rounds}")
        bench.flush(plan)
    finally:
        bench.close()
    return {"device": device.name, "link": bench.target.harness_if, "rounds": settings.seed_rounds,
            "sendp_sample": settings.sendp_sample, "scapy_cap": settings.scapy_cap, "sizes": _seed_summary(samples, settings),
            "samples": [{**asdict(s), "rate": s.rate, "rate_end_to_end": s.rate_end_to_end}
                        for s in samples]}


def _seed_summary(samples: list[SeedSample], settings: Settings) -> dict:
    out: dict[str, Any] = {}
    for size in settings.seed_sizes:
        mine = [s for s in samples if s.size == size]
        harness = [s for s in mine if s.contender == "harness Seeder"]
        rows = {}
        for name in dict.fromkeys(s.contender for s in mine):
            these = [s for s in mine if s.contender == name]
            rates = [s.rate for s in these]
            rows[name] = {
                "entries": SEED_FAMILIES * size,
                "frames_sent": these[0].sent,
                "extrapolated": these[0].extrapolated,
                "landed_all": all(s.landed == s.sent for s in these),
                "landed": [s.landed for s in these],
                "send_s": summarize([s.send_s for s in these]),
                "build_s": summarize([s.build_s for s in these if s.build_s is not None]),
                "verify_s": summarize([s.verify_s for s in these]),
                "polls": [s.polls for s in these],
                "rate": summarize(rates),
                "rate_end_to_end": summarize([s.rate_end_to_end for s in these]),
                # Time for the whole plan (extrapolated from the sample's rate where sampled).
                "seconds_for_all": summarize([SEED_FAMILIES * size / r for r in rates if r]),
                "harness_speedup": paired_ratio([h.rate for h in harness], rates),
            }
        out[str(size)] = rows
    return out


def seeding_targets(seeding: dict | None, settings: Settings) -> list[Target]:
    rows = (seeding or {}).get("sizes", {}).get("16384")
    note = "" if rows else "skipped (--quick)" if settings.quick else "not measured"
    rate = rows["harness Seeder"]["rate"]["median"] if rows else None
    speedup = rows["scapy L2 socket, reused"]["harness_speedup"]["median"] if rows else None
    return [Target("seeding 16,384/family: harness entries/s landed", rate, 100_000, ">=", "/s", note),
            Target("seeding 16,384/family: harness / reused scapy L2 socket", speedup, 30, ">=", "x", note)]

