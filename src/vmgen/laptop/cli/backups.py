"""`vmgen backup`, `vmgen backups`, `vmgen restore`: the laptop's side of encrypted backups."""

from __future__ import annotations

import time
from contextlib import nullcontext
from datetime import UTC, datetime

import click
from rich.table import Table

from ...backup.target import open_store, require_target, target_on_vm
from ...contract.names import VM
from ...errors import UsageError, WorkspaceExists
from ..config import notify_secrets
from ..deploykeys import github_repo_of
from ..identities import load_for_restore, recipient_path
from ..providers import PROVIDERS, Provider, Workspace, shares_local_folders
from ..spec import RestoreSource, validate_name
from ..ssh import default_identities
from ..state import WorkspaceState
from ..workspace_client import SshWorkspaceClient
from .access import github_deploy_keys, offer_ssh_entry, print_connect_lines, print_push_line
from .app import age, err, out, progress, provider_named, running_target, settings
from .host_option import host_option, recorded_place, use_host
from .launching import (
    agent_env,
    auto_bake_wanted,
    bake_for_next_time,
    build_spec,
    check_budget,
    deploy_key_owner,
    print_first_verdict,
    print_launch_json,
    print_web_access,
    web_options,
)

LARGE_CHECK = 1 << 30  # hashing a chain of more than this before a restore says so


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


@click.command()
@click.argument("name")
@click.option("--timeout", default=7200, show_default=True, help="Seconds to wait for the backup.")
def backup(name: str, timeout: float) -> None:
    """Back up NAME now (encrypted; the VM holds only the public key)."""
    client = SshWorkspaceClient(running_target(name), name)
    with progress(f"backing up {name}") as update:
        result = client.backup(update, timeout)
    err.print(
        f"[green]backed up[/] {name}: {result.backup_id}, {human_bytes(result.ciphertext_bytes)} stored "
        f"({human_bytes(result.plaintext_bytes)} archived) in {result.seconds:.1f}s"
    )
    if result.parent:
        err.print(
            f"  an increment on {result.parent}: {result.files} new or changed, "
            f"{result.unchanged} unchanged file(s) left to the earlier backups"
        )
    for stat in result.excluded:
        err.print(f"  excluded {stat.pattern}: {stat.files} files, {human_bytes(stat.bytes)}")
    if result.left_out:
        err.print(
            f"  [yellow]left out {result.left_out} file(s) or folder(s) it could not read[/] "
            "(the VM has them, this backup does not):"
        )
        _print_some(result.left_out_paths, result.left_out)
    others = [entry for entry in result.skipped_paths if entry not in result.left_out_paths]
    if result.skipped > result.left_out:
        err.print(f"  skipped {result.skipped - result.left_out} file(s) a backup cannot hold (FIFOs, sockets):")
        _print_some(others, result.skipped - result.left_out)


def _print_some(entries: tuple[str, ...] | list[str], count: int) -> None:
    for entry in entries[:10]:
        err.print(f"    {entry}")
    if count > 10:
        err.print(f"    and {count - 10} more")


@click.command()
@click.argument("name", required=False)
@click.option(
    "--provider", type=click.Choice(PROVIDERS), help="Whose store to read (default: the configured provider)."
)
def backups(name: str | None, provider: str | None) -> None:
    """Every backup in the store (of NAME, or of all workspaces)."""
    from ...backup.manifest import list_backups

    whose = provider or settings().provider
    store_target = require_target(settings(), whose, shares_local_folders(whose))
    found = list_backups(open_store(store_target), name)
    if not found:
        err.print(f"no backups{f' of {name}' if name else ''} in {store_target.describe()}")
        return
    table = Table(box=None, header_style="bold")
    own = set(VM.runtime_excludes)  # vmgen's own files, left out of every backup: not the user's excludes
    for column in ("WORKSPACE", "BACKUP", "KIND", "CREATED", "SIZE", "AGE", "EXCLUDED"):
        table.add_column(column)
    now = datetime.now(UTC)
    for m in found:
        created = datetime.fromisoformat(m.created_at)
        excluded = [e for e in m.summary.excluded if e.entries and e.pattern not in own]
        table.add_row(
            m.workspace,
            m.backup_id,
            f"increment {m.depth} on {m.parent}" if m.is_increment else "full",
            created.strftime("%Y-%m-%d %H:%M"),
            human_bytes(m.ciphertext_bytes),
            age(now - created),
            ", ".join(f"{e.pattern} {human_bytes(e.bytes)}" for e in excluded) or "-",
        )
    out.print(table)


