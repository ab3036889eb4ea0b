"""Backup and restore as process pipelines, like `tar | zstd | age > store` and back:

    backup:  [tar + zstd child] -pipe-> [age + sha256 child] -pipe-> this process: store upload
    restore: this process: download -pipe-> [sha256 + age child] -pipe-> [unzstd + untar child]
             (from a local store, the age child reads the object's file itself)

The ciphertext's sha256 is computed by the age stage, where those bytes pass anyway: no
process reads them a second time to hash them (but an S3 upload is read back, see below).

Memory is constant for any size: pipes hold at most 1 MiB each, the S3 upload at most
max_buffered_parts parts (see stages.py and store.py).

On the VM, the process running this is root (the store's keys are root's) and the stages that
read or write the agent's home run as the agent (`run_as`): its links, FIFOs and permissions then
mean what they mean to the agent, not to root. What such a stage reports is checked and capped."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

import vmgen
from vmgen.backup import archive, crypto, extract, manifest as model, stages
from vmgen.backup.indexkeeper import IndexKeeper, IndexState
from vmgen.backup.manifest import ArchiveSummary, ExcludeStat, Manifest
from vmgen.backup.retention import Retention, apply_retention
from vmgen.backup.stages import RunAs
from vmgen.backup.store import LocalStore, Readable, Store, same_checksum
from vmgen.errors import (
    ArchiveError,
    BackupError,
    BackupStopped,
    DigestMismatch,
    InvalidBackupRequest,
    ObjectNotFound,
    ObjectTruncated,
    RestoreTargetNotEmpty,
    SizeMismatch,
    UploadVerifyFailed,
    WrongIdentity,
)

CHUNK = stages.CHUNK
log = logging.getLogger(__name__)


# ----- backup -----


class _CiphertextReader:
    """What the store reads: the age stream, counted (the age stage hashes it). At EOF it
    waits for the stages and raises their error, so an upload whose producer failed is never
    completed."""

    def __init__(self, fd: int, running: list[stages.Stage], stall: _StallGuard) -> None:
        # The upload's caller closes src once the store is done reading.
        self.src, self.running, self.stall = open(fd, "rb", buffering=CHUNK), running, stall  # noqa: SIM115
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n if n > 0 else CHUNK)
        if data:
            self.count += len(data)
            self.stall.progress()
            return data
        self._end()
        return b""

    def splice_into(self, fd: int) -> int:
        """All of the stream into the file `fd`, moved by the kernel (splice(2)) rather than
        copied through this process; the byte count. Ends like read() does."""
        src = self.src.fileno()
        try:
            while moved := os.splice(src, fd, CHUNK):
                self.count += moved
                self.stall.progress()
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EXDEV):
                raise
            while data := self.read(CHUNK):  # a file system without splice support: copy
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            return self.count
        self._end()
        return self.count

    def _end(self) -> None:
        stages.finish(self.running, failed=False)
        self.stall.check()
        error = stages.root_error(self.running)
        if error is not None:
            raise error


@dataclass(frozen=True)
class Limits:
    """When root stops a backup: no data for `stall_seconds`, past `deadline` (time.monotonic()),
    or once `cancelled()` says so. The tar stage is the agent's process: it can pause it, slow it
    to a trickle that keeps the stall guard quiet, or kill it; none of that may hold root's
    backup, and with it the idle action and the hard lifetime, past root's own deadline."""

    stall_seconds: float = 600
    deadline: float | None = None
    cancelled: Callable[[], str] | None = None  # a reason to stop now, or ""

    def why_stop(self, now: float, last_data: float) -> str:
        if self.deadline is not None and now >= self.deadline:
            return "it did not finish within its deadline"
        if now - last_data > self.stall_seconds:
            return f"no data for {self.stall_seconds:.0f}s"
        return self.cancelled() if self.cancelled is not None else ""


