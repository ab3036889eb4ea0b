"""The Provider protocol: the few operations vmgen needs from any place that runs a VM."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

# Spelled once, in the contract: a VM labels a snapshot of itself with them too.
from ...contract.enums import WorkspaceStatus
from ...contract.names import LABEL, OWNER_ID_LABEL, OWNER_LABEL, WS_LABEL
from ..owner import owned, owner_labels
from ..spec import WorkspaceSpec
from ..stamps import BakedImage

__all__ = [
    "LABEL",
    "OWNER_ID_LABEL",
    "OWNER_LABEL",
    "WS_LABEL",
    "KeptDisk",
    "Leftover",
    "Provider",
    "SSHEndpoint",
    "SelfDelete",
    "StopReason",
    "Workspace",
    "owned",
    "owner_labels",
]


@dataclass(frozen=True)
class SSHEndpoint:
    host: str
    port: int = 22
    user: str = "agent"


@dataclass(frozen=True)
class StopReason:
    """Why a stopped workspace stopped, as the provider read it off the VM's disk: its idle
    watchdog's action (which backs up first, when it has a store)."""

    at: float  # wall clock: when its backup finished (or failed)
    backup_id: str = ""  # the verified backup made just before it stopped
    backup_error: str = ""  # why the backup it tried failed (the data stays on the disk)


@dataclass(frozen=True)
class Workspace:
    name: str
    provider: str
    status: WorkspaceStatus
    created_at: datetime
    ssh: SSHEndpoint | None
    server_type: str = ""
    address: str = ""
    price_hourly: float | None = None
    owner: str = ""  # user@host; "" when made before vmgen recorded owners
    owner_id: str = ""  # the maker's owner id (see owner.py); "" when made before owner ids
    # Why it is stopped, when the provider can tell (its idle watchdog, and whether it backed up).
    stopped_by: StopReason | None = None

    @property
    def running(self) -> bool:
        return self.status == WorkspaceStatus.RUNNING


@dataclass(frozen=True)
class Leftover:
    """Something of a workspace that outlived it (a cleanup that was cut short): not a workspace,
    but it holds the name until `vmgen destroy NAME` removes it."""

    name: str
    what: str  # for people: "volume vmgen-app-home"
    owner: str = ""
    owner_id: str = ""


@dataclass(frozen=True)
class KeptDisk:
    """A workspace's disk its idle action or hard lifetime kept as a provider snapshot, having no
    verified backup to delete it after; `vmgen restore NAME --snapshot ID` makes the server again."""

    name: str
    snapshot: str  # the provider's id
    created_at: datetime
    size_gb: float | None = None
    owner: str = ""
    owner_id: str = ""


@dataclass(frozen=True)
class SelfDelete:
    """What the VM's watchdog needs to remove its own server through the provider."""

    provider: str
    metadata_url: str = ""
    api_endpoint: str = ""
    # Root-only on the VM (/etc/vmgen/provider.env); the agent user cannot read it.
    secrets: tuple[tuple[str, str], ...] = ()
    # With a domain, the Cloudflare API the watchdog removes the workspace's records through.
    dns_endpoint: str = ""
    # (host, port) pairs only root may reach: the metadata service.
    metadata_blocks: tuple[tuple[str, int | None], ...] = (("169.254.169.254", None),)


class Provider(Protocol):
    name: str
    # Whether the VM has a public address (DNS names and HTTPS make sense for it).
    public: bool
    # Largest user-data the provider accepts, in bytes.
    user_data_limit: int
    # Whether a cold launch bakes its install plan in the background unless auto_bake says no:
    # on a cloud, every launch pays for its installs in minutes; a local engine pays in disk.
    auto_bakes: bool

    def check(self, spec: WorkspaceSpec) -> None:
        """Refuse, before anything is made, what this provider cannot make (a size it does not
        have); UsageError says why."""
        ...

    def create(self, spec: WorkspaceSpec, user_data: str) -> Workspace: ...

    def get(self, name: str) -> Workspace | None: ...

    def workspaces(self) -> list[Workspace]: ...

    def start(self, name: str) -> Workspace: ...

    def stop(self, name: str) -> Workspace: ...

    def delete(self, name: str) -> str | None:
        """Remove the workspace and whatever it left behind; returns a note for the user about
        anything the provider will only be able to remove later (nothing billed), or None."""
        ...

    def leftovers(self, name: str | None = None) -> list[Leftover]:
        """What remains of workspaces that are gone (all, or NAME's): things a new workspace of
        that name would otherwise reuse."""
        ...

    def kept_disks(self, name: str | None = None) -> list[KeptDisk]:
        """Snapshots kept of workspaces that had no backup when they went (all, or NAME's)."""
        ...

    def restore_kept(self, name: str, snapshot: str, ssh_public_key: str, user_data: str) -> Workspace:
        """Make NAME's server again from one of its kept_disks, booted with `user_data`."""
        ...

    def remove_kept(self, snapshot: str) -> None:
        """Delete a kept snapshot (once its server is back, or when it is no longer wanted)."""
        ...

    def self_delete_spec(self) -> SelfDelete: ...

    def baked_images(self, base: str | None = None) -> list[BakedImage]:
        """Images vmgen baked (newest first); only those baked from `base` when given."""
        ...

    def newest_baked(self, spec: WorkspaceSpec | None = None) -> BakedImage | None:
        """The newest image baked from this provider's configured base image; with a spec, the
        newest one that can boot it (a Hetzner snapshot cannot boot a smaller disk)."""
        ...

    def remove_baked(self, image: BakedImage) -> None:
        """Delete a baked image; a clear error when a workspace still uses it."""
        ...

    def stop_note(self) -> str:
        """What the user should know about a stopped workspace (e.g. whether it still bills)."""
        ...

    def image_cost_note(self) -> str:
        """What keeping a baked image costs, for the moment one is made."""
        ...
