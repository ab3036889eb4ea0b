"""Render `#cloud-config` user-data. Pure: reads templates, does no other I/O.

Values that reach a shell are quoted by the `q` filter (shlex.quote); the cloud-config document
itself is a Python structure serialised by PyYAML, never text pasted together.
"""

from __future__ import annotations

import base64
import gzip
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jinja2
import yaml

from ...contract import codec
from ...contract.agentwatch import flatten
from ...contract.devcontainer import UP_ERROR, UP_PHASE, UP_TAIL, UP_TAIL_LINES
from ...contract.documents import (
    BACKUP_DEFAULTS,
    HOOK_EVENTS,
    TRANSCRIPT_MAX,
    WATCH_DEFAULTS,
    BackupConfig,
    BackupTarget,
    RestoreRequest,
    WatchSettings,
    WebLinks,
    WorkspaceInfo,
    act_timeout_seconds,
)
from ...contract.enums import PermissionMode
from ...contract.names import (
    AGENT_UID,
    AGENT_USER,
    CADDY_USER,
    PAGE_USER,
    PORTS,
    UNITS,
    VM,
    WEB_LOGIN_USER,
    VmPaths,
    agent_session,
)
from ...contract.permissions import HOOK_TIMEOUT_SECONDS
from ...contract.weblogin import WebLoginSettings
from ...dns import TOKEN_SETTING as DNS_TOKEN_VARIABLE
from ...errors import UsageError
from ..agents import AGENTS, Agent
from ..caddy import WEB_BAN, Login, WebAccess, render_caddyfile
from ..caddy.auth import USER
from ..spec import GitSource, RestoreSource, WorkspaceSpec
from ..values import SelfDelete
from . import codeui
from .hostkeys import HostKey
from .install import InstallPlan, plan_of


@dataclass(frozen=True)
class RenderOptions:
    host_key: HostKey
    # How the watchdog removes this VM; its secrets land in a root-only file.
    self_delete: SelfDelete = SelfDelete(provider=WATCH_DEFAULTS.provider)  # noqa: RUF009 - frozen: one shared default is safe
    # The store and public recipient for this workspace's backups, if any (never the identity).
    backup: tuple[BackupTarget, str] | None = None
    # With a domain: the web login, of which only the password's verifier reaches the VM.
    web_login: Login | None = None
    # Replaced in printed output (`vmgen render`): host key, tokens and store keys are secret.
    redact_secrets: bool = False


# How long the install step waits for the CLI to deliver the vmgen wheel over SSH: the CLI sends
# it as soon as SSH answers, long before cloud-init gets to this step.
WHEEL_WAIT_SECONDS = 900

# Watches for the workspace's folders (the kernel's default is as low as 8192 on older ones).
INOTIFY_WATCHES = 524288
# Root's deadline for the dotfiles' install script (as Codespaces, it runs before "ready").
DOTFILES_SECONDS = 600

