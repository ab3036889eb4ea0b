"""Render `#cloud-config` user-data. Pure: reads templates, does no other I/O.

Values that reach a shell are quoted by the `q` filter (shlex.quote); the cloud-config document
itself is a Python structure serialised by PyYAML, never text pasted together.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from importlib import resources
from typing import Callable
from urllib.parse import urlsplit

import jinja2
import yaml

from ..agents import AGENT_SESSION
from ..backup.target import BackupTarget, vm_config_text
from ..caddy import Login, WebAccess, render_caddyfile
from ..caddy.auth import USER
from ..providers.base import SelfDelete
from ..spec import GitSource, RestoreSource, WorkspaceSpec
from .hostkeys import HostKey
from .install import STAMP_DIR, InstallPlan, plan_of

LIB = "/usr/local/lib/vmgen"


@dataclass(frozen=True)
class RenderOptions:
    host_key: HostKey
    # How the watchdog removes this VM; its secrets land in a root-only file.
    self_delete: SelfDelete = SelfDelete(provider="docker")
    # The store and public recipient for this workspace's backups, if any (never the identity).
    backup: tuple[BackupTarget, str] | None = None
    # With a domain: the web login, of which only the bcrypt hash reaches the VM.
    web_login: Login | None = None
    # Replaced in printed output (`vmgen render`): host key, tokens and store keys are secret.
    redact_secrets: bool = False

# Claude Code hook events the watchdog follows (see vmside/idlewatch/agent.py).
CLAUDE_HOOK_EVENTS = ("UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "Notification")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def _load_template(name: str) -> str:
    return resources.files("vmgen.cloudinit_templates").joinpath(name).read_text()


def render_user_data(spec: WorkspaceSpec, options: RenderOptions) -> str:
    env = _environment()
    context = _template_context(spec)

    def rendered(name: str) -> str:
        return env.get_template(name).render(**context)

    files = [
        _file("/etc/ssh/sshd_config.d/60-vmgen.conf", _load_template("sshd-vmgen.conf")),
        _file("/etc/fail2ban/jail.d/vmgen.local", _load_template("fail2ban-jail.local")),
        _file(f"{LIB}/provision.sh", rendered("provision.sh.j2"), mode="0755"),
        _file(f"{LIB}/agent-session", rendered("agent-session.sh.j2"), mode="0755"),
        _file(f"{LIB}/agent-run", rendered("agent-run.sh.j2"), mode="0755"),
        _file("/etc/systemd/system/vmgen-agent.service", rendered("vmgen-agent.service.j2")),
        _file("/etc/systemd/system/vmgen-agent.path", _load_template("vmgen-agent.path")),
        _file("/etc/vmgen/workspace.json", json.dumps(_workspace_record(spec), indent=2) + "\n"),
        _file("/etc/vmgen/idlewatch.toml", _idlewatch_toml(spec, options.self_delete)),
        _file("/etc/systemd/system/vmgen-idlewatch.service", _load_template("vmgen-idlewatch.service")),
        _file("/etc/systemd/system/vmgen-metadata-guard.service",
              env.get_template("vmgen-metadata-guard.service.j2").render(
                  metadata_blocks=options.self_delete.metadata_blocks)),
        _file(f"{LIB}/agent-event", _load_template("agent-event"), mode="0755"),
        _file("/etc/tmpfiles.d/vmgen.conf", _load_template("tmpfiles-vmgen.conf")),
        _file("/etc/systemd/system/vmgen-web.service", _load_template("vmgen-web.service")),
        _file("/etc/vmgen/web.json", json.dumps(_web_links(spec), indent=2) + "\n"),
        *_caddy_files(spec, options, rendered),
        *_desktop_files(spec),
        *(_file(f"/etc/systemd/system/{unit}", _load_template(unit)) for unit in
          ("vmgen-backup.path", "vmgen-backup.service", "vmgen-restore.path", "vmgen-restore.service")),
        *_agent_seed_files(spec),
    ]
    if options.backup is not None:
        target, recipient = options.backup
        if options.redact_secrets:
            target = replace(target, access_key_id="<redacted>" if target.access_key_id else "",
                             secret_access_key="<redacted>" if target.secret_access_key else "")
        files.append(_file("/etc/vmgen/backup.toml", vm_config_text(target, spec.name, recipient), mode="0600"))
    if isinstance(spec.source, RestoreSource):
        request = {"workspace": spec.source.workspace, "backup_id": spec.source.backup_id}
        files.append(_file("/etc/vmgen/restore.json", json.dumps(request) + "\n"))
    if options.self_delete.secrets:
        secrets = "".join(f"{key}={'<redacted>' if options.redact_secrets else value}\n"
                          for key, value in options.self_delete.secrets)
        files.append(_file("/etc/vmgen/provider.env", secrets, mode="0600"))
    host_private = "<generated per launch>" if options.redact_secrets else options.host_key.private_openssh
    config = {
        "hostname": spec.name,
        "disable_root": True,
        "ssh_pwauth": False,
        "users": [
            {
                "name": "agent",
                "gecos": "vmgen coding agent",
                "shell": "/bin/bash",
                "lock_passwd": True,
                "groups": ["adm"],
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
        "runcmd": [["bash", f"{LIB}/provision.sh"]],
    }
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    return "#cloud-config\n" + body


def render_bake_script(plan: InstallPlan) -> str:
    """The install steps alone, each recording its stamp: what Packer or the docker provider runs
    on a fresh VM before snapshotting it."""
    return _environment().get_template("bake.sh.j2").render(**_install_context(plan))


def render_bake_user_data(plan: InstallPlan) -> str:
    """Cloud-config that bakes on first boot (for builders that boot a VM with user-data)."""
    config = {
        "write_files": [_file(f"{LIB}/bake.sh", render_bake_script(plan), mode="0755")],
        "runcmd": [["bash", f"{LIB}/bake.sh"]],
    }
    return "#cloud-config\n" + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1000)


def _install_context(plan: InstallPlan) -> dict[str, object]:
    vmgen = plan.vmgen
    return {
        "packages": plan.packages,
        "stamps": plan.stamp,
        "stamp_dir": STAMP_DIR,
        "agent_install": plan.agent_install,
        "code_ui_install": plan.code_ui_install,
        "vmgen_version": vmgen.version,
        "vmgen_requirement": f"vmgen=={vmgen.version}",
        "vmgen_index_url": vmgen.index_url,
        "vmgen_find_links": vmgen.find_links_on_vm,
        # pip refuses plain-HTTP locations unless the host is named as trusted.
        "vmgen_trusted_host": urlsplit(vmgen.find_links).hostname if vmgen.find_links.startswith("http://") else "",
    }


def _web_links(spec: WorkspaceSpec) -> dict[str, object]:
    """What the workspace page links to (nothing without a domain: `vmgen open` tunnels)."""
    if not spec.host:
        return {}
    return {"url": f"https://{spec.host}/", "code_url": f"https://code.{spec.host}/",
            "desktop_url": f"https://desktop.{spec.host}/vnc.html?autoconnect=1&resize=remote" if spec.desktop else "",
            "previews": {str(port): f"https://p{port}.{spec.host}/" for port in spec.web.preview_ports}}


def _caddy_files(spec: WorkspaceSpec, options: RenderOptions,
                 rendered: Callable[[str], str]) -> list[dict[str, object]]:
    if not spec.host:
        return []
    if options.web_login is None and not options.redact_secrets:
        raise ValueError("a workspace with a domain needs its web login")
    login = options.web_login
    web = WebAccess(host=spec.host, user=login.user if login else USER,
                    password_hash="<bcrypt hash, generated per launch>" if options.redact_secrets or not login
                    else login.password_hash,
                    tls=spec.web.tls, acme_email=spec.web.acme_email, code=True, desktop=spec.desktop,
                    preview_ports=spec.web.preview_ports)
    return [_file("/etc/vmgen/Caddyfile", render_caddyfile(web), mode="0644"),
            _file("/etc/systemd/system/vmgen-caddy.service", _load_template("vmgen-caddy.service")),
            # The code UI's own login is seeded with the same user and hash (root-only).
            _file("/etc/vmgen/web-user", f"{web.user} {web.password_hash}\n", mode="0600"),
            _file(f"{LIB}/code-ui-install", rendered("code-ui-install.sh.j2"), mode="0755"),
            _file(f"{LIB}/bind-localhost.cjs", _load_template("bind-localhost.cjs")),
            _file("/etc/systemd/system/vmgen-code-ui-install.service", _load_template("vmgen-code-ui-install.service")),
            _file("/etc/systemd/system/vmgen-code-ui.service", _load_template("vmgen-code-ui.service"))]


DESKTOP_UNITS = ("vmgen-desktop-xvfb.service", "vmgen-desktop-wm.service", "vmgen-desktop-vnc.service",
                 "vmgen-desktop-novnc.service")


def _desktop_files(spec: WorkspaceSpec) -> list[dict[str, object]]:
    return [_file(f"/etc/systemd/system/{unit}", _load_template(unit)) for unit in DESKTOP_UNITS] if spec.desktop else []


def _template_context(spec: WorkspaceSpec) -> dict[str, object]:
    git = spec.source if isinstance(spec.source, GitSource) else None
    return {
        **_install_context(plan_of(spec)),
        "name": spec.name,
        "agent": spec.agent.name,
        "session": AGENT_SESSION,
        "repo_dir": spec.repo_dir,
        "git_url": git.url if git else "",
        "git_branch": git.branch if git and git.branch else "",
        "restoring": isinstance(spec.source, RestoreSource),
        "web_domain": spec.web.domain,
        "desktop": spec.desktop,
        "start": spec.agent.start,
        "resume": spec.agent.resume,
        "has_conversation": spec.agent.has_conversation(spec.repo_dir),
    }


def _idlewatch_toml(spec: WorkspaceSpec, self_delete: SelfDelete) -> str:
    """Every value is vmgen's own (validated numbers, fixed words, provider URLs); strings are
    written as JSON strings, which TOML reads the same."""
    w = spec.watchdog
    values: dict[str, object] = {
        "name": spec.name,
        "idle_minutes": spec.idle_minutes,
        "warn_minutes": w.warn_minutes,
        "human_minutes": w.human_minutes,
        "interval_seconds": w.interval_seconds,
        "max_lifetime_hours": w.max_lifetime_hours,
        "action": w.action,
        "dry_run": w.dry_run,
        "provider": self_delete.provider,
        "workspace": spec.repo_dir,
    }
    if w.webhook_url:
        values["webhook_url"] = w.webhook_url
    if self_delete.metadata_url:
        values["metadata_url"] = self_delete.metadata_url
    if self_delete.api_endpoint:
        values["hcloud_endpoint"] = self_delete.api_endpoint
    if spec.web.domain and dict(self_delete.secrets).get("CLOUDFLARE_API_TOKEN"):
        values["dns_zone"] = spec.web.domain
        values["dns_endpoint"] = self_delete.dns_endpoint
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def _workspace_record(spec: WorkspaceSpec) -> dict[str, object]:
    """What vmside reads on the VM to know which workspace it serves."""
    return {
        "name": spec.name,
        "agent": spec.agent.name,
        "repo_dir": spec.repo_dir,
        "source": spec.source.describe(),
        "idle_minutes": spec.idle_minutes,
        "desktop": spec.desktop,
        "vmgen_version": spec.vmgen.version,
    }


def _agent_seed_files(spec: WorkspaceSpec) -> list[dict[str, object]]:
    """Pre-answered first-run dialogs, so the agent starts unattended at its prompt."""
    if spec.agent.name != "claude":
        return []
    state = {
        "hasCompletedOnboarding": True,
        # Trust is per exact directory; a parent folder does not cover the repository.
        "projects": {spec.repo_dir: {"hasTrustDialogAccepted": True}},
    }
    hooks = {
        event: [{"matcher": "*", "hooks": [{"type": "command", "command": f"{LIB}/agent-event {event}"}]}]
        for event in CLAUDE_HOOK_EVENTS
    }
    settings = {
        "skipDangerousModePermissionPrompt": True,
        "hooks": hooks,
        # The pinned version stays pinned, and nothing but the model API is contacted.
        "env": {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
    }
    return [
        _file("/home/agent/.claude.json", json.dumps(state, indent=2) + "\n", owner="agent:agent",
              mode="0600", defer=True),
        _file("/home/agent/.claude/settings.json", json.dumps(settings, indent=2) + "\n",
              owner="agent:agent", mode="0600", defer=True),
    ]


def _file(path: str, content: str, *, mode: str = "0644", owner: str = "root:root",
          defer: bool = False) -> dict[str, object]:
    entry: dict[str, object] = {"path": path, "content": content, "owner": owner, "permissions": mode}
    if defer:
        entry["defer"] = True
    return entry
