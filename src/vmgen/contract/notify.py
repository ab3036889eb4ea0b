"""Where a workspace's notifications go: the `notify` setting's targets, parsed the same way on
the laptop (before launch) and on the VM (root's notifier).

A target is `ntfy:<server>/<topic>` (https unless the server says http://) or a webhook's
http(s) URL. An ntfy access token is a secret: it travels in root's secrets file under
NTFY_TOKEN_VARIABLE, never in the target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import DocumentError

NTFY_TOKEN_VARIABLE = "NTFY_TOKEN"
NOTIFY_TAKES = "`ntfy:<server>/<topic>` or an http(s) webhook URL, separated by commas"

_TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")  # ntfy's own topic rule
_URL = re.compile(r"https?://[^\s\x00-\x1f/?#@]+(/[^\s\x00-\x1f#]*)?")


@dataclass(frozen=True)
class NtfyTarget:
    server: str  # scheme and host, maybe a path prefix; no trailing slash
    topic: str


@dataclass(frozen=True)
class WebhookTarget:
    url: str


Target = NtfyTarget | WebhookTarget


def parse_target(text: str) -> Target:
    """One target; DocumentError naming the setting and what it takes."""
    value = text.strip()
    if value.startswith("ntfy:"):
        rest = value[len("ntfy:") :].lstrip("/")
        server, _, topic = (rest if "://" in rest else f"https://{rest}").rpartition("/")
        if _URL.fullmatch(server) and _TOPIC.fullmatch(topic) and "://" in server:
            return NtfyTarget(server.rstrip("/"), topic)
    elif _URL.fullmatch(value):
        return WebhookTarget(value)
    raise DocumentError(f"notify: {text!r} is not {NOTIFY_TAKES}")


def split_targets(text: str) -> tuple[str, ...]:
    """The setting as the user writes it (commas or spaces between targets)."""
    return tuple(part for part in re.split(r"[,\s]+", text.strip()) if part)


__all__ = [
    "NOTIFY_TAKES",
    "NTFY_TOKEN_VARIABLE",
    "NtfyTarget",
    "Target",
    "WebhookTarget",
    "parse_target",
    "split_targets",
]