# What every template may name: the contract's users, paths, units and ports.
NAMES: dict[str, Any] = {
    "paths": VM,
    "units": UNITS,
    "ports": PORTS,
    "agent_user": AGENT_USER,
    "web_login_user": WEB_LOGIN_USER,
    "page_user": PAGE_USER,
    "caddy_user": CADDY_USER,
    "code_ui_dir": codeui.DIR,
    "code_ui_left_out": codeui.LEFT_OUT_DIR,
    "code_ui_server": codeui.SERVER,
    "code_ui_database": codeui.DATABASE_MODULES,
    "code_ui_data": VM.code_ui_data,
    "code_ui_db": VM.code_ui_data / "auth.db",
}


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (scripts, units) as literal blocks: a quoted scalar escapes every newline
    and quote, and a cloud may take as little as 32 KiB of user-data. The emitter still quotes a string
    that a block cannot hold exactly (trailing spaces, control characters)."""


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_BlockDumper.add_representer(str, _represent_str)


def _dump(config: dict[str, Any]) -> str:
    return yaml.dump(
        config, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000
    )


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    env.globals.update(NAMES)
    return env


def without_comment_lines(text: str) -> str:
    """Drop whole-line `#` comments (keeping a first-line shebang). Every template rendered into
    user-data is a format where `#` starts a comment (shell, Python heredocs, systemd, sshd,
    fail2ban, tmpfiles); the comments explain the templates to their readers here, and a cloud
    may take as little as 32 KiB of user-data."""
    lines = text.splitlines(keepends=True)
    return "".join(
        line
        for index, line in enumerate(lines)
        if not line.lstrip().startswith("#") or (index == 0 and line.startswith("#!"))
    )


def render_kept_boot(name: str, ssh_keys: tuple[str, ...]) -> str:
    """User-data for a server made again from a snapshot its idle action kept of its disk: the
    agent user, its keys, the host key the laptop pins, vmgen and its units are all on that disk.
    cloud-init, seeing a new instance, must change none of it: no default user (Debian's has
    sudo), the agent user as it was (plus the keys to log in with), no new host key."""
    config = {
        "hostname": name,
        "disable_root": True,
        "ssh_pwauth": False,
        "users": [
            {"name": AGENT_USER, "lock_passwd": True, "shell": "/bin/bash", "ssh_authorized_keys": list(ssh_keys)}
        ],
        "ssh_deletekeys": False,
        "ssh_genkeytypes": ["ed25519"],  # there already: kept
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False)


def _load_template(name: str) -> str:
    return resources.files("vmgen.cloudinit_templates").joinpath(name).read_text()


def render_user_data(spec: WorkspaceSpec, options: RenderOptions) -> str:
    env = _environment()
    context = _template_context(spec)

    def rendered(name: str) -> str:
        return without_comment_lines(env.get_template(name).render(**context))

    def unit(name: str, template: str | None = None) -> dict[str, object]:
        return _file(VM.unit(name), rendered(template or f"{name}.j2"))

    watch = _watch_settings(spec, options.self_delete)
    context["metadata_blocks"] = options.self_delete.metadata_blocks
    deadline = (options.backup[0] if options.backup is not None else BACKUP_DEFAULTS).deadline_minutes
    context["act_timeout_seconds"] = act_timeout_seconds(deadline)
    files = [
        _file(VM.sshd_config, rendered("sshd-vmgen.conf.j2")),
        _file(VM.fail2ban_jail, rendered("fail2ban-jail.local.j2")),
        _file(VM.program("provision.sh"), rendered("provision.sh.j2"), mode="0755"),
        _file(VM.program("agent-session"), rendered("agent-session.sh.j2"), mode="0755"),
        _file(VM.program("agent-run"), rendered("agent-run.sh.j2"), mode="0755"),
        _file(VM.program("tmux.conf"), rendered("tmux.conf.j2")),
        *([_file(VM.program("dotfiles-install"), rendered("dotfiles.sh.j2"), mode="0755")] if spec.dotfiles else []),
        *(
            [
                _file(VM.program("devcontainer-up"), rendered("devcontainer-up.sh.j2"), mode="0755"),
                _file(VM.program("devcontainer-exec"), rendered("devcontainer-exec.sh.j2"), mode="0755"),
                _file(VM.program(INSIDE_HOOK), rendered("agent-event-inside.sh.j2"), mode="0755"),
            ]
            if spec.devcontainer
            else []
        ),
        *(
            [_file(VM.program(PODMAN_WRAPPER), rendered("devcontainer-podman.sh.j2"), mode="0755")]
            if spec.devcontainer and spec.devcontainer.publish_ports
            else []
        ),
        _file(VM.program("agent-event"), without_comment_lines(agent_event_hook()), mode="0755"),
        unit(UNITS.agent),
        unit(UNITS.agent_start),
        _file(VM.workspace_info, codec.dumps(_workspace_info(spec))),
        _file(VM.watch_settings, watch.to_toml()),
        unit(UNITS.idlewatch),
        unit(UNITS.metadata_guard, "vmgen-metadata-guard.service.j2"),
        unit(UNITS.control_socket),
        unit(UNITS.control),
        unit(UNITS.act),
        *([unit(UNITS.lifetime_timer)] if watch.max_lifetime_hours else []),
        _file(VM.tmpfiles, rendered("tmpfiles-vmgen.conf.j2")),
        unit(UNITS.web_socket),
        unit(UNITS.web),
        unit(UNITS.page_ops_socket),
        unit(UNITS.page_ops),
        _file(VM.web_links, codec.dumps(_web_links(spec))),
        *_web_files(spec, options, rendered, unit),
        *(unit(name) for name in (UNITS.desktop if spec.desktop else ())),
        *_agent_seed_files(spec),
    ]
    if options.backup is not None:
        target, recipient = options.backup
        if options.redact_secrets:
            target = replace(
                target,
                access_key_id="<redacted>" if target.access_key_id else "",
                secret_access_key="<redacted>" if target.secret_access_key else "",
            )
        files.append(_file(VM.backup_config, BackupConfig(target, spec.name, recipient).to_toml(), mode="0600"))
    if isinstance(spec.source, RestoreSource):
        files.append(
            _file(VM.restore_request, codec.dumps(RestoreRequest(spec.source.workspace, spec.source.backup_id)))
        )
    if options.self_delete.secrets:
        secrets = "".join(
            f"{key}={'<redacted>' if options.redact_secrets else value}\n" for key, value in options.self_delete.secrets
        )
        files.append(_file(VM.secrets, secrets, mode="0600"))
    host_private = "<generated per launch>" if options.redact_secrets else options.host_key.private_openssh
    config = {
        "hostname": spec.name,
        "disable_root": True,
        "ssh_pwauth": False,
        # Only this user: no distribution default user (Debian's `debian` has sudo).
        "users": [
            {
                "name": AGENT_USER,
                "uid": AGENT_UID,
                "gecos": "vmgen coding agent",
                "shell": "/bin/bash",
                "lock_passwd": True,
                # No groups: not adm (the whole system journal), not sudo.
                "ssh_authorized_keys": list(spec.ssh_keys),
            }
        ],
        "ssh_deletekeys": True,
        "ssh_genkeytypes": ["ed25519"],
        "ssh_keys": {
            "ed25519_private": host_private,
            "ed25519_public": options.host_key.public_openssh,
        },
        "write_files": files,
        "runcmd": [["bash", str(VM.program("provision.sh"))]],
    }
    body = _dump(config)
    return "#cloud-config\n" + body


def render_bake_script(plan: InstallPlan) -> str:
    """The install steps alone, each recording its stamp: what a provider's bake (or Packer) runs
    on a fresh VM before snapshotting it."""
    return without_comment_lines(_environment().get_template("bake.sh.j2").render(**_install_context(plan)))


def render_node_install(plan: InstallPlan) -> str:
    """Node's install step alone, as the workspace's provisioning and the bake run it (the tests
    run it on a bare image)."""
    steps = '{% include "stamp-helpers.sh.j2" %}\n{% include "node-install.sh.j2" %}\ninstall_node\n'
    return "set -euo pipefail\n" + _environment().from_string(steps).render(**_install_context(plan))


@dataclass(frozen=True)
class BakeAccess:
    """How the builder reaches a cloud build VM over SSH while it bakes: as root, with its own
    key, checking a host key generated for this bake. The bake's cleanup removes both."""

    host_key: HostKey
    root_keys: tuple[str, ...]


