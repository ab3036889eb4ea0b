"""Backup and restore as process pipelines, like `tar | zstd | age > store` and back:

    backup:  [tar + zstd child] -pipe-> [age child] -pipe-> this process: sha256 + store upload
    restore: this process: download + sha256 -pipe-> [age child] -pipe-> [unzstd + untar child]

Memory is constant for any size: pipes hold at most 1 MiB each, the S3 upload at most
max_buffered_parts parts (see stages.py and store.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import vmgen
from vmgen.backup import archive, crypto, extract, stages
from vmgen.backup import manifest as model
from vmgen.backup.manifest import (
    ArchiveSummary, DigestMismatch, ExcludeStat, InvalidBackupRequest, Manifest, ObjectNotFound,
    ObjectTruncated, RestoreTargetNotEmpty, SizeMismatch, UploadVerifyFailed, WrongIdentity,
)
from vmgen.backup.store import Store

CHUNK = stages.CHUNK


# ----- backup -----

class _CiphertextReader:
    """What the store reads: the age stream, hashed and counted. At EOF it waits for the
    stages and raises their error, so an upload whose producer failed is never completed."""

    def __init__(self, fd: int, running: list[stages.Stage]) -> None:
        self.src, self.running = open(fd, "rb", buffering=CHUNK), running
        self.sha256, self.count = hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n if n > 0 else CHUNK)
        if data:
            self.sha256.update(data)
            self.count += len(data)
            return data
        stages.finish(self.running, failed=False)
        error = stages.root_error(self.running)
        if error is not None:
            raise error
        return b""


def create_backup(root: Path | str, store: Store, workspace: str, recipient: str,
                  excludes: Iterable[str] = archive.DEFAULT_EXCLUDES, keep_last: int | None = None,
                  backup_id: str | None = None) -> Manifest:
    """Archive `root` into `store`. The manifest that makes the backup count is written only
    after the stored object was read back and matched what was sent."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise InvalidBackupRequest(f"nothing to back up: {root} is not a directory")
    crypto.check_recipient(recipient)
    backup_id = model.check_backup_id(backup_id or model.new_backup_id())
    key = model.object_key(workspace, backup_id)
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tar_r, tar_w = stages.pipe()
    age_r, age_w = stages.pipe()
    running: list[stages.Stage] = []
    try:
        running.append(stages.spawn("tar", {"root": str(root), "excludes": list(excludes)}, subprocess.DEVNULL, tar_w))
        running.append(stages.spawn("encrypt", {"recipient": recipient}, tar_r, age_w))
    except BaseException:
        stages.finish(running, failed=True)
        os.close(age_r)
        raise
    finally:
        for fd in (tar_r, tar_w, age_w):  # the children hold their own copies
            os.close(fd)
    reader = _CiphertextReader(age_r, running)
    failed = True
    try:
        sent = store.put_stream(key, reader)  # type: ignore[arg-type]
        failed = False
    finally:
        reader.src.close()
        stages.finish(running, failed)
    digest = reader.sha256.hexdigest()
    if sent != reader.count:
        raise UploadVerifyFailed(f"the store took {sent} of {reader.count} bytes for {key}")
    _verify_stored(store, key, reader.count, digest)
    produced = running[0].result
    manifest = Manifest(
        workspace=workspace, backup_id=backup_id, created_at=created_at,
        plaintext_bytes=produced["plaintext_bytes"], compressed_bytes=produced["compressed_bytes"],
        ciphertext_bytes=reader.count, sha256=digest, recipient=recipient,
        summary=_summary_from(produced["summary"]), vmgen_version=vmgen.__version__)
    store.put_bytes(manifest.manifest_key, manifest.to_json())
    if keep_last is not None:
        model.apply_retention(store, workspace, keep_last, protect=backup_id)
    return manifest


def _summary_from(raw: dict[str, Any]) -> ArchiveSummary:
    return ArchiveSummary(**dict(raw, excluded=tuple(ExcludeStat(**e) for e in raw["excluded"]),
                                 skipped=tuple(raw["skipped"])))


def _verify_stored(store: Store, key: str, size: int, digest: str) -> None:
    """Read the object back and compare: only then may a manifest make it count."""
    sha, count = hashlib.sha256(), 0
    with store.get_stream(key) as body:
        while data := body.read(CHUNK):
            sha.update(data)
            count += len(data)
    if count != size or sha.hexdigest() != digest:
        raise UploadVerifyFailed(f"{key} read back as {count} bytes sha256 {sha.hexdigest()[:16]}..., "
                                 f"sent {size} bytes sha256 {digest[:16]}...")


