"""Backups and the restore as run on the VM: root runs them (the store's keys are root-only), and
everything that reads or writes the agent's home runs as the agent (the tar and untar stages).

A backup starts from the watchdog (backup-then-delete) or from a request on root's control
socket (control.py: the laptop over SSH, the workspace page); the restore from the laptop's
request with the identity it pushed over SSH. The results are written where the agent user (and
so the CLI and the page) can read them, without secrets.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..backup.crypto import parse_identity
from ..backup.indexkeeper import IndexKeeper
from ..backup.pipeline import Limits, create_backup, restore_backup
from ..backup.target import load_vm_config, open_store, retention_of
from ..contract import codec
from ..contract.documents import (
    WATCHDOG_TRIGGER,
    BackupConfig,
    BackupResult,
    BackupTarget,
    ExcludedRecord,
    RestoreRequest,
    RestoreResult,
    WorkspaceInfo,
)
from ..contract.names import AGENT_USER, VM, VmPaths
from ..errors import BackupBusy, BackupNotConfigured, BackupRefused, DocumentError
from .jsonfile import write_text
from .privileges import RunAs

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


# The new VM's keys are the ones the user launched it with, not the backed-up ones.
KEPT_ON_RESTORE = (str(VM.authorized_keys.relative_to(VM.home)),)


RATE_WINDOW = 3600.0


def _quiet(message: str) -> None:
    pass


@contextmanager
def backup_lock(paths: VmPaths, trigger: str, wait_until: float | None = None) -> Iterator[None]:
    """One backup at a time: the watchdog's and a requested one never interleave. Never waits
    unbounded: without `wait_until` (time.monotonic()) a held lock is BackupBusy at once; with it,
    at that time. The holder is noted in the lock file, to say who holds it."""
    paths.run.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.backup_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait_until is None or time.monotonic() >= wait_until:
                    raise BackupBusy(f"a backup is already running ({_holder(fd)})") from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"trigger": trigger, "since": time.monotonic()}).encode(), 0)
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        note = json.loads(os.pread(fd, 4096, 0))
        return f"asked for by {note['trigger']} {time.monotonic() - float(note['since']):.0f}s ago"
    except (OSError, ValueError, KeyError, TypeError):
        return "started a moment ago"


def acting(paths: VmPaths) -> str:
    """Why a requested backup must give way now: the idle action or the hard lifetime is under
    way (its record exists from its first step on), or ""."""
    return "the idle action takes over" if paths.action_state.exists() else ""


def check_rate(paths: VmPaths, target: BackupTarget, now: float) -> None:
    """Backups asked for in the last hour: at most `requests_per_hour`, and at most half of what
    `keep_last` keeps, so that an hour of requests cannot rotate the count-kept backups out."""
    limit = min(target.requests_per_hour, max(1, target.keep_last // 2))
    if limit <= 0:
        raise BackupRefused("backups on request are switched off for this workspace (backup_requests_per_hour = 0)")
    recent = [t for t in _requests(paths) if now - RATE_WINDOW < t <= now]
    if len(recent) >= limit:
        wait = RATE_WINDOW - (now - min(recent))
        raise BackupRefused(
            f"{len(recent)} backups were asked for in the last hour, the most this workspace takes "
            f"(so that requests cannot rotate older backups out); the next can start in {wait / 60:.0f} min"
        )


def _requests(paths: VmPaths) -> list[float]:
    try:
        raw = json.loads(paths.backup_requests.read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(raw, list):
        return []
    return [float(t) for t in raw if isinstance(t, (int, float)) and not isinstance(t, bool)]


def _record_request(paths: VmPaths, now: float) -> None:
    recent = [t for t in _requests(paths) if now - RATE_WINDOW < t <= now]
    try:
        write_text(paths.backup_requests, json.dumps([*recent, now]))
    except OSError as exc:  # /run is RAM; should it fail, the limit is merely not counted
        log.warning("could not record a backup request: %s", exc)


def run_backup(
    trigger: str,
    paths: VmPaths = VM,
    agent: RunAs | None = None,
    progress: Progress = _quiet,
    *,
    deadline: float | None = None,
    wait: bool = False,
) -> BackupResult:
    """Back up the agent's home, read as the agent; returns (and records) the result. Bounded:
    the backup is stopped at `deadline` (time.monotonic(); default: the store's deadline_minutes
    from now). `wait`: wait for a running backup until then (the watchdog's own); else a running
    one is BackupBusy at once. A backup asked for through the socket is rate-limited
    (BackupRefused) and gives way when the idle action starts."""
    started = time.monotonic()
    requested = trigger != WATCHDOG_TRIGGER
    try:
        config = _config(paths)
        target = config.target
        deadline = deadline if deadline is not None else started + max(1.0, target.deadline_minutes * 60)
        if requested and acting(paths):
            raise BackupRefused("the workspace is being backed up and stopped by its idle action or hard lifetime")
        with backup_lock(paths, trigger, wait_until=deadline if wait else None):
            if requested:
                check_rate(paths, target, time.monotonic())
                _record_request(paths, time.monotonic())
            progress("archiving, compressing, encrypting, uploading, verifying")
            manifest = create_backup(
                paths.home,
                open_store(target),
                config.workspace,
                config.recipient,
                excludes=target.excludes + paths.runtime_excludes,
                run_as=agent or RunAs.lookup(AGENT_USER),
                limits=Limits(deadline=deadline, cancelled=(lambda: acting(paths)) if requested else None),
                keeper=IndexKeeper(paths.backup_index),
                max_increments=target.max_increments,
                repo_folder=repo_folder(paths),
                retention=retention_of(target),
            )
        own = set(paths.runtime_excludes)
        result = BackupResult(
            ok=True,
            backup_id=manifest.backup_id,
            ciphertext_bytes=manifest.ciphertext_bytes,
            plaintext_bytes=manifest.plaintext_bytes,
            skipped=manifest.summary.skipped_count,
            skipped_paths=manifest.summary.skipped[:20],
            parent=manifest.parent,
            files=manifest.summary.files + manifest.summary.symlinks + manifest.summary.hardlinks,
            unchanged=manifest.summary.unchanged,
            left_out=manifest.summary.left_out_count,
            left_out_paths=manifest.summary.left_out[:20],
            excluded=tuple(
                ExcludedRecord(s.pattern, s.entries, s.files, s.bytes)
                for s in manifest.summary.excluded
                if s.entries and s.pattern not in own
            ),
        )
    except (BackupBusy, BackupRefused):
        raise  # nothing was done: nothing to record
    except Exception as exc:  # noqa: BLE001 - reported to the CLI as one line
        result = BackupResult(ok=False, error=_one_line(exc))
    result = replace(result, trigger=trigger, seconds=round(time.monotonic() - started, 2), finished_at=time.time())
    try:
        write_text(paths.backup_result, codec.dumps(result))
    except OSError as exc:  # a full disk: the caller still gets the result
        log.warning("could not record the backup's result in %s: %s", paths.backup_result, exc)
    return result


def run_restore(
    identity_text: str, paths: VmPaths = VM, agent: RunAs | None = None, progress: Progress = _quiet
) -> RestoreResult:
    """Restore the requested backup into the agent's home (written as the agent), with the
    identity the CLI pushed for this restore only; it never touches the disk. A restore runs
    once, on the new VM it was launched for: any later request is refused."""
    started = time.monotonic()
    if paths.restore_result.exists():
        return RestoreResult(ok=False, error="this workspace was restored already; a restore runs once, on a new VM")
    if not paths.restore_request.is_file():
        return RestoreResult(ok=False, error="this workspace was not launched to be restored")
    try:
        request = codec.loads(RestoreRequest, paths.restore_request.read_bytes(), str(paths.restore_request))
        config = _config(paths)
        identity = parse_identity(identity_text)
        progress("downloading, verifying, decrypting, extracting")
        # A new VM runs no backup before its restore is done; should one run, say so at once.
        with backup_lock(paths, "restore"):
            manifest = restore_backup(
                open_store(config.target),
                request.workspace,
                request.backup_id or None,
                identity,
                paths.home,
                merge=True,
                keep=KEPT_ON_RESTORE,
                run_as=agent or RunAs.lookup(AGENT_USER),
                keeper=IndexKeeper(paths.backup_index),
            )
        result = RestoreResult(
            ok=True,
            backup_id=manifest.backup_id,
            workspace=request.workspace,
            plaintext_bytes=manifest.plaintext_bytes,
        )
    except BackupBusy:
        raise  # nothing was done: the restore may run once the backup is over
    except Exception as exc:  # noqa: BLE001 - reported to the CLI as one line
        result = RestoreResult(ok=False, error=_one_line(exc))
    result = replace(result, seconds=round(time.monotonic() - started, 2), finished_at=time.time())
    write_text(paths.restore_result, codec.dumps(result))
    return result


def repo_folder(paths: VmPaths) -> str:
    """The repository's folder under the home's work/, as rendered into workspace.json (root's
    file): a backup records it, so that its restore, under whatever name, starts the agent there."""
    try:
        info = codec.loads(WorkspaceInfo, paths.workspace_info.read_bytes(), str(paths.workspace_info), strict=False)
    except (OSError, DocumentError):
        return ""
    repo = Path(info.repo_dir)
    return repo.name if repo.parent == paths.work else ""


def _config(paths: VmPaths) -> BackupConfig:
    config = load_vm_config(paths)
    if config is None:
        raise BackupNotConfigured("this workspace has no backup store configured")
    return config


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
