"""The idle action and the hard lifetime's action (vmgen-act.service) with a scripted machine: a
verified backup comes before any delete; without one by the deadline the compute stops anyway and
the data is kept another way (docker: powered off; hetzner: a snapshot, then deleted); every step
is recorded for `vmgen status`, and said before the server is gone."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from vmgen.contract.documents import BackupResult, WatchSettings
from vmgen.contract.enums import IdleAction
from vmgen.contract.names import VmPaths
from vmgen.vmside.idlewatch import actions
from vmgen.vmside.idlewatch.actions import Act, Machine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Scripted:
    """What the action did to the VM, in order."""

    def __init__(
        self,
        clock: Clock,
        backups: list[BackupResult],
        snapshot_fails: bool = False,
        delete_fails: bool = False,
        backup_seconds: float = 60,
    ) -> None:
        self.clock, self.backups = clock, list(backups)
        self.events: list[str] = []
        self.snapshot_fails, self.delete_fails, self.backup_seconds = snapshot_fails, delete_fails, backup_seconds
        self.deadlines: list[float] = []

    def machine(self) -> Machine:
        return Machine(
            backup=self.backup,
            poweroff=lambda: self.events.append("poweroff"),
            delete=self.delete,
            snapshot=self.snapshot,
            notify=lambda text, event: self.events.append(f"notify {event}: {text}"),
            clock=self.clock,
            sleep=self.clock.sleep,
        )

    def backup(self, deadline: float) -> BackupResult:
        self.deadlines.append(deadline)
        self.clock.now = min(deadline, self.clock.now + self.backup_seconds)
        self.events.append("backup")
        if self.backups:
            return self.backups.pop(0)
        return BackupResult(ok=False, error="the tar stage died (exit status -9)")

    def delete(self) -> None:
        self.events.append("delete")
        if self.delete_fails:
            raise RuntimeError("API answered 503")

    def snapshot(self) -> str:
        self.events.append("snapshot")
        if self.snapshot_fails:
            raise RuntimeError("snapshot quota reached")
        return "4711"


def act(tmp_path, provider: str, scripted: Scripted, action: str = IdleAction.BACKUP_THEN_DELETE, reason: str = "idle"):
    settings = WatchSettings(name="app", action=IdleAction(action), provider=provider)
    paths = VmPaths(run=tmp_path)
    record = Act(settings, scripted.machine(), reason, deadline_minutes=15, paths=paths).run()
    return record, json.loads((tmp_path / "action.json").read_text())


GOOD = BackupResult(ok=True, backup_id="20261125T150000Z-ab12", ciphertext_bytes=1234)


def test_a_verified_backup_then_the_delete_said_before_the_server_goes(tmp_path):
    scripted = Scripted(Clock(), [GOOD])
    record, written = act(tmp_path, "hetzner", scripted)
    assert scripted.events[0].startswith("notify acting") and scripted.events[1] == "backup"
    assert scripted.events[2].startswith("notify deleting:") and scripted.events[3] == "delete"
    assert "poweroff" not in scripted.events
    assert record.step == "done" and record.backup_id == GOOD.backup_id
    assert written["detail"] == (
        f"backed up as {GOOD.backup_id} and deleted (it is idle); `vmgen restore app` brings it back"
    )


def test_docker_powers_off_after_the_backup(tmp_path):
    scripted = Scripted(Clock(), [GOOD])
    record, _ = act(tmp_path, "docker", scripted, reason="lifetime")
    assert scripted.events[-1] == "poweroff" and "delete" not in scripted.events
    assert record.detail.startswith(f"backed up as {GOOD.backup_id} and powered off (its hard lifetime is over)")


def test_failed_backups_are_tried_again_until_the_deadline_then_docker_powers_off_keeping_the_disk(tmp_path):
    clock = Clock()
    scripted = Scripted(clock, [], backup_seconds=120)
    started = clock.now
    record, written = act(tmp_path, "docker", scripted)
    tries = scripted.events.count("backup")
    assert tries >= 3  # tried again, with backoff
    assert all(d == started + 15 * 60 for d in scripted.deadlines)  # every try bounded by the one deadline
    assert clock.now <= started + 15 * 60
    assert scripted.events[-1] == "poweroff" and "delete" not in scripted.events
    assert record.step == written["step"] == "kept"
    assert written["detail"] == (
        "powered off without a complete backup (no verified backup could be made: the tar stage "
        "died (exit status -9)); its disk is kept: `vmgen start app` brings it back"
    )
    assert any(
        e.startswith("notify kept: vmgen: workspace app powered off without a complete backup") for e in scripted.events
    )


def test_hetzner_without_a_backup_snapshots_then_deletes(tmp_path):
    scripted = Scripted(Clock(), [])
    record, written = act(tmp_path, "hetzner", scripted)
    assert scripted.events[-3] == "snapshot" and scripted.events[-1] == "delete"
    assert scripted.events[-2].startswith("notify kept: vmgen: workspace app deleted without a complete backup")
    assert "poweroff" not in scripted.events
    assert record.snapshot == written["snapshot"] == "4711"
    assert written["detail"].endswith("keeps its disk: `vmgen restore app --snapshot 4711` brings it back")


@pytest.mark.parametrize(("provider", "kept_by"), [("hetzner", ["snapshot", "delete"]), ("docker", ["poweroff"])])
def test_a_backup_that_left_files_out_is_not_enough_for_a_delete(tmp_path, provider, kept_by):
    """Files the backup could not read would be lost with the VM: the disk is kept instead, and the
    record names them."""
    partial = BackupResult(
        ok=True,
        backup_id="20261125T150000Z-ab12",
        left_out=1,
        left_out_paths=("work/app/secret.db (Permission denied)",),
    )
    scripted = Scripted(Clock(), [partial])
    record, written = act(tmp_path, provider, scripted)
    assert scripted.events.count("backup") == 1  # trying again would leave the same files out
    assert [e for e in scripted.events if not e.startswith("notify")][1:] == kept_by
    assert record.step == "kept" and written["step"] == "kept" and record.backup_id == partial.backup_id
    assert "left out 1 file(s)" in record.detail and "work/app/secret.db" in record.detail


def test_hetzner_without_a_backup_or_a_snapshot_powers_off(tmp_path):
    scripted = Scripted(Clock(), [], snapshot_fails=True)
    record, _ = act(tmp_path, "hetzner", scripted)
    assert scripted.events[-1] == "poweroff" and "delete" not in scripted.events
    assert record.step == "kept" and "or a snapshot (snapshot quota reached)" in record.detail


def test_a_delete_that_fails_after_the_backup_powers_off_and_never_backs_up_again(tmp_path):
    scripted = Scripted(Clock(), [GOOD], delete_fails=True)
    record, _ = act(tmp_path, "hetzner", scripted)
    assert scripted.events.count("backup") == 1 and scripted.events[-1] == "poweroff"
    assert "deleting the server failed (API answered 503)" in record.detail


@pytest.mark.parametrize(
    ("action", "provider", "last"),
    [("poweroff", "hetzner", "poweroff"), ("delete", "hetzner", "delete"), ("delete", "docker", "poweroff")],
)
def test_actions_without_a_backup(tmp_path, action, provider, last):
    scripted = Scripted(Clock(), [])
    act(tmp_path, provider, scripted, action=action)
    assert "backup" not in scripted.events and scripted.events[-1] == last


def test_a_backup_that_never_returns_is_given_up_after_its_deadline():
    release = threading.Event()

    def hanging() -> BackupResult:
        release.wait(30)
        return GOOD

    started = time.monotonic()
    result = actions._within(time.monotonic() + 0.2, hanging, grace=0.3)
    release.set()
    assert not result.ok and result.error == "the backup did not end by its deadline"
    assert time.monotonic() - started < 5


def test_the_reason_is_the_lifetime_once_the_system_was_up_that_long(monkeypatch):
    settings = WatchSettings(max_lifetime_hours=1)
    monkeypatch.setattr(actions, "system_uptime", lambda: 3600.0)
    assert actions.reason_now(settings) == "lifetime"
    monkeypatch.setattr(actions, "system_uptime", lambda: 1200.0)
    assert actions.reason_now(settings) == "idle"
    assert actions.reason_now(WatchSettings()) == "idle"
    assert actions.system_uptime() > 0


def test_where_powering_off_ends_the_disk_the_vm_stays_up_without_a_backup(tmp_path):
    """An aws instance terminates when it powers off, and its disk with it: with no verified
    backup and no snapshot it stays up, and says so (the watchdog starts the action again)."""
    scripted = Scripted(Clock(), [])
    record, written = act(tmp_path, "aws", scripted)
    assert "poweroff" not in scripted.events and "delete" not in scripted.events
    assert record.step == written["step"] == "kept"
    assert written["detail"].startswith("stays up without a complete backup (no verified backup could be made")
    assert any(e.startswith("notify kept: vmgen: workspace app stays up") for e in scripted.events)


def test_where_powering_off_ends_the_disk_a_verified_backup_still_deletes(tmp_path):
    scripted = Scripted(Clock(), [GOOD])
    record, _ = act(tmp_path, "aws", scripted)
    assert record.step == "done" and scripted.events[-1] == "delete"


def test_a_warning_reaches_a_persons_terminal_and_nothing_but_ptys() -> None:
    """The warning is written to the terminals of people's SSH sessions (a real pty here), not
    `wall`ed into every terminal, the agent's tmux panes among them."""
    from vmgen.vmside.idlewatch.actions import tell_terminals

    controller, terminal = os.openpty()
    try:
        name = os.ttyname(terminal).removeprefix("/dev/")
        assert name.startswith("pts/")
        tell_terminals("vmgen: idle, deleted in 13 s", lambda: [name, "tty1", "pts/../../etc/passwd"])
        said = os.read(controller, 4096)
        assert b"vmgen: idle, deleted in 13 s" in said
    finally:
        os.close(controller)
        os.close(terminal)