def render_bake_user_data(plan: InstallPlan, access: BakeAccess | None = None) -> str:
    """Cloud-config that bakes on first boot (for builders that boot a VM with user-data)."""
    files = [_file(VM.program("bake.sh"), render_bake_script(plan), mode="0755")]
    config: dict[str, object] = {
        # No default user: a distribution's (Debian's `debian`, with sudo) must not be baked in.
        "users": [],
    }
    if access is not None:
        keys = "".join(f"{key}\n" for key in access.root_keys)
        files.append(_file(Path("/root/.ssh/authorized_keys"), keys, mode="0600"))
        config |= {
            "disable_root": False,
            "ssh_pwauth": False,
            "ssh_deletekeys": True,
            "ssh_genkeytypes": ["ed25519"],
            "ssh_keys": {
                "ed25519_private": access.host_key.private_openssh,
                "ed25519_public": access.host_key.public_openssh,
            },
        }
    config |= {"write_files": files, "runcmd": [["bash", str(VM.program("bake.sh"))]]}
    return "#cloud-config\n" + _dump(config)


def _install_context(plan: InstallPlan) -> dict[str, object]:
    vmgen = plan.vmgen
    return {
        "packages": plan.packages,
        "stamps": plan.stamp,
        "agent_install": plan.agent_install,
        "code_ui_install": plan.code_ui,
        "node": plan.node,
        "devcontainer_cli": plan.devcontainer,
        "vmgen_version": vmgen.version,
        "vmgen_wheel": vmgen.wheel_path,
        "vmgen_sha256": vmgen.wheel_sha256,
        "vmgen_wait_seconds": WHEEL_WAIT_SECONDS,
        "vmgen_index_url": vmgen.index_url,
        "vmgen_find_links": vmgen.find_links_on_vm,
        # pip refuses plain-HTTP locations unless the host is named as trusted.
        "vmgen_trusted_host": urlsplit(vmgen.find_links).hostname if vmgen.find_links.startswith("http://") else "",
    }


