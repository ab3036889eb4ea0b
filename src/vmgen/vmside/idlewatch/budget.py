"""This workspace's share of the month's budget, counted by root: pure functions over root's
own ledger, and the ledger's file.

The laptop works the allowance out when it makes the VM (`budget_month` less what the user's
other workspaces spent this month, in this provider's currency) and hands it over in the
watchdog's settings, root's file (cloud-init writes it; the agent can neither read the user-data
nor write /etc/vmgen). Root counts this VM's uptime x its price per hour against it, in a ledger
of its own (/var/lib/vmgen/budget.json, root's, on the disk: a reboot or a stop and start does
not reset it). Nothing the agent does enters the count: the clocks are the kernel's (the system's
uptime, since PID 1 started, on CLOCK_BOOTTIME), and the crossing is not an idle verdict, so a
busy agent holds nothing off.

The allowance counts within the month it was worked out for: past `month_end` the ledger stops
counting and nothing acts on it (a new month is a new budget). `vmgen start` hands root a new
allowance through the agent's login, signed with the key the launch put in root's secrets
(contract.budgetgrant): root takes it (`accept_grant`, on its control socket) only with a good
signature, for this workspace, issued after the one it holds; it then counts instead of the
settings' (`allowance_now`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from ...contract import codec
from ...contract.budgetgrant import BUDGET_KEY_VARIABLE, BudgetGrant, verified
from ...contract.documents import BudgetRecord, WatchSettings
from ...contract.enums import BudgetAction
from ...contract.names import VM, VmPaths
from ...errors import DocumentError
from ..jsonfile import write_text

log = logging.getLogger("vmgen.idlewatch")

HOUR = 3600.0
# A boot that starts with the allowance already spent (a `vmgen start` after a budget stop) waits
# this long before `stop` acts: the time the laptop takes to hand over a new share of a raised
# budget. A crossing later in the boot acts at once. Root's clock; nothing the agent sets.
START_GRACE_SECONDS = 300.0


@dataclass(frozen=True)
class Allowance:
    """What the laptop handed over (the watchdog's settings)."""

    budget_month: float
    amount: float
    price_hourly: float
    currency: str
    month_end: float  # wall clock
    action: BudgetAction


@dataclass(frozen=True)
class Ledger:
    """Root's count of this VM's billed time against the allowance of the month ending `month_end`."""

    month_end: float  # which month's allowance it counts for
    spent_seconds: float  # uptime counted within that month, over every boot
    boot: str  # the boot of the last count
    uptime: float  # the system's uptime at the last count, in that boot
    warned: bool = False  # the crossing was said (once per month)


def allowance_of(settings: WatchSettings) -> Allowance | None:
    """The allowance, when a budget holds for this workspace (a budget and a price to count)."""
    if settings.budget_month <= 0 or settings.budget_price_hourly <= 0 or settings.budget_month_end <= 0:
        return None
    return Allowance(
        budget_month=settings.budget_month,
        amount=max(0.0, settings.budget_allowance),
        price_hourly=settings.budget_price_hourly,
        currency=settings.budget_currency,
        month_end=settings.budget_month_end,
        action=BudgetAction(settings.budget_action),
    )


def allowance_of_grant(grant: BudgetGrant) -> Allowance | None:
    if grant.budget_month <= 0 or grant.price_hourly <= 0 or grant.month_end <= 0:
        return None
    return Allowance(
        grant.budget_month, max(0.0, grant.allowance), grant.price_hourly, grant.currency, grant.month_end, grant.action
    )


def allowance_now(settings: WatchSettings, paths: VmPaths = VM) -> Allowance | None:
    """The newest grant root took, else the launch's allowance (the watchdog's settings)."""
    grant = load_grant(paths)
    return allowance_of_grant(grant) if grant is not None else allowance_of(settings)


def count(ledger: Ledger | None, allowance: Allowance, boot: str, uptime: float, wall: float) -> Ledger:
    """The ledger after one more look at the clocks. Within a boot, the uptime since the last
    look is added; in a new boot (a reboot, a start after a stop), the whole uptime of this one;
    a ledger of another month starts again from nothing. Past the month's end nothing is added."""
    uptime = max(0.0, uptime)
    if ledger is None or ledger.month_end != allowance.month_end:
        ledger = Ledger(month_end=allowance.month_end, spent_seconds=0.0, boot=boot, uptime=0.0)
        since = 0.0
    elif ledger.boot == boot:
        since = min(ledger.uptime, uptime)  # uptime never runs back within a boot; clamp if read so
    else:
        since = 0.0
    added = uptime - since if counting(allowance, wall) else 0.0
    return replace(ledger, spent_seconds=ledger.spent_seconds + max(0.0, added), boot=boot, uptime=uptime)


def counting(allowance: Allowance, wall: float) -> bool:
    return wall < allowance.month_end


def spent(ledger: Ledger, allowance: Allowance) -> float:
    return ledger.spent_seconds / HOUR * allowance.price_hourly


def crossed(ledger: Ledger, allowance: Allowance, wall: float) -> bool:
    """The allowance is spent, within its month."""
    return counting(allowance, wall) and spent(ledger, allowance) >= allowance.amount


def stops_now(ledger: Ledger, allowance: Allowance, wall: float) -> bool:
    """Whether root acts on the budget now: `stop`, crossed within the month."""
    return allowance.action is BudgetAction.STOP and crossed(ledger, allowance, wall)


def record_of(ledger: Ledger, allowance: Allowance, wall: float) -> BudgetRecord:
    return BudgetRecord(
        budget_month=allowance.budget_month,
        allowance=round(allowance.amount, 4),
        spent=round(spent(ledger, allowance), 4),
        price_hourly=allowance.price_hourly,
        currency=allowance.currency,
        month_end=allowance.month_end,
        action=allowance.action.value,
        crossed=crossed(ledger, allowance, wall),
        counting=counting(allowance, wall),
    )


# --- the ledger's file (root's) -------------------------------------------------------------------


def load(paths: VmPaths = VM) -> Ledger | None:
    """Root's ledger; None when there is none yet, or it cannot be read (counting starts again:
    root's own folder, which the agent cannot write, so only a disk error gets here)."""
    try:
        return codec.loads(Ledger, paths.budget_ledger.read_bytes(), str(paths.budget_ledger))
    except FileNotFoundError:
        return None
    except (OSError, DocumentError) as exc:
        log.error("budget ledger %s unreadable (%s); counting from this boot", paths.budget_ledger, exc)
        return None


def save(ledger: Ledger, paths: VmPaths = VM) -> None:
    write_text(paths.budget_ledger, codec.dumps(ledger), mode=0o644)


def load_grant(paths: VmPaths = VM) -> BudgetGrant | None:
    try:
        return codec.loads(BudgetGrant, paths.budget_grant.read_bytes(), str(paths.budget_grant))
    except FileNotFoundError:
        return None
    except (OSError, DocumentError) as exc:
        log.error("budget grant %s unreadable (%s); the launch's allowance holds", paths.budget_grant, exc)
        return None


def accept_grant(text: str, mac: str, workspace: str, paths: VmPaths = VM) -> BudgetGrant:
    """Check a grant the laptop signed (relayed by the agent) and keep it as root's: DocumentError
    for a bad signature, another workspace, values out of bounds, or one not newer than the
    grant root holds (an old one replayed)."""
    from .settings import read_secrets

    grant = verified(text, mac, read_secrets(paths).get(BUDGET_KEY_VARIABLE, ""), workspace)
    WatchSettings(  # the same bounds as the launch's allowance
        budget_month=grant.budget_month,
        budget_allowance=grant.allowance,
        budget_price_hourly=grant.price_hourly,
        budget_currency=grant.currency,
        budget_month_end=grant.month_end,
    ).validate("the budget grant")
    held = load_grant(paths)
    if held is not None and grant.issued_at <= held.issued_at:
        raise DocumentError("the budget grant is not newer than the one this workspace holds")
    write_text(paths.budget_grant, codec.dumps(grant), mode=0o644)
    log.warning(
        "budget: took a new allowance of %.2f %s until %.0f (budget_action %s)",
        grant.allowance,
        grant.currency,
        grant.month_end,
        grant.action.value,
    )
    return grant


def stop_due(settings: WatchSettings, wall: float, paths: VmPaths = VM) -> bool:
    """Whether the budget is what the act unit acts on (root's ledger, as last counted)."""
    allowance = allowance_now(settings, paths)
    ledger = load(paths)
    return allowance is not None and ledger is not None and stops_now(ledger, allowance, wall)


def crossing_words(workspace: str, record: BudgetRecord) -> str:
    """What the crossing says, in vmgen's words and root's numbers."""
    then = (
        "it stops now (budget_action = stop): backed up and deleted or powered off as when idle"
        if record.action == BudgetAction.STOP
        else "it keeps running (budget_action = warn)"
    )
    return (
        f"vmgen: workspace {workspace} spent its share of budget_month: {record.spent:.2f} of "
        f"{record.allowance:.2f} {record.currency}; {then}"
    )


__all__ = [
    "Allowance",
    "Ledger",
    "accept_grant",
    "allowance_now",
    "allowance_of",
    "allowance_of_grant",
    "count",
    "crossed",
    "crossing_words",
    "load",
    "load_grant",
    "record_of",
    "save",
    "spent",
    "stop_due",
    "stops_now",
]
