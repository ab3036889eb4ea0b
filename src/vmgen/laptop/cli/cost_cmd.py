"""`vmgen cost`: what your workspaces have cost this month, from each provider's prices."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table

from ...contract.enums import WorkspaceStatus
from ..cost import CostLine, cost_line, in_words, month_start, totals
from ..owner import owned
from ..state import WorkspaceState, all_records
from .app import err, main, out, provider_named, settings


def month_lines(now: datetime) -> list[CostLine]:
    """Your workspaces on every provider you use (the configured one and those of your records)."""
    records = {r.name: r for r in all_records()}
    lines = []
    for name in sorted({settings().provider} | {r.provider for r in records.values()}):
        provider = provider_named(name)
        for workspace in provider.workspaces():
            mine = owned(workspace.owner, workspace.owner_id)
            if mine is False or (mine is None and workspace.name not in records):
                continue
            lines.append(cost_line(workspace, provider.stop_bills, now, provider.currency))
    return lines


@main.command()
def cost() -> None:
    """What your workspaces have cost this month so far (uptime x price per hour)."""
    now = datetime.now(UTC)
    lines = month_lines(now)
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PROVIDER", "STATUS", "HOURS", "PER HOUR", "THIS MONTH", "CURRENCY"):
        table.add_column(column)
    for line in lines:
        price = f"{line.price_hourly:.4f}" if line.price_hourly is not None else "-"
        cost = f"{line.cost:.2f}" if line.cost is not None else "-"
        table.add_row(line.name, line.provider, line.status, f"{line.hours:.1f}", price, cost, line.currency or "-")
    out.print(table)
    sums = totals(lines)
    budget = settings().budget_month
    err.print(f"since {month_start(now):%Y-%m-%d}: {in_words(sums)}")
    if budget > 0:
        # budget_month holds in each currency apart: a launch is checked against its own currency's.
        for currency, spent in sorted(sums.items()) or [("", 0.0)]:
            unit = f" {currency}" if currency else ""
            err.print(f"  of budget_month {budget:.2f}{unit}: {spent:.2f}{unit} ({spent / budget:.0%})")
    for name in sorted({line.provider for line in lines if line.status == WorkspaceStatus.STOPPED}):
        provider = provider_named(name)
        if provider.stop_bills:
            err.print(f"note: {provider.stop_note()}")
    gone = [r.name for r in all_records() if not WorkspaceState(r.name).cut_short()] if lines is not None else []
    listed = {line.name for line in lines}
    if missing := sorted(set(gone) - listed):
        err.print(
            f"not counted: {', '.join(missing)} (deleted by their idle action; vmgen keeps no record of their uptime)"
        )
