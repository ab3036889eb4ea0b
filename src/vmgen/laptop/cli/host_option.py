"""`--host user@server[:port]`: the user's own server for one command (`launch`, `restore`,
`sizes`), in place of the setting of the provider that runs on it; and the server a workspace
was made on, as its provider recorded it, for a command that makes it again (`restore`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ...errors import UsageError
from ..providers import PROVIDERS, provider_class, recorded_server
from ..state import WorkspaceState
from .app import provider_of, settings

Command = TypeVar("Command", bound=Callable[..., Any])


def host_option(function: Command) -> Command:
    """The `--host` option, one definition for every command that takes it (its value: `use_host`)."""
    return click.option("--host", help="Your own server, user@host[:port], for a provider that runs on one.")(function)


def use_host(provider: str | None, host: str | None) -> None:
    """`--host`: the server this command's provider (PROVIDER, else the configured one) runs on, in
    place of its setting (the provider checks it, and a launch records it; later commands find
    the workspace by that record). Nothing without one."""
    if not host:
        return
    provider = provider or settings().provider
    setting = provider_class(provider).host_setting
    if not setting:
        takes = ", ".join(name for name in PROVIDERS if provider_class(name).host_setting)
        raise UsageError(f"--host names your own server for a provider that runs on one ({takes}); {provider} does not")
    root = click.get_current_context().find_root()
    given: dict[str, Any] = {setting: host}
    root.obj = dataclasses.replace(settings(), **given)


@dataclasses.dataclass(frozen=True)
class RecordedServer:
    """The provider a workspace ran on and the server of the user's it was made on ("" when the
    provider recorded none)."""

    provider: str
    server: str


def recorded_place(name: str) -> RecordedServer | None:
    """Where NAME ran, when its record says it ran on a server of the user's: the provider `vmgen
    start` and `stop` would use and the server they would find it on. None for a workspace on a
    provider's own cloud, or one this machine has no record of."""
    record = WorkspaceState(name).record()
    if record is None or not provider_class(record.provider).host_setting:
        return None
    return RecordedServer(record.provider, recorded_server(provider_of(name), name))


__all__ = ["RecordedServer", "host_option", "recorded_place", "use_host"]
