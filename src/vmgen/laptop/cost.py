"""What workspaces cost this month, and whether a launch fits the budget: pure functions over what
the providers report (each workspace's creation time, status and price per hour).

A workspace is billed from its creation (or the month's start) until now while it runs, and while
it is stopped on a provider that bills a stopped server (`stop_bills`); a stopped workspace on a
provider that does not bill it is counted at nothing, since vmgen does not know when it stopped.
Workspaces that are gone (deleted by their idle action) are not counted: vmgen keeps no record
of their uptime yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..contract.enums import WorkspaceStatus
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


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def hours_left_in_month(now: datetime) -> float:
    start = month_start(now)
    following = (
        start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    )
    return (following - now.astimezone(UTC)).total_seconds() / HOUR


def cost_line(workspace: Workspace, stop_bills: bool, now: datetime) -> CostLine:
    billed = workspace.running or workspace.status == WorkspaceStatus.STARTING or stop_bills
    since = max(workspace.created_at, month_start(now))
    hours = max(0.0, (now - since).total_seconds() / HOUR) if billed else 0.0
    price = workspace.price_hourly
    return CostLine(
        workspace.name, workspace.provider, workspace.status, hours, price, None if price is None else hours * price
    )


def total(lines: list[CostLine]) -> float:
    return sum(line.cost or 0.0 for line in lines)


def budget_refusal(
    budget: float, spent: float, price_hourly: float | None, lifetime_hours: float, now: datetime
) -> str | None:
    """Why a launch would cross the month's budget, with the numbers; None when it fits (or no
    budget is set). The new workspace is counted at its price until its hard lifetime ends or the
    month does, whichever is first (with no lifetime, the month)."""
    if budget <= 0 or not price_hourly:
        return None
    left = hours_left_in_month(now)
    hours = min(lifetime_hours, left) if lifetime_hours else left
    would = price_hourly * hours
    if spent + would <= budget:
        return None
    return (
        f"this launch would cross budget_month: {spent:.2f} spent this month + up to {would:.2f} for it "
        f"({price_hourly:.4f}/h for {hours:.0f} h) > {budget:.2f}; raise budget_month, choose a smaller size, "
        f"or a shorter --max-lifetime"
    )
