"""The backup data model: error classes, backup ids, the object layout in a store, and the
manifest that makes a backup count.

Kept free of imports from the other backup modules so every one of them can import it."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vmgen.errors import UsageError, VmgenError

if TYPE_CHECKING:  # store.py imports this module for its errors
    from vmgen.backup.store import Store

FORMAT_VERSION = 1
OBJECT_SUFFIX = ".tar.zst.age"
MANIFEST_SUFFIX = ".json"
# Seconds resolution keeps ids short; the random tail keeps two backups in one second apart.
_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")
_WORKSPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


# ----- errors: one class per way a backup or restore can fail, each message one line -----


class BackupError(VmgenError):
    """Base of every backup/restore failure."""


class InvalidBackupRequest(UsageError):
    """Bad arguments: unknown workspace name form, malformed backup id, missing source dir."""


class IdentityError(BackupError):
    """The identity file is missing, malformed or cannot be unlocked."""


class IdentityExists(IdentityError):
    """Refusing to overwrite an identity: the backups made for it would become unreadable."""


class PassphraseRequired(IdentityError):
    """The identity is passphrase-protected and no passphrase was given."""


class WrongPassphrase(IdentityError):
    """The passphrase does not unlock the identity."""


class WrongIdentity(BackupError):
    """The identity is not the one the backup was encrypted to."""


class StoreError(BackupError):
    """The store answered with an error we cannot recover from."""


class StoreUnreachable(StoreError):
    """The store could not be reached (network, DNS, refused) after retries."""


class ObjectNotFound(StoreError):
    """A key that should exist in the store does not."""


class ManifestNotFound(BackupError):
    """No manifest: the backup does not exist or never completed."""


class ManifestInvalid(BackupError):
    """A manifest exists but cannot be parsed or is of an unknown format version."""


class IntegrityError(BackupError):
    """The stored object is not the one the manifest describes."""


class DigestMismatch(IntegrityError):
    """The object's sha256 differs from the manifest's (a damaged or altered object)."""


class ObjectTruncated(IntegrityError):
    """The object is shorter than the manifest says."""


class SizeMismatch(IntegrityError):
    """The object's size differs from the manifest's (longer than expected)."""


class UploadVerifyFailed(IntegrityError):
    """Reading the just-uploaded object back did not give the bytes that were sent."""


class ArchiveError(BackupError):
    """The decrypted archive is not a valid zstd/tar stream, or a member is unsafe."""


class RestoreTargetNotEmpty(UsageError):
    """The restore target exists and is not empty, and merging was not asked for."""


# ----- ids and keys -----


def new_backup_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def check_workspace(name: str) -> str:
    # The name becomes part of an object key: keep it to characters that need no escaping.
    if not _WORKSPACE_RE.match(name):
        raise InvalidBackupRequest(f"invalid workspace name for a backup: {name!r}")
    return name


def check_backup_id(backup_id: str) -> str:
    if not _ID_RE.match(backup_id):
        raise InvalidBackupRequest(f"invalid backup id {backup_id!r} (expected e.g. 20261125T130501Z-1a2b)")
    return backup_id


def workspace_prefix(workspace: str) -> str:
    return f"ws/{check_workspace(workspace)}/"


def object_key(workspace: str, backup_id: str) -> str:
    return workspace_prefix(workspace) + check_backup_id(backup_id) + OBJECT_SUFFIX


def manifest_key(workspace: str, backup_id: str) -> str:
    return workspace_prefix(workspace) + check_backup_id(backup_id) + MANIFEST_SUFFIX


def parse_key(key: str) -> tuple[str, str, str] | None:
    """(workspace, backup_id, kind) for a key of our layout, kind "object" or "manifest"."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "ws":
        return None
    for suffix, kind in ((OBJECT_SUFFIX, "object"), (MANIFEST_SUFFIX, "manifest")):
        if parts[2].endswith(suffix):
            backup_id = parts[2][: -len(suffix)]
            if _ID_RE.match(backup_id) and _WORKSPACE_RE.match(parts[1]):
                return parts[1], backup_id, kind
    return None


# ----- the manifest -----


