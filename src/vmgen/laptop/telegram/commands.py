"""What the bot's user may ask, read from a message (pure functions), and how an Allow / Deny
pressed on the phone becomes an answer signed for root.

The commands: /list, /status <ws>, /send <ws> <text> (or a reply to a message about a workspace,
whose first word is `<ws>:`), /keepalive <ws> <duration>, /backup <ws>, /stop <ws>, /help.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ...contract.documents import parse_duration
from ...contract.permission_answer import PermissionAnswer, signed_answer
from ...errors import UsageError, VmgenError

COMMANDS = {
    "list": "your workspaces",
    "status": "<ws>: what the watchdog sees and will do",
    "send": "<ws> <text>: type text into the agent's pane (or reply to a message about <ws>)",
    "keepalive": "<ws> <duration>: hold off the idle watchdog, e.g. 2h",
    "backup": "<ws>: back up now",
    "stop": "<ws>: stop it; its disk is kept",
    "help": "these commands",
}
HELP = "\n".join(f"/{name} {what}" for name, what in COMMANDS.items())
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@[A-Za-z0-9_]{1,32})?(?:\s+(.*))?", re.DOTALL)
# What a message about a workspace starts with: root's notifications ("app: agent finished") and
# the bot's own answers both name it first.
_ABOUT = re.compile(r"([a-z][a-z0-9-]{0,62}): ")


class Workspaces(Protocol):
    """What the bot does to workspaces: the laptop's own functions, each returning one line to
    answer with, or raising a VmgenError whose line is the answer. They block (SSH, a provider's
    API); the bot runs them off its event loop."""

    def names(self) -> list[str]: ...
    def list(self) -> str: ...
    def status(self, name: str) -> str: ...
    def send(self, name: str, text: str) -> str: ...
    def keepalive(self, name: str, duration: str, reason: str) -> str: ...
    def backup(self, name: str) -> str: ...
    def stop(self, name: str) -> str: ...
    def answer_permission(self, name: str, request_id: str, decision: str) -> str: ...


@dataclass(frozen=True)
class Request:
    """One thing asked of a workspace (or of all of them, `list`)."""

    action: str  # list, status, send, keepalive, backup, stop
    workspace: str = ""
    text: str = ""  # send: the text; keepalive: the duration


class Refusal(Exception):
    """A message the bot answers with how to ask instead (usage), nothing done."""


def read_request(text: str, replied_to: str = "") -> Request | None:
    """The request a message makes; None for one that asks nothing (plain text that is no reply).
    `replied_to`: the text of the message it replies to, if any. Raises Refusal on bad usage."""
    match = _COMMAND.fullmatch(text.strip())
    if match is None:
        about = _ABOUT.match(replied_to)
        if about and text.strip():
            return Request("send", about.group(1), text.strip())
        return None
    name, rest = match.group(1).lower(), (match.group(2) or "").strip()
    words = rest.split(maxsplit=1)
    if name in ("start", "help"):
        raise Refusal(HELP)
    if name == "list":
        return Request("list")
    if name not in COMMANDS:
        raise Refusal(f"unknown command /{name}\n{HELP}")
    if not words:
        raise Refusal(f"/{name} {COMMANDS[name]}")
    workspace = words[0]
    if name == "send":
        if len(words) < 2 or not words[1].strip():
            raise Refusal(f"/send {COMMANDS['send']}")
        return Request("send", workspace, words[1].strip())
    if name == "keepalive":
        duration = words[1].strip() if len(words) > 1 else ""
        try:
            parse_duration(duration)
        except UsageError as exc:
            raise Refusal(f"{exc}\n/keepalive {COMMANDS['keepalive']}") from None
        return Request("keepalive", workspace, duration)
    if len(words) > 1:
        raise Refusal(f"/{name} {COMMANDS[name]}")
    return Request(name, workspace)


def perform(request: Request, workspaces: Workspaces) -> str:
    """Do what was asked; the line to answer with (a VmgenError propagates)."""
    name = request.workspace
    if request.action == "list":
        return workspaces.list()
    if request.action == "status":
        return workspaces.status(name)
    if request.action == "send":
        return workspaces.send(name, request.text)
    if request.action == "keepalive":
        return workspaces.keepalive(name, request.text, "from Telegram")
    if request.action == "backup":
        return workspaces.backup(name)
    if request.action == "stop":
        return workspaces.stop(name)
    raise AssertionError(request.action)


ALLOWED, DENIED, ALREADY, EXPIRED = "Allowed", "Denied", "already answered", "expired"


def permission_said(decision: str, refusal: str | None) -> str:
    """What the phone shows for a pressed Allow / Deny: the decision when root took it, else why
    not, from root's refusal (None: taken)."""
    if refusal is None:
        return ALLOWED if decision == "allow" else DENIED
    if "no such request" in refusal:
        return ALREADY
    if "expired" in refusal:
        return EXPIRED
    return f"not delivered ({refusal}); answer on the page or in the terminal"[:200]


def deliver_answer(
    workspace: str,
    request_id: str,
    decision: str,
    key: str,
    relay: Callable[[str, str], object],
    clock: Callable[[], float] = time.time,
) -> str:
    """Sign the phone's answer with the workspace's key (contract.permission_answer) and hand its
    text and signature to `relay` (the agent's SSH login to root's control socket, which raises
    VmgenError with root's refusal); what the phone shows."""
    if not key:
        return permission_said(decision, "this workspace was launched by an older vmgen")
    text, mac = signed_answer(PermissionAnswer(workspace, request_id, decision, clock()), key)
    try:
        relay(text, mac)
    except VmgenError as exc:
        return permission_said(decision, str(exc))
    return permission_said(decision, None)


def started(request: Request) -> str:
    """What the bot says at once for a request that takes a while ("" for a quick one)."""
    doing = {"backup": "backing up…", "stop": "stopping…"}.get(request.action)
    return f"{request.workspace}: {doing}" if doing else ""


__all__ = [
    "ALLOWED",
    "ALREADY",
    "COMMANDS",
    "DENIED",
    "EXPIRED",
    "HELP",
    "Refusal",
    "Request",
    "Workspaces",
    "deliver_answer",
    "perform",
    "permission_said",
    "read_request",
    "started",
]