class _StallGuard(threading.Thread):
    """Kills the stages (SIGKILL: a stopped process cannot hold it off) when `limits` say so."""

    def __init__(self, running: list[stages.Stage], limits: Limits) -> None:
        super().__init__(name="backup-guard", daemon=True)
        self.running, self.limits = running, limits
        self.last = time.monotonic()
        self.reason = ""
        self.done = threading.Event()

    def progress(self) -> None:
        self.last = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(min(1.0, self.limits.stall_seconds / 4)):
            reason = self.limits.why_stop(time.monotonic(), self.last)
            if reason:
                self.reason = reason
                for stage in self.running:
                    stage.kill()
                return

    def check(self) -> None:
        if self.reason:
            raise BackupStopped(f"the backup was stopped: {self.reason}")


def create_backup(
    root: Path | str,
    store: Store,
    workspace: str,
    recipient: str,
    excludes: Iterable[str] = archive.DEFAULT_EXCLUDES,
    keep_last: int | None = None,
    backup_id: str | None = None,
    run_as: RunAs | None = None,
    limits: Limits = Limits(),
    keeper: IndexKeeper | None = None,
    max_increments: int = 0,
    repo_folder: str = "",
    retention: Retention | None = None,
) -> Manifest:
    """Archive `root` into `store`, reading it as `run_as` (default: as we are). The manifest that
    makes the backup count is written only after the stored object was verified against what was
    sent (read back from a remote store; size-checked in a local folder).

    With a `keeper` (where the index of the last backup is kept) and `max_increments` > 0 the
    backup is an increment on the last one, unless that one is gone from the store, was made
    for another recipient, or its chain already holds `max_increments` increments: then it is
    a full backup that starts a new chain. `repo_folder`: the repository's folder under the
    home's work/, recorded in the manifest for a restore to start the agent in.

    Once the manifest is written the backup counts: what follows (keeping the index, pruning
    by `retention`, or `keep_last` alone) may fail without failing it, so a caller never makes
    the same backup again because of, say, a full disk."""
    root = Path(root).absolute()
    if run_as is None and not root.is_dir():  # as another user, the tar stage says so itself
        raise InvalidBackupRequest(f"nothing to back up: {root} is not a directory")
    crypto.check_recipient(recipient)
    backup_id = model.check_backup_id(backup_id or model.next_backup_id(store, workspace))
    key = model.object_key(workspace, backup_id)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    parent, previous_fd = _parent_for(store, workspace, recipient, keeper, max_increments)
    try:
        received = keeper.receive() if keeper is not None else None
    except OSError as exc:  # a full disk: this backup goes on without keeping its index
        log.warning("backup %s: no room for its file index (%s); the next backup is a full one", backup_id, exc)
        received = None
    tar_params = {
        "root": str(root),
        "excludes": list(excludes),
        "previous_fd": previous_fd,
        "index_fd": received.write_fd if received is not None else None,
    }
    tar_r, tar_w = stages.pipe()
    age_r, age_w = stages.pipe()
    running: list[stages.Stage] = []
    try:
        running.append(stages.spawn("tar", tar_params, subprocess.DEVNULL, tar_w, run_as=run_as))
        running.append(stages.spawn("encrypt", {"recipient": recipient}, tar_r, age_w))
    except BaseException:
        stages.finish(running, failed=True)
        os.close(age_r)
        if received is not None:
            received.discard()
        raise
    finally:
        for fd in (tar_r, tar_w, age_w, *([previous_fd] if previous_fd is not None else [])):
            os.close(fd)  # the children hold their own copies
        if received is not None:
            received.sent()
    try:
        manifest = _store_backup(
            store,
            key,
            age_r,
            running,
            limits,
            Manifest(
                workspace=workspace,
                backup_id=backup_id,
                created_at=created_at,
                plaintext_bytes=0,
                compressed_bytes=0,
                ciphertext_bytes=0,
                sha256="",
                recipient=recipient,
                vmgen_version=vmgen.__version__,
                format_version=model.INCREMENT_FORMAT_VERSION if parent else model.FORMAT_VERSION,
                parent=parent.backup_id if parent else "",
                depth=parent.depth + 1 if parent else 0,
                repo_folder=repo_folder if model.valid_repo_folder(repo_folder) else "",
            ),
        )
    except BaseException:
        if received is not None:
            received.discard()
        raise
    if keeper is not None and received is not None:
        try:
            keeper.commit(received, IndexState(workspace, recipient, backup_id, manifest.depth))
            failed_with = received.error
        except OSError as exc:
            failed_with = exc
            keeper.forget()
        if failed_with is not None:  # the next backup is a full one; this one is good
            log.warning(
                "backup %s: its file index was not kept (%s); the next backup is a full one", backup_id, failed_with
            )
    if retention is None and keep_last is not None:
        retention = Retention.count_only(keep_last)
    if retention is not None:
        try:
            apply_retention(store, workspace, retention, protect=backup_id)
        except (BackupError, OSError) as exc:  # pruning is for another day; this backup is good
            log.warning("backup %s is stored; pruning older backups failed: %s", backup_id, exc)
    return manifest


