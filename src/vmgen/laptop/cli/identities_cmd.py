"""`vmgen identities` and `vmgen identities rm`: the backup identities kept on this machine.

`vmgen destroy` removes an identity that nothing was encrypted to; one that backups need stays,
and this is where it is seen and, deliberately, removed.
"""

from __future__ import annotations

import sys

import click
from rich.table import Table

from ...backup.crypto import is_protected
from ...backup.target import open_store, target_from_settings
from ...errors import UsageError, VmgenError
from ..identities import backups_encrypted_to, discard_identity, identity_names, identity_path
from ..providers import shares_local_folders
from ..spec import validate_name
from ..state import WorkspaceState, name_lock
from .app import err, out, settings


def _backups(name: str) -> str:
    """How many of NAME's backups in the configured store need its identity, as a cell."""
    target = target_from_settings(settings(), shares_local_folders(settings().provider))
    if target is None:
        return "?"
    try:
        return str(backups_encrypted_to(name, open_store(target)))
    except VmgenError:
        return "?"


@click.group(invoke_without_command=True)
@click.pass_context
def identities(ctx: click.Context) -> None:
    """The backup identities on this machine: whose, whether a workspace uses it, how many
    backups in the store need it."""
    if ctx.invoked_subcommand is not None:
        return
    names = identity_names()
    if not names:
        err.print("no backup identities on this machine")
        return
    target = target_from_settings(settings(), shares_local_folders(settings().provider))
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "WORKSPACE", "BACKUPS", "PASSPHRASE", "FILE"):
        table.add_column(column)
    for name in names:
        path = identity_path(name)
        table.add_row(
            name,
            "yes" if WorkspaceState(name).any_left() else "-",
            _backups(name),
            "yes" if is_protected(path.read_bytes()) else "no",
            str(path),
        )
    out.print(table)
    if target is not None:
        err.print(f"BACKUPS: of that name in {target.describe()}, encrypted to the identity (restorable only with it)")


@identities.command("rm")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
def remove(name: str, yes: bool) -> None:
    """Remove NAME's backup identity: backups encrypted to it can never be restored again."""
    validate_name(name)
    with name_lock(name, "removing its identity"):
        if not identity_path(name).is_file():
            raise UsageError(f"no backup identity for {name!r} (see `vmgen identities`)")
        if WorkspaceState(name).any_left():
            raise UsageError(f"workspace {name!r} still uses its identity; `vmgen destroy {name}` first")
        needed = _backups(name)
        warning = (
            f"{needed} backup(s) of {name} can never be restored without it"
            if needed not in ("0", "?")
            else ("no backup in the store needs it" if needed == "0" else "the store could not be checked")
        )
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(f"removing {name!r}'s identity needs confirmation ({warning}): pass --yes")
            click.confirm(f"Remove the backup identity of {name!r} ({warning})?", abort=True)
        discard_identity(name)
    err.print(f"removed the backup identity of {name} ({warning})")
