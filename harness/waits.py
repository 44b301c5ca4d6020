"""The one bounded wait of the harness: poll a check until it holds or the time is up.

Every network or process wait goes through here, so none of them can hang.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll_until(check: Callable[[], T], *, timeout: float, delay: float = 0.02,
               max_delay: float | None = None, backoff: float = 1.0) -> T:
    """Call `check` until it returns something truthy, and return that; at `timeout` seconds
    return its last (falsy) answer. Sleeps `delay` between calls, multiplied by `backoff` each
    time up to `max_delay`."""
    deadline = time.monotonic() + timeout
    cap = max_delay if max_delay is not None else delay
    while True:
        answer = check()
        remaining = deadline - time.monotonic()
        if answer or remaining <= 0:
            return answer
        time.sleep(min(delay, remaining))
        delay = min(delay * backoff, max(cap, delay))
