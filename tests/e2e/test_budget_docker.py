"""The budget on one booted docker workspace, with a fake price so that its share is spent in
seconds. Docker bills nothing, so the share reaches root the way `vmgen start` hands one over:
signed with the key the launch gave root and this machine, relayed by the agent's SSH login to
root's control socket. The agent cannot write root's ledger, its grant or its settings, read
the key, forge a grant or replay the laptop's; and a workspace it keeps busy (a keepalive lease)
is stopped once the share is spent. The tests run in order on the module's workspace."""

from __future__ import annotations

import json
import time

import pytest

from tests.polling import eventually, wait_until
from vmgen.contract.budgetgrant import BudgetGrant, grant_text, new_key, sign
from vmgen.contract.enums import BudgetAction

from .conftest import make_repo, unique

NAME = unique("budget")
PRICE = 36.0  # EUR an hour, a fake one: 0.01 EUR a second
MARGIN = 20  # seconds of spend the share leaves, once the workspace is busy


@pytest.fixture(scope="module")
def ws(cli, model, tmp_path_factory):
    cli.env.update({"VMGEN_IDLE_INTERVAL_SECONDS": "2"})
    repo = make_repo(tmp_path_factory.mktemp("repo"), NAME)
    launched = cli("launch", str(repo), "--idle-minutes", "600", "--idle-action", "poweroff")
    yield launched
    cli("destroy", NAME, "--yes", check=False)


def grant(allowance: float, issued_at: float | None = None) -> BudgetGrant:
    return BudgetGrant(
        workspace=NAME,
        budget_month=1000.0,
        allowance=round(allowance, 4),
        price_hourly=PRICE,
        currency="EUR",
        month_end=time.time() + 86400,
        action=BudgetAction.STOP,
        issued_at=issued_at or time.time(),
    )


def signed(cli, granted: BudgetGrant, key: str = "") -> dict[str, str]:
    key = key or (cli.home / f".local/state/vmgen/workspaces/{NAME}/budget-key").read_text().strip()
    text = grant_text(granted)
    return {"grant": text, "mac": sign(text, key)}


def hand(cli, payload: dict[str, str]) -> dict:
    """Through the agent's login, as `vmgen start` does: root's answer."""
    done = cli("ssh", NAME, "--", "vmgen vmside budget-grant", input=json.dumps(payload), check=False)
    return json.loads(done.stdout.strip().splitlines()[-1])


def as_agent(cli, command: str) -> str:
    """A shell line as the agent: what it printed and how it ended."""
    return cli.ssh(NAME, f"( {command} ) 2>&1; echo exit=$?", check=False)


def status(cli) -> dict:
    return json.loads(cli("status", NAME, "--json").stdout)


def test_the_agent_can_neither_change_the_share_nor_forge_one(ws, cli) -> None:
    taken = signed(cli, grant(1000.0))
    assert hand(cli, taken)["result"]["allowance"] == 1000.0
    budget = wait_until(lambda: status(cli).get("budget"), lambda seen: seen is not None, timeout=30, every=1)
    assert (
        budget is not None
        and budget["allowance"] == 1000.0
        and budget["currency"] == "EUR"
        and budget["action"] == "stop"
    )
    for path in ("/var/lib/vmgen/budget.json", "/var/lib/vmgen/budget-grant.json", "/etc/vmgen/idlewatch.toml"):
        said = as_agent(cli, f"echo '{{}}' > {path}")
        assert "Permission denied" in said and "exit=1" in said, (path, said)
        said = as_agent(cli, f"mv {path} /tmp/x")
        assert "exit=1" in said, (path, said)
    said = as_agent(cli, "cat /etc/vmgen/provider.env")
    assert "Permission denied" in said, said
    forged = hand(cli, signed(cli, grant(1e6), key=new_key()))
    assert "signature does not match" in forged["refused"], forged
    replayed = hand(cli, taken)  # the agent saw the laptop's grant go by
    assert "not newer" in replayed["refused"], replayed
    assert status(cli)["budget"]["allowance"] == 1000.0


def test_a_busy_workspace_stops_once_its_share_is_spent(ws, cli, docker_client) -> None:
    cli.ssh(NAME, "vmgen keepalive --for 2h --reason 'holding it up'")
    uptime = float(cli.ssh(NAME, "ps -o etimes= -p 1").strip())  # root counts the boot's uptime
    assert "result" in hand(cli, signed(cli, grant((uptime + MARGIN) * PRICE / 3600)))
    held = status(cli)
    assert held["verdict"]["condition"] == "kept-alive", held["verdict"]
    assert held["budget"]["crossed"] is False
    # Neither the lease (2 h), the idle timeout (10 h) nor the hard lifetime (72 h) is near: what
    # powers it off is the budget.
    eventually(
        lambda: docker_client.containers.get(f"vmgen-{NAME}").status == "exited",
        timeout=MARGIN + 120,
        what="the workspace powered off by its budget",
    )


def test_start_hands_over_the_share_as_of_now_and_the_ledger_carries_on(ws, cli) -> None:
    """`vmgen start` with a budget: the boot begins spent (root waits for a new share instead of
    stopping at once), the laptop hands over this month's share as of now (docker: nothing
    billed, so no budget holds), and root's ledger kept what the last boot spent."""
    cli.env["VMGEN_BUDGET_MONTH"] = "1000"
    started = cli("start", NAME)
    assert "handing the workspace its share of budget_month" in started.stderr, started.stderr
    assert "keeps the budget" not in started.stderr, started.stderr  # the grant was taken
    after = status(cli)
    assert after.get("budget") is None, after.get("budget")  # a fresh verdict: no budget counts now
    ledger = json.loads(cli.ssh(NAME, "cat /var/lib/vmgen/budget.json"))
    assert ledger["spent_seconds"] > MARGIN and ledger["warned"] is True  # the last boot's spend is kept
