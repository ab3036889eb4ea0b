"""One module per kind of notification target; each makes a Channel from its target and root's
secrets. A channel sends one message once within a timeout, raising SendError on failure (the
sender retries); a new kind of target (Telegram) is one more module and one more branch below."""

from __future__ import annotations

from collections.abc import Mapping

from ....contract.notify import NtfyTarget, TelegramTarget, WebhookTarget, parse_target
from .base import Channel, SendError
from .ntfy import NtfyChannel
from .telegram import TelegramChannel
from .webhook import WebhookChannel


def channel_for(target: str, secrets: Mapping[str, str]) -> Channel:
    parsed = parse_target(target)
    if isinstance(parsed, NtfyTarget):
        return NtfyChannel(parsed, secrets)
    if isinstance(parsed, TelegramTarget):
        return TelegramChannel(parsed, secrets)
    assert isinstance(parsed, WebhookTarget)
    return WebhookChannel(parsed)


__all__ = ["Channel", "SendError", "channel_for"]
