"""Telegram: root sends each message to the chat `vmgen telegram setup` recorded, through the Bot
API's sendMessage (core.telegram.org/bots/api#sendmessage), as plain text (no parse_mode: nothing
to escape, nothing the text could turn into markup). The bot's token and the chat id are root's
secrets (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID in provider.env); the token is part of the URL, so
no error this channel raises quotes the URL or a library's text about it.

The VM only sends: the laptop's `vmgen telegram run` is the one process that polls the bot (the
Bot API lets one getUpdates poller per token), and it answers the Keep alive button.

Buttons (an inline keyboard): Open, a URL button to the workspace page (with a domain); Keep alive
1 h, callback data from contract.telegram that the laptop's bot checks (made by this root, for
this workspace, used once, not too old). Under a permission prompt root holds, Allow and Deny,
whose callback data names the request's single-use id and is bound to it, the decision and this
workspace by an HMAC keyed from the token (contract.telegram): the laptop's bot takes the press
and carries a signed answer back to root (contract.permission_answer). The message says the tool's
name and vmgen's words, never the command."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from ....contract.notify import TELEGRAM_CHAT_VARIABLE, TELEGRAM_TOKEN_VARIABLE, TelegramTarget
from ....contract.telegram import keepalive_data, permission_data
from ..policy import NO_KEEPALIVE, Message
from .base import SendError

MAX_TEXT = 4096  # characters, the Bot API's limit


class TelegramChannel:
    def __init__(self, target: TelegramTarget, secrets: Mapping[str, str]) -> None:
        self.target = target
        self.name = "telegram"  # never the token, which is in the URL
        self._token = secrets.get(TELEGRAM_TOKEN_VARIABLE, "")
        self._chat = secrets.get(TELEGRAM_CHAT_VARIABLE, "")

    def send(self, message: Message, timeout: float) -> None:
        if not self._token or not self._chat:
            raise SendError(f"no {TELEGRAM_TOKEN_VARIABLE} or {TELEGRAM_CHAT_VARIABLE} in root's secrets", retry=False)
        answers = (
            (
                permission_data(self._token, message.workspace, message.request_id, "allow"),
                permission_data(self._token, message.workspace, message.request_id, "deny"),
            )
            if message.request_id
            else None
        )
        body = telegram_body(self._chat, message, keepalive_data(self._token, message.workspace), answers)
        request = urllib.request.Request(
            f"{self.target.api}/bot{self._token}/sendMessage",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=max(0.1, timeout)).close()
        except urllib.error.HTTPError as exc:
            raise SendError(_refusal(exc), retry=exc.code >= 500 or exc.code == 429) from None
        except (OSError, ValueError) as exc:
            # A URLError's reason (a refused connection, a name) never holds the URL; ValueError's text may.
            reason = getattr(exc, "reason", None)
            raise SendError(str(reason)[:200] if reason is not None else type(exc).__name__) from None


def telegram_body(
    chat_id: str, message: Message, keepalive: str, answers: tuple[str, str] | None = None
) -> dict[str, Any]:
    """sendMessage's parameters: vmgen's words, the Open and Keep alive buttons, and for a
    permission prompt Allow and Deny (`answers`: their callback data) in a row of their own."""
    rows: list[list[dict[str, str]]] = []
    if answers is not None:
        rows.append([{"text": "Allow", "callback_data": answers[0]}, {"text": "Deny", "callback_data": answers[1]}])
    row: list[dict[str, str]] = []
    if message.link:
        row.append({"text": "Open", "url": message.link})
    if message.kind not in NO_KEEPALIVE:
        row.append({"text": "Keep alive 1 h", "callback_data": keepalive})
    body: dict[str, Any] = {
        "chat_id": chat_id,
        "text": f"{message.title}\n{message.text}"[:MAX_TEXT],
        "link_preview_options": {"is_disabled": True},
    }
    if row:
        rows.append(row)
    if rows:
        body["reply_markup"] = {"inline_keyboard": rows}
    return body


def _refusal(exc: urllib.error.HTTPError) -> str:
    """The Bot API's own description (`{"ok": false, "description": ...}`), which names no token."""
    try:
        description = str(json.loads(exc.read(4096)).get("description", ""))
    except (OSError, ValueError, AttributeError):
        description = ""
    return f"HTTP {exc.code}" + (f": {description[:200]}" if description else "")


__all__ = ["NO_KEEPALIVE", "TelegramChannel", "telegram_body"]
