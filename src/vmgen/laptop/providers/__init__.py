"""Where workspaces run: the registry of providers, one line each.

A provider's module is imported only when it is used (its cloud's SDK can be slow to import).
Adding a cloud is a module in this package (its VM-side half in `vmgen.vmside.providers`) and
its line here."""

from __future__ import annotations

import importlib
from typing import Protocol, cast, runtime_checkable

from ...errors import UsageError
from ..config import Settings
from .base import Provider, SelfDelete, SSHEndpoint, Workspace

# name -> the module in this package and its Provider class
REGISTRY: dict[str, tuple[str, str]] = {
    "aws": ("aws", "AwsProvider"),
    "docker": ("docker", "DockerProvider"),
    "hetzner": ("hetzner", "HetznerProvider"),
    "ssh": ("ssh", "SshProvider"),
}
PROVIDERS = tuple(REGISTRY)


def provider_class(name: str) -> type[Provider]:
    """The provider's class: its traits, without contacting it."""
    if name not in REGISTRY:
        raise UsageError(f"unknown provider {name!r}; available: {', '.join(PROVIDERS)}")
    module, attribute = REGISTRY[name]
    return cast("type[Provider]", getattr(importlib.import_module(f"{__name__}.{module}"), attribute))


def get_provider(name: str, settings: Settings) -> Provider:
    return provider_class(name).from_settings(settings)


def auto_bakes(name: str) -> bool:
    """The provider's auto_bake default, without contacting it."""
    return name in REGISTRY and provider_class(name).auto_bakes


def shares_local_folders(name: str) -> bool:
    """Whether the provider's VMs see this machine's folders (a local backup store); False for a
    name no provider has."""
    return name in REGISTRY and provider_class(name).shares_local_folders


@runtime_checkable
class _RecordsServers(Protocol):
    """A provider that runs on servers of the user's keeps the one each workspace was made on."""

    def recorded_server(self, name: str) -> object | None: ...


def recorded_server(provider: Provider, workspace: str) -> str:
    """The server of the user's that WORKSPACE was made on, as PROVIDER recorded it beside the
    workspace's local state (what its start, stop and destroy find it by): "" for a provider that
    runs on none (no host_setting), or when nothing was recorded."""
    if not provider.host_setting or not isinstance(provider, _RecordsServers):
        return ""
    found = provider.recorded_server(workspace)
    return str(found) if found is not None else ""


def redacted_self_delete(name: str) -> SelfDelete:
    """The provider's self-delete as `vmgen render` shows it: no provider contacted, secrets
    redacted (the renderer prints only their names)."""
    return SelfDelete(name, secrets=tuple((variable, "x") for variable in provider_class(name).secret_variables))


__all__ = [
    "PROVIDERS",
    "REGISTRY",
    "Provider",
    "SSHEndpoint",
    "SelfDelete",
    "Workspace",
    "auto_bakes",
    "get_provider",
    "provider_class",
    "recorded_server",
    "redacted_self_delete",
    "shares_local_folders",
]
