"""What workspaces cost this month (uptime x the provider's price per hour), and a budget that
refuses, with the numbers and before anything is made, a launch that would cross it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.hetzner import FakeHetzner
from tests.unit.providers.test_hetzner import USER_DATA, provider_on, run_vmgen, spec
from vmgen.contract.enums import WorkspaceStatus
from vmgen.laptop.cost import (
    allowance,
    budget_refusal,
    cost_line,
    found_gone,
    gone_line,
    hours_left_in_month,
    in_words,
    month_end,
    month_start,
    observed,
    off_seconds,
    saved_totals,
    started_at,
    stopped_at,
    totals,
)
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState
from vmgen.laptop.values import StopReason, UptimeLog, Workspace

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def workspace(
    status: str, created: datetime, price: float | None, name: str = "app", stopped_by: StopReason | None = None
) -> Workspace:
    return Workspace(name, "cloud", WorkspaceStatus(status), created, None, price_hourly=price, stopped_by=stopped_by)


def at(hours_before_now: float) -> float:
    return (NOW - timedelta(hours=hours_before_now)).timestamp()


def test_a_month_is_counted_from_its_first_hour() -> None:
    assert month_start(NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert hours_left_in_month(NOW) == 24 * 24 + 12  # to 2027-01-01 00:00
    assert hours_left_in_month(datetime(2026, 2, 28, 23, tzinfo=UTC)) == 1


def test_uptime_this_month_times_the_price() -> None:
    last_month = cost_line(workspace("running", NOW - timedelta(days=30), 0.01), stop_bills=True, now=NOW)
    assert last_month.hours == 6 * 24 + 12 and last_month.cost == pytest.approx(1.56)  # from Dec 1 only
    today = cost_line(workspace("running", NOW - timedelta(hours=3), 0.01), stop_bills=True, now=NOW)
    assert today.hours == 3 and today.cost == pytest.approx(0.03)
    assert totals([last_month, today]) == {"": pytest.approx(1.59)}


def test_a_stopped_server_counts_where_the_provider_bills_it() -> None:
    created = NOW - timedelta(hours=10)
    assert cost_line(workspace("stopped", created, 0.01), stop_bills=True, now=NOW).cost == pytest.approx(0.10)
    assert cost_line(workspace("stopped", created, 0.01), stop_bills=False, now=NOW).cost == 0
    assert cost_line(workspace("running", created, None), stop_bills=True, now=NOW).cost is None  # no price: "-"


def test_a_stop_in_the_middle_is_not_billed_and_is_what_it_saved() -> None:
    # Made 10 h ago, stopped from 8 h to 3 h ago by `vmgen stop`/`start`: 5 h billed, 5 h saved.
    log = UptimeLog(stops=((at(8), at(3)),))
    line = cost_line(workspace("running", NOW - timedelta(hours=10), 0.05), False, NOW, "USD", log)
    assert (line.hours, line.saved_hours) == pytest.approx((5, 5))
    assert (line.cost, line.saved) == pytest.approx((0.25, 0.25))
    # Still stopped since 2 h ago: 8 h billed, 2 h saved.
    log = UptimeLog(stops=((at(2), None),))
    line = cost_line(workspace("stopped", NOW - timedelta(hours=10), 0.05), False, NOW, "USD", log)
    assert (line.hours, line.saved_hours) == pytest.approx((8, 2))


def test_a_workspace_made_last_month_is_counted_and_saves_from_the_months_first_hour() -> None:
    # Made on Nov 20, stopped on Nov 28 until Dec 3 00:00: of Dec's 156 h so far, 48 h were off.
    created = datetime(2026, 11, 20, tzinfo=UTC)
    stop = (datetime(2026, 11, 28, tzinfo=UTC).timestamp(), datetime(2026, 12, 3, tzinfo=UTC).timestamp())
    line = cost_line(workspace("running", created, 0.01), False, NOW, "EUR", UptimeLog(stops=(stop,)))
    assert line.hours == pytest.approx(6 * 24 + 12 - 48) and line.saved_hours == pytest.approx(48)
    assert line.saved == pytest.approx(0.48)
    # Overlapping or repeated stops count once; a stop before the month counts nothing in it.
    start, end = month_start(NOW).timestamp(), NOW.timestamp()
    overlapping = (stop, stop, (stop[1] - 3600, stop[1] + 3600))
    assert off_seconds(start, end, overlapping) == pytest.approx(49 * 3600)
    assert off_seconds(start, end, (stop, (stop[1] - 3600, None))) == pytest.approx(end - start)  # open: until now
    assert off_seconds(start, end, ((at(24 * 40), at(24 * 35)),)) == 0


def test_a_stopped_server_a_provider_still_bills_saves_nothing_and_says_so() -> None:
    log = UptimeLog(stops=((at(4), None),))
    line = cost_line(workspace("stopped", NOW - timedelta(hours=10), 0.02), True, NOW, "EUR", log)
    assert (line.hours, line.cost, line.saved_hours, line.saved) == pytest.approx((10, 0.2, 0, 0))
    assert "still billed" in line.note
    # The idle watchdog's stop, as the provider read it off the disk, is a stop vmgen knows of.
    idle = workspace("stopped", NOW - timedelta(hours=10), 0.02, stopped_by=StopReason(at=at(4)))
    assert cost_line(idle, False, NOW, "EUR").saved_hours == pytest.approx(4)
    # Stopped and never seen running: when is not known; neither billed nor said to save.
    unknown = cost_line(workspace("stopped", NOW - timedelta(hours=10), 0.02), False, NOW, "EUR")
    assert (unknown.hours, unknown.saved) == (0, None) and "not counted" in unknown.note


def test_a_workspace_its_watchdog_deleted_is_billed_until_found_gone() -> None:
    created = at(30)
    log = UptimeLog(seen_at=at(25), gone_at=at(20), price_hourly=0.03, currency="EUR")
    line = gone_line("app", "hetzner", created, log, NOW)
    assert line is not None and line.status == "gone"
    assert (line.hours, line.saved_hours) == pytest.approx((10, 20))
    assert (line.cost, line.saved) == pytest.approx((0.3, 0.6)) and line.currency == "EUR"
    assert "found gone 2026-12-06 16:00 UTC" in line.note and "last seen 2026-12-06 11:00 UTC" in line.note
    # Gone before this month began: nothing this month.
    assert gone_line("app", "hetzner", at(24 * 40), replace(log, gone_at=at(24 * 35)), NOW) is None
    # Its price never seen (deleted before vmgen looked, by an older vmgen): its hours, no amount.
    unpriced = gone_line("app", "hetzner", created, replace(log, price_hourly=None, currency=""), NOW)
    assert unpriced is not None and unpriced.cost is None and "price was never recorded" in unpriced.note


def test_what_vmgen_sees_goes_into_the_uptime_log() -> None:
    made = NOW - timedelta(hours=10)
    seen = observed(UptimeLog(), workspace("running", made, 0.02), "EUR", at(9))
    assert (seen.price_hourly, seen.currency, seen.seen_at, seen.stops) == (0.02, "EUR", at(9), ())
    # Stopped by its watchdog: from the watchdog's own time; stopped outside vmgen: from when seen.
    idle = observed(seen, workspace("stopped", made, 0.02, stopped_by=StopReason(at=at(8))), "EUR", at(5))
    assert idle.stops == ((at(8), None),)
    outside = observed(seen, workspace("stopped", made, 0.02), "EUR", at(5))
    assert outside.stops == ((at(5), None),)
    # Started outside vmgen: billed from the last time it was seen stopped.
    back = observed(idle, workspace("running", made, 0.02), "EUR", at(1))
    assert back.stops == ((at(8), at(5)),)
    # `vmgen stop` and `vmgen start`.
    log = started_at(stopped_at(seen, at(4)), at(2))
    assert log.stops == ((at(4), at(2)),) and stopped_at(stopped_at(seen, at(4)), at(3)).stops == ((at(4), None),)
    # Found gone once: the first time counts; a new server of the name starts a new log.
    gone = found_gone(found_gone(seen, at(3)), at(1))
    assert gone.gone_at == at(3)
    restored = observed(gone, workspace("running", NOW - timedelta(hours=1), 0.05), "EUR", NOW.timestamp())
    assert (restored.gone_at, restored.stops, restored.price_hourly) == (0.0, (), 0.05)


def test_savings_are_summed_per_currency() -> None:
    eur = cost_line(
        workspace("running", made := NOW - timedelta(hours=10), 0.02), False, NOW, "EUR", UptimeLog(((at(5), at(1)),))
    )
    usd = cost_line(workspace("stopped", made, 0.5, "us"), False, NOW, "USD", UptimeLog(((at(2), None),)))
    free = cost_line(workspace("stopped", made, 0.0, "local"), False, NOW, "", UptimeLog(((at(2), None),)))
    assert saved_totals([eur, usd, free]) == {"EUR": pytest.approx(0.08), "USD": pytest.approx(1.0)}
    assert in_words(saved_totals([eur, usd])) == "0.08 EUR + 1.00 USD (not added: different currencies)"


def test_the_uptime_log_is_kept_in_the_workspaces_state(home) -> None:
    state = WorkspaceState("app")
    log = UptimeLog(stops=((1.0, 2.0), (3.0, None)), seen_at=4.0, gone_at=5.0, price_hourly=0.02, currency="EUR")
    state.record_uptime(log)
    assert state.uptime() == UptimeLog()  # no workspace of that name here: nothing written
    state.create(WorkspaceRecord("app", "hetzner", 1.0, "/src", "claude"), "ssh-ed25519 A")
    state.record_uptime(log)
    assert state.uptime() == log and oct((state.dir / state.UPTIME).stat().st_mode & 0o777) == "0o600"
    state.write(state.UPTIME, "{not json")
    assert state.uptime() == UptimeLog()


def test_a_launch_that_would_cross_the_budget_is_refused_with_the_numbers() -> None:
    said = budget_refusal(5.0, {"EUR": 4.5}, price_hourly=0.01, lifetime_hours=72, now=NOW, currency="EUR")
    assert said is not None
    assert "4.50 EUR spent this month + up to 0.72 EUR for it (0.0100 EUR/h for 72 h) > 5.00 EUR" in said
    assert budget_refusal(5.0, {"EUR": 4.5}, 0.01, lifetime_hours=24, now=NOW, currency="EUR") is None  # 4.74 fits
    # With no lifetime, the rest of the month: 588 h.
    assert "for 588 h" in (budget_refusal(5.0, {}, price_hourly=0.01, lifetime_hours=0, now=NOW) or "")
    assert budget_refusal(0, {"": 100}, price_hourly=1, lifetime_hours=72, now=NOW) is None  # no budget
    assert budget_refusal(1, {"": 100}, price_hourly=0.0, lifetime_hours=72, now=NOW) is None  # free


def test_euros_and_dollars_are_never_added() -> None:
    hetzner = cost_line(workspace("running", NOW - timedelta(hours=10), 0.02, "eu"), True, NOW, "EUR")
    aws = cost_line(workspace("running", NOW - timedelta(hours=10), 0.05, "us"), True, NOW, "USD")
    docker = cost_line(workspace("running", NOW - timedelta(hours=10), 0.0, "local"), False, NOW, "")
    sums = totals([hetzner, aws, docker])
    assert sums == {"EUR": pytest.approx(0.2), "USD": pytest.approx(0.5)}  # a free line adds no currency
    assert in_words(sums) == "0.20 EUR + 0.50 USD (not added: different currencies)"
    assert in_words({"EUR": 1.5}) == "1.50 EUR"
    # A launch on AWS is held against the dollars only, and the refusal names the euros apart.
    # 0.50 USD + 0.10 USD fits 0.60 exactly: the euros are not added to it.
    assert budget_refusal(0.6, sums, price_hourly=0.05, lifetime_hours=2, now=NOW, currency="USD") is None
    said = budget_refusal(0.55, sums, price_hourly=0.05, lifetime_hours=2, now=NOW, currency="USD")
    assert said is not None and "0.50 USD spent" in said and "besides 0.20 EUR, other currencies" in said
    assert budget_refusal(0.55, sums, price_hourly=0.01, lifetime_hours=2, now=NOW, currency="EUR") is None


def test_a_workspaces_allowance_is_what_the_others_left_of_the_budget_in_its_currency() -> None:
    lines = [
        cost_line(workspace("running", NOW - timedelta(hours=100), 0.05, "other"), True, NOW, "EUR"),
        cost_line(workspace("running", NOW - timedelta(hours=100), 0.05, "app"), True, NOW, "EUR"),
        cost_line(workspace("running", NOW - timedelta(hours=100), 1.0, "us"), True, NOW, "USD"),
    ]
    others = totals(lines, leave_out="app")  # a restore of "app": its own old spend is the VM's to count
    assert others == {"EUR": pytest.approx(5.0), "USD": pytest.approx(100.0)}
    assert allowance(20.0, others, "EUR") == pytest.approx(15.0)
    assert allowance(20.0, others, "USD") == 0.0  # clamped: never below nothing
    assert allowance(20.0, {}, "EUR") == 20.0
    # The allowance counts until the month's end, also across a year.
    assert month_end(NOW) == datetime(2027, 1, 1, tzinfo=UTC)
    assert month_end(datetime(2027, 1, 31, 23, 59, tzinfo=UTC)) == datetime(2027, 2, 1, tzinfo=UTC)


@pytest.fixture
def cloud(home):
    with FakeHetzner(boot=False) as fake:
        yield fake


def env_of(cloud: FakeHetzner, **more: str) -> dict[str, str]:
    return {
        "HCLOUD_TOKEN": cloud.token,
        "VMGEN_HCLOUD_ENDPOINT": cloud.api_endpoint,
        "VMGEN_PROVIDER": "hetzner",
        "VMGEN_REGION": "fsn1",
        **more,
    }


def test_vmgen_cost_lists_the_months_spend_and_the_budget(home, cloud) -> None:
    provider_on(cloud).create(spec("ws", size="medium"), USER_DATA)
    result = run_vmgen(home, "cost", **env_of(cloud, VMGEN_BUDGET_MONTH="20"))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["ws"])
    assert "hetzner" in row and "running" in row and float(row.split()[4]) > 0  # its €/h from the price list
    assert "of budget_month 20.00" in result.stderr


def test_a_launch_over_budget_is_refused_before_anything_is_made(home, cloud) -> None:
    result = run_vmgen(
        home, "launch", "https://github.com/me/app", "--size", "large", **env_of(cloud, VMGEN_BUDGET_MONTH="0.05")
    )
    assert result.returncode == 1 and "would cross budget_month" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not cloud.state.servers and not cloud.state.ssh_keys


def test_a_launch_hands_the_vm_its_share_of_the_budget(home, cloud) -> None:
    """What the other workspaces spent this month in EUR is taken off budget_month; the VM's
    watchdog settings carry the rest, the price, the currency and the month's end."""
    import click

    from vmgen.cli import main
    from vmgen.contract.documents import WatchSettings
    from vmgen.contract.enums import BudgetAction
    from vmgen.laptop.builder.render import _watch_settings
    from vmgen.laptop.cli.launching import check_budget
    from vmgen.laptop.config import Settings
    from vmgen.laptop.providers import get_provider
    from vmgen.laptop.spec import WatchdogTuning
    from vmgen.laptop.values import SelfDelete

    settings = Settings(provider="hetzner", hcloud_token=cloud.token, hcloud_endpoint=cloud.api_endpoint, region="fsn1")
    provider = get_provider("hetzner", settings)
    provider.create(spec("other", size="large"), USER_DATA)
    new = replace(spec("ws", size="small"), watchdog=WatchdogTuning(budget_month=50, budget_action=BudgetAction.STOP))
    before = datetime.now(UTC)
    with click.Context(main, obj=settings):
        made = check_budget(provider, new)
    tuning = made.watchdog
    price = provider.price_hourly(new)
    assert price and tuning.budget_currency == "EUR" and tuning.budget_price_hourly == price
    assert 49.9 < tuning.budget_allowance <= 50  # "other" has run for seconds
    assert tuning.budget_month_end == month_end(before).timestamp()
    on_vm = WatchSettings.from_toml(_watch_settings(made, SelfDelete(provider="hetzner")).to_toml())
    assert (on_vm.budget_month, on_vm.budget_action, on_vm.budget_currency) == (50, BudgetAction.STOP, "EUR")
    assert on_vm.budget_allowance == tuning.budget_allowance and on_vm.budget_month_end == tuning.budget_month_end
    # Without a budget nothing is worked out, and the VM counts nothing.
    with click.Context(main, obj=settings):
        assert check_budget(provider, spec("ws2")).watchdog.budget_allowance == 0


