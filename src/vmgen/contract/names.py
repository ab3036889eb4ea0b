"""The names both halves of vmgen use on the VM: its user, paths, ports and systemd units.

The laptop writes files for the VM (cloud-init) and talks to it over SSH; the VM's services and
the page server read and write the same files. Every such name is spelled here once, and the
templates receive these values instead of spelling them again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The unprivileged user the coding agent runs as. Its uid is fixed, and far from the first
# user's 1000: on the docker provider a bind-mounted folder keeps the laptop user's uid inside the
# container, and the agent must never own the laptop's files (the local backup store).
AGENT_USER = "agent"
AGENT_UID = 2000
# The tmux session the agent runs in is named for what it runs: "claude", "codex", "aider"...
# (AGENT_SESSION is Claude Code's, the default agent's, and every workspace's made before the
# name followed the agent.)
AGENT_SESSION = "claude"
_SESSION_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")


def agent_session(agent: str) -> str:
    """The tmux session of the agent named `agent` (an agents.py name: a plain word)."""
    if not _SESSION_NAME.fullmatch(agent):
        raise ValueError(f"{agent!r} is no agent name to name a tmux session for")
    return agent


# The web login service's system user (with a domain): neither root nor the agent, it holds the
# login's verifier, the sessions and the desktop's password it hands over, nothing else.
WEB_LOGIN_USER = "vmgen-web"
# The workspace page's system user: neither root nor the agent (which must not be able to replace
# the origin the login vouches for), and holding no secret. What needs the agent's uid or root, it
# asks root for over root's page socket.
PAGE_USER = "vmgen-page"
# Caddy's user (the Debian and Ubuntu package's): the only user besides root that reads the Caddyfile.
CADDY_USER = "caddy"

# Labels on what vmgen makes at a provider: the laptop sets them; a VM labels a snapshot of itself
# with them too (the idle action keeping a disk without a backup, marked RESCUE_LABEL), so that
# `vmgen list` and `vmgen restore --snapshot` find it.
LABEL = "vmgen"
WS_LABEL = "vmgen-ws"
# Who made a workspace or an image (user@host): on an engine or project that several people
# share, `vmgen list` and `vmgen image list` show one's own unless asked for all.
OWNER_LABEL = "vmgen-owner"
# The maker's owner id (a random id in their vmgen state folder): what tells apart users who share
# a uid, and so a user@host.
OWNER_ID_LABEL = "vmgen-owner-id"
RESCUE_LABEL = "vmgen-rescue"
# On such a snapshot: what the server was, to make it again.
TYPE_LABEL = "vmgen-type"
LOCATION_LABEL = "vmgen-location"


@dataclass(frozen=True)
class Ports:
    """Ports on the VM's loopback that Caddy proxies to, and the public ones the firewall opens."""

    code_ui: int = 3001  # CloudCLI, the Claude Code web UI
    vnc: int = 5901  # x11vnc, local only
    novnc: int = 6080  # websockify serving noVNC
    public: tuple[int, ...] = (22, 80, 443)

    @property
    def reserved(self) -> frozenset[int]:
        """Not available as preview ports."""
        return frozenset({*self.public, self.code_ui, self.vnc, self.novnc})


PORTS = Ports()

# Where the desktop opens (noVNC's own page, both through vmgen's login and through `vmgen open
# NAME desktop`'s tunnel): connected at once, the VM's screen resized to the browser's, and a
# dropped connection (a phone changing networks, a laptop waking up) made again after 2 s instead
# of a dead page. The VNC password follows in the fragment, which no server ever sees.
DESKTOP_START = "/vnc.html?autoconnect=1&reconnect=1&reconnect_delay=2000&resize=remote"


