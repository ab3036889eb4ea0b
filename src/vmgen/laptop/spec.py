"""What a workspace is: typed, validated values. Everything user-provided is checked here."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..contract.documents import WATCH_DEFAULTS, WatchSettings
from ..contract.enums import BudgetAction, IdleAction, PermissionMode, TlsMode
from ..contract.names import PORTS, VM
from ..contract.notify import parse_target
from ..errors import DocumentError, InvalidSpec, NoSSHKey
from .agents import AGENTS, Agent

NAME_MAX = 40
# Sizes every provider has (a Hetzner preset resolves to a server type at launch; `--type` names one).
SIZE_PRESETS = ("small", "medium", "large")
_NAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$")
_VERSION_RE = re.compile(r"^(latest|[0-9A-Za-z][0-9A-Za-z.+-]{0,63})$")
_TOKEN_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_SCP_LIKE_RE = re.compile(r"^(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^\s]+)$")
_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


@dataclass(frozen=True)
class GitSource:
    url: str
    branch: str | None = None

    def describe(self) -> str:
        return f"{self.url}#{self.branch}" if self.branch else self.url


@dataclass(frozen=True)
class LocalSource:
    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class RestoreSource:
    """A workspace brought back from a backup (the latest when backup_id is empty)."""

    workspace: str
    backup_id: str = ""
    # The repository's folder under ~/work in the backup, as its manifest records it (a
    # workspace restored under another name kept the original's); "" means `workspace`.
    repo_folder: str = ""

    def describe(self) -> str:
        return f"backup {self.backup_id or 'latest'} of {self.workspace}"


Source = GitSource | LocalSource | RestoreSource


@dataclass(frozen=True)
class VmgenInstall:
    """How the VM installs vmgen: the CLI's own build, a wheel whose sha256 the VM checks before
    root installs it (delivered over SSH, or put in place by a bake), and its hash-pinned
    dependencies from the package index, or from a mirror (an index URL, or find-links: a URL
    or a local folder the provider shares with the VM)."""

    version: str
    wheel_sha256: str = ""
    index_url: str = ""
    find_links: str = ""

    @property
    def build(self) -> str:
        """Version and build: what a baked image's vmgen stamp must match."""
        return f"{self.version}+{self.wheel_sha256[:12]}" if self.wheel_sha256 else self.version

    @property
    def wheel_path(self) -> str:
        """The wheel's path below a drop folder (a folder per build)."""
        return f"{self.wheel_sha256[:16]}/vmgen-{self.version}-py3-none-any.whl"

    @property
    def local_wheels(self) -> Path | None:
        if not self.find_links or "://" in self.find_links:
            return None
        return Path(self.find_links).expanduser().resolve()

    @property
    def find_links_on_vm(self) -> str:
        return str(VM.wheels) if self.local_wheels else self.find_links


@dataclass(frozen=True)
class WatchdogTuning:
    """The idle watchdog's knobs (written to /etc/vmgen/idlewatch.toml; declared in
    contract.documents.WatchSettings, whose defaults these are)."""

    idle_minutes: float = WATCH_DEFAULTS.idle_minutes
    action: IdleAction = WATCH_DEFAULTS.action
    warn_minutes: float = WATCH_DEFAULTS.warn_minutes
    human_minutes: float = WATCH_DEFAULTS.human_minutes
    stall_minutes: float = WATCH_DEFAULTS.stall_minutes
    interval_seconds: float = WATCH_DEFAULTS.interval_seconds
    max_lifetime_hours: float = WATCH_DEFAULTS.max_lifetime_hours
    dry_run: bool = False
    webhook_url: str = ""
    notify: tuple[str, ...] = ()  # contract.notify targets
    # The month's budget and this workspace's share of it (worked out by the launch: cost.py).
    budget_month: float = WATCH_DEFAULTS.budget_month
    budget_action: BudgetAction = WATCH_DEFAULTS.budget_action
    budget_allowance: float = 0.0
    budget_price_hourly: float = 0.0
    budget_currency: str = ""
    budget_month_end: float = 0.0
    permission_mode: PermissionMode = WATCH_DEFAULTS.permission_mode