def _parent_for(
    store: Store, workspace: str, recipient: str, keeper: IndexKeeper | None, max_increments: int
) -> tuple[Manifest | None, int | None]:
    """The backup the next one is an increment on, if it can be one (see create_backup), and a
    descriptor of its index for the walk."""
    if keeper is None or max_increments < 1:
        return None, None
    state = keeper.previous(workspace, recipient)
    if state is None or state.depth >= max_increments:
        return None, None
    try:
        parent = model.read_manifest(store, workspace, state.backup_id)
    except BackupError:  # deleted from the store since, or unreadable: start a new chain
        return None, None
    if parent.recipient != recipient or parent.depth != state.depth:
        return None, None
    try:
        return parent, keeper.open_index()
    except OSError:
        return None, None


def _store_backup(
    store: Store, key: str, age_r: int, running: list[stages.Stage], limits: Limits, draft: Manifest
) -> Manifest:
    """Upload what the stages make, verify it, and write the manifest that makes it count."""
    stall = _StallGuard(running, limits)
    stall.start()
    reader = _CiphertextReader(age_r, running, stall)
    failed = True
    try:
        sent = store.put_stream(key, reader)
        failed = False
    finally:
        reader.src.close()
        stages.finish(running, failed)
        stall.done.set()
    stall.check()
    digest, made = _age_report(running[1].result)
    if not sent == reader.count == made:
        raise UploadVerifyFailed(f"the store took {sent} of {reader.count} bytes for {key}; age wrote {made}")
    store_checksum = _verify_stored(store, key, reader.count, digest)
    summary, plaintext_bytes, compressed_bytes = _tar_report(running[0].result)
    manifest = replace(
        draft,
        plaintext_bytes=plaintext_bytes,
        compressed_bytes=compressed_bytes,
        ciphertext_bytes=reader.count,
        sha256=digest,
        summary=summary,
        store_checksum=store_checksum,
    )
    store.put_bytes(manifest.manifest_key, manifest.to_json())
    return manifest


def _tar_report(raw: Any) -> tuple[ArchiveSummary, int, int]:
    """The tar stage's report, checked and capped: on the VM that stage is the agent's process."""
    from vmgen.contract.codec import from_value
    from vmgen.errors import DocumentError

    try:
        if not isinstance(raw, dict):
            raise DocumentError("not an object")
        summary = from_value(ArchiveSummary, raw.get("summary"), "the tar stage's summary", strict=False)
        plain, compressed = raw.get("plaintext_bytes"), raw.get("compressed_bytes")
        if not (_is_size(plain) and _is_size(compressed)):
            raise DocumentError("sizes must be non-negative integers")
    except DocumentError as exc:
        raise ArchiveError(f"the tar stage reported nonsense ({exc})") from None
    summary = ArchiveSummary(
        files=max(0, summary.files),
        dirs=max(0, summary.dirs),
        symlinks=max(0, summary.symlinks),
        hardlinks=max(0, summary.hardlinks),
        file_bytes=max(0, summary.file_bytes),
        excluded=tuple(
            ExcludeStat(e.pattern[:200], max(0, e.entries), max(0, e.files), max(0, e.bytes))
            for e in summary.excluded[:100]
        ),
        skipped=tuple(s[:300] for s in summary.skipped[:50]),
        skipped_count=max(0, summary.skipped_count),
        unchanged=max(0, summary.unchanged),
        left_out=tuple(s[:300] for s in summary.left_out[:50]),
        left_out_count=max(0, summary.left_out_count, min(len(summary.left_out), 50)),
    )
    return summary, plain, compressed


