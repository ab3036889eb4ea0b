"""Retention by count and by age, with the last backup before the tree shrank kept: the agent
asking for many backups of an emptied tree cannot rotate the ones that hold the files out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vmgen.backup import generate_identity, list_backups
from vmgen.backup.crypto import parse_identity
from vmgen.backup.indexkeeper import IndexKeeper
from vmgen.backup.manifest import ArchiveSummary, Manifest
from vmgen.backup.pipeline import create_backup, restore_backup
from vmgen.backup.retention import Retention, apply_retention, select_kept
from vmgen.backup.store import LocalStore

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def made(age: timedelta, files: int = 100, parent: str = "", depth: int = 0, n: int = 0) -> Manifest:
    at = NOW - age
    return Manifest(
        workspace="app",
        backup_id=at.strftime("%Y%m%dT%H%M%SZ") + f"-{n:04x}",
        created_at=at.isoformat(),
        plaintext_bytes=1,
        compressed_bytes=1,
        ciphertext_bytes=1,
        sha256="0" * 64,
        recipient="age1x",
        summary=ArchiveSummary(files=files),
        parent=parent,
        depth=depth,
        format_version=2 if parent else 1,
    )


def test_count_alone_keeps_the_newest():
    backups = [made(timedelta(hours=10 - i), n=i) for i in range(10)]
    assert select_kept(backups, Retention.count_only(3), NOW) == {m.backup_id for m in backups[-3:]}


def test_everything_of_the_last_hours_stays_whatever_the_count():
    backups = [made(timedelta(days=3), n=99)] + [made(timedelta(minutes=50 - i), n=i) for i in range(20)]
    kept = select_kept(backups, Retention(keep_last=2, keep_hours=24), NOW)
    assert kept == {m.backup_id for m in backups[1:]}


def test_the_newest_of_each_day_and_week():
    # Two backups a day for 41 days, at 09:00 and 11:00.
    backups = [made(timedelta(days=d, hours=h), n=d * 10 + h) for d in range(40, -1, -1) for h in (3, 1)]
    kept = select_kept(backups, Retention(keep_last=1, keep_daily=7, keep_weekly=4), NOW)
    newest_of_day = {made(timedelta(days=d, hours=1), n=d * 10 + 1).backup_id for d in range(41)}
    assert kept <= newest_of_day  # never an older one of the same day
    assert {made(timedelta(days=d, hours=1), n=d * 10 + 1).backup_id for d in range(7)} <= kept
    older = {m.backup_id for m in backups if m.created_at < (NOW - timedelta(days=7)).isoformat()}
    assert 1 <= len(kept & older) <= 3  # the newest of each earlier week
    assert len(kept) <= 7 + 3


def test_the_last_backup_before_the_tree_shrank_stays():
    good = made(timedelta(hours=30), files=500, n=1)
    emptied = [made(timedelta(hours=29 - i), files=3, n=10 + i) for i in range(12)]
    kept = select_kept([good, *emptied], Retention(keep_last=7, keep_before_shrink=True), NOW)
    assert good.backup_id in kept and len(kept) == 8
    assert good.backup_id not in select_kept([good, *emptied], Retention(keep_last=7), NOW)


def test_a_few_files_deleted_from_a_small_tree_is_no_shrink():
    backups = [made(timedelta(hours=5), files=8, n=1), made(timedelta(hours=4), files=2, n=2)]
    assert select_kept(backups, Retention(keep_last=1, keep_before_shrink=True), NOW) == {backups[1].backup_id}


def test_a_kept_increment_keeps_its_chain():
    full = made(timedelta(hours=5), n=1)
    inc = made(timedelta(hours=4), parent=full.backup_id, depth=1, n=2)
    other = made(timedelta(hours=3), n=3)
    newest = made(timedelta(hours=2), parent=other.backup_id, depth=1, n=4)
    assert select_kept([full, inc, other, newest], Retention(keep_last=1), NOW) == {other.backup_id, newest.backup_id}


def test_keep_last_below_one_is_refused():
    with pytest.raises(Exception, match="keep_last must be at least 1"):
        select_kept([], Retention(keep_last=0), NOW)


def test_emptying_the_tree_and_backing_it_up_many_times_leaves_the_files_restorable(tmp_path):
    """The attack of issue 21, through the real pipeline: a tree with files, backed up; then
    emptied and backed up twenty times with the count alone at 7 and no age rule (the backups
    are seconds apart): the last backup with the files stays, and restores them."""
    text, recipient = generate_identity()
    home, store, keeper = tmp_path / "home", LocalStore(tmp_path / "store"), IndexKeeper(tmp_path / "keeper")
    for i in range(30):
        (home / f"work/app/src/m{i}.py").parent.mkdir(parents=True, exist_ok=True)
        (home / f"work/app/src/m{i}.py").write_text(f"print({i})\n")
    policy = Retention(keep_last=7, keep_before_shrink=True)
    good = create_backup(home, store, "app", recipient, excludes=[], keeper=keeper, max_increments=3, retention=policy)
    for path in sorted((home / "work/app/src").iterdir()):
        path.unlink()
    for _ in range(20):
        create_backup(home, store, "app", recipient, excludes=[], keeper=keeper, max_increments=3, retention=policy)
    left = [m.backup_id for m in list_backups(store, "app")]
    assert good.backup_id in left and len(left) <= 7 + 4  # the 7 newest, their chains, and the good one
    out = tmp_path / "out"
    restore_backup(store, "app", good.backup_id, parse_identity(text), out)
    assert sorted(p.name for p in (out / "work/app/src").iterdir()) == sorted(f"m{i}.py" for i in range(30))
    assert apply_retention(store, "app", policy) == []  # stable: a second pass deletes nothing more


def test_deletes_the_store_refuses_are_skipped_and_said(tmp_path):
    """An R2 bucket lock refuses deleting what is younger than its retention: the older ones still
    go, and the refusal is one error at the end (the backup that pruned stays good)."""
    from vmgen.errors import StoreError

    _text, recipient = generate_identity()
    home = tmp_path / "home"
    (home / "f").parent.mkdir(parents=True)
    (home / "f").write_text("x")
    locked: set[str] = set()

    class Locked(LocalStore):
        def delete(self, key: str) -> None:
            if any(backup_id in key for backup_id in locked):
                raise StoreError(f"{key}: AccessDenied (object locked)")
            super().delete(key)

    store = Locked(tmp_path / "store")
    made = [create_backup(home, store, "app", recipient, excludes=[]).backup_id for _ in range(4)]
    locked.add(made[1])
    with pytest.raises(StoreError, match=f"the store kept 1 backup\\(s\\) retention would delete: {made[1]}"):
        apply_retention(store, "app", 1)
    assert [m.backup_id for m in list_backups(store, "app")] == [made[1], made[3]]