# Ports vmgen's own services use on the VM: not available as previews.
RESERVED_PORTS = PORTS.reserved
_DOMAIN_RE = re.compile(r"^(?=.{4,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


CODE_UI_VERSION = "1.37.3"  # CloudCLI (@cloudcli-ai/cloudcli), pinned


@dataclass(frozen=True)
class WebSpec:
    """Web access: with a domain, HTTPS hostnames under <name>.<domain>; without, SSH tunnels only."""

    domain: str = ""
    tls: TlsMode = TlsMode.ACME
    acme_email: str = ""
    preview_ports: tuple[int, ...] = ()
    code_ui_version: str = CODE_UI_VERSION  # "off": none

    @property
    def code_ui(self) -> bool:
        return bool(self.domain) and self.code_ui_version != "off"

    acme_ca: str = ""  # another ACME server's directory URL than Let's Encrypt's
    acme_ca_root: str = ""  # PEM: the root of that server's own HTTPS certificate (a private CA)
    # A Cloudflare zone of its own for previews (p3000.<name>.<preview_domain>): another site than
    # the workspace's hostnames, so that a preview shares no cookies or site with them.
    preview_domain: str = ""


def validate_web(web: WebSpec) -> WebSpec:
    if web.domain and not _DOMAIN_RE.match(web.domain):
        raise InvalidSpec(f"invalid domain {web.domain!r}: use a DNS name such as dev.example.com")
    if web.code_ui_version != "off" and not re.fullmatch(r"\d+\.\d+\.\d+", web.code_ui_version):
        raise InvalidSpec(f"invalid code_ui_version {web.code_ui_version!r}: use a version like 1.37.3, or off")
    if web.acme_email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", web.acme_email):
        raise InvalidSpec(f"invalid acme_email {web.acme_email!r}")
    if web.acme_ca and not re.fullmatch(r"https://[A-Za-z0-9.\-]+(:\d{1,5})?(/[A-Za-z0-9._~/\-]*)?", web.acme_ca):
        raise InvalidSpec(f"invalid acme_ca {web.acme_ca!r}: use the ACME server's https:// directory URL")
    if web.acme_ca_root and not web.acme_ca_root.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
        raise InvalidSpec("acme_ca_root must be a PEM certificate (-----BEGIN CERTIFICATE-----)")
    if web.preview_domain:
        if not _DOMAIN_RE.match(web.preview_domain):
            raise InvalidSpec(f"invalid preview_domain {web.preview_domain!r}: use a DNS name such as example.net")
        if not web.domain:
            raise InvalidSpec("preview_domain needs a domain for the workspace itself")
        if _registrable_overlap(web.domain, web.preview_domain):
            raise InvalidSpec(
                f"preview_domain {web.preview_domain!r} must be another registrable domain than {web.domain!r}: "
                "on the same one, a preview could still set cookies for the workspace's hostnames"
            )
    for port in web.preview_ports:
        if not 1024 <= port <= 65535 or port in RESERVED_PORTS:
            raise InvalidSpec(
                f"preview port {port} must be 1024-65535 and not one of vmgen's own "
                f"({', '.join(map(str, sorted(RESERVED_PORTS)))})"
            )
    return web


@dataclass(frozen=True)
class DevcontainerSpec:
    """The repository's dev container: its devcontainer.json (relative to the repository,
    found and checked on the laptop by laptop/devcontainer.py) and whether what the refusal
    policy refuses was allowed (`devcontainer_allow_privileged`)."""

    config: str
    allow_privileged: bool = False
    # Its forwardPorts and appPort's container ports, reachable on the VM's 127.0.0.1 at the same
    # port (previews, `vmgen forward NAME`'s default); `publish`: those vmgen publishes itself
    # (the devcontainers CLI publishes appPort's own).
    forward_ports: tuple[int, ...] = ()
    publish_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class WorkspaceSpec:
    name: str
    source: Source
    agent: Agent
    vmgen: VmgenInstall
    ssh_keys: tuple[str, ...]
    agent_version: str = "latest"
    size: str = "medium"
    region: str = ""
    image: str = ""
    desktop: bool = False
    extra_packages: tuple[str, ...] = field(default=())
    watchdog: WatchdogTuning = field(default_factory=WatchdogTuning)
    # A local backup folder the provider shares with the VM (docker), else None.
    local_backup_dir: Path | None = None
    web: WebSpec = field(default_factory=WebSpec)
    dotfiles: GitSource | None = None  # the dotfiles_repo setting
    # With one, the agent brings it up with rootless Podman and works inside it.
    devcontainer: DevcontainerSpec | None = None

    @property
    def repo_dir(self) -> str:
        # A workspace restored under another name works in the original's folder: its files
        # are there, and the agent's conversation is filed under that path. So do its own
        # backups' restores, whatever name they go by: the backup says which folder it is.
        if isinstance(self.source, RestoreSource):
            folder = self.source.repo_folder or self.source.workspace
        else:
            folder = self.name
        return str(VM.repo_dir(folder))

    @property
    def host(self) -> str:
        """The workspace's public hostname, or "" without a domain."""
        return f"{self.name}.{self.web.domain}" if self.web.domain else ""

    @property
    def preview_host(self) -> str:
        """Where previews live on a separate preview domain (`p3000.<this>`), or "" for below
        the workspace's hostname."""
        return f"{self.name}.{self.web.preview_domain}" if self.web.domain and self.web.preview_domain else ""


def _registrable_overlap(domain: str, other: str) -> bool:
    """Whether one domain is, or is below, the other's last two labels (the registrable domain
    for the usual names; vmgen carries no public-suffix list, so a two-level suffix such as
    co.uk is treated as one more label and the check is stricter, never looser)."""

    def last_two(name: str) -> list[str]:
        return name.lower().rstrip(".").split(".")[-2:]

    return last_two(domain) == last_two(other)


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidSpec(
            f"invalid workspace name {name!r}: use 1-{NAME_MAX} lowercase letters, digits and "
            "dashes, starting with a letter and not ending with a dash"
        )
    return name


def derive_name(source: Source) -> str:
    """A workspace name from the repository's last path component (`My_App.git` -> `my-app`)."""
    if isinstance(source, RestoreSource):
        return validate_name(source.workspace)
    if isinstance(source, LocalSource):
        stem = source.path.name
    else:
        stem = source.url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        stem = stem.removesuffix(".git")
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9]+", "-", ascii_stem.lower()).strip("-")
    name = re.sub(r"^[^a-z]+", "", name)[:NAME_MAX].rstrip("-")
    if not name:
        raise InvalidSpec(f"cannot derive a workspace name from {source.describe()!r}; pass --name")
    return validate_name(name)


