"""A bad setting is refused on the laptop before anything is made, in one line naming the setting
and what it takes; a file on the VM with such a value (written by hand, or by an older vmgen) is
refused when it is loaded: the idle backup-then-delete keeps the data another way (a snapshot of
the server's disk) and prunes no earlier backup.

Before issue 30 the laptop said nothing and the VM took VMGEN_BACKUP_KEEP=0 and -3 as 1 (the
eleven earlier backups pruned, the newest alone left) and VMGEN_BACKUP_MAX_INCREMENTS=-1 as 0
(every backup full), and the workspace deleted itself."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vmgen.backup import generate_identity, list_backups
from vmgen.backup.store import LocalStore
from vmgen.backup.target import target_from_settings
from vmgen.contract.documents import WATCHDOG_TRIGGER, BackupConfig, BackupTarget, WatchSettings
from vmgen.contract.enums import IdleAction, StoreKind
from vmgen.contract.names import VmPaths
from vmgen.errors import ConfigError, DocumentError
from vmgen.laptop.config import load_settings
from vmgen.vmside.backups import run_backup
from vmgen.vmside.idlewatch.actions import Act, Machine
from vmgen.vmside.privileges import RunAs

from .cli.test_cli import one_error_line, vmgen

ME = RunAs.current()
BAD = [
    ("VMGEN_BACKUP_KEEP", "0", "backup_keep (VMGEN_BACKUP_KEEP) is 0: it takes a whole number, 1 or more"),
    ("VMGEN_BACKUP_KEEP", "-3", "backup_keep (VMGEN_BACKUP_KEEP) is -3: it takes a whole number, 1 or more"),
    (
        "VMGEN_BACKUP_MAX_INCREMENTS",
        "-1",
        "backup_max_increments (VMGEN_BACKUP_MAX_INCREMENTS) is -1: it takes a whole number, 0 or more",
    ),
    (
        "VMGEN_BACKUP_PART_MIB",
        "1",
        "backup_part_mib (VMGEN_BACKUP_PART_MIB) is 1: it takes a whole number from 5 to 5120",
    ),
    ("VMGEN_IDLE_MINUTES", "0", "idle_minutes (VMGEN_IDLE_MINUTES) is 0: it takes a number, 0.1 or more"),
    ("VMGEN_BUDGET_MONTH", "-5", "budget_month (VMGEN_BUDGET_MONTH) is -5: it takes a number from 0 to 100000"),
    ("VMGEN_BUDGET_MONTH", "nan", "budget_month (VMGEN_BUDGET_MONTH) is nan: it takes a number from 0 to 100000"),
    (
        "VMGEN_IDLE_WARN_MINUTES",
        "nan",
        "idle_warn_minutes (VMGEN_IDLE_WARN_MINUTES) is nan: it takes a number, 0 or more",
    ),
]


@pytest.mark.parametrize(("variable", "value", "said"), BAD)
def test_a_bad_setting_stops_a_launch_before_anything_is_made(home: Path, variable: str, value: str, said: str) -> None:
    (home / "repo").mkdir()
    name = f"t30-{secrets.token_hex(3)}"  # a name of its own: the engine may be shared
    result = vmgen(home, "launch", str(home / "repo"), "--name", name, "--provider", "docker", **{variable: value})
    assert result.returncode == 2
    assert one_error_line(result) == f"error: {said}"
    assert not (home / f".local/state/vmgen/workspaces/{name}").exists()
    assert not (home / f".local/state/vmgen/identities/{name}.age-identity").exists()


def test_a_budget_action_other_than_warn_or_stop_stops_a_launch_in_one_line(home: Path) -> None:
    (home / "repo").mkdir()
    name = f"t27-{secrets.token_hex(3)}"
    launch = ("launch", str(home / "repo"), "--name", name, "--provider", "docker")
    result = vmgen(home, *launch, VMGEN_BUDGET_ACTION="pause")
    assert result.returncode != 0
    assert one_error_line(result) == "error: setting 'budget_action': 'pause' is not a valid warn or stop"
    assert not (home / f".local/state/vmgen/workspaces/{name}").exists()


def test_the_laptops_backup_target_is_the_checked_one(tmp_path: Path) -> None:
    settings = load_settings({"VMGEN_BACKUP_KEEP": "0"}, tmp_path / "absent.toml", tmp_path / "absent.env")
    with pytest.raises(ConfigError, match=r"^backup_keep \(VMGEN_BACKUP_KEEP\) is 0"):
        target_from_settings(settings, local_folders=True)


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("keep_last", 0, "keep_last (the laptop's backup_keep) is 0: it takes a whole number, 1 or more"),
        ("keep_last", -3, "keep_last (the laptop's backup_keep) is -3: it takes a whole number, 1 or more"),
        (
            "max_increments",
            -1,
            "max_increments (the laptop's backup_max_increments) is -1: it takes a whole number, 0 or more",
        ),
    ],
)
def test_the_vm_refuses_such_a_file_and_its_idle_action_keeps_the_data_another_way(
    tmp_path: Path, field: str, value: int, said: str
) -> None:
    recipient = generate_identity()[1]
    target = BackupTarget(kind=StoreKind.LOCAL, path=str(tmp_path / "store"))
    good = BackupConfig(target, "app", recipient).to_toml()
    paths = VmPaths(home=tmp_path / "home", etc=tmp_path / "etc", state=tmp_path / "lib", run=tmp_path / "run")
    paths.etc.mkdir(parents=True)
    (paths.home / "work/app").mkdir(parents=True)
    (paths.home / "work/app/file.txt").write_text("version 1\n")
    paths.backup_config.write_text(good)
    assert run_backup(WATCHDOG_TRIGGER, paths, ME).ok
    bad_target = replace(target, keep_last=value) if field == "keep_last" else replace(target, max_increments=value)
    bad = BackupConfig(bad_target, "app", recipient).to_toml()
    paths.backup_config.write_text(bad)
    with pytest.raises(DocumentError) as refused:
        BackupConfig.from_toml(bad, str(paths.backup_config))
    assert str(refused.value) == f"{paths.backup_config}: {said}"

    events: list[str] = []

    def backup(deadline: float):
        result = run_backup(WATCHDOG_TRIGGER, paths, ME, deadline=deadline, wait=True)
        events.append("backup ok" if result.ok else f"backup failed: {result.error}")
        return result

    def snapshot() -> str:
        events.append("snapshot")
        return "0"

    machine = Machine(
        backup=backup,
        poweroff=lambda: events.append("poweroff"),
        delete=lambda: events.append("delete"),
        snapshot=snapshot,
        notify=lambda text, event: None,
        sleep=lambda seconds: time.sleep(min(seconds, 0.01)),
    )
    settings = WatchSettings(name="app", action=IdleAction.BACKUP_THEN_DELETE, provider="hetzner")
    Act(settings, machine, "idle", deadline_minutes=0.05, paths=paths).run()
    assert events[0].startswith("backup failed") and said in events[0], events
    assert events[-2:] == ["snapshot", "delete"], events
    assert len(list_backups(LocalStore(tmp_path / "store"), "app")) == 1  # the earlier backup is still there