@dataclass(frozen=True)
class Units:
    """vmgen's systemd units on the VM."""

    agent: str = "vmgen-agent.service"
    agent_start: str = "vmgen-agent.path"  # starts the agent once the handover mark exists
    idlewatch: str = "vmgen-idlewatch.service"
    lifetime_timer: str = "vmgen-lifetime.timer"  # the hard lifetime, apart from the watchdog loop
    # The idle action and the hard lifetime's: one unit, so the two never run at once; bounded by
    # its start timeout, after which systemd powers the VM off (FailureAction).
    act: str = "vmgen-act.service"
    control_socket: str = "vmgen-control.socket"  # the agent's requests to root (backup, restore)
    control: str = "vmgen-control.service"  # one root daemon answers every connection
    metadata_guard: str = "vmgen-metadata-guard.service"
    web: str = "vmgen-web.service"  # the workspace page, as its own user
    web_socket: str = "vmgen-web.socket"  # Caddy's way to the page (the agent's without a domain)
    page_ops_socket: str = "vmgen-page-ops.socket"  # the page's requests to root: vmgen-page's only
    page_ops: str = "vmgen-page-ops@.service"
    web_login: str = "vmgen-web-login.service"
    web_login_socket: str = "vmgen-web-login.socket"  # Caddy's way in: root:caddy 0660
    caddy: str = "vmgen-caddy.service"
    code_ui_install: str = "vmgen-code-ui-install.service"
    code_ui: str = "vmgen-code-ui.service"
    desktop: tuple[str, ...] = (
        "vmgen-desktop-xvfb.service",
        "vmgen-desktop-wm.service",
        "vmgen-desktop-vnc.service",
        "vmgen-desktop-novnc.service",
    )


UNITS = Units()