def _age_report(raw: Any) -> tuple[str, int]:
    """The age stage's digest and size of what it read or wrote (root's own process: checked
    for shape only)."""
    digest, size = (raw.get("sha256"), raw.get("bytes")) if isinstance(raw, dict) else (None, None)
    if not (isinstance(digest, str) and len(digest) == 64 and _is_size(size)):
        raise BackupError("the age stage reported no digest")
    return digest, size


def _is_size(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _verify_stored(store: Store, key: str, size: int, digest: str) -> str:
    """Read the object back and compare: only then may a manifest make it count. A local
    folder's file was written and fsync'd by this very process, hashed as it passed: its size
    is checked (a read-back would come from the page cache and prove nothing more). Returns
    the checksum the store keeps of it ("" if none), for a restore to compare first."""
    stored = store.head(key)
    if stored is None or stored.size != size:
        found = "missing" if stored is None else f"{stored.size} bytes"
        raise UploadVerifyFailed(f"{key} is {found} in {store.describe()}, {size} were written")
    if not store.reads_back:
        return stored.checksum
    sha, count = hashlib.sha256(), 0
    with store.get_stream(key) as body:
        while data := body.read(CHUNK):
            sha.update(data)
            count += len(data)
    if count != size or sha.hexdigest() != digest:
        raise UploadVerifyFailed(
            f"{key} read back as {count} bytes sha256 {sha.hexdigest()[:16]}..., "
            f"sent {size} bytes sha256 {digest[:16]}..."
        )
    return stored.checksum


# ----- restore -----


def restore_backup(
    store: Store,
    workspace: str,
    backup_id: str | None,
    identity: crypto.Identity,
    target: Path | str,
    merge: bool = False,
    keep: Iterable[str] = (),
    run_as: RunAs | None = None,
    keeper: IndexKeeper | None = None,
) -> Manifest:
    """Download, verify, decrypt and extract a backup (the latest if backup_id is None) into
    `target`: for an increment, its chain from the full backup on, each in order into the same
    staging directory (inside `target` when merging into it, else beside it), each in one
    streaming pass. The staged tree is moved into place only once every downloaded object's
    size and sha256 matched its manifest and tar ended cleanly, so on any failure `target` is
    untouched. (age also authenticates every 64 KiB chunk: damaged ciphertext never reaches tar
    in the first place.) Extraction, and everything written below `target`, runs as `run_as`;
    the files named in `keep` (relative paths) stay as they are in `target`. With a `keeper`,
    the restored tree's index is kept there, so the next backup is an increment on this one."""
    target = Path(target).absolute()
    manifest = (
        model.latest_backup(store, workspace) if backup_id is None else model.read_manifest(store, workspace, backup_id)
    )
    if identity.recipient != manifest.recipient:
        raise WrongIdentity(
            f"backup {manifest.backup_id} was encrypted to {manifest.recipient}, "
            f"not to this identity ({identity.recipient})"
        )
    chain = check_chain(store, manifest)
    if not merge and target.exists() and any(target.iterdir()):
        raise RestoreTargetNotEmpty(f"restore target {target} is not empty")
    staging = extract.staging_path(target, manifest.backup_id, merge)
    job = _Extraction(identity, target, merge, list(keep), run_as, staging)
    received = keeper.receive() if keeper is not None else None
    extracted = 0
    try:
        for layer in chain:
            last = layer is manifest
            index_fd = received.write_fd if received is not None and last else None
            _download_and_extract(store, job, _Layer(layer, first=not extracted, last=last, index_fd=index_fd))
            extracted += 1
    except BaseException:
        if received is not None:
            received.discard()
        if 0 < extracted < len(chain):  # the staged tree waits for a backup that never comes
            discard = stages.spawn(
                "discard", {"staging": str(staging)}, subprocess.DEVNULL, subprocess.DEVNULL, run_as=run_as
            )
            stages.finish([discard], failed=False)
        raise
    if keeper is not None and received is not None:
        keeper.commit(received, IndexState(manifest.workspace, manifest.recipient, manifest.backup_id, manifest.depth))
    return manifest


@dataclass(frozen=True)
class _Extraction:
    """One restore's key and destination, as restore_backup checked them."""

    identity: crypto.Identity
    target: Path
    merge: bool
    keep: list[str]
    run_as: RunAs | None
    staging: Path


@dataclass(frozen=True)
class _Layer:
    """One backup of the chain being restored, and its place in it."""

    manifest: Manifest
    first: bool  # the full backup: its stage makes the staging folder
    last: bool  # the one asked for: its stage moves the staged tree into place
    index_fd: int | None  # where that stage sends the restored tree's index, if anywhere


def check_chain(store: Store, manifest: Manifest) -> list[Manifest]:
    """What restoring `manifest` takes (its chain, full backup first), checked as far as it can
    be without downloading, so that a damaged link is refused before anything is made: every
    manifest, and every object's size and the checksum the store keeps of it."""
    chain = model.backup_chain(store, manifest)
    for layer in chain:
        check_stored(store, layer)
    return chain


def check_local_objects(store: Store, chain: list[Manifest]) -> None:
    """In a local folder, every object of the chain is hashed against its manifest: read from
    the local disk (about a second a GiB), where the restore would find a damaged one only
    after a VM was made. A remote store's objects are checked as they are downloaded."""
    if isinstance(store, LocalStore):
        for layer in chain:
            _check_local_digest(store, layer)


def check_stored(store: Store, manifest: Manifest) -> None:
    """The backup's object is in the store, of its size, and, where the store keeps a
    checksum, the very object the backup verified."""
    stored, want = store.head(manifest.object_key), manifest.ciphertext_bytes
    if stored is None:
        raise ObjectNotFound(
            f"backup {manifest.backup_id} has a manifest but its object "
            f"{manifest.object_key} is missing from {store.describe()}"
        )
    if stored.size < want:
        raise ObjectTruncated(f"backup {manifest.backup_id} is truncated: {stored.size} of {want} bytes")
    if stored.size != want:
        raise SizeMismatch(f"backup {manifest.backup_id} is {stored.size} bytes, its manifest says {want}")
    if manifest.store_checksum and not same_checksum(stored.checksum, manifest.store_checksum):
        now = f"checksum {stored.checksum[:16]}..." if stored.checksum else "no checksum"
        raise DigestMismatch(
            f"backup {manifest.backup_id} is not the object that was backed up: the store has {now} for it, "
            f"it kept {manifest.store_checksum[:16]}... at the backup (written over or damaged since)"
        )


def _check_local_digest(store: LocalStore, manifest: Manifest) -> None:
    sha = hashlib.sha256()
    with store.get_stream(manifest.object_key) as body:
        while data := body.read(CHUNK):
            sha.update(data)
    if sha.hexdigest() != manifest.sha256:
        raise DigestMismatch(
            f"backup {manifest.backup_id} is damaged: its sha256 {sha.hexdigest()[:16]}... "
            f"is not the manifest's {manifest.sha256[:16]}..."
        )


def _download_and_extract(store: Store, job: _Extraction, layer: _Layer) -> None:
    with store.get_stream(layer.manifest.object_key) as body:
        local = _regular_file_fd(body)
        age_r, age_w = (local, -1) if local is not None else stages.pipe()
        _run_restore(body, age_r, age_w, job, layer)


def _regular_file_fd(body: object) -> int | None:
    """The download's fd if it is a local file: the decrypt stage then reads it itself."""
    try:
        fd = body.fileno()  # type: ignore[attr-defined]
        return fd if isinstance(fd, int) and stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


def _run_restore(body: Readable, age_r: int, age_w: int, job: _Extraction, layer: _Layer) -> None:
    """age_w is -1 when age_r is the object's file; else age_r and age_w are a pipe (both
    closed here) and this process feeds `body` into it."""
    manifest = layer.manifest
    tar_r, tar_w = stages.pipe()
    go_r, go_w = os.pipe()  # "1" once everything is verified: the untar stage moves its tree in
    secret_r, secret_w = os.pipe()
    os.write(secret_w, job.identity.secret.encode())  # far below a pipe's capacity: never blocks
    os.close(secret_w)
    running: list[stages.Stage] = []
    try:
        running.append(stages.spawn("decrypt", {"secret_fd": secret_r}, age_r, tar_w))
        running.append(
            stages.spawn(
                "untar",
                {
                    "target": str(job.target),
                    "staging": str(job.staging),
                    "first": layer.first,
                    "last": layer.last,
                    "merge": job.merge,
                    "keep": job.keep,
                    "go_fd": go_r,
                    "index_fd": layer.index_fd,
                },
                tar_r,
                subprocess.DEVNULL,
                run_as=job.run_as,
            )
        )
    except BaseException:
        stages.finish(running, failed=True)
        if age_w >= 0:
            os.close(age_w)
        os.close(go_w)
        raise
    finally:
        # The children hold their own copies. Without the pipe's read end here, a decrypt stage
        # that died makes the feeding fail (EPIPE) instead of block.
        for fd in (tar_r, tar_w, secret_r, go_r, *([age_r] if age_w >= 0 else [])):
            os.close(fd)
    decrypt, untar = running
    try:
        try:
            if age_w >= 0:
                _feed_all(body, age_w)
        finally:
            decrypt.join()
        if decrypt.error is not None:  # it died: no report
            raise decrypt.error
        digest, count = _age_report(decrypt.result)
        if count < manifest.ciphertext_bytes:
            raise ObjectTruncated(
                f"backup {manifest.backup_id}: the download ended after {count} of {manifest.ciphertext_bytes} bytes"
            )
        if count != manifest.ciphertext_bytes or digest != manifest.sha256:
            raise DigestMismatch(
                f"backup {manifest.backup_id} is damaged: its sha256 "
                f"{digest[:16]}... is not the manifest's {manifest.sha256[:16]}..."
            )
        failed = decrypt.result.get("error")
        if failed is not None and failed.get("type") != "BrokenPipeError":
            raise stages.rebuild_error("decrypt", str(failed.get("type")), str(failed.get("message"))[:2000])
        if failed is None:  # else the untar stage stopped reading: its error is the one to raise
            with contextlib.suppress(BrokenPipeError):  # the untar stage already failed: its error follows
                os.write(go_w, b"1")
    finally:
        # Without the "1", the untar stage throws its staged tree away and nothing moves in.
        os.close(go_w)
        untar.join()
    if untar.error is not None:
        raise untar.error
    if failed is not None:
        raise BackupError("the untar stage stopped reading before the end of the backup")


def _feed_all(body: Readable, age_w: int) -> None:
    """Copy the download into the decrypt stage, to its end (closing the pipe then). The stage
    reads everything even after a failure, to hash it; if it died, the copy stops."""
    feed = open(age_w, "wb", buffering=CHUNK)  # noqa: SIM115 - _feed(feed, None) closes it, below
    feeding = True
    try:
        while feeding and (data := body.read(CHUNK)):
            feeding = _feed(feed, data)
    finally:
        _feed(feed, None)  # end of input: decrypt finishes (or fails on a short stream)


def _feed(pipe: BinaryIO, data: bytes | None) -> bool:
    """Write to the decrypt stage (close it on None); False once it stopped reading (it died)."""
    try:
        if data is None:
            pipe.close()
        else:
            pipe.write(data)
        return True
    except BrokenPipeError:
        return False