def already_there(there: Workspace, name: str, target_name: str, provider: str) -> str:
    """Why a restore of NAME is refused, and the ways that do work."""
    if target_name != name:
        return f"a workspace named {target_name!r} already exists on {provider}"
    next_to = f"or restore it next to it with `vmgen restore {name} --as NEW`"
    if there.running:
        return f"workspace {name!r} is running on {provider}; {next_to}"
    return (
        f"workspace {name!r} still exists on {provider}, {there.status}: `vmgen start {name}` brings it back "
        f"as it was; to restore it from its backup instead, `vmgen destroy {name}` then `vmgen restore {name}`; "
        + next_to
    )


@click.command()
@click.argument("name")
@click.option("--backup", "backup_id", help="Which backup (default: the latest).")
@click.option("--as", "new_name", help="Restore as a new workspace of this name (next to a running NAME).")
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    help="Where to run it (default: NAME's provider if it ran on your own server, else the configured one).",
)
@host_option
@click.option("--keep-on-failure", is_flag=True, help="Keep the new VM for inspection if the restore fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (with step timings).")
@click.option(
    "--snapshot",
    "snapshot",
    help="From the snapshot NAME's idle action kept of its disk without a backup (where the provider keeps them).",
)
def restore(
    name: str,
    backup_id: str | None,
    new_name: str | None,
    provider: str | None,
    host: str | None,
    keep_on_failure: bool,
    as_json: bool,
    snapshot: str | None,
) -> None:
    """Bring NAME back on a new VM: files, ~/.claude and the agent's conversation."""
    from ...backup.manifest import latest_backup, read_manifest
    from ...backup.pipeline import check_chain, check_local_objects
    from ...errors import WrongIdentity
    from ..launch import LaunchOptions, launch as launch_workspace

    if snapshot:
        if backup_id or new_name:
            raise UsageError("--snapshot brings NAME back as it was: without --backup or --as")
        restore_kept(name, snapshot, provider, host)
        return
    target_name = validate_name(new_name or name)
    chosen = restore_provider(name, provider, host)
    if (there := chosen.get(target_name)) is not None:
        raise WorkspaceExists(already_there(there, name, target_name, chosen.name))
    store_target = require_target(settings(), chosen.name, chosen.shares_local_folders)
    store = open_store(store_target)
    manifest = read_manifest(store, name, backup_id) if backup_id else latest_backup(store, name)
    # A broken or damaged chain is said before a VM is made: every link's manifest, the size
    # and the store's checksum of every object, and, in a local folder, its sha256.
    chain = check_chain(store, manifest)
    large = sum(m.ciphertext_bytes for m in chain) > LARGE_CHECK
    with progress(f"checking the {len(chain)} object(s) of {manifest.backup_id}") if large else nullcontext():
        check_local_objects(store, chain)
    identity = load_for_restore(name)
    if identity.recipient != manifest.recipient:
        raise WrongIdentity(
            f"backup {manifest.backup_id} of {name} was made for another identity than the one in "
            f"{recipient_path(name).parent}"
        )
    # The new workspace's own backups go under its own name, to its own identity (made by the
    # launch for a new name; the same one for the same name).
    source = RestoreSource(name, manifest.backup_id, manifest.repo_folder)
    spec = check_budget(chosen, build_spec(source, {"name": target_name}, store_target, chosen.name))
    options = LaunchOptions(
        agent_env=agent_env(settings(), spec.agent.key_variables),
        backup=target_on_vm(store_target),
        backup_store=store_target.describe(),
        restore_identity=identity.secret + "\n",
        identities=default_identities(),
        keep_on_failure=keep_on_failure,
        notify_secrets=notify_secrets(settings()),
        deploy_keys=github_deploy_keys(),
        deploy_key_owner=deploy_key_owner(),
        push_repo=github_repo_of(original.source) if (original := WorkspaceState(name).record()) else None,
        **web_options(settings(), spec),
    )
    bake_after = auto_bake_wanted(chosen)
    started = time.monotonic()
    with progress(f"restoring {name} from {manifest.backup_id}" + (f" as {target_name}" if new_name else "")) as update:
        result = launch_workspace(spec, chosen, options, update)
    offered = offer_ssh_entry(target_name, result.workspace.ssh, options.identities)
    if bake_after:
        bake_for_next_time(chosen, spec)
    if as_json:
        print_launch_json(target_name, chosen.name, time.monotonic() - started, result)
        return
    err.print(
        f"[green]restored[/] {name} from {manifest.backup_id}"
        + (f" as {target_name}" if target_name != name else "")
        + f" on {chosen.name} in {time.monotonic() - started:.0f}s; "
        + (
            "the agent resumed its conversation"
            if result.resumed
            else "the agent started a new conversation (the backup held none to resume)"
        )
    )
    err.print(f"  connect:  vmgen connect {target_name}")
    print_connect_lines(target_name, spec.repo_dir, offered)
    print_push_line(target_name, result.push_repo, result.push_refused)
    print_web_access(spec, options)
    print_first_verdict(result.verdict)


