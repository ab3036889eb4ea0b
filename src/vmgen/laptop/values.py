"""The values that cross the laptop's layers: a workspace as its provider reports it, how to
reach it over SSH, what of it outlived it, and how its VM deletes itself. Plain data, on the
bottom floor, so the renderer, ssh and the providers share them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..contract.enums import WorkspaceStatus

__all__ = [
    "BakeOptions",
    "KeptDisk",
    "Leftover",
    "SSHEndpoint",
    "SelfDelete",
    "Size",
    "StopReason",
    "UptimeLog",
    "Workspace",
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
class UptimeLog:
    """What this machine recorded of a workspace's uptime, for `vmgen cost`: the times it was
    stopped (by `vmgen stop`, or by its idle watchdog as its provider read it off the disk), when
    `vmgen list` or `vmgen cost` last saw it and first found it gone (deleted by its own watchdog:
    the delete happened between the two), and its price, which the provider no longer reports for
    a server that is gone. Wall-clock seconds, this machine's clock."""

    stops: tuple[tuple[float, float | None], ...] = ()  # (stopped, started again or None: still stopped)
    seen_at: float = 0.0  # 0: never seen
    gone_at: float = 0.0  # 0: not found gone
    price_hourly: float | None = None
    currency: str = ""


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


@dataclass(frozen=True)
class Size:
    """One size a provider offers in one location, with its price (None: not published)."""

    location: str
    name: str
    preset: str  # the size preset it is chosen for ("small"), or ""
    cores: int
    memory_gb: float
    disk_gb: int
    price_hourly: float | None
    price_monthly: float | None


@dataclass(frozen=True)
class BakeOptions:
    """What a bake takes from the settings besides the install plan."""

    size: str  # the preset or server type the image must boot
    ssh_public_keys: tuple[str, ...] = ()  # to reach a build server
    method: str = ""  # "" the provider's own way, else one of its bake_methods ("packer")
