"""What workspaces cost this month, and whether a launch fits the budget: pure functions over what
the providers report (each workspace's creation time, status and price per hour).

A workspace is billed from its creation (or the month's start) until now while it runs, and while
it is stopped on a provider that bills a stopped server (`stop_bills`); a stopped workspace on a
provider that does not bill it is counted at nothing, since vmgen does not know when it stopped.
Workspaces that are gone (deleted by their idle action) are not counted: vmgen keeps no record
of their uptime yet.

Each provider prices in its own currency (Hetzner EUR, AWS USD): sums are per currency, and
`budget_month` is held against the spend in the currency of the workspace being made; what was
spent in another currency is named beside it, never added.

A running workspace's share of the budget (its allowance) is `budget_month` less what the user's
other workspaces spent this month in its currency, handed to the VM's watchdog, which counts its
own uptime against it until the month ends (vmside/idlewatch/budget.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..contract.budgetgrant import BudgetGrant
from ..contract.enums import BudgetAction, WorkspaceStatus
from .values import Workspace

HOUR = 3600.0


@dataclass(frozen=True)
class CostLine:
    name: str
    provider: str
    status: str
    hours: float  # billed this month
    price_hourly: float | None  # None: the provider did not say
    cost: float | None
    currency: str = ""  # of price_hourly and cost ("" where nothing is billed)


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def hours_left_in_month(now: datetime) -> float:
    return (month_end(now) - now.astimezone(UTC)).total_seconds() / HOUR


def month_end(now: datetime) -> datetime:
    """The start of the next month (UTC): where an allowance worked out now stops counting."""
    start = month_start(now)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def cost_line(workspace: Workspace, stop_bills: bool, now: datetime, currency: str = "") -> CostLine:
    billed = workspace.running or workspace.status == WorkspaceStatus.STARTING or stop_bills
    since = max(workspace.created_at, month_start(now))
    hours = max(0.0, (now - since).total_seconds() / HOUR) if billed else 0.0
    price = workspace.price_hourly
    return CostLine(
        workspace.name,
        workspace.provider,
        workspace.status,
        hours,
        price,
        None if price is None else hours * price,
        currency if price else "",
    )


def totals(lines: list[CostLine], leave_out: str = "") -> dict[str, float]:
    """What the lines cost, per currency (never one sum of two); `leave_out`: a workspace's name
    not to count (the one an allowance is worked out for). Lines that cost nothing add nothing."""
    sums: dict[str, float] = {}
    for line in lines:
        if line.name != leave_out and line.cost:
            sums[line.currency] = sums.get(line.currency, 0.0) + line.cost
    return sums


def in_words(sums: dict[str, float]) -> str:
    """ "12.40 EUR + 3.10 USD (not added: different currencies)", "12.40 EUR", "0.00"."""
    if not sums:
        return "0.00"
    said = " + ".join(f"{amount:.2f} {currency}".rstrip() for currency, amount in sorted(sums.items()))
    return said + (" (not added: different currencies)" if len(sums) > 1 else "")


def allowance(budget: float, sums: dict[str, float], currency: str) -> float:
    """This workspace's share of the month's budget: what the others left of it in its currency."""
    return max(0.0, budget - sums.get(currency, 0.0))


def grant_for(
    name: str,
    budget: float,
    action: BudgetAction,
    sums: dict[str, float],
    price_hourly: float | None,
    currency: str,
    now: datetime,
) -> BudgetGrant:
    """A running workspace's share of the budget as of now (`vmgen start`), for root to count."""
    return BudgetGrant(
        workspace=name,
        budget_month=budget,
        allowance=round(allowance(budget, sums, currency), 4),
        price_hourly=price_hourly or 0.0,
        currency=currency,
        month_end=month_end(now).timestamp(),
        action=action,
        issued_at=now.timestamp(),
    )


def budget_refusal(
    budget: float,
    sums: dict[str, float],
    price_hourly: float | None,
    lifetime_hours: float,
    now: datetime,
    currency: str = "",
) -> str | None:
    """Why a launch would cross the month's budget, with the numbers; None when it fits (or no
    budget is set). The new workspace is counted at its price until its hard lifetime ends or the
    month does, whichever is first (with no lifetime, the month), against what was spent this
    month in its currency; spend in other currencies is named, not added."""
    if budget <= 0 or not price_hourly:
        return None
    spent = sums.get(currency, 0.0)
    left = hours_left_in_month(now)
    hours = min(lifetime_hours, left) if lifetime_hours else left
    would = price_hourly * hours
    if spent + would <= budget:
        return None
    unit = f" {currency}" if currency else ""
    others = {c: amount for c, amount in sums.items() if c != currency}
    aside = f" (besides {in_words(others)}, other currencies, not counted against it)" if others else ""
    return (
        f"this launch would cross budget_month: {spent:.2f}{unit} spent this month + up to {would:.2f}{unit} for it "
        f"({price_hourly:.4f}{unit}/h for {hours:.0f} h) > {budget:.2f}{unit}{aside}; raise budget_month, "
        "choose a smaller size, or a shorter --max-lifetime"
    )
