"""The VM's half of each provider: how a workspace stops its compute through its provider, chosen
by the watchdog's settings (`WatchSettings.provider`, written by the renderer from the laptop's
provider). One module per provider, named once in the registry; the laptop's half is
`vmgen.laptop.providers`. Each runs as root and reads the provider's token from root's secrets
file; nothing here reads what the agent user writes."""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from ...contract.documents import WatchSettings
from ...contract.names import VM, VmPaths
from ...errors import ConfigError

# name -> the module in this package; its PROVIDER fulfils VmProvider
REGISTRY: dict[str, str] = {"aws": "aws", "docker": "docker", "hetzner": "hetzner", "ssh": "ssh"}


class VmProvider(Protocol):
    # Whether the VM can delete its own server (else the watchdog powers it off: the disk stays).
    deletes_itself: bool
    # Whether it can keep its disk as a provider snapshot before deleting itself, when it has no
    # verified backup (else it powers off and the disk stays with the server).
    snapshots: bool
    # What a user should know about a server left powered off ("" when nothing): said in the
    # action's words when a delete or a snapshot failed.
    stop_note: str
    # Whether a powered-off server keeps its disk (False where powering off ends the server and
    # its disk, as an instance that terminates on shutdown does): without a backup or a snapshot
    # such a VM stays up rather than lose the data.
    poweroff_keeps_disk: bool

    def delete(self, settings: WatchSettings, paths: VmPaths = VM) -> None:
        """Delete this server (and its DNS records, with a domain) through the provider's API."""
        ...

    def snapshot(self, settings: WatchSettings, paths: VmPaths = VM) -> str:
        """A snapshot of this server's disk, labelled for the laptop to find; its id."""
        ...


def vm_provider(name: str) -> VmProvider:
    if name not in REGISTRY:
        raise ConfigError(f"idlewatch.toml: unknown provider {name!r}; known: {', '.join(REGISTRY)}")
    module = importlib.import_module(f"{__name__}.{REGISTRY[name]}")
    return cast("VmProvider", module.PROVIDER)


__all__ = ["REGISTRY", "VmProvider", "vm_provider"]
