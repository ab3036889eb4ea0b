"""Commands on existing workspaces: list, sizes, connect, send, ssh, stop, start, destroy."""

from __future__ import annotations

import contextlib
import re
import sys
from datetime import UTC, datetime

import click
from rich.table import Table

from ..agents import AGENT_SESSION
from ..errors import UsageError, VmgenError, WorkspaceNotFound
from ..providers import PROVIDERS, get_provider
from ..ssh import SSHTarget, default_identities, interactive, remote, run
from ..state import WorkspaceState, all_records
from ..targets import wait_until_agent_back
from .app import age, err, existing, main, out, progress, provider_named, provider_of, running_target, settings


@main.command(name="list")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Only this provider.")
def list_(provider: str | None) -> None:
    """Every workspace: status, address, age."""
    names = {provider} if provider else {settings().provider} | {r.provider for r in all_records()}
    workspaces = [w for p in sorted(names) for w in provider_named(p).workspaces()]
    if not workspaces:
        err.print("no workspaces; start one with `vmgen launch <repo>`")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "PROVIDER", "STATUS", "ADDRESS", "TYPE", "AGE", "€/H"):
        table.add_column(column)
    now = datetime.now(UTC)
    for w in workspaces:
        address = f"{w.ssh.host}:{w.ssh.port}" if w.ssh else (w.address or "-")
        price = f"{w.price_hourly:.4f}" if w.price_hourly is not None else "-"
        table.add_row(w.name, w.provider, w.status, address, w.server_type, age(now - w.created_at), price)
    out.print(table)


@main.command()
@click.option("--location", help="Only this location (default: all).")
def sizes(location: str | None) -> None:
    """Hetzner server types per location, with prices from the API."""
    from ..providers.hetzner import HetznerProvider
    from ..providers.hetzner_sizes import PRESETS, choose_type

    provider = get_provider("hetzner", settings())
    assert isinstance(provider, HetznerProvider)
    table = Table(box=None, header_style="bold")
    for column in ("LOCATION", "TYPE", "PRESET", "VCPU", "RAM GB", "DISK GB", "€/H", "€/MONTH"):
        table.add_column(column)
    for loc in [location] if location else provider.locations():
        offers = [o for o in provider.offers(loc) if o.usable]
        presets = {}
        for preset in PRESETS:
            with contextlib.suppress(VmgenError):
                presets[choose_type(offers, preset, loc).name] = preset
        for o in sorted(offers, key=lambda o: (o.cores, o.memory_gb, o.name)):
            table.add_row(
                loc,
                o.name,
                presets.get(o.name, ""),
                str(o.cores),
                f"{o.memory_gb:g}",
                str(o.disk_gb),
                f"{o.price_hourly:.4f}",
                f"{o.price_monthly:.2f}",
            )
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
    script = (
        f"prev=; for i in $(seq {int(timeout * 2)}); do cur=$(tmux capture-pane -p -t {AGENT_SESSION}); "
        '[ -n "$(printf %s "$cur" | tr -d "[:space:]")" ] && [ "$cur" = "$prev" ] && exit 0; '
        "prev=$cur; sleep 0.5; done; exit 1"
    )
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
    record = state.record()
    with progress(f"destroying {name}"):
        later = provider.delete(name)
        left = remove_dns(name, record.host) if record and record.host else ""
        state.remove()
    notes = [note for note in (later, left) if note]
    err.print(f"destroyed {name}" + "".join(f"; {note}" for note in notes))


def remove_dns(name: str, host: str) -> str:
    """The workspace's DNS records go with it; a DNS failure does not keep the server alive."""
    from ..dns import DEFAULT_ENDPOINT, CloudflareDns, DnsError

    s = settings()
    zone = host.split(".", 1)[1]
    try:
        CloudflareDns(s.cloudflare_api_token, zone, s.cloudflare_endpoint or DEFAULT_ENDPOINT).remove_workspace(name)
    except DnsError as exc:
        return f"its DNS records in {zone} could not be removed ({exc}); remove {host} and *.{host} by hand"
    return ""
