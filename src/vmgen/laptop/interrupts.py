"""Cleanups that a second Ctrl-C must not cut short.

The first Ctrl-C stops a launch; what it made is then removed. A user who presses Ctrl-C again
because that takes a few seconds would otherwise leave half of it behind (a volume without its
container, local state without a workspace). While a cleanup runs, Ctrl-C is noted and answered
with a line, not obeyed; the interrupt that started the cleanup still ends the command after it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def interrupts_deferred(what: str) -> Iterator[None]:
    """Run the block with Ctrl-C answered by a line ("still <what> ...") instead of raised."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals; a worker's cleanup cannot be interrupted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        # Straight to the descriptor: the interrupt may have come in the middle of a print, and
        # Python's buffered stderr must not be entered again from here.
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), f"\nstill {what}: Ctrl-C does not stop this, it ends in a moment\n".encode())

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