def validate_branch(branch: str) -> str:
    """Git's own ref-name rules (git check-ref-format), so an impossible branch fails early."""
    bad = (
        not branch
        or _has_control_chars(branch)
        or any(ch in branch for ch in " ~^:?*[\\")
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or ".." in branch
        or "@{" in branch
        or "//" in branch
    )
    if bad:
        raise InvalidSpec(f"invalid branch name {branch!r}")
    return branch


SOURCE_MAX = 2048


def parse_source(text: str, cwd: Path | None = None) -> Source:
    """A git URL (https, ssh, or scp-like `git@host:path`) with optional `#branch`, or a directory."""
    if len(text) > SOURCE_MAX:
        raise InvalidSpec(f"invalid source {text[:40]!r}...: longer than {SOURCE_MAX} characters")
    if not text or _has_control_chars(text) or text != text.strip():
        raise InvalidSpec(f"invalid source {text!r}: contains whitespace or control characters")
    if text.startswith((".", "/", "~")) or (not _looks_remote(text) and "/" not in text):
        path = Path(text).expanduser()
        path = (cwd or Path.cwd()) / path if not path.is_absolute() else path
        try:
            is_dir = path.is_dir()
        except OSError as exc:  # a name too long for the filesystem, a loop of links...
            raise InvalidSpec(f"source {_short(text)!r} is not a directory ({exc.strerror})") from None
        if not is_dir:
            raise InvalidSpec(f"source {_short(text)!r} is not a directory")
        return LocalSource(path.resolve())
    url, _, branch = text.partition("#")
    _validate_git_url(url)
    return GitSource(url=url, branch=validate_branch(branch) if branch else None)


