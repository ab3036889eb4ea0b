"""Settings: defaults < ~/.config/vmgen/config.toml < ./.env < environment variables."""

from __future__ import annotations

import enum
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from ..contract.documents import BACKUP_DEFAULTS, WATCH_DEFAULTS
from ..contract.enums import BudgetAction, PermissionMode, TlsMode
from ..contract.notify import (
    NTFY_TOKEN_VARIABLE,
    TELEGRAM_CHAT_VARIABLE,
    TELEGRAM_TOKEN_VARIABLE,
    NtfyTarget,
    TelegramTarget,
    parse_target,
    split_targets,
)
from ..errors import ConfigError
from .spec import CODE_UI_VERSION

# Settings whose values are credentials: masked whenever shown.
SECRET_FIELDS = frozenset(
    {
        "anthropic_api_key",
        "hcloud_token",
        "r2_secret_access_key",
        "r2_access_key_id",
        "cloudflare_api_token",
        "ntfy_token",
        "telegram_bot_token",
        "github_token",
    }
)

# Well-known variable names other tools already use, accepted besides VMGEN_<FIELD>.
ALIASES = {
    "ANTHROPIC_API_KEY": "anthropic_api_key",
    "ANTHROPIC_BASE_URL": "anthropic_base_url",
    "HCLOUD_TOKEN": "hcloud_token",
    "CLOUDFLARE_API_TOKEN": "cloudflare_api_token",
    "NTFY_TOKEN": "ntfy_token",
    "TELEGRAM_BOT_TOKEN": "telegram_bot_token",
    "GITHUB_TOKEN": "github_token",
}

# What `vmgen telegram setup` records, beside config.toml (mode 0600: it holds the bot's token).
TELEGRAM_FILE = "telegram.toml"