def _web_links(spec: WorkspaceSpec) -> WebLinks:
    """What the workspace page links to (nothing without a domain: `vmgen open` tunnels)."""
    if not spec.host:
        return WebLinks()
    return WebLinks(
        url=f"https://{spec.host}/",
        code_url=f"https://code.{spec.host}/" if spec.web.code_ui else "",
        # The login service answers / with noVNC, connecting, and the VNC password in the fragment.
        desktop_url=f"https://desktop.{spec.host}/" if spec.desktop else "",
        previews={str(port): f"https://p{port}.{spec.preview_host or spec.host}/" for port in spec.web.preview_ports},
    )


def _web_files(
    spec: WorkspaceSpec,
    options: RenderOptions,
    rendered: Callable[[str], str],
    unit: Callable[[str], dict[str, object]],
) -> list[dict[str, object]]:
    """Caddy, the login service and the code UI; files provisioning hands to their users (the
    `caddy` and `vmgen-web` groups exist only once the packages are installed)."""
    if not spec.host:
        return []
    if options.web_login is None and not options.redact_secrets:
        raise UsageError("a workspace with a domain needs its web login")
    login = options.web_login
    settings = _web_login_settings(spec, login.user if login else USER)
    web = WebAccess(
        settings,
        tls=spec.web.tls,
        acme_email=spec.web.acme_email,
        acme_ca=spec.web.acme_ca,
        acme_ca_root=bool(spec.web.acme_ca_root),
    )
    verifier = "<verifier, generated per launch>" if options.redact_secrets or not login else login.verifier
    return [
        *([_file(VM.acme_ca_root, spec.web.acme_ca_root)] if spec.web.acme_ca_root else []),
        _file(VM.caddyfile, render_caddyfile(web), mode="0600"),
        unit(UNITS.caddy),
        _file(VM.web_login_settings, settings.dumps(), mode="0600"),
        _file(VM.web_login_verifier, verifier + "\n", mode="0600"),
        unit(UNITS.web_login_socket),
        unit(UNITS.web_login),
        _file(VM.fail2ban_web_filter, without_comment_lines(_load_template("fail2ban-filter-vmgen-web.conf"))),
        *(_code_ui_files(rendered, unit) if spec.web.code_ui else []),
    ]


