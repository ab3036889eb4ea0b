"""A permission prompt's answer from the phone, signed by the laptop for root (contract.signed).

The laptop's Telegram bot takes the press of Allow or Deny under root's message and carries the
answer to root the only way it can: over SSH as the agent user, to root's control socket. The agent
relays the answer, so it could rewrite it or make its own; so the answer is signed with the
workspace's key (which the agent cannot read) and names what it answers: this workspace, the
pending request's single-use id that root made, the decision, and when the laptop signed it. Root
takes it only with a good signature, for this workspace, for a request it still holds (once: the
answer takes it off the desk) and signed within that request's lifetime (vmside/permissions.py).
What the agent can do is drop it: the request then stays on the page and in the terminal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import DocumentError
from . import codec
from .permissions import DECISIONS, ID_CHARS
from .signed import matches, sign

PURPOSE = "vmgen permission answer"
MAX_ANSWER = 1024


@dataclass(frozen=True)
class PermissionAnswer:
    workspace: str
    request_id: str  # root's single-use id of the pending request
    decision: str  # allow or deny
    issued_at: float  # the laptop's wall clock when it signed


def answer_text(answer: PermissionAnswer) -> str:
    """The answer as signed: one canonical JSON text."""
    return json.dumps(codec.to_value(answer), sort_keys=True, separators=(",", ":"))


def signed_answer(answer: PermissionAnswer, key: str, purpose: str = PURPOSE) -> tuple[str, str]:
    """The text and its signature, as the agent relays them (or, under contract.phone_actions'
    purpose, as root puts them under an ntfy button)."""
    text = answer_text(answer)
    return text, sign(text, key, purpose)


def verified_answer(text: str, mac: str, key: str, workspace: str, purpose: str = PURPOSE) -> PermissionAnswer:
    """The answer in `text` when `mac` is its signature with `key` for `purpose`, and it is for
    `workspace`; else DocumentError (one line, never the key)."""
    if not key:
        raise DocumentError("this workspace holds no key for signed answers (launched by an older vmgen)")
    if len(text) > MAX_ANSWER or not matches(text, mac, key, purpose):
        raise DocumentError("the answer's signature does not match")
    answer = codec.loads(PermissionAnswer, text, "the answer")
    if answer.workspace != workspace:
        raise DocumentError(f"the answer is for {answer.workspace!r}, not this workspace")
    if not ID_CHARS.fullmatch(answer.request_id) or answer.decision not in DECISIONS:
        raise DocumentError("the answer names no request id, or neither allow nor deny")
    return answer


__all__ = ["MAX_ANSWER", "PermissionAnswer", "answer_text", "signed_answer", "verified_answer"]
