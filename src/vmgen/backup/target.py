"""Where a workspace's backups go, as the laptop configures it and as the VM receives it.

The VM gets a root-only /etc/vmgen/backup.toml with the store's location and credentials and the
workspace's public recipient; never the identity.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

from ..errors import UsageError

if TYPE_CHECKING:
    from .store import Store

VM_CONFIG = Path("/etc/vmgen/backup.toml")
# Where the docker provider mounts a local store inside the workspace.
VM_LOCAL_MOUNT = "/var/lib/vmgen/backups"


@dataclass(frozen=True)
class BackupTarget:
    kind: str  # "local" or "s3"
    path: str = ""  # local: a directory
    bucket: str = ""
    endpoint_url: str = ""
    region: str = "auto"
    access_key_id: str = ""
    secret_access_key: str = ""
    part_size_mib: int = 32
    keep_last: int = 7
    excludes: tuple[str, ...] = ()

    def open(self) -> Store:
        from .store import LocalStore, S3Settings, S3Store  # boto3 only when a store is used

        if self.kind == "local":
            Path(self.path).mkdir(parents=True, exist_ok=True)
            return LocalStore(Path(self.path))
        return S3Store(S3Settings(
            bucket=self.bucket, endpoint_url=self.endpoint_url or None, region_name=self.region,
            access_key_id=self.access_key_id or None, secret_access_key=self.secret_access_key or None,
            part_size=self.part_size_mib * 1024 * 1024))

    def describe(self) -> str:
        return f"local folder {self.path}" if self.kind == "local" else f"s3://{self.bucket} at {self.endpoint_url or 'AWS'}"

    def on_vm(self) -> "BackupTarget":
        """The same store as the VM sees it (a local folder appears at its mount point)."""
        if self.kind == "local":
            return BackupTarget(**{**self.__dict__, "path": VM_LOCAL_MOUNT})
        return self


def vm_config_text(target: BackupTarget, workspace: str, recipient: str) -> str:
    """TOML for the VM; every string is emitted as a JSON string, which TOML reads the same."""
    values = {**target.__dict__, "excludes": list(target.excludes), "workspace": workspace, "recipient": recipient}
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


@dataclass(frozen=True)
class VmBackupConfig:
    target: BackupTarget
    workspace: str
    recipient: str


def load_vm_config(path: Path = VM_CONFIG) -> VmBackupConfig | None:
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text())
    workspace, recipient = data.pop("workspace"), data.pop("recipient")
    data["excludes"] = tuple(data.get("excludes", ()))
    return VmBackupConfig(BackupTarget(**data), workspace, recipient)


def target_from_settings(settings, provider: str) -> BackupTarget | None:
    """The configured store: S3/R2 when a bucket is set, else a local folder (docker only)."""
    from .archive import DEFAULT_EXCLUDES

    common = {"keep_last": settings.backup_keep, "excludes": settings.backup_excludes or DEFAULT_EXCLUDES}
    if settings.r2_bucket:
        return BackupTarget(kind="s3", bucket=settings.r2_bucket, endpoint_url=settings.r2_endpoint,
                            access_key_id=settings.r2_access_key_id, secret_access_key=settings.r2_secret_access_key,
                            part_size_mib=settings.backup_part_mib, **common)
    if provider == "docker":
        return BackupTarget(kind="local", path=str(Path(settings.backup_dir).expanduser()), **common)
    return None


def require_target(settings, provider: str) -> BackupTarget:
    target = target_from_settings(settings, provider)
    if target is None:
        raise UsageError(f"no backup store for the {provider} provider: set r2_bucket, r2_endpoint and the R2 keys")
    return target
