"""ntfy (ntfy.sh or a self-hosted server): a JSON publish to the server's root URL, with the
topic in the body, as ntfy's docs describe (https://docs.ntfy.sh/publish/#publish-as-json).
The access token, if any, is root's NTFY_TOKEN secret, sent as a Bearer header only.

Buttons: Open (a `view` action to the workspace page). Keep alive / Allow / Deny are left out: an
`http` action would need an endpoint that authenticates the phone's request, which vmgen's
login does not offer yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ....contract.notify import NTFY_TOKEN_VARIABLE, NtfyTarget
from ..policy import Message
from .http import post_json


class NtfyChannel:
    def __init__(self, target: NtfyTarget, secrets: Mapping[str, str]) -> None:
        self.target = target
        self.name = f"ntfy {target.server}/{target.topic}"
        self._token = secrets.get(NTFY_TOKEN_VARIABLE, "")

    def send(self, message: Message, timeout: float) -> None:
        post_json(self.target.server + "/", ntfy_body(self.target.topic, message), self._headers(), timeout)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


def ntfy_body(topic: str, message: Message) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": topic,
        "title": message.title,
        "message": message.text,
        "priority": message.priority,
        "tags": list(message.tags),
    }
    if message.link:
        body["click"] = message.link
        body["actions"] = [{"action": "view", "label": "Open", "url": message.link, "clear": True}]
    return body


__all__ = ["NtfyChannel", "ntfy_body"]
