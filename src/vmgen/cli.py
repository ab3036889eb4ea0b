"""The `vmgen` command. Every vmgen error becomes one line on stderr and a non-zero exit."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from .backup.target import BackupTarget, target_from_settings
from .builder import RenderOptions, check_schema, check_size, generate_host_key, render_user_data
from .builder.render import AGENT_SESSION
from .config import Settings, load_settings
from .errors import UsageError, VmgenError, WorkspaceNotFound, WorkspaceNotRunning
from .handover import laptop_extras
from .identities import ensure_identity
from .launch import LaunchOptions, launch as launch_workspace, target_of, wait_until_agent_back
from .providers import PROVIDERS, USER_DATA_LIMITS, Provider, Workspace, get_provider
from .providers.base import SelfDelete
from .spec import WATCHDOG_ACTIONS, VmgenInstall, WatchdogTuning, make_spec, validate_name
from .ssh import SSHTarget, default_identities, interactive, remote, run
from .state import WorkspaceState, all_records
from .vmside import leases
from .vmside.cli import vmside

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


class VmgenGroup(click.Group):
    """Turns vmgen's own exceptions into one clear line and the exception's exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VmgenError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            ctx.exit(130)


@click.group(cls=VmgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vmgen")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Personal cloud workspaces for coding agents."""
    ctx.obj = None


def settings() -> Settings:
    ctx = click.get_current_context()
    root = ctx.find_root()
    if root.obj is None:
        root.obj = load_settings()
    return root.obj


@contextmanager
def progress(title: str) -> Iterator:
    started = time.monotonic()
    with err.status(title) as status:
        def update(message: str) -> None:
            status.update(f"{title}: {message} [dim]({time.monotonic() - started:.0f}s)[/]")
        yield update


def provider_named(name: str | None) -> Provider:
    return get_provider(name or settings().provider, settings())


def provider_of(name: str) -> Provider:
    """The provider a workspace lives on: recorded at launch, else the configured default."""
    validate_name(name)
    record = WorkspaceState(name).record()
    return provider_named(record.provider if record else None)


def existing(name: str) -> tuple[Provider, Workspace]:
    """The provider NAME lives on and the workspace itself; a clear error when there is none."""
    provider = provider_of(name)
    workspace = provider.get(name)
    if workspace is None:
        raise WorkspaceNotFound(f"no workspace named {name!r} (see `vmgen list`)")
    return provider, workspace


def running_target(name: str) -> SSHTarget:
    _, workspace = existing(name)
    target = target_of(workspace, default_identities())
    if not workspace.running or target is None:
        raise WorkspaceNotRunning(f"workspace {name!r} is {workspace.status}; start it with `vmgen start {name}`")
    return target


def agent_env(s: Settings, agent_variables: tuple[str, ...]) -> dict[str, str]:
    import os

    known = {"ANTHROPIC_API_KEY": s.anthropic_api_key, "ANTHROPIC_BASE_URL": s.anthropic_base_url}
    return {var: known.get(var) or os.environ.get(var, "") for var in agent_variables}


def spec_options(function):
    options = [
        click.option("--name", help="Workspace name (default: from the repository)."),
        click.option("--provider", type=click.Choice(sorted(USER_DATA_LIMITS)), help="Where to run it."),
        click.option("--agent", help="claude (default), codex, aider, gemini or opencode."),
        click.option("--agent-version", help="Version pin for the agent CLI (default: latest)."),
        click.option("--size", help="Size preset: small, medium or large."),
        click.option("--type", "server_type", help="An explicit server type (e.g. cx33); overrides --size."),
        click.option("--region", help="Region / location."),
        click.option("--image", help="Base image or snapshot."),
        click.option("--idle-minutes", type=int, help="Minutes of idleness before the workspace is stopped."),
        click.option("--idle-action", type=click.Choice(WATCHDOG_ACTIONS),
                     help="What the watchdog does once idle (default: backup-then-delete with a backup store, "
                          "else poweroff)."),
        click.option("--desktop/--no-desktop", default=None, help="Install the noVNC desktop."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def build_spec(source, opts: dict, backup: BackupTarget | None = None):
    s = settings()
    action = opts.get("idle_action") or s.idle_action
    if action == "auto":
        action = "backup-then-delete" if backup is not None else "poweroff"
    elif action == "backup-then-delete" and backup is None:
        raise UsageError("idle action 'backup-then-delete' needs a backup store (r2_bucket, or the docker provider)")
    spec = make_spec(
        source,
        name=opts.get("name"),
        agent=opts.get("agent") or s.agent,
        agent_version=opts.get("agent_version") or s.agent_version,
        size=opts.get("server_type") or opts.get("size") or s.size,
        region=opts.get("region") or s.region,
        image=opts.get("image") or s.image,
        idle_minutes=opts["idle_minutes"] if opts.get("idle_minutes") is not None else s.idle_minutes,
        desktop=opts["desktop"] if opts.get("desktop") is not None else s.desktop,
        configured_keys=s.ssh_public_keys,
        watchdog=WatchdogTuning(action=action, warn_minutes=s.idle_warn_minutes,
                                human_minutes=s.idle_human_minutes, interval_seconds=s.idle_interval_seconds,
                                max_lifetime_hours=s.max_lifetime_hours, webhook_url=s.idle_webhook_url),
        vmgen=VmgenInstall(version=s.vmgen_version or __version__, index_url=s.vmgen_index_url,
                           find_links=s.vmgen_find_links),
    )
    if backup is not None and backup.kind == "local":
        spec = dataclasses.replace(spec, local_backup_dir=Path(backup.path))
    return spec


@main.command()
@click.argument("source")
@spec_options
@click.option("--copy-claude-login", is_flag=True, help="Copy this machine's Claude Code login to the workspace.")
@click.option("--keep-on-failure", is_flag=True, help="Keep the workspace for inspection if the launch fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (with step timings).")
def launch(source: str, copy_claude_login: bool, keep_on_failure: bool, as_json: bool, **opts) -> None:
    """Launch a workspace for SOURCE (git URL with optional #branch, or a local directory)."""
    provider = provider_named(opts.get("provider"))
    target = target_from_settings(settings(), provider.name)
    spec = build_spec(source, opts, target)
    credentials, gitconfig = laptop_extras(copy_claude_login)
    options = LaunchOptions(
        agent_env=agent_env(settings(), spec.agent.key_variables),
        backup=(target.on_vm(), ensure_identity(spec.name)) if target is not None else None,
        identities=default_identities(),
        claude_credentials=credentials,
        gitconfig=gitconfig,
        keep_on_failure=keep_on_failure,
    )
    started = time.monotonic()
    with progress(f"launching {spec.name}") as update:
        result = launch_workspace(spec, provider, options, update)
    elapsed = time.monotonic() - started
    if as_json:
        out.print_json(json.dumps({"name": spec.name, "provider": provider.name, "seconds": round(elapsed, 1),
                                   "timings": result.timings,
                                   "phases": [{"name": p.name, "at": p.at} for p in result.phases]}))
        return
    err.print(f"[green]ready[/]: {spec.name} on {provider.name} in {elapsed:.0f}s ({spec.agent.name} runs in tmux session '{AGENT_SESSION}')")
    err.print(f"  connect:  vmgen connect {spec.name}")
    err.print(f"  prompt:   vmgen send {spec.name} \"...\"")
    err.print(f"  shell:    vmgen ssh {spec.name}")


@main.command()
@spec_options
@click.argument("source")
def render(source: str, **opts) -> None:
    """Print the cloud-init user-data for SOURCE; nothing is created."""
    spec = build_spec(source, opts)
    provider = opts.get("provider") or settings().provider
    # Rendering contacts no provider: the self-delete settings are shown with secrets redacted.
    self_delete = SelfDelete(provider, secrets=(("HCLOUD_TOKEN", "x"),) if provider == "hetzner" else ())
    user_data = render_user_data(spec, RenderOptions(host_key=generate_host_key(), self_delete=self_delete,
                                                     redact_secrets=True))
    check_size(user_data, USER_DATA_LIMITS[provider], provider)
    check_schema(user_data)
    click.echo(user_data, nl=False)


@main.command(name="list")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Only this provider.")
def list_(provider: str | None) -> None:
    """Every workspace: status, address, age."""
    names = {provider} if provider else {settings().provider} | {r.provider for r in all_records()}
    workspaces = [w for p in sorted(names) for w in provider_named(p).list()]
    if not workspaces:
        err.print("no workspaces; start one with `vmgen launch <repo>`")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PROVIDER", "STATUS", "ADDRESS", "TYPE", "AGE", "€/H"):
        table.add_column(column)
    now = datetime.now(timezone.utc)
    for w in workspaces:
        address = f"{w.ssh.host}:{w.ssh.port}" if w.ssh else (w.address or "-")
        price = f"{w.price_hourly:.4f}" if w.price_hourly is not None else "-"
        table.add_row(w.name, w.provider, w.status, address, w.server_type, age(now - w.created_at), price)
    out.print(table)


def age(delta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@main.command()
@click.option("--location", help="Only this location (default: all).")
def sizes(location: str | None) -> None:
    """Hetzner server types per location, with prices from the API."""
    from .providers.hetzner import HetznerProvider
    from .providers.hetzner_sizes import PRESETS, choose_type

    provider = get_provider("hetzner", settings())
    assert isinstance(provider, HetznerProvider)
    table = Table(box=None, header_style="bold")
    for column in ("LOCATION", "TYPE", "PRESET", "VCPU", "RAM GB", "DISK GB", "€/H", "€/MONTH"):
        table.add_column(column)
    for loc in [location] if location else provider.locations():
        offers = [o for o in provider.offers(loc) if o.usable]
        presets = {}
        for preset in PRESETS:
            try:
                presets[choose_type(offers, preset, loc).name] = preset
            except VmgenError:
                pass
        for o in sorted(offers, key=lambda o: (o.cores, o.memory_gb, o.name)):
            table.add_row(loc, o.name, presets.get(o.name, ""), str(o.cores), f"{o.memory_gb:g}", str(o.disk_gb),
                          f"{o.price_hourly:.4f}", f"{o.price_monthly:.2f}")
    out.print(table)


@main.command()
@click.argument("name")
@click.option("--session", default=AGENT_SESSION, show_default=True, help="tmux session to attach or create.")
def connect(name: str, session: str) -> None:
    """Attach to the agent's tmux session on NAME (detach with Ctrl-b d)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", session):
        raise UsageError(f"invalid tmux session name {session!r}")
    target = running_target(name)
    sys.exit(interactive(target, remote(["tmux", "new-session", "-A", "-s", session]), tty=True))


@main.command()
@click.argument("name")
@click.argument("prompt")
def send(name: str, prompt: str) -> None:
    """Type PROMPT into the agent's pane on NAME and press Enter."""
    target = running_target(name)
    wait_for_settled_pane(target)
    run(target, ["tmux", "send-keys", "-t", AGENT_SESSION, "-l", "--", prompt])
    run(target, ["tmux", "send-keys", "-t", AGENT_SESSION, "Enter"])
    err.print(f"sent to {name}")


def wait_for_settled_pane(target: SSHTarget, timeout: float = 60) -> None:
    """Keys typed while the agent's UI is still starting are lost: wait until its pane shows
    something and stops changing (whatever the agent, no knowledge of its screen needed)."""
    script = (f"prev=; for i in $(seq {int(timeout * 2)}); do cur=$(tmux capture-pane -p -t {AGENT_SESSION}); "
              '[ -n "$(printf %s "$cur" | tr -d "[:space:]")" ] && [ "$cur" = "$prev" ] && exit 0; '
              "prev=$cur; sleep 0.5; done; exit 1")
    if run(target, ["bash", "-c", script], check=False, timeout=timeout + 30).returncode != 0:
        raise VmgenError(f"the agent's pane did not settle within {timeout:.0f}s; see `vmgen connect`")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(name: str, command: tuple[str, ...]) -> None:
    """Open a shell on NAME, or run COMMAND there (`vmgen ssh app -- ls`)."""
    target = running_target(name)
    remote_command = " ".join(command)
    sys.exit(interactive(target, remote_command, tty=not command and sys.stdin.isatty()))


@main.command()
@click.argument("name")
def stop(name: str) -> None:
    """Stop NAME; its disk is kept."""
    provider, _ = existing(name)
    with progress(f"stopping {name}"):
        provider.stop(name)
    err.print(f"stopped {name}: {provider.stop_note()}")


@main.command()
@click.argument("name")
def start(name: str) -> None:
    """Start NAME again; the agent resumes its conversation."""
    provider, _ = existing(name)
    with progress(f"starting {name}") as update:
        provider.start(name)
        wait_until_agent_back(provider, name, default_identities(), update)
    err.print(f"[green]ready[/]: {name}; connect with `vmgen connect {name}`")


@main.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def destroy(name: str, yes: bool) -> None:
    """Delete NAME: the VM, its disk and its local state."""
    provider = provider_of(name)
    state = WorkspaceState(name)
    if provider.get(name) is None and not state.exists():
        raise WorkspaceNotFound(f"no workspace named {name!r} (see `vmgen list`)")
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete workspace {name!r} and everything on it?", abort=True)
    with progress(f"destroying {name}"):
        provider.delete(name)
        state.remove()
    err.print(f"destroyed {name}")


@main.command()
@click.argument("name")
@click.option("--for", "duration", required=True, help="How long, e.g. 3h, 90m.")
@click.option("--reason", default="from the laptop", help="Shown in the watchdog's status.")
def keepalive(name: str, duration: str, reason: str) -> None:
    """Hold off NAME's idle watchdog for a while."""
    leases.parse_duration(duration)  # a bad duration is a usage error here, not on the VM
    target = running_target(name)
    result = run(target, ["vmgen", "vmside", "keepalive", "--for", duration, "--reason", reason])
    err.print(result.stdout.decode().strip())


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The raw state as JSON.")
def status(name: str, as_json: bool) -> None:
    """NAME's watchdog: agent state, verdict, idle time, signals, next action."""
    target = running_target(name)
    result = run(target, ["vmgen", "vmside", "status"], check=False)
    try:
        state = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise VmgenError(f"{name}: the watchdog's state cannot be read") from None
    if as_json:
        out.print_json(json.dumps(state))
        return
    if "error" in state:
        raise VmgenError(f"{name}: {state['error']}")
    out.print(format_status(name, state))


def format_status(name: str, state: dict) -> Table:
    verdict = state["verdict"]
    table = Table(box=None, show_header=False)
    now = time.time()
    table.add_row("workspace", name)
    table.add_row("agent", state.get("agent", {}).get("state", "?") + (f" ({state['agent']['detail']})"
                  if state.get("agent", {}).get("detail") else ""))
    table.add_row("verdict", "busy" if verdict["busy"] else "idle")
    table.add_row("idle for", age_seconds(verdict["idle_for_seconds"]))
    table.add_row("why", "; ".join(verdict["reasons"]) or "-")
    for source, seen in sorted(state.get("last_seen", {}).items()):
        table.add_row(f"last {source}", f"{age_seconds(now - seen)} ago" if seen else "never")
    when = verdict["action_at"] - now
    table.add_row("next action", f"{verdict['next_action']} " + (f"in {age_seconds(when)}" if when > 0 else "now"))
    if state.get("dry_run"):
        table.add_row("mode", "dry run: logs only")
    return table


def age_seconds(seconds: float) -> str:
    from datetime import timedelta

    return age(timedelta(seconds=max(0, seconds)))


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
def config_show() -> None:
    """Print the effective settings, secrets masked."""
    s = settings()
    table = Table(box=None, show_header=False)
    for key, value in s.masked().items():
        table.add_row(key, json.dumps(value) if not isinstance(value, str) else (value or "-"))
    out.print(table)
    err.print("from: " + (", ".join(s.sources) or "defaults only"))


def _register_more_commands() -> None:
    from .cli_backup import backup, backups, restore

    for command in (vmside, backup, backups, restore):
        main.add_command(command)


_register_more_commands()
