"""A verdict when someone asks for one, not only every interval: `vmgen status` and a launch
about to say "ready" must not show a state from before the agent started.

The watchdog runs as root. The agent user asks through root's control socket (the laptop over
SSH, as the agent); root's handler signals the service's main process and waits until the
state file is written again. A tick on demand changes nothing but the time of the next tick: it
reads what a regular tick reads, and acts only when an action is due anyway.

The signal is SIGURG, whose default action is to ignore it: one that arrives while the service
is still starting (before it blocks the signal to wait for it) is lost, and the asker times out,
rather than killing the watchdog.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from inotify_simple import INotify, flags

from ...contract.documents import WatchdogState
from ...contract.names import UNITS, VmPaths
from ...errors import DocumentError, TickUnavailable

TICK_SIGNAL = signal.SIGURG
MIN_GAP = 1.0  # seconds between two ticks, however often one is asked for
ANSWER_TIMEOUT = 20.0


def main_pid(unit: str = UNITS.idlewatch) -> int:
    shown = subprocess.run(
        ["systemctl", "show", "--property=MainPID", "--value", unit],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
    )
    try:
        return int(shown.stdout.strip() or 0)
    except ValueError:
        return 0


def request_tick(paths: VmPaths, pid: int | None = None, timeout: float = ANSWER_TIMEOUT) -> WatchdogState:
    """Ask the watchdog (as root) for a tick now; its state once written."""
    pid = main_pid() if pid is None else pid
    if pid <= 0:
        raise TickUnavailable("the watchdog is not running")
    state_file = paths.watchdog_state
    with INotify() as inotify:
        # Watched before asking, so the write that answers cannot be missed.
        inotify.add_watch(str(state_file.parent), flags.MOVED_TO | flags.CLOSE_WRITE)
        os.kill(pid, TICK_SIGNAL)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if any(event.name == state_file.name for event in inotify.read(timeout=int(remaining * 1000) + 1)):
                try:
                    return WatchdogState.loads(state_file.read_bytes())
                except (OSError, DocumentError) as exc:
                    raise TickUnavailable(f"the watchdog's state cannot be read ({exc})") from None
    raise TickUnavailable(f"the watchdog did not answer within {timeout:.0f}s")


def wait_for_request(seconds: float) -> bool:
    """Sleep up to `seconds` (the watchdog's main thread, TICK_SIGNAL blocked); True when a tick
    was asked for."""
    return signal.sigtimedwait({TICK_SIGNAL}, max(0.0, seconds)) is not None


def block_requests() -> None:
    """From now on a request waits, pending, for wait_for_request instead of being dropped."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {TICK_SIGNAL})
