"""The backup data model: backup ids, the object layout in a store, and the manifest that makes
a backup count (its errors are in vmgen.errors)."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from vmgen.errors import InvalidBackupRequest, ManifestInvalid, ManifestNotFound, ObjectNotFound

if TYPE_CHECKING:  # annotations only: the store module is not needed to read a manifest
    from vmgen.backup.store import Store

FORMAT_VERSION = 1  # a full backup: every vmgen reads it
# An increment: a vmgen that knows only full backups must refuse it, not restore part of a tree.
INCREMENT_FORMAT_VERSION = 2
OBJECT_SUFFIX = ".tar.zst.age"
MANIFEST_SUFFIX = ".json"
# Seconds, then a tail of milliseconds and random bits: short ids that sort by time.
_ID_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{4}$")
_WORKSPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


# ----- ids and keys -----


def new_backup_id(now: datetime | None = None, after: str | None = None) -> str:
    """The time, and a tail that sorts by the millisecond (ms * 64 + 6 random bits): ids sort as
    the backups were made, also two in one second (an increment and the next). `after`: an id
    the new one must sort after (the newest in the store), should the clock have gone back."""
    now = now or datetime.now(UTC)
    tail = (now.microsecond // 1000) * 64 + secrets.randbelow(64)
    made = now.strftime("%Y%m%dT%H%M%SZ") + f"-{tail:04x}"
    if after is not None and _ID_RE.match(after) and made <= after:
        later = datetime.strptime(after[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) + timedelta(seconds=1)
        made = later.strftime("%Y%m%dT%H%M%SZ") + f"-{secrets.randbelow(64):04x}"
    return made


def next_backup_id(store: Store, workspace: str) -> str:
    """A new id for the workspace that sorts after every backup the store holds of it."""
    ids = [parsed[1] for key in store.list_keys(workspace_prefix(workspace)) if (parsed := parse_key(key))]
    return new_backup_id(after=max(ids, default=None))


def check_workspace(name: str) -> str:
    # The name becomes part of an object key: keep it to characters that need no escaping.
    if not _WORKSPACE_RE.match(name):
        raise InvalidBackupRequest(f"invalid workspace name for a backup: {name!r}")
    return name


def valid_repo_folder(name: str) -> bool:
    """A folder name of the home's work/ (a workspace name, or what an older one was)."""
    return bool(_WORKSPACE_RE.match(name))


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
    # An increment: files and links left out because an earlier backup of the chain holds them.
    unchanged: int = 0
    # Of the skipped, those with data this backup lacks (a file or folder it could not read, a
    # file that shrank while read): deleting the VM after this backup would lose them.
    left_out: tuple[str, ...] = ()
    left_out_count: int = 0


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
    # An increment holds what changed since `parent` (and which files are gone); restoring it
    # restores its chain, from the full backup `depth` steps up, in order. A full one: "", 0.
    parent: str = ""
    depth: int = 0
    # The store's own checksum of the object, as it reported it once the upload was verified
    # (S3's ChecksumSHA256); "" for a store that keeps none. A restore compares it before it
    # makes anything: an object written over since has another one.
    store_checksum: str = ""
    # The repository's folder under the home's work/ ("" if unknown: a vmgen before this field,
    # whose restores took the workspace's name): a restore starts the agent there, also when
    # it restores under another name a workspace that itself was restored under another name.
    repo_folder: str = ""

    @property
    def is_increment(self) -> bool:
        return bool(self.parent)

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
            version = raw.get("format_version")
            if version not in (FORMAT_VERSION, INCREMENT_FORMAT_VERSION):
                raise ManifestInvalid(
                    f"manifest {where} has format_version {version!r}; "
                    f"this vmgen reads {FORMAT_VERSION} and {INCREMENT_FORMAT_VERSION}"
                )
            summary = dict(raw.pop("summary", {}))
            summary["excluded"] = tuple(ExcludeStat(**e) for e in summary.get("excluded", ()))
            summary["skipped"] = tuple(summary.get("skipped", ()))
            summary["left_out"] = tuple(summary.get("left_out", ()))
            # Fields a later vmgen adds are left for it: this one reads what it knows.
            known = {f.name for f in fields(cls)}
            summary_known = {f.name for f in fields(ArchiveSummary)}
            summary = {k: v for k, v in summary.items() if k in summary_known}
            manifest = cls(summary=ArchiveSummary(**summary), **{k: v for k, v in raw.items() if k in known})
        except ManifestInvalid:
            raise
        except (ValueError, TypeError, AttributeError) as e:
            raise ManifestInvalid(f"manifest {where} is malformed: {e}") from e
        increment = manifest.format_version == INCREMENT_FORMAT_VERSION
        if increment != bool(manifest.parent) or increment != (manifest.depth > 0) or manifest.depth < 0:
            raise ManifestInvalid(f"manifest {where} is malformed: parent, depth and format_version disagree")
        if manifest.parent and not _ID_RE.match(manifest.parent):
            raise ManifestInvalid(f"manifest {where} names an invalid parent {manifest.parent!r}")
        if manifest.repo_folder and not valid_repo_folder(manifest.repo_folder):
            raise ManifestInvalid(f"manifest {where} names an invalid repository folder {manifest.repo_folder!r}")
        return manifest


# ----- listing (retention: retention.py) -----


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


# A chain longer than this is refused: retention starts a new full backup long before (the
# `max_increments` setting), so only a damaged or hostile store could hold one.
MAX_CHAIN = 1000


def backup_chain(store: Store, manifest: Manifest) -> list[Manifest]:
    """What restoring `manifest` takes: its full backup and every increment up to it, in the
    order they are applied. Each link is checked: same workspace and recipient, depth one less."""
    chain = [manifest]
    while chain[-1].parent:
        child = chain[-1]
        if len(chain) > MAX_CHAIN:
            raise ManifestInvalid(f"backup {manifest.backup_id} has a chain of over {MAX_CHAIN} increments")
        try:
            parent = read_manifest(store, child.workspace, child.parent)
        except ManifestNotFound:
            raise ManifestNotFound(
                f"backup {child.backup_id} is an increment on {child.parent}, which is missing from "
                f"{store.describe()}; restore an older backup (`vmgen backups {child.workspace}`)"
            ) from None
        if parent.recipient != child.recipient or parent.depth != child.depth - 1:
            raise ManifestInvalid(
                f"backup {child.backup_id} does not follow from {parent.backup_id} (recipient or depth differ)"
            )
        chain.append(parent)
    return chain[::-1]