def _looks_remote(text: str) -> bool:
    return "://" in text or bool(_SCP_LIKE_RE.match(text.partition("#")[0]))


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _validate_git_url(url: str) -> None:
    """Git and ssh read an argument that starts with `-` as an option (`-oProxyCommand=...`
    runs a command): no user, host or path component may start with one, whatever git's own
    guards do."""
    if any(ch.isspace() for ch in url):
        raise InvalidSpec(f"invalid repository URL {_short(url)!r}: contains whitespace")
    scp = _SCP_LIKE_RE.match(url)
    if scp:
        if any(part.startswith("-") for part in (scp["user"], scp["host"], *scp["path"].split("/"))):
            raise InvalidSpec(f"invalid repository URL {_short(url)!r}: no part may start with '-'")
        return
    try:
        parts = urlsplit(url)
        hostname, username = parts.hostname, parts.username
    except ValueError as exc:
        raise InvalidSpec(f"invalid repository URL {_short(url)!r}: {exc}") from None
    if parts.scheme not in {"https", "http", "ssh", "git"}:
        raise InvalidSpec(
            f"invalid repository URL {_short(url)!r}: use https://, ssh://, git@host:path or a local directory"
        )
    if not hostname or not re.fullmatch(r"[A-Za-z0-9.-]+", hostname):
        raise InvalidSpec(f"invalid repository URL {_short(url)!r}: bad host name")
    if not parts.path.strip("/"):
        raise InvalidSpec(f"invalid repository URL {_short(url)!r}: no repository path")
    if (
        url.startswith("-")
        or hostname.startswith("-")
        or (username or "").startswith("-")
        or any(part.startswith("-") for part in parts.path.split("/"))
    ):
        raise InvalidSpec(f"invalid repository URL {_short(url)!r}: no part may start with '-'")


def resolve_agent(name: str) -> Agent:
    try:
        return AGENTS[name]
    except KeyError:
        known = ", ".join(sorted(AGENTS))
        raise InvalidSpec(f"unknown agent {name!r}; choose one of: {known}") from None


