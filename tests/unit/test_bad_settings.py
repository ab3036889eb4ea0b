"""A bad backup setting and the idle backup-then-delete it ends up in: the laptop's settings as
a user writes them (VMGEN_BACKUP_KEEP=0), the backup.toml the launch renders from them, and the
VM's real idle action (a real backup into a local store, then the delete) reading that file."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from vmgen.backup import generate_identity, list_backups
from vmgen.backup.store import LocalStore
from vmgen.backup.target import target_from_settings
from vmgen.contract.documents import WATCHDOG_TRIGGER, BackupConfig, WatchSettings
from vmgen.contract.names import VmPaths
from vmgen.laptop.config import load_settings
from vmgen.vmside.backups import run_backup
from vmgen.vmside.idlewatch.actions import Act, Machine
from vmgen.vmside.privileges import RunAs

ME = RunAs.current()


def laptop_target(tmp_path: Path, variable: str, value: str):
    """What a launch on docker sends the VM for these settings."""
    settings = load_settings({variable: value}, tmp_path / "absent.toml", tmp_path / "absent.env")
    target = target_from_settings(settings, local_folders=True)
    assert target is not None
    # Retention by age off, so that the count alone says what stays.
    return replace(target, path=str(tmp_path / "store"), keep_hours=0, keep_daily=0, keep_weekly=0)


def idle_backup_then_delete(tmp_path: Path, config_text: str) -> tuple[list[str], Path]:
    """Eleven backups of a workspace by the watchdog (a full one and ten increments: a chain as
    long as backup_max_increments lets one be), then its idle action; what the action did."""
    paths = VmPaths(home=tmp_path / "home", etc=tmp_path / "etc", state=tmp_path / "lib", run=tmp_path / "run")
    paths.etc.mkdir(parents=True)
    (paths.home / "work/app").mkdir(parents=True)
    paths.backup_config.write_text(config_text)
    for n in range(11):
        (paths.home / "work/app" / f"file{n}.txt").write_text(f"version {n}\n")
        run_backup(WATCHDOG_TRIGGER, paths, ME)
    events: list[str] = []

    def backup(deadline: float):
        result = run_backup(WATCHDOG_TRIGGER, paths, ME, deadline=deadline, wait=True)
        events.append("backup ok" if result.ok else f"backup failed: {result.error}")
        return result

    machine = Machine(
        backup=backup,
        poweroff=lambda: events.append("poweroff"),
        delete=lambda: events.append("delete"),
        snapshot=lambda: "0",
        notify=lambda text, event: None,
        sleep=lambda seconds: time.sleep(min(seconds, 0.01)),
    )
    settings = WatchSettings(name="app", action="backup-then-delete", provider="hetzner")
    Act(settings, machine, "idle", deadline_minutes=0.05, paths=paths).run()
    return events, Path(tmp_path / "store")


@pytest.mark.parametrize(
    ("variable", "value", "kept", "fulls"),
    [
        ("VMGEN_BACKUP_KEEP", "0", 1, 1),
        ("VMGEN_BACKUP_KEEP", "-3", 1, 1),
        ("VMGEN_BACKUP_MAX_INCREMENTS", "-1", 7, 7),
    ],
)
def test_today_a_bad_backup_setting_reaches_the_vm_unsaid_and_the_workspace_deletes_itself(
    tmp_path: Path, variable: str, value: str, kept: int, fulls: int
) -> None:
    recipient = generate_identity()[1]
    target = laptop_target(tmp_path, variable, value)  # no word on the laptop
    config_text = BackupConfig(target, "app", recipient).to_toml()
    events, store = idle_backup_then_delete(tmp_path, config_text)
    assert events == ["backup ok", "delete"]
    backups = list_backups(LocalStore(store), "app")
    # backup_keep 0 and -3 are taken as 1: the idle action's backup starts a new chain and the
    # eleven before it are pruned. backup_max_increments -1 is taken as 0: every backup is a
    # full one, the newest 7 (backup_keep's default) kept.
    assert len(backups) == kept
    assert sum(1 for b in backups if not b.parent) == fulls
