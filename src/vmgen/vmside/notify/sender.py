"""Sending without waiting: messages go to a bounded queue that one thread per channel empties,
each message tried a bounded number of times within its own deadline. Whoever calls `send` (the
watchdog's tick, the hook follower) returns at once; a hanging or failing server only delays
later messages of its own channel, and a full queue drops (and logs) rather than blocks."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from ...contract import codec
from ...contract.documents import WebLinks
from ...contract.names import VM, VmPaths
from ...errors import DocumentError
from .channels import Channel, SendError, channel_for
from .policy import Message, Notice, message_of

log = logging.getLogger("vmgen.notify")

ATTEMPT_TIMEOUT = 10.0  # seconds for one try
MESSAGE_DEADLINE = 60.0  # seconds from `send` after which a message is given up
RETRY_BACKOFF = (1.0, 3.0, 10.0)  # between tries; its length + 1 bounds the tries
QUEUE_SIZE = 64


class Notifier:
    def __init__(
        self,
        workspace: str,
        channels: Sequence[Channel],
        link: str = "",
        deadline: float = MESSAGE_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
        queued: bool = True,  # with a sending thread per channel (else for send_now only)
    ) -> None:
        self.workspace = workspace
        self.link = link
        self.deadline = deadline
        self.clock = clock
        self.channels = tuple(channels)
        self._queues: list[queue.Queue[tuple[Message, float] | None]] = []
        self._threads: list[threading.Thread] = []
        for channel in channels if queued else ():
            q: queue.Queue[tuple[Message, float] | None] = queue.Queue(QUEUE_SIZE)
            thread = threading.Thread(target=self._drain, args=(channel, q), name=f"notify {channel.name}", daemon=True)
            thread.start()
            self._queues.append(q)
            self._threads.append(thread)

    def __bool__(self) -> bool:
        return bool(self.channels)

    def send(self, notice: Notice) -> None:
        """Queue the notice for every channel; never blocks."""
        message = message_of(notice, self.workspace, self.link)
        until = self.clock() + self.deadline
        for q in self._queues:
            try:
                q.put_nowait((message, until))
            except queue.Full:
                log.warning("notification dropped (%s): the queue is full", notice.kind)

    def send_now(self, notice: Notice, timeout: float) -> None:
        """Send to every channel at once and wait at most `timeout` (the act unit: the VM may be
        gone right after)."""
        message = message_of(notice, self.workspace, self.link)
        until = self.clock() + timeout
        threads = [
            threading.Thread(target=deliver, args=(c, message, until, self.clock), daemon=True) for c in self.channels
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, until - self.clock()))

    def _drain(self, channel: Channel, q: queue.Queue[tuple[Message, float] | None]) -> None:
        while (item := q.get()) is not None:
            deliver(channel, *item, clock=self.clock)


def deliver(
    channel: Channel,
    message: Message,
    until: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Try to send `message` until it is sent, refused for good, out of tries or past `until`."""
    for attempt in range(len(RETRY_BACKOFF) + 1):
        left = until - clock()
        if left <= 0:
            break
        try:
            channel.send(message, min(ATTEMPT_TIMEOUT, left))
            return True
        except SendError as exc:
            log.warning("notification %s to %s failed (try %d): %s", message.kind, channel.name, attempt + 1, exc)
            if not exc.retry or attempt == len(RETRY_BACKOFF):
                break
            sleep(min(RETRY_BACKOFF[attempt], max(0.0, until - clock())))
    log.warning("notification %s to %s given up", message.kind, channel.name)
    return False


def workspace_link(paths: VmPaths = VM) -> str:
    """The workspace page's URL, where it has a domain (web.json, root's)."""
    try:
        if not paths.web_links.is_file():
            return ""
        return codec.loads(WebLinks, paths.web_links.read_text(), str(paths.web_links), strict=False).url
    except (OSError, ValueError, DocumentError) as exc:
        log.info("no workspace link: %s", exc)
        return ""


def notifier_for(
    workspace: str, targets: Sequence[str], secrets: Mapping[str, str], paths: VmPaths = VM, queued: bool = True
) -> Notifier:
    link = workspace_link(paths) if targets else ""
    return Notifier(workspace, [channel_for(t, secrets) for t in targets], link, queued=queued)


__all__ = ["Notifier", "deliver", "notifier_for", "workspace_link"]
