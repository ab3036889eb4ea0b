"""Commands on existing workspaces: list, sizes, connect, send, ssh, stop, start, destroy."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import click
from rich.table import Table

from ...backup.target import open_store, target_from_settings
from ...contract.documents import WatchdogState
from ...errors import AgentCannotWork, UsageError, VmgenError, WorkspaceNotFound
from ..agent_screen import why_prompts_are_lost
from ..cost import found_gone, observed, started_at, stopped_at
from ..deploykeys import forget_key
from ..forwards import stop_background
from ..identities import backups_encrypted_to, discard_identity, has_identity, identity_path
from ..owner import describe_owner, owned
from ..providers import PROVIDERS, Provider, Workspace, shares_local_folders
from ..sessions import attach_argv, parse_windows, validate_window_name
from ..spec import resolve_agent
from ..ssh import default_identities, interactive, remote
from ..state import WorkspaceRecord, WorkspaceState, all_records, busy_with, name_lock
from ..targets import target_of, wait_until_agent_back
from ..workspace_client import SshWorkspaceClient
from .access import forget_ssh_entries, github_deploy_keys, offer_ssh_entry, print_connect_lines
from .app import (
    age,
    age_seconds,
    err,
    existing,
    main,
    out,
    progress,
    provider_named,
    provider_of,
    running_target,
    settings,
)
from .host_option import host_option, use_host
from .picker import choose_workspace, in_a_terminal, pick_window


@main.command(name="list")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Only this provider.")
@click.option("--all", "everyone", is_flag=True, help="Everyone's on a shared engine or project, not only yours.")
def list_(provider: str | None, everyone: bool) -> None:
    """Your workspaces: status, address, age; and what is left of any that are gone."""
    records = {r.name: r for r in all_records()}
    names = {provider} if provider else {settings().provider} | {r.provider for r in records.values()}
    table = Table(box=None, header_style="bold")
    for column in (
        "NAME",
        "PROVIDER",
        "STATUS",
        "ADDRESS",
        "TYPE",
        "AGE",
        "PER HOUR",
        *(["OWNER"] if everyone else []),
    ):
        table.add_column(column)
    now = datetime.now(UTC)
    existing: set[str] = set()  # on a provider, shown or not: their local state is no leftover
    hidden = leftovers = kept = 0
    notes: list[str] = []  # one line per workspace that needs more than its status
    shown: list[Workspace] = []

    def mine(name: str, owner: str, made_by: str) -> bool:
        if everyone:
            return True
        verdict = owned(owner, made_by)
        # Made before owner ids (or owners): this user's if they launched it (their local state).
        return verdict if verdict is not None else name in records

    def owner_column(owner: str, made_by: str) -> list[str]:
        return [describe_owner(owner, made_by)] if everyone else []

    for chosen in (provider_named(p) for p in sorted(names)):
        for w in chosen.workspaces():
            existing.add(w.name)
            if not mine(w.name, w.owner, w.owner_id):
                hidden += 1
                continue
            address = f"{w.ssh.host}:{w.ssh.port}" if w.ssh else (w.address or "-")
            price = per_hour(w.price_hourly, chosen.currency)
            if w.name in records and owned(w.owner, w.owner_id) is not False:
                # What `vmgen cost` counts it by: its price, a stop or start made outside vmgen.
                state = WorkspaceState(w.name)
                state.record_uptime(observed(state.uptime(), w, chosen.currency, now.timestamp()))
            status, what = str(w.status), w.server_type
            if owned(w.owner, w.owner_id) is not False and WorkspaceState(w.name).cut_short():
                # A launch that never came up: still running (another vmgen), or cut short.
                doing = busy_with(w.name)
                status, what = (doing, what) if doing else ("leftover", f"{w.status} {what}, never came up")
                leftovers += 0 if doing else 1
            elif w.stopped_by is not None:
                status = "stopped (idle)"
                notes.append(idle_stop_note(w, now.timestamp()))
            elif w.running and w.name in records:  # its pinned host key is here
                shown.append(w)
            row = [w.name, w.provider, status, address, what, age(now - w.created_at), price]
            table.add_row(*row, *owner_column(w.owner, w.owner_id))
        for left in chosen.leftovers():
            existing.add(left.name)
            if mine(left.name, left.owner, left.owner_id):
                row = [left.name, chosen.name, "leftover", "-", left.what, "-", "-"]
                table.add_row(*row, *owner_column(left.owner, left.owner_id))
                leftovers += 1
        for disk in chosen.kept_disks():
            existing.add(disk.name)
            if mine(disk.name, disk.owner, disk.owner_id):
                what = f"snapshot {disk.snapshot}" + (f" ({disk.size_gb:.1f} GB)" if disk.size_gb else "")
                table.add_row(
                    disk.name,
                    chosen.name,
                    "kept",
                    "-",
                    what,
                    age(now - disk.created_at),
                    "-",
                    *owner_column(disk.owner, disk.owner_id),
                )
                kept += 1
    gone = 0
    for record in records.values():
        if record.name not in existing and (provider is None or record.provider == provider):
            if WorkspaceState(record.name).cut_short():
                status, what = "leftover", "local state only"
                leftovers += 1
            else:
                status, what = "gone", "record only"
                gone += 1
                # Deleted by its idle watchdog (or outside vmgen): `ssh vmgen-NAME` has nothing to reach.
                state = WorkspaceState(record.name)
                state.discard(WorkspaceState.SSH_REACH)
                # Its deploy key opens its repository to no one now (the VM held no token to remove it).
                if note := forget_key(state, github_deploy_keys()):
                    notes.append(f"{record.name}: {note}")
                # `vmgen cost` bills it until now, when it was found gone (kept from the first time).
                state.record_uptime(found_gone(state.uptime(), now.timestamp()))
            table.add_row(record.name, record.provider, status, "-", what, "-", "-", *owner_column("", ""))
    forget_ssh_entries()
    notes += idle_warnings(shown)
    if table.row_count:
        out.print(table)
    else:
        err.print("no workspaces; start one with `vmgen launch <repo>`")
    for note in notes:
        err.print(note)
    if leftovers:
        err.print(
            "leftover: what remains of a workspace that is gone or never came up (a launch cut short); "
            "`vmgen destroy NAME` removes it"
        )
    if kept:
        err.print(
            "kept: no verified backup could be made when it went, so its disk was kept as a snapshot (billed "
            "per GB a month); `vmgen restore NAME --snapshot ID` brings it back"
        )
    if gone:
        err.print(
            "gone: deleted since it came up (by its idle watchdog, or outside vmgen); "
            "`vmgen restore NAME` brings it back from its last backup, `vmgen destroy NAME` forgets it"
        )
    if hidden:
        err.print(f"{hidden} workspace(s) of other users not shown (`vmgen list --all` shows them)")


def per_hour(price: float | None, currency: str) -> str:
    """ "0.0119 EUR", "0.0000" (docker bills nothing), "-" (the provider did not say)."""
    if price is None:
        return "-"
    return f"{price:.4f} {currency}".rstrip()


def idle_stop_note(workspace: Workspace, now: float) -> str:
    """What stopped it and the way back, for a workspace its idle watchdog stopped."""
    why = workspace.stopped_by
    assert why is not None
    name = workspace.name
    when = f"{age_seconds(now - why.at)} ago" if why.at else ""
    if why.backup_id:
        return (
            f"{name}: stopped by its idle watchdog {when}, after backup {why.backup_id}; `vmgen start {name}` "
            f"brings it back as it was, or `vmgen destroy {name}` then `vmgen restore {name}` from that backup"
        )
    return (
        f"{name}: stopped by its idle watchdog {when}; its backup failed ({why.backup_error}), its files "
        f"are on its disk: `vmgen start {name}` brings it back"
    )


def idle_warnings(running: list[Workspace]) -> list[str]:
    """The watchdog's warning of each running workspace it is about to act on: a user who is not
    attached to the agent's session sees it here (the watchdog's own state says it)."""
    from concurrent.futures import ThreadPoolExecutor

    from ...contract.verdict_words import what_happens

    identities = default_identities()

    def state_of(workspace: Workspace) -> WatchdogState | None:
        target = target_of(workspace, identities)
        if target is None:
            return None
        try:
            return SshWorkspaceClient(target, workspace.name).status(timeout=10)
        except (VmgenError, subprocess.TimeoutExpired):
            return None  # not reachable now: `vmgen status NAME` says why

    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(pool.map(state_of, running))
    return [
        f"{w.name}: idle; {what_happens(state)} (`vmgen keepalive {w.name} --for 1h` holds it off)"
        for w, state in zip(running, states, strict=True)
        if state is not None and state.verdict.next_action == "warn"
    ]


@main.command()
@click.option("--location", help="Only this location (default: all).")
@click.option("--provider", type=click.Choice(PROVIDERS), help="Whose sizes (default: the configured one).")
@host_option
def sizes(location: str | None, provider: str | None, host: str | None) -> None:
    """The sizes a provider offers per location, with prices from its price source."""
    use_host(provider, host)
    chosen = provider_named(provider)
    table = Table(box=None, header_style="bold")
    for column in ("LOCATION", "TYPE", "PRESET", "VCPU", "RAM GB", "DISK GB", "€/H", "€/MONTH"):
        table.add_column(column)
    for size in chosen.sizes(location):
        table.add_row(
            size.location,
            size.name,
            size.preset,
            str(size.cores),
            f"{size.memory_gb:g}",
            str(size.disk_gb),
            f"{size.price_hourly:.4f}" if size.price_hourly is not None else "-",
            f"{size.price_monthly:.2f}" if size.price_monthly is not None else "-",
        )
    out.print(table)
    err.print(f"prices: {chosen.price_source}")


@main.command()
@click.argument("name", required=False)
@click.option("--session", "window", default="", help="The agent session to show (`vmgen session list`).")
def connect(name: str | None, window: str) -> None:
    """Attach to the agent's tmux session on NAME (detach with Ctrl-b d). In a terminal: without
    NAME, the only workspace or a picker of them; with several agent sessions and no --session,
    a picker of those first."""
    if window:
        validate_window_name(window)
    terminal = in_a_terminal()
    name = name or choose_workspace(all_records(), terminal)
    target = running_target(name)
    index = None
    if not window and terminal:
        windows = parse_windows(SshWorkspaceClient(target, name).windows())
        if len(windows) > 1:
            index = pick_window(windows)
    session = WorkspaceState(name).agent_session
    sys.exit(interactive(target, remote(attach_argv(window, index, session)), tty=True))


@main.command()
@click.argument("name")
@click.argument("prompt")
@click.option(
    "--session",
    "window",
    default="",
    help="The agent session to type into (`vmgen session list`); default: the current one.",
)
def send(name: str, prompt: str, window: str) -> None:
    """Type PROMPT into the agent's pane on NAME and press Enter; refused when no agent there
    could act on it (not running, or at its login screen)."""
    if window:
        validate_window_name(window)
    send_prompt(name, prompt, window)
    err.print(f"sent to {name}" + (f" (session {window})" if window else ""))


def send_prompt(name: str, prompt: str, window: str = "") -> None:
    """`vmgen send` (and the Telegram bot's /send): AgentCannotWork when no agent could act on it;
    into `window`'s pane when given, else the session's current window."""
    client = SshWorkspaceClient(running_target(name), name)
    record = WorkspaceState(name).record()
    agent = resolve_agent(record.agent if record else "claude")
    problem = why_prompts_are_lost(client.agent_screen(agent, window=window), agent, name, window)
    if problem:
        raise AgentCannotWork(f"not sent: {problem}")
    client.type_prompt(prompt, window)


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
    state = WorkspaceState(name)
    state.record_uptime(stopped_at(state.uptime(), time.time()))  # from now it is not billed (`vmgen cost`)
    err.print(f"stopped {name}: {provider.stop_note()}")


@main.command()
@click.argument("name")
def start(name: str) -> None:
    """Start NAME again; the agent resumes its conversation."""
    provider, found = existing(name)
    state = WorkspaceState(name)
    record = state.record()
    agent = resolve_agent(record.agent if record else "claude")
    with progress(f"starting {name}") as update:
        # Its idle watchdog's stop (if no list or cost saw it), then this start: `vmgen cost`'s count.
        log = observed(state.uptime(), found, provider.currency, time.time())
        provider.start(name)
        state.record_uptime(started_at(log, time.time()))
        target = wait_until_agent_back(provider, name, default_identities(), update)
        client = SshWorkspaceClient(target, name)
        if settings().budget_month > 0:
            update("handing the workspace its share of budget_month")
            hand_budget(provider, name, client)
        update("waiting for the watchdog's first verdict")
        client.first_verdict(60, agent.watched)
    # Its SSH port may be another one now (docker publishes a free one at each start).
    offered = offer_ssh_entry(name, target.endpoint, target.identities)
    err.print(f"[green]ready[/]: {name}; connect with `vmgen connect {name}`")
    print_connect_lines(name, record.repo_dir if record else "", offered)


def hand_budget(provider: Provider, name: str, client: SshWorkspaceClient) -> None:
    """This month's share of the budget as of now (the other workspaces have spent since launch,
    or a month began), signed with the key the launch gave root; a workspace that cannot take
    one keeps the allowance it has, which is said, not failed."""
    from ...contract.budgetgrant import grant_text, sign
    from ..cost import grant_for, totals
    from .cost_cmd import month_lines

    key = WorkspaceState(name).budget_key()
    if not key:
        err.print(f"[yellow]note:[/] {name} was launched by an older vmgen: it keeps the budget it was launched with")
        return
    now = datetime.now(UTC)
    found = provider.get(name)
    s = settings()
    grant = grant_for(
        name,
        s.budget_month,
        s.budget_action,
        totals(month_lines(now), leave_out=name),
        found.price_hourly if found else None,
        provider.currency,
        now,
    )
    text = grant_text(grant)
    try:
        client.budget_grant(text, sign(text, key))
    except VmgenError as exc:
        err.print(f"[yellow]note:[/] {name} keeps the budget it had: {exc}")


@main.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
def destroy(name: str, yes: bool) -> None:
    """Delete NAME: the VM, its disk and its local state (or what is left of them); its backup
    identity too, unless backups need it."""
    provider = provider_of(name)
    with name_lock(name, "destroying"):
        state = WorkspaceState(name)
        workspace = provider.get(name)
        left = [leftover.what for leftover in provider.leftovers(name)] + (["local state"] if state.any_left() else [])
        if workspace is None and not left:
            raise WorkspaceNotFound(f"no workspace named {name!r} (see `vmgen list`)")
        if not yes:
            # Piped input is not an answer a person gave (`echo n | vmgen destroy` must not destroy).
            if not sys.stdin.isatty():
                raise UsageError(f"destroying {name!r} needs confirmation: without a terminal, pass --yes")
            question = (
                f"Delete workspace {name!r} and everything on it?"
                if workspace is not None
                else f"Remove what is left of workspace {name!r} ({', '.join(left)})?"
            )
            click.confirm(question, abort=True)
        record = state.record()
        with progress(f"destroying {name}"):
            # Before the workspace goes: its ssh would end by itself, unsaid, once the connection drops.
            forwards = stop_background(name)
            later = provider.delete(name)
            dns_left = (
                "; ".join(
                    note for host in (record.host, record.preview_host) if host and (note := remove_dns(name, host))
                )
                if record
                else ""
            )
            identity = settle_identity(name, state, record)
            deploy_key = forget_key(state, github_deploy_keys())
            state.remove()
            forget_ssh_entries()
    notes = [note for note in (later, dns_left, identity, deploy_key) if note]
    if forwards:
        notes.append(f"stopped its background forward(s) ({', '.join(record.describe() for record in forwards)})")
    err.print(f"destroyed {name}" + "".join(f"; {note}" for note in notes))


def settle_identity(name: str, state: WorkspaceState, record: WorkspaceRecord | None) -> str:
    """The workspace's backup identity goes with it when nothing was encrypted to it; when backups
    were, it stays (they are restorable with it alone), and the user hears which and how many."""
    if not has_identity(name):
        return ""
    if state.has(WorkspaceState.NEW_IDENTITY):
        discard_identity(name)
        return "its backup identity went with it (it never came up: nothing was encrypted to it)"
    target = target_from_settings(settings(), shares_local_folders(record.provider if record else settings().provider))
    kept = f"kept its backup identity {identity_path(name)}"
    if target is None:
        return f"{kept}: no backup store is configured to tell whether backups need it (`vmgen identities`)"
    try:
        needed = backups_encrypted_to(name, open_store(target))
    except VmgenError as exc:
        return f"{kept}: the store could not be read to tell whether backups need it ({exc})"
    if needed:
        return (
            f"{kept}: {needed} backup(s) in {target.describe()} need it (`vmgen restore {name}` brings it back; "
            f"`vmgen identities rm {name}` removes it and makes them unreadable)"
        )
    if record is not None and record.backup_store == target.describe():
        discard_identity(name)
        return f"its backup identity went with it (no backup in {target.describe()} was encrypted to it)"
    launched_with = record.backup_store if record and record.backup_store else "a store this vmgen did not record"
    return (
        f"{kept}: no backup in {target.describe()} needs it, but it was launched with {launched_with}; "
        f"`vmgen identities rm {name}` removes it"
    )


def remove_dns(name: str, host: str) -> str:
    """The workspace's DNS records go with it; a DNS failure does not keep the server alive."""
    from ...dns import DEFAULT_ENDPOINT, CloudflareDns
    from ...errors import DnsError

    s = settings()
    zone = host.split(".", 1)[1]
    try:
        CloudflareDns(s.cloudflare_api_token, zone, s.cloudflare_endpoint or DEFAULT_ENDPOINT).remove_workspace(name)
    except DnsError as exc:
        return f"its DNS records in {zone} could not be removed ({exc}); remove {host} and *.{host} by hand"
    return ""
