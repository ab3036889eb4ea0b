"""What workspaces cost this month (uptime x the provider's price per hour), and a budget that
refuses, with the numbers and before anything is made, a launch that would cross it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.hetzner import FakeHetzner
from tests.unit.providers.test_hetzner import USER_DATA, provider_on, run_vmgen, spec
from vmgen.contract.enums import WorkspaceStatus
from vmgen.laptop.cost import budget_refusal, cost_line, hours_left_in_month, month_start, total
from vmgen.laptop.values import Workspace

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def workspace(status: str, created: datetime, price: float | None) -> Workspace:
    return Workspace("app", "cloud", WorkspaceStatus(status), created, None, price_hourly=price)


def test_a_month_is_counted_from_its_first_hour() -> None:
    assert month_start(NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert hours_left_in_month(NOW) == 24 * 24 + 12  # to 2027-01-01 00:00
    assert hours_left_in_month(datetime(2026, 2, 28, 23, tzinfo=UTC)) == 1


def test_uptime_this_month_times_the_price() -> None:
    last_month = cost_line(workspace("running", NOW - timedelta(days=30), 0.01), stop_bills=True, now=NOW)
    assert last_month.hours == 6 * 24 + 12 and last_month.cost == pytest.approx(1.56)  # from Dec 1 only
    today = cost_line(workspace("running", NOW - timedelta(hours=3), 0.01), stop_bills=True, now=NOW)
    assert today.hours == 3 and today.cost == pytest.approx(0.03)
    assert total([last_month, today]) == pytest.approx(1.59)


def test_a_stopped_server_counts_where_the_provider_bills_it() -> None:
    created = NOW - timedelta(hours=10)
    assert cost_line(workspace("stopped", created, 0.01), stop_bills=True, now=NOW).cost == pytest.approx(0.10)
    assert cost_line(workspace("stopped", created, 0.01), stop_bills=False, now=NOW).cost == 0
    assert cost_line(workspace("running", created, None), stop_bills=True, now=NOW).cost is None  # no price: "-"


def test_a_launch_that_would_cross_the_budget_is_refused_with_the_numbers() -> None:
    said = budget_refusal(5.0, spent=4.5, price_hourly=0.01, lifetime_hours=72, now=NOW)
    assert said is not None
    assert "4.50 spent this month + up to 0.72 for it (0.0100/h for 72 h) > 5.00" in said
    assert budget_refusal(5.0, spent=4.5, price_hourly=0.01, lifetime_hours=24, now=NOW) is None  # 4.74 fits
    # With no lifetime, the rest of the month: 588 h.
    assert "for 588 h" in (budget_refusal(5.0, spent=0, price_hourly=0.01, lifetime_hours=0, now=NOW) or "")
    assert budget_refusal(0, spent=100, price_hourly=1, lifetime_hours=72, now=NOW) is None  # no budget
    assert budget_refusal(1, spent=100, price_hourly=0.0, lifetime_hours=72, now=NOW) is None  # free


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
