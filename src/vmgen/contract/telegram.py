"""The Keep alive button under a Telegram notification: its callback data, made by root on the VM
(which sends the message) and checked by the laptop's bot (which receives the press).

The data is `k1.<nonce>.<mac>`: a random nonce and an HMAC of the workspace's name and the nonce,
keyed from the bot's token, which only root's secrets file and the laptop hold (the agent cannot
read it, so nothing it runs can mint a button). The name itself is not in the data (Telegram caps
callback data at 64 bytes, a name may take 63): the bot finds which of its workspaces the MAC
names. Single use and expiry are the laptop's to keep (it records each nonce it acted on, and
measures a button's age from the date Telegram stamped on the message, never the VM's clock).

Allow and Deny under a permission prompt's message are `p1.<a|d>.<request id>.<mac>`: the pending
request's single-use id that root made (32 characters), the decision, and an HMAC of the
workspace's name, the id and the decision with the same key: a button names one request and one
answer, and nobody without the token can make one or turn a Deny into an Allow. The bot checks it,
uses each request id once, refuses a button older than the request can be pending, and signs the
answer for root with the workspace's key (contract.permission_answer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from .permissions import WAIT_SECONDS

KEEPALIVE_PREFIX = "k1"
PERMISSION_PREFIX = "p1"
DECISION_LETTERS = {"a": "allow", "d": "deny"}
KEEPALIVE_DURATION = "1h"  # what the button holds the watchdog off for ("Keep alive 1 h")
BUTTON_LIFETIME_SECONDS = 6 * 3600  # a button older than this is refused
PERMISSION_BUTTON_SECONDS = WAIT_SECONDS  # Allow / Deny: as long as root holds the request
MAX_CALLBACK_DATA = 64  # bytes, Telegram's limit on callback_data
_NONCE_BYTES = 9  # 12 characters
_MAC_BYTES = 12  # 16 characters: 96 bits


@dataclass(frozen=True)
class KeepaliveButton:
    workspace: str
    nonce: str


def _key(bot_token: str) -> bytes:
    return hashlib.sha256(b"vmgen telegram callback\0" + bot_token.encode()).digest()


def _mac(bot_token: str, workspace: str, nonce: str) -> str:
    digest = hmac.new(_key(bot_token), f"keepalive\0{workspace}\0{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode()


@dataclass(frozen=True)
class PermissionButton:
    workspace: str
    request_id: str
    decision: str  # allow or deny


def _permission_mac(bot_token: str, workspace: str, request_id: str, decision: str) -> str:
    text = f"permission\0{workspace}\0{request_id}\0{decision}"
    digest = hmac.new(_key(bot_token), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).decode()


def permission_data(bot_token: str, workspace: str, request_id: str, decision: str) -> str:
    """The callback data of the Allow or Deny button (`decision`) for one pending request."""
    letter = next(k for k, v in DECISION_LETTERS.items() if v == decision)
    return f"{PERMISSION_PREFIX}.{letter}.{request_id}.{_permission_mac(bot_token, workspace, request_id, decision)}"


def read_permission(bot_token: str, data: str, workspaces: Iterable[str]) -> PermissionButton | None:
    """Which of `workspaces`' requests the button answers, and how; None for data no root of
    theirs made (or changed after)."""
    parts = data.split(".")
    if len(parts) != 4 or parts[0] != PERMISSION_PREFIX or len(data) > MAX_CALLBACK_DATA:
        return None
    _, letter, request_id, mac = parts
    decision = DECISION_LETTERS.get(letter)
    if decision is None:
        return None
    for workspace in workspaces:
        if hmac.compare_digest(_permission_mac(bot_token, workspace, request_id, decision), mac):
            return PermissionButton(workspace, request_id, decision)
    return None


def keepalive_data(bot_token: str, workspace: str, nonce: str | None = None) -> str:
    """The callback data of a new Keep alive button for `workspace`."""
    nonce = nonce or base64.urlsafe_b64encode(secrets.token_bytes(_NONCE_BYTES)).decode()
    return f"{KEEPALIVE_PREFIX}.{nonce}.{_mac(bot_token, workspace, nonce)}"


def read_keepalive(bot_token: str, data: str, workspaces: Iterable[str]) -> KeepaliveButton | None:
    """Which of `workspaces` the button was made for; None for data no root of theirs made."""
    parts = data.split(".")
    if len(parts) != 3 or parts[0] != KEEPALIVE_PREFIX or len(data) > MAX_CALLBACK_DATA:
        return None
    _, nonce, mac = parts
    for workspace in workspaces:
        if hmac.compare_digest(_mac(bot_token, workspace, nonce), mac):
            return KeepaliveButton(workspace, nonce)
    return None


__all__ = [
    "BUTTON_LIFETIME_SECONDS",
    "KEEPALIVE_DURATION",
    "PERMISSION_BUTTON_SECONDS",
    "KeepaliveButton",
    "PermissionButton",
    "keepalive_data",
    "permission_data",
    "read_keepalive",
    "read_permission",
]
