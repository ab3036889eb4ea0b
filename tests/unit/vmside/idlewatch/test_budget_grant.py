"""`vmgen start` hands a running workspace a new share of the budget through the agent's login:
root takes it over its control socket only with the laptop's signature, for this workspace, and
newer than the one it holds; the watchdog then counts against it. A boot that begins with the
share spent waits a few minutes for a new one before `stop` acts.

Attacks (the agent relays the grant, so it sees every one): a grant it signs itself, one it
changes, an old one replayed, root's key (not readable to it)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.unit.vmside.test_backups import serve_once
from vmgen.contract.budgetgrant import BUDGET_KEY_VARIABLE, BudgetGrant, grant_text, new_key, sign, verified
from vmgen.contract.control import ControlRequest, Reply
from vmgen.contract.documents import WatchSettings
from vmgen.contract.enums import BudgetAction
from vmgen.contract.names import VmPaths
from vmgen.errors import DocumentError
from vmgen.laptop.cost import grant_for
from vmgen.vmside import control
from vmgen.vmside.idlewatch import budget
from vmgen.vmside.privileges import RunAs

from .test_budget import budget_of, calls, watched  # noqa: F401 - the fixture

ME = RunAs.current()
KEY = new_key()
GRANT = BudgetGrant("app", 20.0, 5.0, 0.5, "EUR", 4_000_000_000.0, BudgetAction.STOP, issued_at=1000.0)


def root_of(base: Path) -> VmPaths:
    paths = VmPaths(etc=base / "etc", state=base / "lib", run=base / "run", home=base / "home")
    paths.etc.mkdir(parents=True, mode=0o755)
    paths.watch_settings.write_text(WatchSettings(name="app").to_toml())
    paths.secrets.write_text(f"{BUDGET_KEY_VARIABLE}={KEY}\n")
    paths.secrets.chmod(0o600)
    return paths


def signed(grant: BudgetGrant, key: str = KEY) -> tuple[str, str]:
    text = grant_text(grant)
    return text, sign(text, key)


def ask(paths: VmPaths, text: str, mac: str) -> Reply:
    server = serve_once(paths, ME)
    (reply,) = control.ask(ControlRequest("budget", trigger="laptop", grant=text, mac=mac), paths, timeout=30)
    server.join(30)
    return reply


def test_the_laptops_grant_is_taken_and_counted_against(tmp_path, calls):  # noqa: F811
    paths = root_of(tmp_path)
    reply = ask(paths, *signed(GRANT))
    assert reply.result is not None and reply.result["ok"] is True and reply.result["allowance"] == 5.0
    assert budget.load_grant(paths) == GRANT
    # The watchdog counts against it instead of the launch's (here: no budget at launch at all).
    assert budget.allowance_now(WatchSettings(name="app"), paths) == budget.Allowance(
        20.0, 5.0, 0.5, "EUR", 4_000_000_000.0, BudgetAction.STOP
    )


@pytest.mark.parametrize(
    ("what", "grant_and_mac", "said"),
    [
        ("signed with another key", signed(GRANT, new_key()), "signature does not match"),
        ("changed after signing", (grant_text(replace(GRANT, allowance=1e6)), signed(GRANT)[1]), "signature"),
        ("for another workspace", signed(replace(GRANT, workspace="other")), "is for 'other'"),
        ("out of bounds", signed(replace(GRANT, allowance=-1.0)), "budget_allowance is -1.0"),
        ("not a grant", ("{}", sign("{}", KEY)), "the budget grant"),
    ],
)
def test_a_grant_root_cannot_trust_is_refused_in_one_line(tmp_path, what, grant_and_mac, said):
    paths = root_of(tmp_path)
    reply = ask(paths, *grant_and_mac)
    assert said in reply.refused and "\n" not in reply.refused, what
    assert budget.load_grant(paths) is None


def test_an_old_grant_replayed_is_refused(tmp_path):
    paths = root_of(tmp_path)
    newer = replace(GRANT, allowance=2.0, issued_at=2000.0)
    assert ask(paths, *signed(newer)).result is not None
    assert "not newer" in ask(paths, *signed(GRANT)).refused  # the agent kept the one from an earlier start
    assert "not newer" in ask(paths, *signed(newer)).refused  # or this very one
    assert budget.load_grant(paths) == newer


def test_without_a_key_a_workspace_takes_no_grant():
    with pytest.raises(DocumentError, match="holds no budget key"):
        verified(*signed(GRANT), key="", workspace="app")


def test_the_laptop_works_the_share_out_as_of_now():
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    grant = grant_for("app", 20.0, BudgetAction.WARN, {"EUR": 12.5, "USD": 30.0}, 0.02, "EUR", now)
    assert grant.allowance == 7.5 and grant.currency == "EUR" and grant.price_hourly == 0.02
    assert grant.month_end == datetime(2027, 1, 1, tzinfo=UTC).timestamp() and grant.issued_at == now.timestamp()
    assert verified(*signed(grant), key=KEY, workspace="app") == grant


def test_a_boot_that_starts_spent_waits_for_a_new_share_before_it_stops(tmp_path, calls):  # noqa: F811
    watchdog, uptime, paths, _ = watched(tmp_path, BudgetAction.STOP)
    uptime.seconds = 8000  # spent in an earlier boot: 8000 s at 0.5 EUR/h > 1 EUR
    watchdog.tick()
    assert calls["act"] == ["started"]
    again, uptime, paths, _ = watched(tmp_path, BudgetAction.STOP)  # `vmgen start`: a new boot
    again.boot = "the next boot"
    for seconds in (5, 60, 200):
        uptime.seconds = seconds
        again.tick()
    assert calls["act"] == ["started"]  # not again yet: the laptop may bring a raised budget
    paths.etc.mkdir(exist_ok=True)
    paths.secrets.write_text(f"{BUDGET_KEY_VARIABLE}={KEY}\n")
    budget.accept_grant(*signed(replace(GRANT, allowance=10.0)), "app", paths)
    uptime.seconds = 400
    again.tick()
    assert calls["act"] == ["started"]  # the new share holds it
    assert budget_of(paths).allowance == 10.0


def test_without_a_new_share_the_stop_comes_after_the_grace(tmp_path, calls):  # noqa: F811
    watchdog, uptime, _, _ = watched(tmp_path, BudgetAction.STOP)
    uptime.seconds = 8000
    watchdog.tick()
    again, uptime, _, _ = watched(tmp_path, BudgetAction.STOP)
    again.boot = "the next boot"
    uptime.seconds = 100
    again.tick()
    uptime.seconds = budget.START_GRACE_SECONDS + 1
    again.tick()
    assert calls["act"] == ["started", "started"]


ATTACK = r"""
import json, sys
said = {}
for name, path in (("read secrets", sys.argv[1]), ("overwrite grant", sys.argv[2])):
    try:
        open(path, "r" if name.startswith("read") else "w").close()
        said[name] = "done"
    except OSError as exc:
        said[name] = exc.errno