def test_vmgen_cost_counts_a_workspace_its_watchdog_deleted_and_a_stop_still_billed(home, cloud) -> None:
    """`vmgen list` records a price and, after a delete from outside (as the watchdog's), when it
    found the workspace gone; `vmgen cost` bills it until then. A stopped Hetzner server saves
    nothing and says why."""
    provider = provider_on(cloud)
    for name in ("gone", "parked"):
        provider.create(spec(name, size="medium"), USER_DATA)
    listed = run_vmgen(home, "list", **env_of(cloud))
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.split()[:1] == ["gone"])
    assert row.split()[-1] == "EUR" and float(row.split()[-2]) > 0  # its price per hour, and in what
    for name in ("gone", "parked"):
        made = datetime.now(UTC).timestamp() - 2 * 3600  # the record says: launched two hours ago
        WorkspaceState(name).create(WorkspaceRecord(name, "hetzner", made, "/src", "claude"), "ssh-ed25519 A")
    assert run_vmgen(home, "cost", **env_of(cloud)).returncode == 0  # sees them: their price is kept
    assert WorkspaceState("gone").uptime().price_hourly == pytest.approx(float(row.split()[-2]), abs=1e-4)
    provider.delete("gone")  # as its idle watchdog does, from the VM
    provider.stop("parked")
    assert run_vmgen(home, "list", **env_of(cloud)).returncode == 0  # finds it gone, and when
    found_gone_at = WorkspaceState("gone").uptime().gone_at
    assert found_gone_at > 0
    result = run_vmgen(home, "cost", **env_of(cloud))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:] if line.strip()}
    # NAME PROVIDER STATUS HOURS PER-HOUR THIS-MONTH OFF-HOURS SAVED CURRENCY
    gone, parked = rows["gone"], rows["parked"]
    assert gone[2] == "gone" and gone[3] == "2.0" and float(gone[5]) > 0 and gone[8] == "EUR"  # 2 h until found gone
    assert parked[2] == "stopped" and (parked[6], parked[7]) == ("0.0", "0.00")  # its stop saves nothing
    assert "gone: deleted by its watchdog or outside vmgen" in result.stderr
    assert "billed until found gone" in result.stderr
    assert "parked: stopped, still billed" in result.stderr
    assert "saved by stops and deletes, against running all month" in result.stderr
    assert "not counted" not in result.stderr
    assert WorkspaceState("gone").uptime().gone_at == found_gone_at  # the first finding stays
