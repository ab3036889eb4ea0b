"""Following the agent's hook events for the notifier: the same file the watchdog reads (the
agent's, so read as AgentFiles does: O_NOFOLLOW, owner and type checked, sizes capped), looked at
every fraction of a second by a thread of its own, so a finished turn is on the phone within a
second and the watchdog's tick never waits for it."""

from __future__ import annotations

import logging
import pwd
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ...contract.documents import parse_hook_event
from ...contract.names import AGENT_USER
from ..agentfs import AgentFiles
from ..idlewatch.transcript import JsonlTail
from .policy import Dedupe, notices_of_hooks
from .sender import Notifier

log = logging.getLogger("vmgen.notify")

POLL_SECONDS = 0.2


def agent_uid(user: str = AGENT_USER) -> int | None:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


class HookFollower:
    def __init__(
        self,
        path: Path,
        notifier: Notifier,
        uid_of: Callable[[], int | None] = agent_uid,
        since: float | None = None,
        prompts_by_root: bool = False,
    ) -> None:
        self.notifier = notifier
        self.prompts_by_root = prompts_by_root
        self.uid_of = uid_of
        self.since = time.time() if since is None else since  # older events were told before a restart
        self.dedupe = Dedupe()
        self._files = AgentFiles(-1)
        self._tail = JsonlTail(path, self._files, initial_tail=64 << 10, max_read=1 << 20, max_line=4096)
        self._stop = threading.Event()

    def poll(self) -> int:
        """Send what the new events say; how many notices that made."""
        if self._files.uid < 0:
            uid = self.uid_of()
            if uid is None:
                return 0
            self._files.uid = uid
        now = time.time()
        events = [e for line in self._tail.read()[0] if (e := parse_hook_event(line, now)) and e.at >= self.since]
        notices = notices_of_hooks(self.dedupe, events, self.prompts_by_root)
        for notice in notices:
            self.notifier.send(notice)
        return len(notices)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="notify hooks", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - one line, and the next look
                log.error("following hook events failed: %s: %s", type(exc).__name__, str(exc)[:200])


__all__ = ["HookFollower", "agent_uid"]