print(json.dumps(said))
"""


@pytest.mark.skipif(os.getuid() != 0, reason="the agent is another user than root: only root can be both")
def test_the_agent_can_neither_read_roots_key_nor_write_the_grant_root_holds():
    with tempfile.TemporaryDirectory(prefix="vmgen-test-grant-") as shared:  # pytest's own is root's 0700
        base = Path(shared)
        base.chmod(0o755)
        paths = root_of(base)
        budget.accept_grant(*signed(GRANT), "app", paths)
        files = (paths.secrets, paths.budget_grant)
        attack = subprocess.run(
            ["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-I", "-c", ATTACK, *map(str, files)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert json.loads(attack.stdout) == {"read secrets": errno.EACCES, "overwrite grant": errno.EACCES}
        assert budget.load_grant(paths) == GRANT


def test_the_launch_puts_the_key_in_roots_secrets_file_only():
    from tests.unit.builder.test_render import files_of, make_spec
    from tests.unit.test_notify_setting import Provider
    from vmgen.laptop.builder import generate_host_key
    from vmgen.laptop.launch import LaunchOptions, _render

    user_data = _render(make_spec(), Provider(), LaunchOptions(agent_env={}), generate_host_key(), None, KEY)  # type: ignore[arg-type]
    files = files_of(user_data)
    secrets_file = files["/etc/vmgen/provider.env"]
    assert secrets_file["permissions"] == "0600" and f"{BUDGET_KEY_VARIABLE}={KEY}\n" in secrets_file["content"]
    assert [path for path, f in files.items() if KEY in f["content"]] == ["/etc/vmgen/provider.env"]
