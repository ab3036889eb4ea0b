"""What workspaces cost this month, what their idle stops saved, and whether a launch fits the
budget: pure functions over what the providers report (each workspace's creation time, status,
price per hour, and why it stopped) and what this machine recorded of its uptime (`UptimeLog`).

A workspace is billed from its creation (or the month's start) until now, less the times it was
stopped, on a provider that does not bill a stopped server (`stop_bills` False); on one that does
(Hetzner: the server's price while it exists), a stop saves nothing. A stop's time comes from
`vmgen stop`, or from the idle watchdog's own record (the provider reads it off the disk), or else
it is when vmgen first saw it stopped (`vmgen list`/`cost`). A workspace its watchdog deleted is
billed until vmgen found it gone (the next `vmgen list`/`cost`; it was deleted between that and
the time it was last seen): an upper bound on what it cost, a lower one on what the delete saved.
What a stop or a delete saved is measured against running all month: the hours this month, since
its creation, it was not billed, x its price.

Each provider prices in its own currency (Hetzner EUR, AWS USD): sums are per currency, and
`budget_month` is held against the spend in the currency of the workspace being made; what was
spent in another currency is named beside it, never added.

A running workspace's share of the budget (its allowance) is `budget_month` less what the user's
other workspaces spent this month in its currency, handed to the VM's watchdog, which counts its
own uptime against it until the month ends (vmside/idlewatch/budget.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..contract.budgetgrant import BudgetGrant
from ..contract.enums import BudgetAction, WorkspaceStatus
from .values import UptimeLog, Workspace

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
    saved_hours: float | None = None  # not billed this month since its creation; None: not known
    saved: float | None = None  # saved_hours x price_hourly
    note: str = ""  # what a person should know about these numbers


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def hours_left_in_month(now: datetime) -> float:
    return (month_end(now) - now.astimezone(UTC)).total_seconds() / HOUR


def month_end(now: datetime) -> datetime:
    """The start of the next month (UTC): where an allowance worked out now stops counting."""
    start = month_start(now)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)


def off_seconds(start: float, end: float, stops: tuple[tuple[float, float | None], ...]) -> float:
    """Seconds of [start, end] the stops cover (overlaps counted once; an open stop runs to end)."""
    spans = sorted((max(start, since), min(end, end if until is None else until)) for since, until in stops)
    covered, reached = 0.0, start
    for since, until in spans:
        begins = max(since, reached)
        if until > begins:
            covered, reached = covered + until - begins, until
    return covered


def cost_line(
    workspace: Workspace, stop_bills: bool, now: datetime, currency: str = "", log: UptimeLog | None = None
) -> CostLine:
    """This month's hours, cost and savings of a workspace its provider reports."""
    start = max(workspace.created_at, month_start(now)).timestamp()
    end = max(start, now.timestamp())
    stops = log.stops if log else ()
    stopped = workspace.status == WorkspaceStatus.STOPPED
    known = not stopped or bool(stops and stops[-1][1] is None)
    if stopped and not known and workspace.stopped_by is not None and workspace.stopped_by.at:
        stops, known = (*stops, (workspace.stopped_by.at, None)), True  # its idle watchdog's stop
    note = ""
    if stop_bills:
        billed, saved = end - start, 0.0  # the server bills while it exists: a stop saves nothing
        note = "stopped, still billed (the server's price applies while it exists)" if stopped else ""
    elif not known:
        # Stopped, vmgen does not know since when (never seen running): counted at nothing.
        billed, saved = 0.0, None
        note = "stopped outside vmgen, not seen before: not counted"
    else:
        off = off_seconds(start, end, stops)
        billed, saved = end - start - off, off
    return _line(
        workspace.name, workspace.provider, workspace.status, billed, saved, workspace.price_hourly, currency, note
    )


