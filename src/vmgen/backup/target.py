"""Where a workspace's backups go, as the laptop configures it and as the VM receives it.

The store's description is the contract's BackupTarget; the VM gets it in a root-only
/etc/vmgen/backup.toml with the workspace's public recipient (never the identity).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contract.documents import BackupConfig, BackupTarget
from ..contract.enums import StoreKind
from ..contract.names import VM, VmPaths
from ..errors import ConfigError, DocumentError, UsageError
from .retention import Retention

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "BackupConfig",
    "BackupTarget",
    "load_vm_config",
    "open_store",
    "require_target",
    "retention_of",
    "target_from_settings",
    "target_on_vm",
]


def open_store(target: BackupTarget) -> Store:
    from .store import LocalStore, S3Settings, S3Store  # boto3 only when a store is used

    if target.kind == StoreKind.LOCAL:
        Path(target.path).mkdir(parents=True, exist_ok=True)
        return LocalStore(Path(target.path))
    return S3Store(
        S3Settings(
            bucket=target.bucket,
            endpoint_url=target.endpoint_url or None,
            region_name=target.region,
            access_key_id=target.access_key_id or None,
            secret_access_key=target.secret_access_key or None,
            part_size=target.part_size_mib * 1024 * 1024,
        )
    )


def target_on_vm(target: BackupTarget) -> BackupTarget:
    """The same store as the VM sees it (a local folder appears at its mount point)."""
    return replace(target, path=str(VM.local_backups)) if target.kind == StoreKind.LOCAL else target


def retention_of(target: BackupTarget) -> Retention:
    return Retention(
        keep_last=max(1, target.keep_last),
        keep_hours=target.keep_hours,
        keep_daily=target.keep_daily,
        keep_weekly=target.keep_weekly,
        keep_before_shrink=True,
    )


def load_vm_config(paths: VmPaths = VM) -> BackupConfig | None:
    if not paths.backup_config.is_file():
        return None
    return BackupConfig.from_toml(paths.backup_config.read_text(), str(paths.backup_config))


def target_from_settings(settings: Any, local_folders: bool) -> BackupTarget | None:
    """The configured store: S3/R2 when a bucket is set, else a local folder when the provider's
    VMs can see this machine's folders (`local_folders`)."""
    from .archive import DEFAULT_EXCLUDES

    common = {
        "keep_last": settings.backup_keep,
        "keep_hours": settings.backup_keep_hours,
        "keep_daily": settings.backup_keep_daily,
        "keep_weekly": settings.backup_keep_weekly,
        "deadline_minutes": settings.backup_deadline_minutes,
        "requests_per_hour": settings.backup_requests_per_hour,
        "excludes": settings.backup_excludes or DEFAULT_EXCLUDES,
        "max_increments": settings.backup_max_increments,
        "part_size_mib": settings.backup_part_mib,
    }
    try:
        BackupTarget(kind=StoreKind.LOCAL, **common).validate(on_laptop=True)
    except DocumentError as exc:
        raise ConfigError(str(exc)) from None
    if settings.r2_bucket:
        return BackupTarget(
            kind=StoreKind.S3,
            bucket=settings.r2_bucket,
            endpoint_url=settings.r2_endpoint,
            access_key_id=settings.r2_access_key_id,
            secret_access_key=settings.r2_secret_access_key,
            **common,
        )
    if local_folders:
        return BackupTarget(kind=StoreKind.LOCAL, path=str(Path(settings.backup_dir).expanduser()), **common)
    return None


def require_target(settings: Any, provider: str, local_folders: bool) -> BackupTarget:
    target = target_from_settings(settings, local_folders)
    if target is None:
        raise UsageError(f"no backup store for the {provider} provider: set r2_bucket, r2_endpoint and the R2 keys")
    return target
