"""How much the bench measures: the full run, and --quick."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    quick: bool
    rtt_rounds: int
    rtt_warmup: int
    seed_sizes: tuple[int, ...]          # entries per family on one link
    seed_rounds: int
    sendp_sample: int                    # frames sent with one sendp() each, then extrapolated
    scapy_cap: int                       # other scapy contenders: at most this many frames
    suite_rounds: int
    big_entries: int | None              # the one flush case at this many entries (None: skip)
    big_rounds: int
    scale_counts: tuple[int, ...]        # device counts; () skips scaling
    scale_rounds: int
    growth_sizes: tuple[int, ...]
    growth_rounds: int
    verb_rounds: int = 40                # agent verbs: serve / per call / ControlMaster
    verb_warmup: int = 3

    @classmethod
    def full(cls) -> "Settings":
        # rtt holds linux-a's suite lock: 20 rounds keep that under 20 s (others wait 30 s).
        return cls(quick=False, rtt_rounds=20, rtt_warmup=3, seed_sizes=(1024, 16384),
                   seed_rounds=3, sendp_sample=150, scapy_cap=2048, suite_rounds=3, big_entries=16384,
                   big_rounds=3, scale_counts=(1, 2, 4), scale_rounds=3,
                   growth_sizes=(64, 256, 1024, 4096, 16384), growth_rounds=2)

    @classmethod
    def quick_mode(cls) -> "Settings":
        # --quick: fewer repetitions, no 16,384-entry and no multi-device parts.
        return cls(quick=True, rtt_rounds=8, rtt_warmup=1, seed_sizes=(1024,), seed_rounds=1,
                   sendp_sample=40, scapy_cap=2048, suite_rounds=1, big_entries=None, big_rounds=0,
                   scale_counts=(), scale_rounds=0, growth_sizes=(64, 1024), growth_rounds=1,
                   verb_rounds=10, verb_warmup=1)
