"""Root's desk of pending permission prompts (contract/permissions.py), in the control daemon.

The agent's hook asks on root's control socket and its connection waits here; the page's answer
arrives through root's page socket, which asks the control socket as root. Each request has a
random id that root made, used once: an answer takes the request off the desk, so a replayed or
guessed id finds nothing. Root waits on nothing of the agent's: the hook's connection is held for
`wait` seconds of root's own clock at most, and given up as soon as the hook goes away (Claude
Code killed it, or the user answered in the terminal and the agent's session ended it). What the
hook sent is cut and cleaned again before anyone sees it.
"""

from __future__ import annotations

import logging
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..contract.names import VM, VmPaths
from ..contract.permission_answer import PermissionAnswer
from ..contract.permissions import MAX_PENDING, WAIT_SECONDS, PendingPermission, PermissionAsk, reclamp

log = logging.getLogger(__name__)
POLL_SECONDS = 0.25  # how often a waiting request looks whether its hook is still there
NOTIFY_GAP_SECONDS = 10.0  # at most one message in this long: the agent may ask as often as it likes
NOTIFY_SECONDS = 30.0  # a message's deadline (its own thread: no request waits for it)
# How far the laptop's clock may be from root's for a signed answer from the phone: its time must
# fall within the request's own lifetime, widened by this much on either side.
CLOCK_SKEW_SECONDS = 120.0
NOT_PENDING = "no such request: answered already, or no longer asked"


class DeskFull(Exception):
    """As many requests are pending as root holds: this one is left to the terminal."""


@dataclass
class _Entry:
    ask: PermissionAsk
    since: float
    answered: threading.Event = field(default_factory=threading.Event)
    decision: str = ""


@dataclass
class PermissionDesk:
    wait: float = WAIT_SECONDS
    max_pending: int = MAX_PENDING
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    on_ask: Callable[[str, str], None] = lambda tool, request_id: None  # told each new request (the phone)
    _pending: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ask(self, ask: PermissionAsk, gone: Callable[[], bool] = lambda: False) -> str:
        """Hold the request until it is answered ("allow"/"deny"), its time is up, or `gone()`
        says its asker left (both ""). DeskFull when root holds as many as it will."""
        entry = _Entry(reclamp(ask), self.wall())
        with self._lock:
            if len(self._pending) >= self.max_pending:
                raise DeskFull(f"{len(self._pending)} permission requests are pending")
            request_id = secrets.token_urlsafe(24)
            self._pending[request_id] = entry
        self.on_ask(entry.ask.tool, request_id)
        who = entry.ask.session or "a session"
        log.info("permission: %s asks for %s (request %s…)", who, entry.ask.tool, request_id[:6])
        try:
            deadline = self.clock() + self.wait
            while True:
                left = deadline - self.clock()
                if left <= 0:
                    log.info("permission: request %s… unanswered in %.0fs", request_id[:6], self.wait)
                    return ""
                if entry.answered.wait(min(POLL_SECONDS, left)):
                    return entry.decision
                if gone():
                    log.info("permission: request %s… withdrawn by its hook", request_id[:6])
                    return ""
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    def pending(self) -> tuple[PendingPermission, ...]:
        with self._lock:
            return tuple(PendingPermission(rid, e.ask, e.since) for rid, e in self._pending.items())

    def answer(self, request_id: str, decision: str) -> bool:
        """Answer a pending request, once: False for an id that is not pending (answered already,
        given up, withdrawn, or never made)."""
        with self._lock:
            entry = self._pending.pop(request_id, None)
            if entry is None:
                return False
            entry.decision = decision
            entry.answered.set()
        log.info("permission: request %s… answered: %s", request_id[:6], decision)
        return True

    def answer_signed(self, answer: PermissionAnswer) -> str:
        """An answer from the phone whose signature root checked (contract.permission_answer):
        taken, once, for a request still pending and signed within its lifetime; "" when taken,
        else why not (the request stays pending when the answer is stale)."""
        with self._lock:
            entry = self._pending.get(answer.request_id)
            if entry is None:
                return NOT_PENDING
            earliest, latest = entry.since - CLOCK_SKEW_SECONDS, entry.since + self.wait + CLOCK_SKEW_SECONDS
            if not earliest <= answer.issued_at <= latest:
                return "expired: the answer was not signed while this request was asked"
            del self._pending[answer.request_id]
            entry.decision = answer.decision
            entry.answered.set()
        log.info("permission: request %s… answered from the phone: %s", answer.request_id[:6], answer.decision)
        return ""


@dataclass
class PromptNotifier:
    """Tells the user's phone of a new permission prompt (the `notify` targets, as the watchdog
    sends), in vmgen's words and the tool's name, from a thread of its own, at most one message
    per NOTIFY_GAP_SECONDS."""

    paths: VmPaths = VM
    clock: Callable[[], float] = time.monotonic
    _last: float = float("-inf")
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, tool: str, request_id: str = "") -> None:
        with self._lock:
            if self.clock() - self._last < NOTIFY_GAP_SECONDS:
                return
            self._last = self.clock()
        threading.Thread(target=self._send, args=(tool, request_id), name="permission notice", daemon=True).start()

    def _send(self, tool: str, request_id: str) -> None:
        from .idlewatch.settings import load, read_secrets
        from .notify.policy import permission_notice
        from .notify.sender import notifier_for

        try:
            settings = load(self.paths)
            if settings.notify:
                secrets = read_secrets(self.paths)
                notifier = notifier_for(settings.name, settings.notify, secrets, self.paths, queued=False)
                notifier.send_now(permission_notice(tool, request_id), NOTIFY_SECONDS)
        except Exception as exc:  # noqa: BLE001 - a notification never fails a prompt
            log.warning("permission: no notification (%s: %s)", type(exc).__name__, str(exc)[:200])


def hook_gone(conn: socket.socket) -> Callable[[], bool]:
    """Whether the hook on `conn` went away: its end closed (or it sent more than its request,
    which no hook of vmgen's does). Never blocks."""

    def gone() -> bool:
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            return bool(readable)
        except (OSError, ValueError):
            return True

    return gone


DESK = PermissionDesk()  # the control daemon's (one process answers every connection)

__all__ = ["CLOCK_SKEW_SECONDS", "DESK", "NOT_PENDING", "DeskFull", "PermissionDesk", "PromptNotifier", "hook_gone"]
