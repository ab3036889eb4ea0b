"""Reaching a workspace over SSH as it is now, and waiting for it after a start.

Kept apart from launch.py so that commands which only talk to a workspace import little.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .providers import Provider, Workspace
from .readiness import wait_for_session, wait_for_ssh
from .ssh import SSHTarget
from .state import WorkspaceState

Progress = Callable[[str], None]


def ssh_target(provider: Provider, name: str, identities: tuple[Path, ...]) -> SSHTarget | None:
    """The workspace as it is now (its SSH port may appear late); None while it has no SSH."""
    return target_of(provider.get(name), identities)


def target_of(workspace: Workspace | None, identities: tuple[Path, ...]) -> SSHTarget | None:
    if workspace is None or workspace.ssh is None:
        return None
    return SSHTarget.for_workspace(workspace.ssh, WorkspaceState(workspace.name), identities)


def wait_until_agent_back(
    provider: Provider, name: str, identities: tuple[Path, ...], progress: Progress, timeout: float = 300
) -> SSHTarget:
    """After a start: SSH answers and the agent's session is running again."""
    target = wait_for_ssh(lambda: ssh_target(provider, name, identities), timeout, progress)
    wait_for_session(target, WorkspaceState(name).agent_session, timeout, progress)
    return target