@dataclass(frozen=True)
class ExcludeStat:
    """What one exclude pattern removed from the archive."""

    pattern: str
    entries: int = 0  # top-most excluded paths (a pruned directory counts once)
    files: int = 0  # files inside them, for the summary
    bytes: int = 0


@dataclass(frozen=True)
class ArchiveSummary:
    """What went into the tar, and what was left out and why."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    file_bytes: int = 0
    excluded: tuple[ExcludeStat, ...] = ()
    # Paths that could not be archived as they were (unreadable, vanished, special files,
    # changed size while read); a backup of a live home must not die on one odd file.
    skipped: tuple[str, ...] = ()
    skipped_count: int = 0


@dataclass(frozen=True)
class Manifest:
    workspace: str
    backup_id: str
    created_at: str  # ISO 8601 UTC
    plaintext_bytes: int  # the tar stream
    compressed_bytes: int  # the zstd stream
    ciphertext_bytes: int  # the stored object
    sha256: str  # of the stored object
    recipient: str
    summary: ArchiveSummary = field(default_factory=ArchiveSummary)
    vmgen_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def object_key(self) -> str:
        return object_key(self.workspace, self.backup_id)

    @property
    def manifest_key(self) -> str:
        return manifest_key(self.workspace, self.backup_id)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw.get("format_version") != FORMAT_VERSION:
                raise ManifestInvalid(
                    f"manifest {where} has format_version "
                    f"{raw.get('format_version')!r}; this vmgen reads {FORMAT_VERSION}"
                )
            summary = dict(raw.pop("summary", {}))
            summary["excluded"] = tuple(ExcludeStat(**e) for e in summary.get("excluded", ()))
            summary["skipped"] = tuple(summary.get("skipped", ()))
            return cls(summary=ArchiveSummary(**summary), **raw)
        except ManifestInvalid:
            raise
        except (ValueError, TypeError, AttributeError) as e:
            raise ManifestInvalid(f"manifest {where} is malformed: {e}") from e


# ----- listing and retention -----


def read_manifest(store: Store, workspace: str, backup_id: str) -> Manifest:
    key = manifest_key(workspace, backup_id)
    try:
        data = store.get_bytes(key)
    except ObjectNotFound as e:
        raise ManifestNotFound(
            f"no manifest for backup {backup_id} of workspace {workspace!r} (it does not exist or never completed)"
        ) from e
    return Manifest.from_json(data, key)


def list_backups(store: Store, workspace: str | None = None) -> list[Manifest]:
    """Completed backups (those with a manifest), oldest first."""
    prefix = workspace_prefix(workspace) if workspace else "ws/"
    found = [parse_key(k) for k in store.list_keys(prefix)]
    return [read_manifest(store, ws, bid) for ws, bid, kind in sorted(filter(None, found)) if kind == "manifest"]


def latest_backup(store: Store, workspace: str) -> Manifest:
    backups = list_backups(store, workspace)
    if not backups:
        raise ManifestNotFound(f"workspace {workspace!r} has no completed backup in {store.describe()}")
    return backups[-1]


def apply_retention(store: Store, workspace: str, keep_last: int, protect: str | None = None) -> list[str]:
    """Delete all but the newest `keep_last` backups, and objects older than those that never
    got a manifest (a run that died); `protect` is never deleted. Returns deleted ids."""
    if keep_last < 1:
        raise InvalidBackupRequest("keep_last must be at least 1")
    entries: dict[str, set[str]] = {}
    for key in store.list_keys(workspace_prefix(workspace)):
        parsed = parse_key(key)
        if parsed:
            entries.setdefault(parsed[1], set()).add(parsed[2])
    complete = sorted(b for b, kinds in entries.items() if "manifest" in kinds)
    keep = set(complete[-keep_last:]) | {protect}
    oldest_kept = min(complete[-keep_last:], default="")
    doomed = [b for b in sorted(entries) if b not in keep and ("manifest" in entries[b] or b < oldest_kept)]
    for backup_id in doomed:
        # Manifest first: a crash in between leaves an orphan object, never a dangling manifest.
        store.delete(manifest_key(workspace, backup_id))
        store.delete(object_key(workspace, backup_id))
    return doomed
