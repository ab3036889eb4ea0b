"""Encrypted workspace backups: tar -> zstd -> age, in a local directory or S3 (R2).

Anyone with the identity file can read a backup without vmgen:
    age -d -i IDENTITY < OBJECT | zstd -d | tar -t
"""

from vmgen.backup.archive import DEFAULT_EXCLUDES
from vmgen.backup.crypto import (
    Identity, generate_identity, load_identity, parse_identity, save_identity,
)
from vmgen.backup.manifest import (
    ArchiveError, ArchiveSummary, BackupError, DigestMismatch, ExcludeStat, IdentityError,
    IdentityExists, IntegrityError, InvalidBackupRequest, Manifest, ManifestInvalid,
    ManifestNotFound, ObjectNotFound, ObjectTruncated, PassphraseRequired, RestoreTargetNotEmpty,
    SizeMismatch, StoreError, StoreUnreachable, UploadVerifyFailed, WrongIdentity,
    WrongPassphrase, apply_retention, latest_backup, list_backups, read_manifest,
)
from vmgen.backup.pipeline import create_backup, restore_backup
from vmgen.backup.store import LocalStore, S3Settings, S3Store, Store

__all__ = [
    "DEFAULT_EXCLUDES", "Identity", "generate_identity", "load_identity", "parse_identity",
    "save_identity", "ArchiveError", "ArchiveSummary", "BackupError", "DigestMismatch",
    "ExcludeStat", "IdentityError", "IdentityExists", "IntegrityError", "InvalidBackupRequest",
    "Manifest", "ManifestInvalid", "ManifestNotFound", "ObjectNotFound", "ObjectTruncated",
    "PassphraseRequired", "RestoreTargetNotEmpty", "SizeMismatch", "StoreError",
    "StoreUnreachable", "UploadVerifyFailed", "WrongIdentity", "WrongPassphrase",
    "apply_retention", "latest_backup", "list_backups", "read_manifest", "create_backup",
    "restore_backup", "LocalStore", "S3Settings", "S3Store", "Store",
]
