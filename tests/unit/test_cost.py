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
    hours_left_in_month,
    in_words,
    month_end,
    month_start,
    totals,
)
from vmgen.laptop.values import Workspace

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def workspace(status: str, created: datetime, price: float | None, name: str = "app") -> Workspace:
    return Workspace(name, "cloud", WorkspaceStatus(status), created, None, price_hourly=price)


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
