"""Where things live on the VM, in one place: the VM's services and the laptop's CLI (which
reads and writes them over SSH) agree on them by importing this. Tests point them elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..backup.target import VM_CONFIG


@dataclass(frozen=True)
class VmPaths:
    home: Path = Path("/home/agent")
    user: str = "agent"
    config: Path = VM_CONFIG
    backup_result: Path = Path("/var/lib/vmgen/backup-result.json")
    restore_identity: Path = Path("/run/vmgen/restore/identity")
    restore_request: Path = Path("/etc/vmgen/restore.json")
    restore_result: Path = Path("/var/lib/vmgen/restore-result.json")

    @property
    def backup_request(self) -> Path:
        return self.home / ".vmgen" / "backup-request"

    @property
    def leases(self) -> Path:
        return self.home / ".vmgen" / "leases.json"

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"