def validate_version(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise InvalidSpec(f"invalid agent version {version!r}: use 'latest' or a version like 2.1.3")
    return version


def validate_token(kind: str, value: str) -> str:
    """Sizes, regions and image names: short lowercase identifiers."""
    if value and not _TOKEN_RE.match(value):
        raise InvalidSpec(f"invalid {kind} {value!r}")
    return value


def validate_public_key(line: str) -> str:
    parts = line.strip().split()
    if (
        len(parts) < 2
        or parts[0] not in _KEY_TYPES
        or not re.fullmatch(r"[A-Za-z0-9+/=]+", parts[1])
        or _has_control_chars(line.strip())
    ):
        raise InvalidSpec(f"not an SSH public key: {line.strip()[:40]!r}")
    return line.strip()


def discover_public_keys(configured: tuple[str, ...], home: Path | None = None) -> tuple[str, ...]:
    """Keys from config (key text or paths to .pub files), else every `~/.ssh/*.pub`."""
    lines: list[str] = []
    if configured:
        for item in configured:
            path = Path(item).expanduser()
            lines.extend(path.read_text().splitlines() if path.is_file() else [item])
    else:
        ssh_dir = (home or Path.home()) / ".ssh"
        for pub in sorted(ssh_dir.glob("*.pub")):
            lines.extend(pub.read_text().splitlines())
    keys = tuple(validate_public_key(line) for line in lines if line.strip())
    if not keys:
        raise NoSSHKey(
            "no SSH public key found: create one with `ssh-keygen -t ed25519` "
            "or set ssh_public_keys in ~/.config/vmgen/config.toml"
        )
    return keys


def validate_watchdog(watchdog: WatchdogTuning) -> None:
    """The watchdog's settings as the VM will check them, checked here first."""
    try:
        WatchSettings(
            idle_minutes=watchdog.idle_minutes,
            warn_minutes=watchdog.warn_minutes,
            human_minutes=watchdog.human_minutes,
            stall_minutes=watchdog.stall_minutes,
            interval_seconds=watchdog.interval_seconds,
            max_lifetime_hours=watchdog.max_lifetime_hours,
            action=watchdog.action,
            budget_month=watchdog.budget_month,
            budget_action=watchdog.budget_action,
        ).validate(on_laptop=True)
    except DocumentError as exc:
        raise InvalidSpec(str(exc)) from None


def make_spec(
    source_text: str | RestoreSource,
    *,
    name: str | None,
    agent: str,
    agent_version: str,
    size: str,
    region: str,
    image: str,
    desktop: bool,
    configured_keys: tuple[str, ...],
    vmgen: VmgenInstall,
    watchdog: WatchdogTuning = WatchdogTuning(),
    web: WebSpec = WebSpec(),
    home: Path | None = None,
    dotfiles_repo: str = "",
) -> WorkspaceSpec:
    """Validate every user-provided value and assemble the spec."""
    source = source_text if isinstance(source_text, RestoreSource) else parse_source(source_text)
    if vmgen.local_wheels is not None and not vmgen.local_wheels.is_dir():
        raise InvalidSpec(f"vmgen_find_links {vmgen.find_links!r} is neither a URL nor a directory")
    validate_watchdog(watchdog)
    if watchdog.webhook_url and not re.fullmatch(r"https?://[^\s\x00-\x1f]+", watchdog.webhook_url):
        raise InvalidSpec(f"idle webhook {watchdog.webhook_url!r} is not an http(s) URL")
    try:
        for target in watchdog.notify:
            parse_target(target)
    except DocumentError as exc:
        raise InvalidSpec(str(exc)) from None
    chosen_agent = resolve_agent(agent)
    if watchdog.permission_mode != PermissionMode.BYPASS and not chosen_agent.permission_modes:
        raise InvalidSpec(
            f"permission_mode {watchdog.permission_mode.value!r} needs an agent whose prompts vmgen can answer "
            f"(claude); {chosen_agent.name} runs with permission_mode 'bypass'"
        )
    return WorkspaceSpec(
        name=validate_name(name) if name else derive_name(source),
        source=source,
        agent=chosen_agent,
        agent_version=validate_version(agent_version),
        size=validate_token("size", size),
        region=validate_token("region", region),
        image=validate_token("image", image),
        desktop=desktop,
        ssh_keys=discover_public_keys(configured_keys, home),
        vmgen=vmgen,
        watchdog=watchdog,
        web=validate_web(web),
        dotfiles=parse_dotfiles(dotfiles_repo) if dotfiles_repo else None,
    )


def parse_dotfiles(text: str) -> GitSource:
    """The dotfiles_repo setting: a git URL as a repository source takes it (`#branch` too); a
    local directory is no repository the VM can clone."""
    if not text or _has_control_chars(text) or text != text.strip() or len(text) > SOURCE_MAX:
        raise InvalidSpec(f"dotfiles_repo {_short(text)!r}: not a git URL")
    if not _looks_remote(text):
        raise InvalidSpec(f"dotfiles_repo {_short(text)!r}: use https://, ssh:// or git@host:path (the VM clones it)")
    url, _, branch = text.partition("#")
    try:
        _validate_git_url(url)
    except InvalidSpec as exc:
        raise InvalidSpec(f"dotfiles_repo: {exc}") from None
    return GitSource(url=url, branch=validate_branch(branch) if branch else None)
