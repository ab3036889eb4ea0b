"""Which backups retention keeps, and the pruning that follows from it.

Retention runs on the VM after each backup (its store credential may delete), and the agent can
ask for backups: a policy that kept only the newest N would let it rotate every good backup out
by asking for N backups of a tree it has just emptied. So, like restic's `forget`, several rules
each keep what they name, and a backup goes only when no rule keeps it:

- the newest `keep_last`;
- every backup younger than `keep_hours`;
- the newest backup of each of the last `keep_daily` days and `keep_weekly` ISO weeks that have
  one (UTC);
- the newest backup made before the tree shrank to less than half of its entries (the last
  `keep_last` such points): when the newest backups hold an emptied tree, that is the only one
  that still holds the files;
- the backup just made (`protect`);

and each kept increment keeps the whole chain it builds on. The rate limit on backups asked for
through root's control socket (vmside/backups.py) bounds how many the agent can add in the
meantime. `select_kept` is pure; `apply_retention` reads the store and deletes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from vmgen.backup.manifest import Manifest, manifest_key, object_key, parse_key, read_manifest, workspace_prefix
from vmgen.errors import BackupError, InvalidBackupRequest, StoreError

if TYPE_CHECKING:
    from vmgen.backup.store import Store

# A drop counts as a shrink when the tree lost more than half of its entries, and at least this
# many: a handful of files deleted from a small tree is work, not loss.
SHRINK_MIN_ENTRIES = 10


@dataclass(frozen=True)
class Retention:
    keep_last: int = 7
    keep_hours: float = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_before_shrink: bool = False

    @classmethod
    def count_only(cls, keep_last: int) -> Retention:
        return cls(keep_last=keep_last)


def entries(manifest: Manifest) -> int:
    """How many entries the tree held when `manifest` was made (an increment counts the files it
    left to earlier backups too)."""
    s = manifest.summary
    return s.files + s.dirs + s.symlinks + s.hardlinks + s.unchanged


def select_kept(backups: Sequence[Manifest], policy: Retention, now: datetime, protect: str | None = None) -> set[str]:
    """The ids retention keeps among `backups` (complete ones of one workspace), with the chain
    of every kept increment."""
    if policy.keep_last < 1:
        raise InvalidBackupRequest("keep_last must be at least 1")
    ordered = sorted(backups, key=lambda m: m.backup_id)
    roots: set[str] = {m.backup_id for m in ordered[-policy.keep_last :]}
    if protect:
        roots.add(protect)
    if policy.keep_hours > 0:
        horizon = now - timedelta(hours=policy.keep_hours)
        roots |= {m.backup_id for m in ordered if _created(m) >= horizon}
    roots |= _newest_per_period(ordered, policy.keep_daily, lambda t: t.date().isoformat())
    roots |= _newest_per_period(ordered, policy.keep_weekly, lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2]))
    if policy.keep_before_shrink:
        before = [older.backup_id for older, newer in itertools.pairwise(ordered) if _shrank(older, newer)]
        roots |= set(before[-policy.keep_last :])
    by_id = {m.backup_id: m for m in ordered}
    kept: set[str] = set()
    for root in roots:
        backup_id: str | None = root
        while backup_id and backup_id not in kept:
            kept.add(backup_id)
            found = by_id.get(backup_id)
            backup_id = found.parent if found is not None else None
    return kept


def apply_retention(
    store: Store,
    workspace: str,
    policy: Retention | int,
    protect: str | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Delete the backups `policy` (a Retention, or a count alone) does not keep, and objects
    older than every kept backup that never got a manifest (a run that died); `protect` is never
    deleted. A manifest that cannot be read is kept, and nothing is known to build on it.
    Returns the deleted ids; a delete the store refuses (a bucket lock) is skipped, and said at
    the end (StoreError) once the others went."""
    if isinstance(policy, int):
        policy = Retention.count_only(policy)
    entries_by_id: dict[str, set[str]] = {}
    for key in store.list_keys(workspace_prefix(workspace)):
        parsed = parse_key(key)
        if parsed:
            entries_by_id.setdefault(parsed[1], set()).add(parsed[2])
    complete = sorted(b for b, kinds in entries_by_id.items() if "manifest" in kinds)
    readable, unreadable = [], set()
    for backup_id in complete:
        try:
            readable.append(read_manifest(store, workspace, backup_id))
        except BackupError:
            unreadable.add(backup_id)
    keep = select_kept(readable, policy, now or datetime.now(UTC), protect) | unreadable
    oldest_kept = min((b for b in keep if b in complete), default="")
    doomed = [b for b in sorted(entries_by_id) if b not in keep and ("manifest" in entries_by_id[b] or b < oldest_kept)]
    deleted, refused = [], []
    for backup_id in doomed:
        try:
            # Manifest first: a crash in between leaves an orphan object, never a dangling manifest.
            store.delete(manifest_key(workspace, backup_id))
            store.delete(object_key(workspace, backup_id))
        except StoreError as exc:  # a bucket lock keeps it: the others may still go
            refused.append(f"{backup_id} ({exc})")
            continue
        deleted.append(backup_id)
    if refused:
        raise StoreError(f"the store kept {len(refused)} backup(s) retention would delete: {refused[0]}")
    return deleted


def _created(manifest: Manifest) -> datetime:
    try:
        created = datetime.fromisoformat(manifest.created_at)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return created if created.tzinfo else created.replace(tzinfo=UTC)


def _newest_per_period(ordered: Sequence[Manifest], count: int, period_of: Callable[[datetime], str]) -> set[str]:
    """The newest backup of each of the latest `count` periods that have one."""
    if count < 1:
        return set()
    newest: dict[str, str] = {}
    for manifest in ordered:  # oldest first: a later one of the same period replaces it
        newest[period_of(_created(manifest).astimezone(UTC))] = manifest.backup_id
    return {newest[period] for period in sorted(newest)[-count:]}


def _shrank(older: Manifest, newer: Manifest) -> bool:
    before, after = entries(older), entries(newer)
    return after * 2 < before and before - after >= SHRINK_MIN_ENTRIES
