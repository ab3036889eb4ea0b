"""Backups and the restore as run on the VM: root runs them (the store's keys are root-only), and
everything that reads or writes the agent's home runs as the agent (the tar and untar stages).

A backup starts from the watchdog (backup-then-delete) or from a request on root's control
socket (control.py: the laptop over SSH, the workspace page); the restore from the laptop's
request with the identity it pushed over SSH. The results are written where the agent user (and
so the CLI and the page) can read them, without secrets.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from ..backup.crypto import parse_identity
from ..backup.indexkeeper import IndexKeeper
from ..backup.pipeline import create_backup, restore_backup
from ..backup.target import load_vm_config, open_store
from ..contract import codec
from ..contract.documents import (
    BackupConfig,
    BackupResult,
    ExcludedRecord,
    RestoreRequest,
    RestoreResult,
    WorkspaceInfo,
)
from ..contract.names import AGENT_USER, VM, VmPaths
from ..errors import VmgenError
from ..privileges import RunAs
from .jsonfile import write_text

Progress = Callable[[str], None]


def runtime_excludes(paths: VmPaths = VM) -> tuple[str, ...]:
    """vmgen's own per-boot state and what the CLI delivers again at every launch: restoring an
    old handover mark would start the agent before its credentials arrive, old leases would hold
    the new VM up, and the delivered API key has no business in a backup."""
    own = (paths.handover_mark, paths.leases, paths.hook_events, paths.agent_env)
    return tuple(str(p.relative_to(paths.home)) for p in own)


# The new VM's keys are the ones the user launched it with, not the backed-up ones.
KEPT_ON_RESTORE = (str(VM.authorized_keys.relative_to(VM.home)),)


class BackupNotConfigured(VmgenError):
    """No backup store was configured for this workspace."""


def _quiet(message: str) -> None:
    pass


@contextmanager
def backup_lock(paths: VmPaths, progress: Progress) -> Iterator[None]:
    """One backup at a time: the watchdog's and a requested one never interleave."""
    paths.run.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.backup_lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("waiting for the backup already running")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def run_backup(
    trigger: str, paths: VmPaths = VM, agent: RunAs | None = None, progress: Progress = _quiet
) -> BackupResult:
    """Back up the agent's home, read as the agent; returns (and records) the result."""
    started = time.monotonic()
    try:
        with backup_lock(paths, progress):
            config = _config(paths)
            progress("archiving, compressing, encrypting, uploading, verifying")
            target = config.target
            manifest = create_backup(
                paths.home,
                open_store(target),
                config.workspace,
                config.recipient,
                excludes=target.excludes + runtime_excludes(paths),
                keep_last=target.keep_last,
                run_as=agent or RunAs.lookup(AGENT_USER),
                keeper=IndexKeeper(paths.backup_index),
                max_increments=target.max_increments,
                repo_folder=repo_folder(paths),
            )
        own = set(runtime_excludes(paths))
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
    except Exception as exc:  # noqa: BLE001 - reported to the CLI as one line
        result = BackupResult(ok=False, error=_one_line(exc))
    result = replace(result, trigger=trigger, seconds=round(time.monotonic() - started, 2), finished_at=time.time())
    write_text(paths.backup_result, codec.dumps(result))
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
        with backup_lock(paths, progress):
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
    except (OSError, codec.DocumentError):
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