def gone_line(name: str, provider: str, created_at: float, log: UptimeLog, now: datetime) -> CostLine | None:
    """A workspace its watchdog deleted (vmgen found it gone): billed from its creation until it
    was found gone, less its stops; saved from then until now. None when it was gone before this
    month began (this month owes it nothing)."""
    start, end = max(created_at, month_start(now).timestamp()), now.timestamp()
    if not log.gone_at or log.gone_at <= start:
        return None
    deleted = min(log.gone_at, end)
    billed = deleted - start - off_seconds(start, deleted, log.stops)
    seen = f"last seen {_clock(log.seen_at)}, " if log.seen_at else ""
    note = f"deleted by its watchdog or outside vmgen ({seen}found gone {_clock(log.gone_at)}): billed until found gone"
    if log.price_hourly is None:
        note += "; its price was never recorded"
    return _line(name, provider, "gone", billed, end - start - billed, log.price_hourly, log.currency, note)


def _line(
    name: str,
    provider: str,
    status: str,
    billed: float,
    saved: float | None,
    price: float | None,
    currency: str,
    note: str,
) -> CostLine:
    hours = max(0.0, billed) / HOUR
    saved_hours = None if saved is None else max(0.0, saved) / HOUR
    return CostLine(
        name,
        provider,
        status,
        hours,
        price,
        None if price is None else hours * price,
        currency if price else "",
        saved_hours,
        None if price is None or saved_hours is None else saved_hours * price,
        note,
    )


def _clock(at: float) -> str:
    return f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M} UTC"


# What this machine records of a workspace's uptime, as it sees it change (pure: the caller writes).


def observed(log: UptimeLog, workspace: Workspace, currency: str, now: float) -> UptimeLog:
    """The log after `vmgen list`/`cost` saw the workspace: its price, a stop it did not record
    (its idle watchdog's, from the provider; else one made outside vmgen, from now), a start it
    did not record (outside vmgen: from when it was last seen stopped)."""
    if log.gone_at and workspace.created_at.timestamp() >= log.gone_at:
        log = UptimeLog()  # a new server under the name (a restore): the old one's log is over
    stops = log.stops
    open_stop = bool(stops and stops[-1][1] is None)
    if workspace.status == WorkspaceStatus.STOPPED and not open_stop:
        why = workspace.stopped_by
        stops = (*stops, (why.at if why is not None and why.at else now, None))
    elif workspace.status != WorkspaceStatus.STOPPED and open_stop:
        since = stops[-1][0]
        stops = (*stops[:-1], (since, max(since, log.seen_at)))
    keep_from = month_start(datetime.fromtimestamp(now, UTC)).timestamp() - 31 * 24 * HOUR
    stops = tuple(stop for stop in stops if stop[1] is None or stop[1] >= keep_from)
    price = workspace.price_hourly if workspace.price_hourly is not None else log.price_hourly
    return UptimeLog(stops, now, 0.0, price, currency)


def stopped_at(log: UptimeLog, at: float) -> UptimeLog:
    """`vmgen stop` stopped it at `at` (a stop already open stays as it was)."""
    if log.stops and log.stops[-1][1] is None:
        return log
    return replace(log, stops=(*log.stops, (at, None)))


def started_at(log: UptimeLog, at: float) -> UptimeLog:
    """`vmgen start` started it at `at`: the open stop ends."""
    if not (log.stops and log.stops[-1][1] is None):
        return log
    since = log.stops[-1][0]
    return UptimeLog(
        (*log.stops[:-1], (since, max(since, at))), log.seen_at, log.gone_at, log.price_hourly, log.currency
    )


def found_gone(log: UptimeLog, now: float) -> UptimeLog:
    """Found gone at `now` (kept from the first time it was)."""
    return log if log.gone_at else replace(log, gone_at=now)


def totals(lines: list[CostLine], leave_out: str = "") -> dict[str, float]:
    """What the lines cost, per currency (never one sum of two); `leave_out`: a workspace's name
    not to count (the one an allowance is worked out for). Lines that cost nothing add nothing."""
    sums: dict[str, float] = {}
    for line in lines:
        if line.name != leave_out and line.cost:
            sums[line.currency] = sums.get(line.currency, 0.0) + line.cost
    return sums


def saved_totals(lines: list[CostLine]) -> dict[str, float]:
    """What stops and deletes saved this month against running all month, per currency."""
    sums: dict[str, float] = {}
    for line in lines:
        if line.saved:
            sums[line.currency] = sums.get(line.currency, 0.0) + line.saved
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