# ----- restore -----

def restore_backup(store: Store, workspace: str, backup_id: str | None, identity: crypto.Identity,
                   target: Path | str, merge: bool = False,
                   owner: tuple[int, int] | None = None) -> Manifest:
    """Download, verify, decrypt and extract a backup (the latest if backup_id is None) into
    `target`, in one streaming pass into a staging directory beside `target`. The staged tree
    is moved into place only once the downloaded object's size and sha256 matched the manifest
    and tar ended cleanly, so on any failure `target` is untouched. (age also authenticates
    every 64 KiB chunk: damaged ciphertext never reaches tar in the first place.)"""
    target = Path(target).absolute()
    manifest = (model.latest_backup(store, workspace) if backup_id is None
                else model.read_manifest(store, workspace, backup_id))
    if identity.recipient != manifest.recipient:
        raise WrongIdentity(f"backup {manifest.backup_id} was encrypted to {manifest.recipient}, "
                            f"not to this identity ({identity.recipient})")
    _check_stored_size(store, manifest)
    if target.exists() and any(target.iterdir()) and not merge:
        raise RestoreTargetNotEmpty(f"restore target {target} is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A sibling of the target: the same filesystem, so moving into place is a rename.
    staging = target.parent / f".{target.name}.restore-{manifest.backup_id}-{os.getpid()}"
    staging.mkdir(mode=0o700)
    try:
        _download_and_extract(store, manifest, identity, staging)
        if owner is not None:
            extract.chown_tree(staging, owner)
        extract.move_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _check_stored_size(store: Store, manifest: Manifest) -> None:
    """Cheap early refusal, before downloading anything."""
    size, want = store.size(manifest.object_key), manifest.ciphertext_bytes
    if size is None:
        raise ObjectNotFound(f"backup {manifest.backup_id} has a manifest but its object "
                             f"{manifest.object_key} is missing from {store.describe()}")
    if size < want:
        raise ObjectTruncated(f"backup {manifest.backup_id} is truncated: {size} of {want} bytes")
    if size != want:
        raise SizeMismatch(f"backup {manifest.backup_id} is {size} bytes, its manifest says {want}")


def _download_and_extract(store: Store, manifest: Manifest, identity: crypto.Identity,
                          staging: Path) -> None:
    age_r, age_w = stages.pipe()
    tar_r, tar_w = stages.pipe()
    secret_r, secret_w = os.pipe()
    os.write(secret_w, identity.secret.encode())  # far below a pipe's capacity: never blocks
    os.close(secret_w)
    running: list[stages.Stage] = []
    try:
        running.append(stages.spawn("decrypt", {"secret_fd": secret_r}, age_r, tar_w, pass_fds=(secret_r,)))
        running.append(stages.spawn("untar", {"dest": str(staging)}, tar_r, subprocess.DEVNULL))
    except BaseException:
        stages.finish(running, failed=True)
        os.close(age_w)
        raise
    finally:
        for fd in (age_r, tar_r, tar_w, secret_r):
            os.close(fd)
    sha, count, failed, feeding = hashlib.sha256(), 0, True, True
    feed = open(age_w, "wb", buffering=CHUNK)
    try:
        with store.get_stream(manifest.object_key) as body:
            while data := body.read(CHUNK):
                sha.update(data)
                count += len(data)
                if feeding:
                    feeding = _feed(feed, data)
        failed = False
    finally:
        _feed(feed, None)
        stages.finish(running, failed)
    if count < manifest.ciphertext_bytes:
        raise ObjectTruncated(f"backup {manifest.backup_id}: the download ended after {count} of "
                              f"{manifest.ciphertext_bytes} bytes")
    if count != manifest.ciphertext_bytes or sha.hexdigest() != manifest.sha256:
        raise DigestMismatch(f"backup {manifest.backup_id} is damaged: its sha256 "
                             f"{sha.hexdigest()[:16]}... is not the manifest's {manifest.sha256[:16]}...")
    error = stages.root_error(running)
    if error is not None:
        raise error


def _feed(pipe: BinaryIO, data: bytes | None) -> bool:
    """Write to the decrypt stage (close it on None); False once it stopped reading. Then the
    caller keeps hashing the rest: whether the object is damaged decides which error is the
    true one (a flipped header byte reads as "no matching keys")."""
    try:
        if data is None:
            pipe.close()
        else:
            pipe.write(data)
        return True
    except BrokenPipeError:
        return False
