"""Encrypted workspace backups: tar -> zstd -> age, in a local directory or S3 (R2).

Anyone with the identity file can read a backup without vmgen:
    age -d -i IDENTITY < OBJECT | zstd -d | tar -t

The names below are imported on first use (PEP 562): the laptop CLI touches this package on
every start, and most commands never need zstd, age or boto3.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "archive": ("DEFAULT_EXCLUDES",),
    "crypto": ("Identity", "generate_identity", "load_identity", "parse_identity", "save_identity"),
    "manifest": (
        "ArchiveSummary",
        "ExcludeStat",
        "Manifest",
        "latest_backup",
        "list_backups",
        "read_manifest",
    ),
    "pipeline": ("create_backup", "restore_backup"),
    "retention": ("Retention", "apply_retention"),
    "store": ("LocalStore", "S3Settings", "S3Store", "Store"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)  # noqa: PLE0605 - the names are listed once, in _EXPORTS


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value