@dataclass(frozen=True)
class Settings:
    provider: str = "docker"
    agent: str = "claude"
    agent_version: str = "latest"
    size: str = "medium"
    region: str = "fsn1"
    image: str = ""
    idle_minutes: float = WATCH_DEFAULTS.idle_minutes
    idle_action: str = "auto"  # backup-then-delete when a backup store is configured, else poweroff
    idle_warn_minutes: float = WATCH_DEFAULTS.warn_minutes
    idle_human_minutes: float = WATCH_DEFAULTS.human_minutes
    idle_stall_minutes: float = WATCH_DEFAULTS.stall_minutes
    idle_interval_seconds: float = WATCH_DEFAULTS.interval_seconds
    max_lifetime_hours: float = WATCH_DEFAULTS.max_lifetime_hours
    idle_webhook_url: str = ""
    # Whether the agent asks before it acts (contract.enums.PermissionMode): `bypass` as before,
    # or Claude Code's own mode, its prompts answered on the workspace page or in the terminal.
    permission_mode: PermissionMode = WATCH_DEFAULTS.permission_mode
    # Where the phone hears from the workspace (contract.notify: ntfy topics, webhooks); the
    # ntfy access token reaches only root's secrets file on the VM.
    notify: str = ""
    ntfy_token: str = ""
    # The Telegram bot (`vmgen telegram setup` records all three in telegram.toml): its token, and
    # the one chat and user it answers and writes to. The token and the chat id reach only root's
    # secrets file on a VM whose `notify` names `telegram`.
    telegram_bot_token: str = ""
    telegram_chat_id: int = 0
    telegram_user_id: int = 0
    # Another Bot API server (a self-hosted telegram-bot-api; the tests' fake): "" for Telegram's.
    telegram_api_url: str = ""
    # The most the month's workspaces may cost (in each provider's currency apart; 0: no budget):
    # a launch that would cross it is refused with the numbers (`vmgen cost` shows the month so
    # far); a running workspace's watchdog counts its share and, past it, warns or stops.
    budget_month: float = WATCH_DEFAULTS.budget_month
    budget_action: BudgetAction = WATCH_DEFAULTS.budget_action
    desktop: bool = False
    ssh_public_keys: tuple[str, ...] = ()
    docker_image: str = "vmgen-ubuntu:24.04"
    anthropic_api_key: str = ""
    anthropic_base_url: str = ""
    hcloud_token: str = ""
    hcloud_endpoint: str = ""
    hcloud_metadata_url: str = ""
    # AWS: credentials through boto3's own chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws); the
    # region from aws_region, else that chain (AWS_DEFAULT_REGION, ~/.aws/config), else us-east-1.
    aws_region: str = ""
    aws_subnet: str = ""  # a subnet id; "" for a default subnet of the region's default VPC
    # The ssh provider's server, `user@host[:port]` (checked by the provider; `vmgen launch --host`
    # sets it for one launch): Docker there, reached with this machine's own ssh and keys.
    ssh_host: str = ""
    backup_dir: str = "~/.local/share/vmgen/backups"
    backup_keep: int = BACKUP_DEFAULTS.keep_last
    # Kept besides the newest backup_keep: all of the last hours, the newest of each day and week.
    backup_keep_hours: float = BACKUP_DEFAULTS.keep_hours
    backup_keep_daily: int = BACKUP_DEFAULTS.keep_daily
    backup_keep_weekly: int = BACKUP_DEFAULTS.keep_weekly
    # Root stops a backup that runs longer; the idle action then keeps the data another way.
    backup_deadline_minutes: float = BACKUP_DEFAULTS.deadline_minutes
    # Backups asked for (laptop, page, the agent's shell) that may start in an hour.
    backup_requests_per_hour: int = BACKUP_DEFAULTS.requests_per_hour
    # Backups after the first are increments (what changed); after this many, a full one again.
    backup_max_increments: int = BACKUP_DEFAULTS.max_increments
    backup_part_mib: int = BACKUP_DEFAULTS.part_size_mib
    backup_excludes: tuple[str, ...] = ()
    r2_bucket: str = ""
    r2_endpoint: str = ""
    r2_access_key_id: str = ""
    r2_secret_access_key: str = ""
    domain: str = ""  # a Cloudflare zone: workspaces get <name>.<domain> with HTTPS
    cloudflare_api_token: str = ""
    cloudflare_endpoint: str = ""
    web_tls: TlsMode = TlsMode.ACME  # Let's Encrypt (or acme_ca), or Caddy's own CA for closed networks
    acme_email: str = ""
    preview_ports: tuple[int, ...] = (3000, 5173, 8000, 8080)
    code_ui_version: str = CODE_UI_VERSION  # CloudCLI, the Claude Code web UI on code.<host>
    acme_ca: str = ""  # an ACME directory URL other than Let's Encrypt's (with web_tls = "acme")
    acme_ca_root: str = ""  # a PEM file: the root of that ACME server's own HTTPS, if private
    # Previews on a Cloudflare zone of their own (another registrable domain): the stronger setting.
    preview_domain: str = ""
    # After a cold launch, bake its install plan in the background for the next one: "auto" (on
    # for cloud providers), or yes/no.
    auto_bake: str = "auto"
    # `ssh vmgen-<name>` for people and IDEs: vmgen keeps ~/.ssh/vmgen/config and one Include line
    # at the top of ~/.ssh/config (laptop/sshconfig.py); false: vmgen leaves ~/.ssh alone.
    ssh_config: bool = True
    # The laptop's Claude Code setup (CLAUDE.md, commands, agents, skills, output styles, the
    # settings and hooks of settings.json, the user's MCP servers) copied to the agent on each
    # launch (laptop/claudesetup.py; `vmgen sync-config` any time); false: never on its own.
    sync_config: bool = True
    # Globs on paths below ~/.claude that are never copied (`skills/big`, `*.bin`).
    sync_exclude: tuple[str, ...] = ()
    dotfiles_repo: str = ""  # contract.documents.WorkspaceInfo.dotfiles_repo
    devcontainer_allow_privileged: bool = False  # contract.documents.WorkspaceInfo, the same name
    # git push from a workspace of a GitHub repository: with a token that may administer it
    # (fine-grained: the repository's Administration write), a deploy key for that one repository
    # (laptop/deploykeys.py). The token stays on this machine. "": say how to push instead.
    github_token: str = ""
    github_api_url: str = ""  # another GitHub API root (GitHub Enterprise; the tests' fake)
    vmgen_index_url: str = ""
    vmgen_find_links: str = ""
    sources: tuple[str, ...] = field(default=(), compare=False)

    def masked(self) -> dict[str, Any]:
        """Every setting, with credentials reduced to a hint that they are set."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "sources":
                continue
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = mask(value)
            shown[f.name] = list(value) if isinstance(value, tuple) else value
        return shown


def notify_secrets(s: Settings) -> tuple[tuple[str, str], ...]:
    """What root's secrets file needs for the `notify` targets: the ntfy token, the Telegram bot's
    token and chat id. A `telegram` target without a bot set up stops the launch here."""
    targets = [parse_target(t) for t in split_targets(s.notify)]
    out: list[tuple[str, str]] = []
    if s.ntfy_token and any(isinstance(t, NtfyTarget) for t in targets):
        out.append((NTFY_TOKEN_VARIABLE, s.ntfy_token))
    if any(isinstance(t, TelegramTarget) for t in targets):
        if not s.telegram_bot_token or not s.telegram_chat_id:
            raise ConfigError("notify names telegram, but no bot is set up: run `vmgen telegram setup`")
        out += [(TELEGRAM_TOKEN_VARIABLE, s.telegram_bot_token), (TELEGRAM_CHAT_VARIABLE, str(s.telegram_chat_id))]
    return tuple(out)


def mask(secret: str) -> str:
    """Enough to recognise which key is set, never enough to use it."""
    if len(secret) <= 8:
        return "****"
    return f"****{secret[-4:]}"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vmgen"


def state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "vmgen"


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
    dotenv_file: Path | None = None,
) -> Settings:
    environ = os.environ if environ is None else environ
    config_file = config_file or config_dir() / "config.toml"
    dotenv_file = dotenv_file or Path.cwd() / ".env"

    values: dict[str, Any] = {}
    sources: list[str] = []
    for toml_file in (config_file, config_file.parent / TELEGRAM_FILE):
        if toml_file.is_file():
            values.update(_read_toml(toml_file))
            sources.append(str(toml_file))
    if dotenv_file.is_file():
        dotenv = {k: v for k, v in dotenv_values(dotenv_file).items() if v is not None}
        values.update(_from_variables(dotenv, str(dotenv_file)))
        sources.append(str(dotenv_file))
    from_env = _from_variables(environ, "the environment")
    if from_env:
        sources.append("environment")
    values.update(from_env)
    return replace(Settings(), **_coerce(values), sources=tuple(sources))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    known = {f.name for f in fields(Settings)} - {"sources"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s): {', '.join(unknown)}")
    return data


def _from_variables(variables: Mapping[str, str], origin: str) -> dict[str, Any]:
    known = {f.name for f in fields(Settings)} - {"sources"}
    out: dict[str, Any] = {}
    for name, value in variables.items():
        if name in ALIASES:
            out[ALIASES[name]] = value
        elif name.startswith("VMGEN_"):
            key = name.removeprefix("VMGEN_").lower()
            if key in known:
                out[key] = value
    return out


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Turn strings from env/.env and TOML values into each field's type."""
    types = typing.get_type_hints(Settings)
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            out[key] = _parse(types[key], value)
        except ValueError:
            raise ConfigError(f"setting {key!r}: {value!r} is not a valid {_type_name(types[key])}") from None
    return out


def _parse(kind: Any, value: Any) -> Any:
    """One value as `kind`: a TOML value, or the text of a variable (a list: comma-separated)."""
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_parse(typing.get_args(kind)[0], str(v).strip()) for v in items if str(v).strip())
    if kind is bool:
        return value if isinstance(value, bool) else _parse_bool(str(value))
    if kind in (int, float):
        if isinstance(value, bool):
            raise ValueError(value)
        return kind(value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(str(value))
    return str(value)


def _type_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"list of {_type_name(typing.get_args(kind)[0])}"
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return " or ".join(str(member.value) for member in kind)
    return getattr(kind, "__name__", str(kind))


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(text)