def _code_ui_files(rendered: Callable[[str], str], unit: Callable[[str], dict[str, object]]) -> list[dict[str, object]]:
    return [
        _file(VM.program("code-ui-install"), rendered("code-ui-install.sh.j2"), mode="0755"),
        _file(VM.program("code-ui-run"), rendered("code-ui-run.sh.j2"), mode="0755"),
        _file(VM.program("code-ui-setup.mjs"), _load_template("code-ui-setup.mjs")),
        unit(UNITS.code_ui_install),
        unit(UNITS.code_ui),
    ]


def _web_login_settings(spec: WorkspaceSpec, user: str) -> WebLoginSettings:
    return WebLoginSettings(
        host=spec.host,
        user=user,
        code=spec.web.code_ui,
        desktop=spec.desktop,
        preview_ports=spec.web.preview_ports,
        preview_host=spec.preview_host,
    )


def _template_context(spec: WorkspaceSpec) -> dict[str, object]:
    git = spec.source if isinstance(spec.source, GitSource) else None
    return {
        **_install_context(plan_of(spec)),
        "name": spec.name,
        "agent": spec.agent.name,
        "repo_dir": spec.repo_dir,
        "git_url": git.url if git else "",
        "git_branch": git.branch if git and git.branch else "",
        "restoring": isinstance(spec.source, RestoreSource),
        "web_domain": spec.web.domain,
        "code_ui": spec.web.code_ui,
        "web_user": USER,
        "web_ban": WEB_BAN,
        "desktop": spec.desktop,
        "session": agent_session(spec.agent.name),  # the agent's tmux session, named for it
        "dotfiles_url": spec.dotfiles.url if spec.dotfiles else "",
        "dotfiles_branch": (spec.dotfiles.branch or "") if spec.dotfiles else "",
        "dotfiles_seconds": DOTFILES_SECONDS,
        "dotfiles_log": VM.dotfiles_log.relative_to(VM.home),
        **_devcontainer_context(spec),
        # The workspace's agent first, then every other one vmgen offers: a further session may
        # run any of them that is installed (`vmgen session new --agent`). Inside a dev container
        # only the workspace's own agent is installed: a further session is that agent, inside.
        "agents": [_run_context(agent, spec) for agent in (spec.agent, *agents_besides(spec.agent))]
        if spec.devcontainer is None
        else [_run_context(spec.agent, spec)],
        "lifetime_seconds": round(spec.watchdog.max_lifetime_hours * 3600),
        "inotify_watches": INOTIFY_WATCHES,
    }


INSIDE_HOOK = "agent-event-inside"
"""The program bound over agent-event inside a dev container (agent-event-inside.sh.j2)."""
PODMAN_WRAPPER = "devcontainer-podman"
"""podman for the devcontainers CLI, publishing the container's forward ports (devcontainer-podman.sh.j2)."""


