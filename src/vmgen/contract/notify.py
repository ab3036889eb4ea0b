"""Where a workspace's notifications go: the `notify` setting's targets, parsed the same way on
the laptop (before launch) and on the VM (root's notifier).

A target is `ntfy:<server>/<topic>` (https unless the server says http://), `telegram` (the bot
`vmgen telegram setup` recorded; `telegram:<url>` for a Bot API server of one's own, such as
tdlib's telegram-bot-api) or a webhook's http(s) URL. An ntfy access token, the bot's token and
the chat id are secrets: they travel in root's secrets file under NTFY_TOKEN_VARIABLE,
TELEGRAM_TOKEN_VARIABLE and TELEGRAM_CHAT_VARIABLE, never in the target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DocumentError

NTFY_TOKEN_VARIABLE = "NTFY_TOKEN"
TELEGRAM_TOKEN_VARIABLE = "TELEGRAM_BOT_TOKEN"
TELEGRAM_CHAT_VARIABLE = "TELEGRAM_CHAT_ID"
TELEGRAM_API = "https://api.telegram.org"  # the Bot API's own server
NOTIFY_TAKES = "`ntfy:<server>/<topic>`, `telegram` or an http(s) webhook URL, separated by commas"

_TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")  # ntfy's own topic rule
_URL = re.compile(r"https?://[^\s\x00-\x1f/?#@]+(/[^\s\x00-\x1f#]*)?")


@dataclass(frozen=True)
class NtfyTarget:
    server: str  # scheme and host, maybe a path prefix; no trailing slash
    topic: str


@dataclass(frozen=True)
class WebhookTarget:
    url: str


@dataclass(frozen=True)
class TelegramTarget:
    api: str = TELEGRAM_API  # scheme and host of the Bot API server; no trailing slash


Target = NtfyTarget | TelegramTarget | WebhookTarget


def parse_target(text: str) -> Target:
    """One target; DocumentError naming the setting and what it takes."""
    value = text.strip()
    if value.startswith("ntfy:"):
        rest = value[len("ntfy:") :].lstrip("/")
        server, _, topic = (rest if "://" in rest else f"https://{rest}").rpartition("/")
        if _URL.fullmatch(server) and _TOPIC.fullmatch(topic) and "://" in server:
            return NtfyTarget(server.rstrip("/"), topic)
    elif value == "telegram":
        return TelegramTarget()
    elif value.startswith("telegram:"):
        api = value[len("telegram:") :].rstrip("/")
        if _URL.fullmatch(api):
            return TelegramTarget(api)
    elif _URL.fullmatch(value):
        return WebhookTarget(value)
    raise DocumentError(f"notify: {text!r} is not {NOTIFY_TAKES}")


def split_targets(text: str) -> tuple[str, ...]:
    """The setting as the user writes it (commas or spaces between targets)."""
    return tuple(part for part in re.split(r"[,\s]+", text.strip()) if part)


__all__ = [
    "NOTIFY_TAKES",
    "NTFY_TOKEN_VARIABLE",
    "TELEGRAM_API",
    "TELEGRAM_CHAT_VARIABLE",
    "TELEGRAM_TOKEN_VARIABLE",
    "NtfyTarget",
    "Target",
    "TelegramTarget",
    "WebhookTarget",
    "parse_target",
    "split_targets",
]
