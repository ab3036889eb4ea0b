"""Waiting for a condition outside the test's control (a remote VM, another process), where no
event can be subscribed to: poll with a deadline, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(read: Callable[[], T], ok: Callable[[T], bool], timeout: float = 10.0, every: float = 0.05) -> T:
    """Poll `read` until `ok(value)`; the last value is returned for the assertion message."""
    deadline = time.monotonic() + timeout
    value = read()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(every)
        value = read()
    return value


def eventually(check: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> None:
    """Like wait_until for a yes/no condition, failing with what was awaited."""
    if not wait_until(check, bool, timeout, interval):
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
