"""The Provider protocol: what vmgen needs from any place that runs a VM.

A provider is a class in its own module, named once in the registry (`providers/__init__.py`).
Its traits are class attributes, read without contacting it (`vmgen render`, `vmgen config
show`); its operations are methods of an instance made `from_settings`. Nothing outside the
providers' packages (this one, and `vmside/providers/` for the VM's half) names a provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

# Spelled once, in the contract: a VM labels a snapshot of itself with them too.
from ...contract.names import LABEL, OWNER_ID_LABEL, OWNER_LABEL, WS_LABEL
from ..owner import owned, owner_labels
from ..spec import WorkspaceSpec
from ..stamps import BakedImage
from ..values import BakeOptions, KeptDisk, Leftover, SelfDelete, Size, SSHEndpoint, StopReason, Workspace

if TYPE_CHECKING:
    from ...selfwheel import VmgenWheel
    from ..builder.install import InstallPlan
    from ..config import Settings

__all__ = [
    "LABEL",
    "OWNER_ID_LABEL",
    "OWNER_LABEL",
    "WS_LABEL",
    "BakeOptions",
    "KeptDisk",
    "Leftover",
    "Provider",
    "SSHEndpoint",
    "SelfDelete",
    "Size",
    "StopReason",
    "Workspace",
    "owned",
    "owner_labels",
]


class Provider(Protocol):
    # --- traits: class attributes, known without contacting the provider -----------------------
    name: str
    # Largest user-data the provider accepts, in bytes.
    user_data_limit: int
    # Whether the VM has a public address (DNS names and HTTPS make sense for it).
    public: bool
    # Whether the VM sees this machine's folders (a local backup store, a local wheel folder).
    shares_local_folders: bool
    # Whether a stopped workspace keeps its disk and its bill (a cloud server that is only off).
    stop_bills: bool
    # Whether the provider keeps a disk as a snapshot when its idle action had no backup
    # (`kept_disks`, `vmgen restore NAME --snapshot ID`).
    snapshots: bool
    # Whether a cold launch bakes its install plan in the background unless auto_bake says no:
    # on a cloud, every launch pays for its installs in minutes; a local engine pays in disk.
    auto_bakes: bool
    # The VM's metadata service (only root may reach it), or "" when it has none.
    metadata_address: str
    # Where the prices `vmgen list` and `vmgen sizes` show come from, for people.
    price_source: str
    # The currency of those prices (ISO 4217: "EUR", "USD"; "" where nothing is billed): `vmgen cost`
    # and budget_month never add one currency to another.
    currency: str
    # Ways `vmgen image build` can bake besides the provider's own ("packer").
    bake_methods: tuple[str, ...]
    # The variables of the root-only secrets file its VM's self-delete reads (shown redacted by
    # `vmgen render`).
    secret_variables: tuple[str, ...]
    # The setting `vmgen launch --host` fills: the user's own server the provider runs workspaces
    # on ("" for a provider that runs on no server of the user's).
    host_setting: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Provider:
        """The provider as the user configured it (its credentials, region, base image)."""
        ...

    @classmethod
    def configured_image(cls, settings: Settings) -> str:
        """The image a launch names from the settings ("" for the provider's own default)."""
        ...

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

    def bake(
        self, plan: InstallPlan, wheel: VmgenWheel, progress: Callable[[str], None], options: BakeOptions
    ) -> BakedImage | None:
        """Bake the install plan into an image later launches boot from (`options.method`: one of
        `bake_methods`, or "" for the provider's own way); None when the bake's own tool made
        and reported the image (Packer)."""
        ...

    def price_hourly(self, spec: WorkspaceSpec) -> float | None:
        """What the spec's server costs an hour from the price source, before it is made (None:
        the provider does not say)."""
        ...

    def sizes(self, location: str | None = None) -> list[Size]:
        """What a workspace can be sized as (every location when none is given), with prices."""
        ...
