"""The `vmgen` group and what its commands share: consoles, settings, progress, providers.

Every vmgen error becomes one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import click
from rich.console import Console

from ...errors import VmgenError, WorkspaceNotFound, WorkspaceNotRunning
from ..config import Settings, load_settings
from ..providers import Provider, Workspace, get_provider
from ..spec import validate_name
from ..ssh import SSHTarget, default_identities
from ..state import WorkspaceState
from ..targets import target_of

err = Console(stderr=True, highlight=False, soft_wrap=True)
# Piped into a file or another program, tables keep whole values instead of fitting 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 400)


class VmgenGroup(click.Group):
    """Turns vmgen's own exceptions into one clear line and the exception's exit code, and
    imports a command's module only when that command runs (or help lists them all): every
    `vmgen status` would otherwise import every command's libraries, a third of a second of CPU
    per call on the laptop, paid again by everything that polls it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}  # command name -> "module:attribute", filled by the cli package

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            if cmd_name not in self.commands:  # a module's decorator may have added it already
                self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VmgenError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True)
            ctx.exit(exc.exit_code)
        except subprocess.TimeoutExpired as exc:
            # A program vmgen runs (ssh, docker, git) hung past the deadline vmgen gave it.
            program = exc.cmd[0] if isinstance(exc.cmd, list | tuple) and exc.cmd else str(exc.cmd)
            err.print(f"[bold red]error:[/] {program} did not finish within {exc.timeout:.0f}s", markup=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            err.print("interrupted")
            ctx.exit(130)


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from ...selfwheel import version_line

        click.echo(version_line())
        ctx.exit()


@click.group(cls=VmgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_version,
    help="Show the version and build (what every VM this CLI launches runs), then exit.",
)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Personal cloud workspaces for coding agents."""
    ctx.obj = None


def settings() -> Settings:
    ctx = click.get_current_context()
    root = ctx.find_root()
    loaded: Settings | None = root.obj  # click's slot for anything: vmgen keeps the settings there
    if loaded is None:
        loaded = root.obj = load_settings()
    return loaded


@contextmanager
def progress(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner that shows the current step on a terminal; elsewhere (a pipe, a log, CI) a
    spinner shows nothing at all, so each step is printed once, as a line, when it starts."""
    started = time.monotonic()
    if not err.is_terminal:
        printed: set[str] = set()

        def line(message: str) -> None:
            # Retries repeat their message ("waiting for SSH"): a step is printed once.
            if message not in printed:
                printed.add(message)
                err.print(f"{title}: {message} ({time.monotonic() - started:.0f}s)")

        yield line
        return
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


def age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age_seconds(seconds: float) -> str:
    return age(timedelta(seconds=max(0, seconds)))
