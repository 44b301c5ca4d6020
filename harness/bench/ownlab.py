"""The bench's own lab: devices nckP-<first> .. nckP-<first+count-1> (namespaces nck-nckP-N,
links nck-pN-*), a private lab (harness.lab.private) brought up for the run and always taken
down, so seeding, scaling and growth never touch the shared devices' tables.

Addresses: management 198.18.(220+N).0/24, test link 198.18.(230+N).0/24 and
2001:db8:(230+N)::/64 (written in decimal digits, e.g. 2001:db8:231::).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.lab.private import LabDevice, LabLink, PrivateLab


@dataclass(frozen=True)
class OwnLab:
    first: int = 1
    count: int = 4

    def __post_init__(self):
        if not (1 <= self.first and self.first + self.count - 1 <= 9 and self.count >= 1):
            raise UsageError("the bench's own lab holds devices nckP-1 .. nckP-9")

    @property
    def numbers(self) -> range:
        return range(self.first, self.first + self.count)

    def names(self, count: int | None = None) -> list[str]:
        return [f"nckP-{n}" for n in self.numbers][:count]

    @property
    def devices(self) -> tuple[LabDevice, ...]:
        return tuple(LabDevice(f"nckP-{n}", f"nck-p{n}-m", 220 + n,
                               (LabLink("eth1", f"nck-p{n}-t1", 230 + n, f"2001:db8:{230 + n}::"),))
                     for n in self.numbers)

    @property
    def root(self) -> Path:
        # Fixed per identity: a crashed run's lab is found (and cleaned) by the next one.
        return Path(tempfile.gettempdir()) / f"nckP-lab-{self.first}"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def inventory_path(self) -> Path:
        return self.root / "devices.toml"

    def held(self, wait: float, log: Callable[[str], None]) -> AbstractContextManager[PrivateLab]:
        """The lab, up, for one bench at a time per identity (two would tear down each
        other's devices); a failed teardown is logged, not raised."""
        lock = Path("/run/lock") / f"nckP-bench-{self.first}.lock"
        return PrivateLab.held(self.root, self.devices, lock=lock, wait=wait,
                               busy=f"bench: another bench holds {lock} (waited {wait:g} s)",
                               down_problem=lambda problem: log(f"bench: lab down: {problem}"),
                               comment="neighcheck bench: its own lab (harness/bench/ownlab.py; "
                                       "removed after the run)")
