"""The watchdog's settings (/etc/vmgen/idlewatch.toml, written by cloud-init from the spec) and
root's secrets file. The document itself is the contract's WatchSettings."""

from __future__ import annotations

from ...contract.documents import WatchSettings
from ...contract.enums import IdleAction
from ...contract.names import VM, VmPaths
from ...errors import ConfigError, DocumentError
from .model import Action, PolicyConfig


def policy_of(settings: WatchSettings) -> PolicyConfig:
    return PolicyConfig(
        idle_timeout=settings.idle_minutes * 60,
        human_timeout=settings.human_minutes * 60,
        warn_before=min(settings.warn_minutes * 60, settings.idle_minutes * 60 / 2),
        max_lifetime=settings.max_lifetime_hours * 3600 or None,
        action=Action(settings.action),
    )


def load(paths: VmPaths = VM) -> WatchSettings:
    path = paths.watch_settings
    try:
        settings = WatchSettings.from_toml(path.read_text(), str(path)) if path.is_file() else WatchSettings()
    except DocumentError as exc:
        raise ConfigError(str(exc)) from None
    if settings.action == IdleAction.BACKUP_THEN_DELETE and not paths.backup_config.is_file():
        # Deleting without a verified backup would lose work: refuse rather than pretend.
        raise ConfigError(
            f"{path}: action 'backup-then-delete' needs a backup store ({paths.backup_config} is "
            "missing); use 'delete' or 'poweroff', or launch with a backup store configured"
        )
    return settings


def read_secrets(paths: VmPaths = VM) -> dict[str, str]:
    """Root-only KEY=value lines (the provider and DNS tokens)."""
    if not paths.secrets.is_file():
        return {}
    lines = paths.secrets.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def secrets_text(secrets: tuple[tuple[str, str], ...]) -> str:
    return "".join(f"{key}={value}\n" for key, value in secrets)


__all__ = ["WatchSettings", "load", "policy_of", "read_secrets", "secrets_text"]
