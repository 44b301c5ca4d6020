"""The tests' bounded wait: an assertion that names what never happened."""

from __future__ import annotations

from collections.abc import Callable

from harness.waits import poll_until


def wait_for(check: Callable[[], object], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll `check` until it is truthy; AssertionError naming `what` after `timeout` seconds."""
    if not poll_until(check, timeout=timeout, delay=step):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