@dataclass(frozen=True)
class VmPaths:
    """Every file and folder on the VM that more than one part of vmgen names.

    The roots are fields so that tests can relocate them; everything else derives from them.
    """

    home: Path = Path("/home") / AGENT_USER
    etc: Path = Path("/etc/vmgen")
    state: Path = Path("/var/lib/vmgen")
    run: Path = Path("/run/vmgen")
    log: Path = Path("/var/log/vmgen")
    lib: Path = Path("/usr/local/lib/vmgen")
    venv: Path = Path("/opt/vmgen")
    systemd: Path = Path("/etc/systemd/system")
    tmp: Path = Path("/tmp")
    caddy_logs: Path = Path("/var/log/caddy")

    # --- root's configuration (written by cloud-init) ---------------------------------------
    @property
    def workspace_info(self) -> Path:
        return self.etc / "workspace.json"

    @property
    def web_links(self) -> Path:
        return self.etc / "web.json"

    @property
    def watch_settings(self) -> Path:
        return self.etc / "idlewatch.toml"

    @property
    def backup_config(self) -> Path:
        """Root-only: the store's location and keys, and the workspace's public recipient."""
        return self.etc / "backup.toml"

    @property
    def restore_request(self) -> Path:
        return self.etc / "restore.json"

    @property
    def secrets(self) -> Path:
        """Root-only: the provider and DNS tokens the watchdog deletes the VM with."""
        return self.etc / "provider.env"

    @property
    def caddyfile(self) -> Path:
        return self.etc / "Caddyfile"

    @property
    def desktop_password(self) -> Path:
        """The VNC password x11vnc reads (root:agent 0640: the desktop is the agent's anyway)."""
        return self.etc / "desktop-password"

    # --- the web login service's (root:vmgen-web, 0750 and 0640; no other user reads them) -----
    @property
    def web_login_dir(self) -> Path:
        return self.etc / "web-login"

    @property
    def web_login_settings(self) -> Path:
        return self.web_login_dir / "settings.json"

    @property
    def web_login_verifier(self) -> Path:
        """`<user> <verifier>`: the salted hash of the web password, never the password."""
        return self.web_login_dir / "login"

    @property
    def web_login_desktop_password(self) -> Path:
        """The VNC password again: the login service gives it to the noVNC page after login."""
        return self.web_login_dir / "desktop-password"

    @property
    def stamps(self) -> Path:
        return self.etc / "stamps"

    # --- what root's services write; world-readable, never a secret -------------------------
    @property
    def watchdog_state(self) -> Path:
        """Per boot, in RAM (/run): written even when the agent has filled the disk."""
        return self.run / "idlewatch.json"

    @property
    def action_state(self) -> Path:
        """What the idle action or the hard lifetime is doing, or did (per boot, in RAM)."""
        return self.run / "action.json"

    @property
    def backup_requests(self) -> Path:
        """Root's record of the backups asked for through the control socket (the rate limit)."""
        return self.run / "backup-requests.json"

    @property
    def phone_buttons_used(self) -> Path:
        """Root's record of the ntfy Keep alive buttons it acted on (each acts once; on the disk,
        so a reboot does not make a pressed one new)."""
        return self.state / "phone-buttons.json"

    @property
    def budget_ledger(self) -> Path:
        """Root's count of this VM's billed time against its share of the month's budget: on the
        disk, so that a reboot or a stop and start does not reset it."""
        return self.state / "budget.json"

    @property
    def budget_grant(self) -> Path:
        """The newest signed share of the budget root took (`vmgen start` hands one over)."""
        return self.state / "budget-grant.json"

    @property
    def backup_result(self) -> Path:
        return self.state / "backup-result.json"

    @property
    def restore_result(self) -> Path:
        return self.state / "restore-result.json"

    @property
    def code_ui_ready(self) -> Path:
        return self.state / "code-ui-ready"

    @property
    def local_backups(self) -> Path:
        """Where the docker provider mounts a local backup store."""
        return self.state / "backups"

    @property
    def wheels(self) -> Path:
        """Where the docker provider mounts a local wheel folder (vmgen's dependencies)."""
        return self.state / "wheels"

    @property
    def incoming(self) -> Path:
        """Root's folder for the vmgen wheel a bake puts in place, and a verified copy of one the
        CLI delivered."""
        return self.state / "incoming"

    @property
    def phases_log(self) -> Path:
        return self.log / "phases.log"

    @property
    def code_ui_log(self) -> Path:
        """What the code UI's background install printed (no secrets): world-readable."""
        return self.log / "code-ui-install.log"

    @property
    def provision_log(self) -> Path:
        """Everything the provisioning script printed (no secrets): world-readable, so that the
        CLI, logged in as the agent, can show why a boot failed."""
        return self.log / "provision.log"

    @property
    def cloud_init_output(self) -> Path:
        """cloud-init's own output log (root's, group adm: not the agent's to read)."""
        return Path("/var/log/cloud-init-output.log")

    @property
    def control_socket(self) -> Path:
        """Root's socket for the agent's requests; the kernel tells root who connected."""
        return self.run / "control.sock"

    @property
    def backup_index(self) -> Path:
        """Root-only (0700): the file index of the last backup or restore, for the next increment."""
        return self.state / "backup-index"

    @property
    def backup_lock(self) -> Path:
        return self.run / "backup.lock"

    @property
    def page_socket(self) -> Path:
        """The workspace page's socket, made by systemd: Caddy's (root:caddy 0660) with a domain."""
        return self.run / "page.sock"

    @property
    def page_ops_socket(self) -> Path:
        """Root's socket for the page's requests (root:vmgen-page 0660): the kernel says who asks."""
        return self.run / "page-ops.sock"

    @property
    def web_login_socket(self) -> Path:
        """The web login service's socket: Caddy's (root:caddy 0660), not the agent's."""
        return self.run / "web-login.sock"

    @property
    def web_tls_log(self) -> Path:
        """Caddy's certificate events alone (JSON, no requests): world-readable, so that the page,
        `vmgen status` and a launch can say why a hostname has no certificate."""
        return self.log / "web-tls.log"

    @property
    def acme_ca_root(self) -> Path:
        """The root certificate of a private ACME server's own HTTPS (`acme_ca_root`), if any."""
        return self.etc / "acme-ca-root.pem"

    @property
    def web_access_log(self) -> Path:
        """Caddy's access log of the login's own paths (no credentials): what fail2ban reads."""
        return self.caddy_logs / "vmgen-access.log"

    # --- system configuration vmgen adds to ----------------------------------------------------
    @property
    def sshd_config(self) -> Path:
        return Path("/etc/ssh/sshd_config.d/60-vmgen.conf")

    @property
    def fail2ban_jail(self) -> Path:
        return Path("/etc/fail2ban/jail.d/vmgen.local")

    @property
    def sysctl(self) -> Path:
        return Path("/etc/sysctl.d/60-vmgen.conf")

    @property
    def fail2ban_web_filter(self) -> Path:
        return Path("/etc/fail2ban/filter.d/vmgen-web.conf")

    @property
    def tmpfiles(self) -> Path:
        return Path("/etc/tmpfiles.d/vmgen.conf")

    @property
    def command_link(self) -> Path:
        """`vmgen` on every user's PATH."""
        return Path("/usr/local/bin/vmgen")

    # --- programs ------------------------------------------------------------------------------
    @property
    def vmgen(self) -> Path:
        return self.venv / "bin" / "vmgen"

    def program(self, name: str) -> Path:
        return self.lib / name

    def unit(self, name: str) -> Path:
        return self.systemd / name

    # --- the agent's home: the agent owns and controls everything below -------------------
    @property
    def agent_dir(self) -> Path:
        return self.home / ".vmgen"

    @property
    def leases(self) -> Path:
        return self.agent_dir / "leases.json"

    @property
    def hook_events(self) -> Path:
        return self.agent_dir / "agent-events.jsonl"

    @property
    def agent_incoming(self) -> Path:
        """Where the CLI, logged in as the agent, delivers its vmgen wheel at every launch."""
        return self.agent_dir / "incoming"

    @property
    def handover_mark(self) -> Path:
        return self.agent_dir / "handover-done"

    @property
    def started_once(self) -> Path:
        return self.agent_dir / "started-once"

    @property
    def dotfiles(self) -> Path:
        """Where the `dotfiles_repo` is cloned, as the agent (DevPod's and VS Code's place)."""
        return self.home / "dotfiles"

    @property
    def dotfiles_log(self) -> Path:
        """What the dotfiles' install printed: the agent's own file, written by the agent."""
        return self.agent_dir / "dotfiles.log"

    @property
    def devcontainer_log(self) -> Path:
        """What the devcontainers CLI printed at the last `devcontainer up`: the agent's own file."""
        return self.agent_dir / "devcontainer.log"

    @property
    def container_bin(self) -> Path:
        """The agent's folder first on PATH inside its dev container: links to the agent's
        programs, which the container sees at the VM's paths (made by devcontainer-up, as the agent)."""
        return self.agent_dir / "container-bin"

    @property
    def containers_storage(self) -> Path:
        """The agent's rootless Podman storage: images and containers, files of its subordinate
        uids that its own backup stage cannot read; a new VM builds the dev container again."""
        return self.home / ".local" / "share" / "containers"

    @property
    def agent_sessions(self) -> Path:
        """The agent's sessions (a line each: conversation id, tab, window name), written and read
        only by the agent's own scripts (agent-run, agent-session) so that each session comes
        back after a restart; backed up with the home. Root never reads it."""
        return self.agent_dir / "sessions.tsv"

    @property
    def agent_env(self) -> Path:
        return self.home / ".config" / "vmgen" / "agent.env"

    @property
    def claude_dir(self) -> Path:
        return self.home / ".claude"

    @property
    def code_ui_data(self) -> Path:
        """CloudCLI's own database (its login), the agent's."""
        return self.home / ".cloudcli"

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"

    def tmux_dir(self, uid: int) -> Path:
        """Where the agent's tmux servers put their sockets (tmux's own default)."""
        return self.tmp / f"tmux-{uid}"

    @property
    def work(self) -> Path:
        return self.home / "work"

    def repo_dir(self, workspace: str) -> Path:
        return self.work / workspace

    @property
    def runtime_excludes(self) -> tuple[str, ...]:
        """Left out of every backup (relative to the home): vmgen's own per-boot state and what
        the CLI delivers again at every launch. Restoring an old handover mark would start the
        agent before its credentials arrive, old leases would hold the new VM up, and the
        delivered API key has no business in a backup. The dev container's storage is built
        again from the repository (its files belong to uids the backup cannot read)."""
        own = (self.handover_mark, self.leases, self.hook_events, self.agent_env, self.containers_storage)
        return tuple(str(p.relative_to(self.home)) for p in own)


VM = VmPaths()