def restore_provider(name: str, provider: str | None, host: str | None) -> Provider:
    """Where a restore of NAME makes it: --provider and --host as given; without --provider, a
    workspace that ran on a server of the user's comes back on that provider and, without --host,
    on the server it ran on (where its data and base image are, whatever the setting says now)."""
    if provider is None and (recorded := recorded_place(name)) is not None:
        provider, host = recorded.provider, host or recorded.server
    use_host(provider, host)
    return provider_named(provider)


def restore_kept(name: str, snapshot: str, provider: str | None, host: str | None) -> None:
    """The server again from the snapshot NAME's idle action or hard lifetime kept of its disk
    (no verified backup could be made): the same disk, host key and agent; then the snapshot goes."""
    from ..builder.render import render_kept_boot
    from ..spec import discover_public_keys, resolve_agent
    from ..targets import wait_until_agent_back

    state = WorkspaceState(name)
    record = state.record()
    if record is None or not state.known_hosts.is_file():
        raise UsageError(
            f"no record of {name} on this machine: its pinned host key is kept where it was launched; "
            "restore it from there"
        )
    use_host(provider or record.provider, host)
    chosen = provider_named(provider or record.provider)
    keys = discover_public_keys(settings().ssh_public_keys)
    if not keys:
        raise UsageError("no SSH public key to log in with (ssh_public_keys, or ~/.ssh/*.pub)")
    with progress(f"restoring {name} from snapshot {snapshot}") as update:
        made = chosen.restore_kept(name, snapshot, keys[0], render_kept_boot(name, keys))
        if record.host and made.address:
            from ...dns import DEFAULT_ENDPOINT, CloudflareDns

            s = settings()
            update(f"DNS: {record.host} and *.{record.host} -> {made.address}")
            domain = record.host.removeprefix(f"{name}.")
            CloudflareDns(s.cloudflare_api_token, domain, s.cloudflare_endpoint or DEFAULT_ENDPOINT).ensure_workspace(
                name, made.address
            )
        target = wait_until_agent_back(chosen, name, default_identities(), update)
        client = SshWorkspaceClient(target, name)
        if settings().budget_month > 0:  # the disk kept its allowance: this month's share as of now
            from .workspaces import hand_budget

            update("handing the workspace its share of budget_month")
            hand_budget(chosen, name, client)
        update("waiting for the watchdog's first verdict")
        client.first_verdict(60, resolve_agent(record.agent).watched)
        update(f"deleting snapshot {snapshot}: the server holds its disk again")
        chosen.remove_kept(snapshot)
    offered = offer_ssh_entry(name, target.endpoint, target.identities)
    err.print(f"[green]restored[/] {name} from snapshot {snapshot}; the agent resumed its conversation")
    err.print(f"  connect:  vmgen connect {name}")
    print_connect_lines(name, record.repo_dir, offered)