def _devcontainer_context(spec: WorkspaceSpec) -> dict[str, object]:
    """The dev container's programs (docs/devcontainers.md): `inside` prefixes each command the
    agent's pane runs with devcontainer-exec ("" without a dev container)."""
    if spec.devcontainer is None:
        return {"devcontainer_config": "", "inside": ""}
    agent = spec.agent
    path = str(VM.container_bin)
    links = [
        (str(VM.container_bin / name), str(PurePosixPath(agent.container_install) / program))
        for name, program in agent.container_programs
    ]
    as_root = "".join(f" {name}={shlex.quote(value)}" for name, value in agent.container_env)
    inner = "\n".join(
        (
            f"cd {shlex.quote(spec.repo_dir)} 2>/dev/null || cd /",
            f'export HOME={shlex.quote(str(VM.home))} TERM="$1" PATH={shlex.quote(path)}:"$PATH"',
            *([f'if [ "$(id -u)" = 0 ]; then export{as_root}; fi'] if as_root else []),
            f"if [ -r {shlex.quote(str(VM.agent_env))} ]; then set -a; . {shlex.quote(str(VM.agent_env))}; set +a; fi",
            "shift",
            'exec "$@"',
        )
    )
    # Bound at the same paths: the agent's home (its ~/.claude and ~/.claude.json, the delivered
    # agent.env, the repository at its VM path) and root's files, which no uid of the container
    # can change: the agent's install, and vmgen's hooks (the managed settings, and the hook
    # they name in a form any image can run), so the watchdog hears the agent inside as outside.
    binds = [(str(VM.home), str(VM.home)), (agent.container_install, agent.container_install)]
    if agent.managed_settings:
        binds += [
            (agent.managed_settings, agent.managed_settings),
            (str(VM.program(INSIDE_HOOK)), str(VM.program("agent-event"))),
        ]
    return {
        "devcontainer_config": spec.devcontainer.config,
        "devcontainer_binds": binds,
        # The engine the CLI runs: podman, or the wrapper that publishes the forward ports.
        "devcontainer_engine": str(VM.program(PODMAN_WRAPPER)) if spec.devcontainer.publish_ports else "podman",
        "devcontainer_publish": spec.devcontainer.publish_ports,
        "transcript_max": TRANSCRIPT_MAX,
        "devcontainer_log": VM.devcontainer_log.relative_to(VM.home),
        "devcontainer_config_path": str(PurePosixPath(spec.repo_dir) / spec.devcontainer.config),
        "devcontainer_links": links,
        "devcontainer_inner": inner,
        "inside": shlex.quote(str(VM.program("devcontainer-exec"))) + " ",
        "up_phase": UP_PHASE,
        "up_error": UP_ERROR,
        "up_tail": UP_TAIL,
        "up_tail_lines": UP_TAIL_LINES,
    }


def agents_besides(agent: Agent) -> list[Agent]:
    return [other for other in AGENTS.values() if other.name != agent.name]


def _run_context(agent: Agent, spec: WorkspaceSpec) -> dict[str, object]:
    """How agent-run starts and resumes `agent`: with the workspace's permission mode when the
    agent has it, else as the agent's own defaults have it (its commands take no mode); each
    session resumes its own conversation where the agent takes an id for it."""
    mode = spec.watchdog.permission_mode if agent.permission_modes else PermissionMode.BYPASS
    context: dict[str, object] = {
        "name": agent.name,
        "prepare": agent.prepare,
        "start": agent.start_command(mode),
        "resume": agent.resume_command(mode),
        "has_conversation": agent.has_conversation(spec.repo_dir),
        "by_id": agent.resumes_by_id,
    }
    if agent.resumes_by_id:
        folder, ending = agent.conversation_files(spec.repo_dir)
        context |= {
            "start_with_id": agent.start_with_id_command(mode),
            "resume_with_id": agent.resume_with_id_command(mode),
            "resume_shown": agent.resume_with_id_command(mode).replace('"$session_id"', "$session_id"),
            "conversation_dir": folder,
            "conversation_ending": ending,
        }
    return context


