"""A new share of the month's budget for a running workspace, from the laptop to root, through
the agent: at `vmgen start` the laptop works the allowance out again (the other workspaces have
spent since launch, or a new month began), and only the agent's SSH login can carry it to root's
control socket. So the grant is signed: an HMAC-SHA256 with a key the launch made, which only
the laptop (its state folder) and root (its secrets file, 0600) hold. The agent, who relays it,
can read it but cannot make or change one, and root takes a grant only when it was issued later
than the one it holds (a replayed older one is refused). What the agent can do is not relay it:
the VM then keeps the allowance it has, which still bounds its own spend within that month.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import DocumentError
from . import codec
from .enums import BudgetAction
from .signed import KEY_VARIABLE, matches, new_key, sign

BUDGET_KEY_VARIABLE = KEY_VARIABLE  # in root's secrets file on the VM (contract.signed)
MAX_GRANT = 4096


@dataclass(frozen=True)
class BudgetGrant:
    workspace: str
    budget_month: float
    allowance: float
    price_hourly: float
    currency: str
    month_end: float  # wall clock
    action: BudgetAction
    issued_at: float  # the laptop's wall clock: root takes only a grant issued after the one it has


def grant_text(grant: BudgetGrant) -> str:
    """The grant as signed: one canonical JSON text."""
    return json.dumps(codec.to_value(grant), sort_keys=True, separators=(",", ":"))


def verified(text: str, mac: str, key: str, workspace: str) -> BudgetGrant:
    """The grant in `text` when `mac` is its signature with `key` and it is for `workspace`;
    else DocumentError (one line, never the key)."""
    if not key:
        raise DocumentError("this workspace holds no budget key (launched by an older vmgen)")
    if len(text) > MAX_GRANT or not matches(text, mac, key):
        raise DocumentError("the budget grant's signature does not match")
    grant = codec.loads(BudgetGrant, text, "the budget grant")
    if grant.workspace != workspace:
        raise DocumentError(f"the budget grant is for {grant.workspace!r}, not this workspace")
    return grant


__all__ = ["BUDGET_KEY_VARIABLE", "BudgetGrant", "grant_text", "new_key", "sign", "verified"]
