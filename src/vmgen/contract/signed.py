"""Messages the laptop signs for root, relayed by the agent: the budget's grant
(contract.budgetgrant) and a permission prompt's answer from the phone (contract.permission_answer).

The key is the workspace's own: 32 random bytes the launch made, kept in the laptop's state folder
(0600) and in root's secrets file (0600, as VMGEN_BUDGET_KEY, its name since the budget first used
it). The agent carries a signed message over its SSH login to root's control socket, so it reads
every one, but it holds no key: it cannot make one or change one without root seeing that the
signature does not match. Each kind of message is signed under its own purpose (an HMAC over the
purpose, a NUL and the text), so a signature made for one kind never passes for another; the
budget grant, the first, is signed over its text alone, as VMs launched before the purposes expect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_VARIABLE = "VMGEN_BUDGET_KEY"  # in root's secrets file on the VM (the budget's name for it)


def new_key() -> str:
    return secrets.token_hex(32)


def sign(text: str, key: str, purpose: str = "") -> str:
    """HMAC-SHA256 of `text` (after `purpose` and a NUL, when there is a purpose), as hex."""
    message = f"{purpose}\0{text}" if purpose else text
    return hmac.new(bytes.fromhex(key), message.encode(), hashlib.sha256).hexdigest()


def matches(text: str, mac: str, key: str, purpose: str = "") -> bool:
    """Whether `mac` is `text`'s signature with `key` (for `purpose`); False for an empty or
    malformed key, never an exception."""
    try:
        expected = sign(text, key, purpose)
    except ValueError:
        return False
    return bool(key) and hmac.compare_digest(expected, mac.strip().lower())


__all__ = ["KEY_VARIABLE", "matches", "new_key", "sign"]
