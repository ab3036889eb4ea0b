"""A webhook: one JSON POST per message (its shape is in the README, "Notifications")."""

from __future__ import annotations

from typing import Any

from ....contract.notify import WebhookTarget
from ..policy import Message
from .http import post_json


class WebhookChannel:
    def __init__(self, target: WebhookTarget) -> None:
        self.url = target.url
        self.name = "webhook"  # its URL may carry a token of its own: kept out of the journal

    def send(self, message: Message, timeout: float) -> None:
        post_json(self.url, webhook_body(message), {}, timeout)


def webhook_body(message: Message) -> dict[str, Any]:
    # "text" and "event" as the idle webhook has always sent them; the rest is new.
    return {
        "workspace": message.workspace,
        "event": message.kind,
        "title": message.title,
        "text": message.text,
        "url": message.link,
        "priority": message.priority,
    }


__all__ = ["WebhookChannel", "webhook_body"]
