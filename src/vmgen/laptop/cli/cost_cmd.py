"""`vmgen cost`: what your workspaces have cost this month, from each provider's prices, and what
their idle stops and deletes saved against running all month."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table

from ...contract.enums import WorkspaceStatus
from ..cost import CostLine, cost_line, found_gone, gone_line, in_words, month_start, observed, saved_totals, totals
from ..owner import owned
from ..state import WorkspaceState, all_records
from .app import err, main, out, provider_named, settings


def month_lines(now: datetime) -> list[CostLine]:
    """Your workspaces on every provider you use (the configured one and those of your records),
    and those of your records that are gone (deleted by their watchdog) this month. What it sees
    goes into each workspace's uptime log (a stop it did not record, that one is gone)."""
    records = {r.name: r for r in all_records()}
    lines = []
    on_a_provider: set[str] = set()
    for name in sorted({settings().provider} | {r.provider for r in records.values()}):
        provider = provider_named(name)
        for workspace in provider.workspaces():
            on_a_provider.add(workspace.name)
            mine = owned(workspace.owner, workspace.owner_id)
            if mine is False or (mine is None and workspace.name not in records):
                continue
            log = None
            if workspace.name in records:
                state = WorkspaceState(workspace.name)
                log = observed(state.uptime(), workspace, provider.currency, now.timestamp())
                state.record_uptime(log)
            lines.append(cost_line(workspace, provider.stop_bills, now, provider.currency, log))
    for record in records.values():
        state = WorkspaceState(record.name)
        if record.name in on_a_provider or state.cut_short():
            continue
        log = found_gone(state.uptime(), now.timestamp())
        state.record_uptime(log)
        if (line := gone_line(record.name, record.provider, record.created_at, log, now)) is not None:
            lines.append(line)
    return lines


def _amount(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@main.command()
def cost() -> None:
    """What your workspaces have cost this month so far (uptime x price per hour), and what
    their idle stops and deletes saved against running all month."""
    now = datetime.now(UTC)
    lines = month_lines(now)
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PROVIDER", "STATUS", "HOURS", "PER HOUR", "THIS MONTH", "OFF HOURS", "SAVED", "CURRENCY"):
        table.add_column(column)
    for line in lines:
        price = f"{line.price_hourly:.4f}" if line.price_hourly is not None else "-"
        off = "-" if line.saved_hours is None else f"{line.saved_hours:.1f}"
        table.add_row(
            line.name,
            line.provider,
            line.status,
            f"{line.hours:.1f}",
            price,
            _amount(line.cost),
            off,
            _amount(line.saved),
            line.currency or "-",
        )
    out.print(table)
    sums = totals(lines)
    budget = settings().budget_month
    err.print(f"since {month_start(now):%Y-%m-%d}: spent {in_words(sums)}")
    err.print(f"  saved by stops and deletes, against running all month: {in_words(saved_totals(lines))}")
    if budget > 0:
        # budget_month holds in each currency apart: a launch is checked against its own currency's.
        for currency, spent in sorted(sums.items()) or [("", 0.0)]:
            unit = f" {currency}" if currency else ""
            err.print(f"  of budget_month {budget:.2f}{unit}: {spent:.2f}{unit} ({spent / budget:.0%})")
    for line in lines:
        if line.note:
            err.print(f"{line.name}: {line.note}")
    for name in sorted({line.provider for line in lines if line.status == WorkspaceStatus.STOPPED}):
        provider = provider_named(name)
        if provider.stop_bills:
            err.print(f"note: {provider.stop_note()}")
