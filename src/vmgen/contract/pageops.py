"""The workspace page's requests to root, over root's page socket (vmside/pageops.py answers).

The page runs as its own user (`vmgen-page`), neither root nor the agent: the agent must not be
able to kill, replace or feed code to the process behind the origin the web login vouches for.
What the page needs of the agent (its recent activity from its transcript, its leases, typing
into its tmux pane, a keepalive lease, its changes as git shows them) or of root (a backup) it
asks root for here, one request per connection. systemd accepts the connection (root:vmgen-page
0660) and root asks the kernel who connected, so the agent can neither reach this socket nor pass
for the page.

A request is one JSON line (capped as root's control socket caps its requests); the answer is one line,
`{"result": {...}}`, `{"refused": "..."}` or `{"busy": "..."}` (`control.decode_reply` reads them all).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import DocumentError, PageRequestError
from . import codec
from .documents import Lease
from .permissions import DECISIONS, ID_CHARS
from .phone_actions import MAX_CAPABILITY

OPERATIONS = ("activity", "send", "keepalive", "backup", "changes", "permissions", "answer", "phone")
KEEPALIVE_HOURS = (1, 4)
MAX_MESSAGE = 4000
# Activity as the page shows it: the newest items, each text cut to a line's worth.
MAX_ITEMS = 30
TEXT_LIMIT = 280
ACTIVITY_KINDS = ("you", "agent", "tool", "file")


@dataclass(frozen=True)
class PageRequest:
    op: str
    text: str = ""  # send: what to type into the agent's pane
    hours: int = 0  # keepalive: one of KEEPALIVE_HOURS
    request_id: str = ""  # answer: the permission request's id, as root gave it
    decision: str = ""  # answer: allow or deny
    capability: str = ""  # phone: an ntfy button's capability, as the phone posted it (contract.phone_actions)


def encode_request(request: PageRequest) -> bytes:
    return (json.dumps(codec.to_value(request)) + "\n").encode()


def decode_request(line: bytes) -> PageRequest:
    request = codec.loads(PageRequest, line, "request")
    if request.op not in OPERATIONS:
        raise PageRequestError(f"request: unknown operation {request.op!r}")
    if request.op == "send" and not (request.text.strip() and len(request.text) <= MAX_MESSAGE):
        raise PageRequestError(f"text must be 1 to {MAX_MESSAGE} characters")
    if request.op == "keepalive" and request.hours not in KEEPALIVE_HOURS:
        raise PageRequestError(f"hours must be one of {KEEPALIVE_HOURS}")
    if request.op == "answer" and not (ID_CHARS.fullmatch(request.request_id) and request.decision in DECISIONS):
        raise PageRequestError("an answer names a request id and allow or deny")
    if request.op == "phone" and not 0 < len(request.capability) <= MAX_CAPABILITY:
        raise PageRequestError("a button carries its capability")
    return request


@dataclass(frozen=True)
class ActivityItem:
    kind: str  # one of ACTIVITY_KINDS
    text: str
    at: float | None


@dataclass(frozen=True)
class PageActivity:
    """What root read of the agent's files for the page: its leases and its recent activity
    (newest last), every value already checked and clamped."""

    leases: tuple[Lease, ...] = ()
    items: tuple[ActivityItem, ...] = ()

    @classmethod
    def from_result(cls, value: object) -> PageActivity:
        activity = codec.from_value(cls, value, "the page's activity", strict=False)
        if any(item.kind not in ACTIVITY_KINDS for item in activity.items):
            raise DocumentError("the page's activity: unknown kind")
        return activity


def result_line(value: dict[str, object]) -> bytes:
    return (json.dumps({"result": value}) + "\n").encode()


def refused_line(reason: str) -> bytes:
    return (json.dumps({"refused": reason}) + "\n").encode()
