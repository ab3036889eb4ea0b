"""Where workspaces run. `get_provider` picks one by name from the settings."""

from __future__ import annotations

from ...errors import UsageError
from ..config import Settings
from .base import Provider, SSHEndpoint, Workspace

PROVIDERS = ("docker", "hetzner")

# Largest user-data each provider accepts, known without contacting it (for `vmgen render`).
USER_DATA_LIMITS = {"docker": 1024 * 1024, "hetzner": 32 * 1024}


def auto_bakes(name: str) -> bool:
    """The provider's auto_bake default, without contacting it."""
    if name == "docker":
        from .docker import DockerProvider

        return DockerProvider.auto_bakes
    if name == "hetzner":
        from .hetzner import HetznerProvider

        return HetznerProvider.auto_bakes
    return False


def get_provider(name: str, settings: Settings) -> Provider:
    if name == "docker":
        from .docker import DockerProvider

        return DockerProvider(image=settings.docker_image)
    if name == "hetzner":
        from .hetzner import HetznerProvider

        return HetznerProvider(
            token=settings.hcloud_token,
            location=settings.region,
            image=settings.image,
            endpoint=settings.hcloud_endpoint,
            metadata_url=settings.hcloud_metadata_url,
        )
    raise UsageError(f"unknown provider {name!r}; available: {', '.join(PROVIDERS)}")


__all__ = ["PROVIDERS", "USER_DATA_LIMITS", "Provider", "SSHEndpoint", "Workspace", "auto_bakes", "get_provider"]