def _watch_settings(spec: WorkspaceSpec, self_delete: SelfDelete) -> WatchSettings:
    """The watchdog's settings: every value is vmgen's own (validated numbers, fixed words,
    provider URLs)."""
    w = spec.watchdog
    dns = bool(spec.web.domain and dict(self_delete.secrets).get(DNS_TOKEN_VARIABLE))
    return WatchSettings(
        name=spec.name,
        workspace=spec.repo_dir,
        idle_minutes=spec.watchdog.idle_minutes,
        warn_minutes=w.warn_minutes,
        human_minutes=w.human_minutes,
        stall_minutes=w.stall_minutes,
        interval_seconds=w.interval_seconds,
        max_lifetime_hours=w.max_lifetime_hours,
        budget_month=w.budget_month,
        budget_action=w.budget_action,
        budget_allowance=w.budget_allowance,
        budget_price_hourly=w.budget_price_hourly,
        budget_currency=w.budget_currency,
        budget_month_end=w.budget_month_end,
        action=w.action,
        dry_run=w.dry_run,
        provider=self_delete.provider,
        webhook_url=w.webhook_url,
        notify=w.notify,
        permission_mode=w.permission_mode,
        metadata_url=self_delete.metadata_url,
        api_endpoint=self_delete.api_endpoint,
        dns_zone=spec.web.domain if dns else "",
        preview_dns_zone=spec.web.preview_domain if dns else "",
        dns_endpoint=self_delete.dns_endpoint if dns else "",
        **flatten(spec.agent.watch),
        other_agents=tuple(agent.watch for agent in agents_besides(spec.agent)),
    )


def _workspace_info(spec: WorkspaceSpec) -> WorkspaceInfo:
    """What vmside reads on the VM to know which workspace it serves."""
    return WorkspaceInfo(
        name=spec.name,
        agent=spec.agent.name,
        repo_dir=spec.repo_dir,
        source=spec.source.describe(),
        idle_minutes=spec.watchdog.idle_minutes,
        desktop=spec.desktop,
        vmgen_version=spec.vmgen.build,
        dotfiles_repo=spec.dotfiles.describe() if spec.dotfiles else "",
        devcontainer=spec.devcontainer.config if spec.devcontainer else "",
        devcontainer_allow_privileged=spec.devcontainer.allow_privileged if spec.devcontainer else False,
    )


def agent_event_hook(paths: VmPaths = VM) -> str:
    """The hook program Claude Code runs on each event the watchdog follows (see the template)."""
    return _environment().get_template("agent-event.j2").render(paths=paths)


def claude_hooks(program: str) -> dict[str, object]:
    """Claude Code's `hooks` setting: `program EVENT` for each event the watchdog follows, with
    the event's JSON (session id, transcript path) on its stdin."""
    return {
        event: [{"matcher": "*", "hooks": [{"type": "command", "command": f"{program} {event}"}]}]
        for event in HOOK_EVENTS
    }


def permission_hook_command(paths: VmPaths = VM) -> str:
    """Claude Code's PermissionRequest hook: root's vmgen in an isolated interpreter (no user
    site, no PYTHON* variables), so the agent can neither replace nor steer it."""
    return f"{paths.venv / 'bin' / 'python'} -I -m vmgen.vmside.permission_hook"


def claude_managed_settings(mode: PermissionMode, paths: VmPaths = VM) -> dict[str, object]:
    """Claude Code's managed settings (root's file; they outrank the agent's own): vmgen's hooks,
    and with a permission mode other than bypass, the policy that keeps the agent from answering
    its own prompts: only these hooks run (a hook of the agent's could allow), only these
    permission rules count (an allow rule the agent wrote would skip the prompt), and bypass
    mode cannot be turned on."""
    hooks: dict[str, object] = dict(claude_hooks(str(paths.program("agent-event"))))
    settings: dict[str, object] = {"hooks": hooks}
    if mode == PermissionMode.BYPASS:
        return settings
    hooks["PermissionRequest"] = [
        {
            "matcher": "*",
            "hooks": [{"type": "command", "command": permission_hook_command(paths), "timeout": HOOK_TIMEOUT_SECONDS}],
        }
    ]
    return settings | {
        "allowManagedHooksOnly": True,
        "allowManagedPermissionRulesOnly": True,
        "permissions": {"defaultMode": mode.value, "disableBypassPermissionsMode": "disable"},
    }


