"""The agent user's requests to root: backups and the restore, over root's Unix socket.

systemd listens on the socket (root-owned, group agent, 0660) and starts root's control daemon
on the first connection; the kernel tells the daemon who connected (SO_PEERCRED), so nothing the
agent writes into a file is ever taken as a request. A request is one JSON line of at most
MAX_REQUEST bytes, sent within REQUEST_DEADLINE seconds of connecting; the answer is JSON lines:
progress messages, then one result, a refusal, or "busy" (nothing was done: ask again in a
moment). A "tick" asks the watchdog for a verdict now; its result is the watchdog's state. A
"budget" hands root a new signed share of the month's budget (contract.budgetgrant).

Permission prompts (contract/permissions.py): the agent's hook asks with "permission" and waits
for `{"result": {"decision": ...}}` or a refusal (no answer in time); "permissions" (the pending
ones) and "answer" are root's alone, asked by root's page socket on the page's behalf.
"signed-answer" is an answer from the phone that the laptop signed (contract.permission_answer)
and the agent's SSH login relays: root takes it only with a good signature. "phone-answer" is the
same from an ntfy button (contract.phone_actions), signed by root itself and relayed by root's page
socket alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import DocumentError
from . import codec
from .budgetgrant import BudgetGrant
from .documents import BackupResult, RestoreResult, WatchdogState
from .permissions import DECISIONS, ID_CHARS, PermissionAsk

MAX_REQUEST = 16 << 10
MAX_REPLY_LINE = 64 << 10
REQUEST_DEADLINE = 5.0  # seconds from connecting to the end of the request line, in total
OPERATIONS = (
    "backup",
    "restore",
    "tick",
    "budget",
    "permission",
    "permissions",
    "answer",
    "signed-answer",
    "phone-answer",
)
# The agent may ask for a permission, never see or answer one; an ntfy button's answer comes only
# through root's page socket (the one path Caddy opens for it), never from the agent's shell.
ROOT_ONLY = ("permissions", "answer", "phone-answer")
TRIGGERS = ("laptop", "page", "shell")


@dataclass(frozen=True)
class ControlRequest:
    op: str
    trigger: str = "shell"  # who asked, for the result's record
    identity: str = ""  # restore only: the age identity the laptop pushed over SSH
    grant: str = ""  # budget only: the grant's text, as the laptop signed it
    mac: str = ""  # budget, signed-answer, phone-answer: the signature (contract.signed)
    ask: PermissionAsk | None = None  # permission: the tool call the agent asks to make
    request_id: str = ""  # answer: the pending request's single-use id
    decision: str = ""  # answer: allow or deny
    answer: str = ""  # signed-answer, phone-answer: the answer's text, as the laptop (or root) signed it


def encode_request(request: ControlRequest) -> bytes:
    return (json.dumps(codec.to_value(request)) + "\n").encode()


def decode_request(line: bytes) -> ControlRequest:
    request = codec.loads(ControlRequest, line, "request")
    if request.op not in OPERATIONS:
        raise DocumentError(f"request: unknown operation {request.op!r}")
    if request.trigger not in TRIGGERS:
        raise DocumentError(f"request: unknown trigger {request.trigger!r}")
    if request.op == "permission" and request.ask is None:
        raise DocumentError("request: a permission request names its tool call")
    if request.op == "answer" and not (ID_CHARS.fullmatch(request.request_id) and request.decision in DECISIONS):
        raise DocumentError("request: an answer names a request id and allow or deny")
    if request.op in ("signed-answer", "phone-answer") and not (request.answer and request.mac):
        raise DocumentError("request: a signed answer carries its text and its signature")
    return request


def progress_line(message: str) -> bytes:
    return (json.dumps({"progress": message}) + "\n").encode()


def refused_line(reason: str) -> bytes:
    return (json.dumps({"refused": reason}) + "\n").encode()


def busy_line(reason: str) -> bytes:
    return (json.dumps({"busy": reason}) + "\n").encode()


def result_line(result: BackupResult | RestoreResult | WatchdogState | BudgetGrant | dict[str, Any]) -> bytes:
    value = result if isinstance(result, dict) else codec.to_value(result)
    if isinstance(result, BudgetGrant):
        value = {"ok": True, **value}  # taken: the relay reports success by `ok`
    return (json.dumps({"result": value}) + "\n").encode()


@dataclass(frozen=True)
class Reply:
    """One line of an answer, decoded: exactly one of the four is set."""

    progress: str = ""
    refused: str = ""
    result: dict[str, Any] | None = None
    busy: str = ""  # nothing was done; the same request may succeed in a moment


def decode_reply(line: bytes | str) -> Reply:
    try:
        data = json.loads(line)
    except ValueError:
        raise DocumentError(f"not a reply: {str(line)[:80]!r}") from None
    if not isinstance(data, dict) or len(data) != 1:
        raise DocumentError(f"not a reply: {str(line)[:80]!r}")
    if isinstance(data.get("progress"), str):
        return Reply(progress=data["progress"])
    if isinstance(data.get("refused"), str):
        return Reply(refused=data["refused"])
    if isinstance(data.get("busy"), str):
        return Reply(busy=data["busy"])
    if isinstance(data.get("result"), dict):
        return Reply(result=data["result"])
    raise DocumentError(f"not a reply: {str(line)[:80]!r}")
