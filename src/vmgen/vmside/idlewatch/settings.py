"""The watchdog's settings: /etc/vmgen/idlewatch.toml, written by cloud-init from the spec."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ...errors import ConfigError
from .model import Action, PolicyConfig

CONFIG_PATH = Path("/etc/vmgen/idlewatch.toml")
# Root-only: the provider token (and later, backup settings). The agent user cannot read it.
SECRETS_PATH = Path("/etc/vmgen/provider.env")


@dataclass(frozen=True)
class WatchSettings:
    name: str = "workspace"
    interval_seconds: float = 30
    idle_minutes: float = 30
    human_minutes: float = 120
    warn_minutes: float = 10
    stall_minutes: float = 15
    max_lifetime_hours: float = 0  # 0: off
    action: str = "poweroff"
    dry_run: bool = False
    provider: str = "docker"
    agent_user: str = "agent"
    workspace: str = "/home/agent/work"
    leases_file: str = "/home/agent/.vmgen/leases.json"
    events_file: str = "/home/agent/.vmgen/agent-events.jsonl"
    state_file: str = "/var/lib/vmgen/idlewatch.json"
    status_port: int = 7391
    webhook_url: str = ""
    metadata_url: str = "http://169.254.169.254/hetzner/v1/metadata"
    hcloud_endpoint: str = ""
    # With a domain: the zone whose records for this workspace go before the server does.
    dns_zone: str = ""
    dns_endpoint: str = ""
    ignore: tuple[str, ...] = field(default=())

    def policy(self) -> PolicyConfig:
        return PolicyConfig(
            idle_timeout=self.idle_minutes * 60,
            human_timeout=self.human_minutes * 60,
            warn_before=min(self.warn_minutes * 60, self.idle_minutes * 60 / 2),
            max_lifetime=self.max_lifetime_hours * 3600 or None,
            action=Action(self.action),
        )


def load(path: Path = CONFIG_PATH, backup_config: Path = Path("/etc/vmgen/backup.toml")) -> WatchSettings:
    data = tomllib.loads(path.read_text()) if path.is_file() else {}
    known = {f.name: f for f in fields(WatchSettings)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(unknown)}")
    if "ignore" in data:
        data["ignore"] = tuple(data["ignore"])
    settings = WatchSettings(**data)
    try:
        action = Action(settings.action)
    except ValueError:
        raise ConfigError(f"{path}: action must be one of backup-then-delete, delete, poweroff") from None
    if action is Action.BACKUP_THEN_DELETE and not backup_config.is_file():
        # Deleting without a verified backup would lose work: refuse rather than pretend.
        raise ConfigError(f"{path}: action 'backup-then-delete' needs a backup store ({backup_config} is missing); "
                          "use 'delete' or 'poweroff', or launch with a backup store configured")
    if action in (Action.NONE, Action.WARN):
        raise ConfigError(f"{path}: action must be one of delete, poweroff")
    return settings


def read_secrets(path: Path = SECRETS_PATH) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}
