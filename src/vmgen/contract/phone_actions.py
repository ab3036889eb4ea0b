"""Buttons on an ntfy message that act from the phone without vmgen's login: Allow, Deny and Keep
alive as ntfy `http` actions, each carrying a capability root minted and root checks.

Who may press them decides whether they exist. An ntfy topic that anyone may read (no access
token, or a server that lets anonymous users read it) is readable by whoever knows its name, and
the agent may know it: a capability there would let the agent approve its own Bash call. So root
puts capabilities only on a topic that refuses anonymous reading (root asks the server, without
its token, before it sends them: vmside/notify/channels/ntfy.py); elsewhere the buttons are `view`
actions that open the workspace page, where the user's web session answers.

A capability is `<kind>.<text>.<mac>`: the kind (`a` an answer, `k` a keep-alive), the signed
text (base64url) and its HMAC-SHA256 under the workspace's key (contract.signed: root's secret,
which the agent cannot read), under a purpose of its own, so a capability is neither a laptop's
answer from Telegram nor a budget grant, and none of those is a capability:

- an answer is contract.permission_answer's document, {workspace, request_id, decision,
  issued_at}: bound to one pending request's single-use id and one decision. Root's control daemon
  takes it like the laptop's signed answer (`PermissionDesk.answer_signed`): for this workspace,
  for a request still pending (once: the answer takes it off the desk), issued while it was asked;
- a keep-alive is {workspace, nonce, issued_at}: root's page socket acts on each nonce once
  (root's record, vmside/phone_actions.py) and on none older than KEEPALIVE_BUTTON_SECONDS.

The phone posts the capability as the request's body to PHONE_PATH on the workspace's hostname,
the one path there that Caddy sends to the page without the login's check; the page relays it
to root's page socket, and root decides.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass

from ..errors import DocumentError
from . import codec
from .permission_answer import PermissionAnswer, signed_answer, verified_answer
from .signed import matches, sign
from .telegram import BUTTON_LIFETIME_SECONDS

PHONE_PATH = "/api/phone"
ANSWER_PURPOSE = "vmgen ntfy answer"
KEEPALIVE_PURPOSE = "vmgen ntfy keepalive"
ANSWER_KIND, KEEPALIVE_KIND = "a", "k"
KEEPALIVE_HOURS = 1  # "Keep alive 1 h"
KEEPALIVE_BUTTON_SECONDS = BUTTON_LIFETIME_SECONDS  # as Telegram's Keep alive button
CLOCK_SKEW_SECONDS = 60.0  # root mints and checks on its own clock: a step of the clock at most
MAX_CAPABILITY = 1024
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_CAPABILITY = re.compile(r"([ak])\.([A-Za-z0-9_-]{1,900})\.([0-9a-f]{64})")


@dataclass(frozen=True)
class KeepaliveTicket:
    workspace: str
    nonce: str  # random, root's; acted on once
    issued_at: float  # root's wall clock when it sent the message


def _pack(kind: str, text: str, mac: str) -> str:
    return f"{kind}.{base64.urlsafe_b64encode(text.encode()).decode().rstrip('=')}.{mac}"


def read_capability(value: str) -> tuple[str, str, str]:
    """The kind, signed text and signature of a capability as the phone posts it; DocumentError for
    anything else (checked before root is asked: the path is open to anyone)."""
    found = _CAPABILITY.fullmatch(value.strip()) if len(value) <= MAX_CAPABILITY else None
    if found is None:
        raise DocumentError("not a vmgen button")
    kind, packed, mac = found.groups()
    try:
        text = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise DocumentError("not a vmgen button") from None
    return kind, text, mac


def answer_capability(key: str, workspace: str, request_id: str, decision: str, now: float) -> str:
    """The Allow or Deny button's capability for one pending request."""
    text, mac = signed_answer(PermissionAnswer(workspace, request_id, decision, now), key, ANSWER_PURPOSE)
    return _pack(ANSWER_KIND, text, mac)


def verified_phone_answer(text: str, mac: str, key: str, workspace: str) -> PermissionAnswer:
    """contract.permission_answer's check, under the buttons' own purpose."""
    return verified_answer(text, mac, key, workspace, ANSWER_PURPOSE)


def keepalive_capability(key: str, workspace: str, now: float, nonce: str = "") -> str:
    ticket = KeepaliveTicket(workspace, nonce or secrets.token_urlsafe(18), now)
    text = json.dumps(codec.to_value(ticket), sort_keys=True, separators=(",", ":"))
    return _pack(KEEPALIVE_KIND, text, sign(text, key, KEEPALIVE_PURPOSE))


def verified_keepalive(text: str, mac: str, key: str, workspace: str, now: float) -> KeepaliveTicket:
    """The ticket when `mac` is its signature with `key`, for `workspace`, and not expired by
    root's clock (`now`); else DocumentError. Single use is the caller's (root's record)."""
    if not key:
        raise DocumentError("this workspace holds no key for signed buttons (launched by an older vmgen)")
    if not matches(text, mac, key, KEEPALIVE_PURPOSE):
        raise DocumentError("the button's signature does not match")
    ticket = codec.loads(KeepaliveTicket, text, "the button")
    if ticket.workspace != workspace or not _NONCE.fullmatch(ticket.nonce):
        raise DocumentError("the button is not for this workspace")
    if not -CLOCK_SKEW_SECONDS <= now - ticket.issued_at <= KEEPALIVE_BUTTON_SECONDS:
        raise DocumentError("expired: the button is older than its lifetime")
    return ticket


__all__ = [
    "ANSWER_KIND",
    "ANSWER_PURPOSE",
    "KEEPALIVE_BUTTON_SECONDS",
    "KEEPALIVE_HOURS",
    "KEEPALIVE_KIND",
    "KEEPALIVE_PURPOSE",
    "MAX_CAPABILITY",
    "PHONE_PATH",
    "KeepaliveTicket",
    "answer_capability",
    "keepalive_capability",
    "read_capability",
    "verified_keepalive",
    "verified_phone_answer",
]
