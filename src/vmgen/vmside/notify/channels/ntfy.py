"""ntfy (ntfy.sh or a self-hosted server): a JSON publish to the server's root URL, with the
topic in the body, as ntfy's docs describe (https://docs.ntfy.sh/publish/#publish-as-json;
`actions` as in #action-buttons: at most 3, `view` opens a URL, `http` sends a request from the
phone). The access token, if any, is root's NTFY_TOKEN secret, sent as a Bearer header only.

Buttons depend on who can read the topic (contract.phone_actions says why):

- a topic that anyone may read (no token, or the server answers an anonymous poll): `view`
  buttons only, to the workspace page behind vmgen's login. Open, and for a permission prompt
  "Allow / Deny" opening the page at its pending prompts, where the user's web session answers;
  no Keep alive (the page's own +1 h is a press away). Nothing in the message acts by itself.
- a topic that refuses an anonymous reader (asked without the token, once per TOPIC_CHECK_SECONDS):
  `http` buttons that POST a capability root signs with the workspace's key to the page's
  PHONE_PATH: Allow and Deny (single-use, bound to the request and the decision) beside Open, or
  Open and Keep alive 1 h. The capability is the only secret in such a message, and acts once.

Without a domain there is no page to open and no path to post to: no buttons."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ....contract.notify import NTFY_TOKEN_VARIABLE, NtfyTarget
from ....contract.phone_actions import PHONE_PATH, answer_capability, keepalive_capability
from ....contract.signed import KEY_VARIABLE
from ..policy import NO_KEEPALIVE, Message
from .http import post_json

TOPIC_CHECK_SECONDS = 600.0  # how long an answer about the topic's protection is kept
PERMISSIONS_ANCHOR = "#permissions"  # the page's pending prompts


@dataclass(frozen=True)
class Capabilities:
    """What the `http` buttons of one message post (contract.phone_actions); "" for none."""

    url: str  # the page's PHONE_PATH
    allow: str = ""
    deny: str = ""
    keepalive: str = ""


def topic_refuses_strangers(target: NtfyTarget, timeout: float) -> bool:
    """Whether the server refuses to show the topic to an anonymous reader (401/403 to a poll
    without the token); False when it shows it, or cannot be asked."""
    url = f"{target.server}/{target.topic}/json?poll=1&since=none"
    try:
        urllib.request.urlopen(urllib.request.Request(url), timeout=max(0.1, timeout)).close()
    except urllib.error.HTTPError as exc:
        return exc.code in (401, 403)
    except (OSError, ValueError):
        return False
    return False


class NtfyChannel:
    def __init__(
        self,
        target: NtfyTarget,
        secrets: Mapping[str, str],
        refuses_strangers: Callable[[NtfyTarget, float], bool] = topic_refuses_strangers,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.name = f"ntfy {target.server}/{target.topic}"
        self._token = secrets.get(NTFY_TOKEN_VARIABLE, "")
        self._key = secrets.get(KEY_VARIABLE, "")
        self._refuses_strangers = refuses_strangers
        self._clock = clock
        self._protected: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def send(self, message: Message, timeout: float) -> None:
        start = self._clock()
        capabilities = self._capabilities(message, timeout / 2)  # the topic's check takes half at most
        left = timeout - (self._clock() - start)
        post_json(self.target.server + "/", ntfy_body(self.target.topic, message, capabilities), self._headers(), left)

    def protected(self, timeout: float) -> bool:
        """Whether only token holders read the topic (asked of the server, kept a while)."""
        if not self._token:
            return False
        with self._lock:
            if self._protected is not None and self._clock() - self._protected[0] < TOPIC_CHECK_SECONDS:
                return self._protected[1]
        answer = self._refuses_strangers(self.target, timeout)
        with self._lock:
            self._protected = (self._clock(), answer)
        return answer

    def _capabilities(self, message: Message, timeout: float) -> Capabilities | None:
        acting = bool(message.request_id) or message.kind not in NO_KEEPALIVE
        if not (message.link and self._key and acting) or not self.protected(timeout):
            return None  # (a workspace going or gone: no button acts, the topic need not be asked)
        now = time.time()
        url = message.link.rstrip("/") + PHONE_PATH
        if message.request_id:
            return Capabilities(
                url,
                allow=answer_capability(self._key, message.workspace, message.request_id, "allow", now),
                deny=answer_capability(self._key, message.workspace, message.request_id, "deny", now),
            )
        return Capabilities(url, keepalive=keepalive_capability(self._key, message.workspace, now))

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


def ntfy_body(topic: str, message: Message, capabilities: Capabilities | None = None) -> dict[str, Any]:
    """The publish body; `capabilities` only for a topic strangers cannot read."""
    body: dict[str, Any] = {
        "topic": topic,
        "title": message.title,
        "message": message.text,
        "priority": message.priority,
        "tags": list(message.tags),
    }
    if message.link:
        body["click"] = message.link
        body["actions"] = ntfy_actions(message, capabilities)
    return body


def ntfy_actions(message: Message, capabilities: Capabilities | None) -> list[dict[str, Any]]:
    """At most 3 buttons (ntfy's limit), in ntfy's JSON action format."""
    prompts = message.link + PERMISSIONS_ANCHOR
    if capabilities is None:
        if message.request_id:
            return [_view("Allow / Deny", prompts)]
        return [_view("Open", message.link)]
    if capabilities.allow and capabilities.deny:
        return [
            _http("Allow", capabilities.url, capabilities.allow),
            _http("Deny", capabilities.url, capabilities.deny),
            _view("Open", prompts),
        ]
    actions = [_view("Open", message.link)]
    if capabilities.keepalive:
        actions.append(_http("Keep alive 1 h", capabilities.url, capabilities.keepalive))
    return actions


def _view(label: str, url: str) -> dict[str, Any]:
    return {"action": "view", "label": label, "url": url, "clear": True}


def _http(label: str, url: str, capability: str) -> dict[str, Any]:
    # No headers: the phone's request is a plain POST of text (ntfy's web app sends it with fetch,
    # which then needs no preflight).
    return {"action": "http", "label": label, "url": url, "method": "POST", "body": capability, "clear": True}


__all__ = ["Capabilities", "NtfyChannel", "ntfy_actions", "ntfy_body", "topic_refuses_strangers"]