def gemini_first_run(repo_dir: str) -> dict[str, dict[str, Any]]:
    """The gemini CLI's files (below the agent's home) that answer its first-run dialogs: the auth
    method (its key comes from GEMINI_API_KEY; without one it asks for a key), the repository
    folder trusted (trust is per folder, asked at each start until answered), no auto-update (the
    pin stays pinned), no usage statistics and no IDE nudge. Read in gemini-cli's source:
    `security.auth.selectedType` (ui/auth/useAuth.ts), `~/.gemini/trustedFolders.json` with
    `TRUST_FOLDER` (core/config/storage.ts, core/utils/trust.ts), settingsSchema.ts for the rest."""
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "privacy": {"usageStatisticsEnabled": False},
        "ide": {"hasSeenNudge": True},
    }
    return {".gemini/settings.json": settings, ".gemini/trustedFolders.json": {repo_dir: "TRUST_FOLDER"}}


def first_run_documents(agent: Agent, repo_dir: str) -> dict[str, dict[str, Any]]:
    """The agent's own files (below its home, JSON) that pre-answer `agent`'s first-run dialogs,
    so it starts unattended at its prompt in `repo_dir`: written by cloud-init for the
    workspace's agent, merged in over SSH for a further session of another (`vmgen session new
    --agent`). Empty for an agent that has none."""
    if agent.name == "gemini":
        return gemini_first_run(repo_dir)
    if agent.name != "claude":
        return {}
    state = {
        "hasCompletedOnboarding": True,
        # Trust is per exact directory; a parent folder does not cover the repository.
        "projects": {repo_dir: {"hasTrustDialogAccepted": True}},
    }
    settings = {
        "skipDangerousModePermissionPrompt": True,
        # The pinned version stays pinned, and nothing but the model API is contacted.
        "env": {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
    }
    return {".claude.json": state, f"{VM.claude_dir.relative_to(VM.home)}/settings.json": settings}


def _agent_seed_files(spec: WorkspaceSpec) -> list[dict[str, object]]:
    """Pre-answered first-run dialogs, so the agent starts unattended at its prompt."""
    # Root's, before Claude Code first starts, whichever agent the workspace runs (a further
    # session may run Claude Code): vmgen's hooks the agent cannot replace or turn off.
    managed = claude_managed_settings(spec.watchdog.permission_mode)
    return [
        _file(AGENTS["claude"].managed_settings, json.dumps(managed, indent=2) + "\n"),
        *(
            _file(
                VM.home / path,
                json.dumps(document, indent=2) + "\n",
                owner=f"{AGENT_USER}:{AGENT_USER}",
                mode="0600",
                defer=True,
            )
            for path, document in first_run_documents(spec.agent, spec.repo_dir).items()
        ),
    ]


COMPRESS_ABOVE = 512
"""Files longer than this (characters) travel gzipped and base64-encoded (cloud-init's `gz+b64`):
Hetzner takes at most 32 KiB of user-data, and the scripts, units and settings of a workspace with
a domain and a desktop came to more. `mtime=0` keeps the rendering the same for the same spec."""


def written_files(user_data: str) -> dict[str, str]:
    """The files a rendered user-data writes, by path, decoded as cloud-init decodes them."""
    files: dict[str, str] = {}
    for entry in yaml.safe_load(user_data.removeprefix("#cloud-config\n"))["write_files"]:
        content = entry["content"]
        if entry.get("encoding") == "gz+b64":
            content = gzip.decompress(base64.b64decode(content)).decode()
        files[entry["path"]] = content
    return files


def _file(
    path: Path | str, content: str, *, mode: str = "0644", owner: str = "root:root", defer: bool = False
) -> dict[str, object]:
    entry: dict[str, object] = {"path": str(path), "owner": owner, "permissions": mode}
    if len(content) > COMPRESS_ABOVE:
        entry |= {"encoding": "gz+b64", "content": base64.b64encode(gzip.compress(content.encode(), mtime=0)).decode()}
    else:
        entry["content"] = content
    if defer:
        entry["defer"] = True
    return entry
