"""A bounded-wait exclusive lock on a file of the harness host (flock: released when the
holder exits, so a crashed holder never leaves a stale lock)."""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.errors import UsageError


@contextmanager
def host_lock(path: Path, wait: float, busy: str) -> Iterator[None]:
    """Hold `path` exclusively; after `wait` seconds of someone else holding it, UsageError
    with `busy` (what the user should know about the holder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise UsageError(busy) from None
                time.sleep(0.1)
        yield
