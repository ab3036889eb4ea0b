"""Launching a workspace: render, check, create, wait, hand over, wait for the agent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .builder import RenderOptions, check_schema, check_size, generate_host_key, render_user_data
from .builder.render import AGENT_SESSION
from .errors import UsageError, WorkspaceExists
from .handover import Handover, deliver
from .providers import Provider, Workspace
from .readiness import Phase, follow_cloud_init, wait_for_session, wait_for_ssh
from .spec import LocalSource, WorkspaceSpec
from .ssh import SSHTarget
from .state import WorkspaceRecord, WorkspaceState

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LaunchOptions:
    agent_env: dict[str, str]
    identities: tuple[Path, ...] = ()
    claude_credentials: bytes | None = None
    gitconfig: bytes | None = None
    keep_on_failure: bool = False
    boot_timeout: float = 900


@dataclass
class LaunchResult:
    workspace: Workspace
    target: SSHTarget
    # Seconds from the start of the launch to the end of each step, for the benchmark.
    timings: dict[str, float] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)


def ssh_target(provider: Provider, name: str, identities: tuple[Path, ...]) -> SSHTarget | None:
    """The workspace as it is now (its SSH port may appear late); None while it has no SSH."""
    return target_of(provider.get(name), identities)


def target_of(workspace: Workspace | None, identities: tuple[Path, ...]) -> SSHTarget | None:
    if workspace is None or workspace.ssh is None:
        return None
    return SSHTarget.for_workspace(workspace.ssh, WorkspaceState(workspace.name), identities)


def launch(spec: WorkspaceSpec, provider: Provider, options: LaunchOptions, progress: Progress) -> LaunchResult:
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - started, 3)

    if spec.vmgen.local_wheels is not None and not getattr(provider, "shares_local_folders", False):
        raise UsageError(f"vmgen_find_links must be a URL for the {provider.name} provider "
                         f"(a local folder can only be shared with docker workspaces)")
    if provider.get(spec.name) is not None:
        raise WorkspaceExists(f"a workspace named {spec.name!r} already exists on {provider.name}")
    host_key = generate_host_key()
    user_data = render_user_data(spec, RenderOptions(host_key=host_key, self_delete=provider.self_delete_spec()))
    check_size(user_data, provider.user_data_limit, provider.name)
    check_schema(user_data)
    mark("render")

    state = WorkspaceState(spec.name)
    state.create(
        WorkspaceRecord(name=spec.name, provider=provider.name, created_at=time.time(),
                        source=spec.source.describe(), agent=spec.agent.name),
        host_key.public_openssh,
    )
    progress(f"creating the workspace on {provider.name}")
    created = False
    try:
        provider.create(spec, user_data)
        created = True
        mark("create")
        target = wait_for_ssh(lambda: ssh_target(provider, spec.name, options.identities), options.boot_timeout, progress)
        mark("ssh")
        phases = follow_cloud_init(target, options.boot_timeout, progress)
        mark("cloud_init")
        progress("handing over credentials" + (" and uploading the repository" if isinstance(spec.source, LocalSource) else ""))
        deliver(target, Handover(
            agent_env=options.agent_env,
            claude_credentials=options.claude_credentials,
            gitconfig=options.gitconfig,
            upload_from=spec.source.path if isinstance(spec.source, LocalSource) else None,
            repo_dir=spec.repo_dir,
            approve_claude_api_key=options.agent_env.get("ANTHROPIC_API_KEY", "") if spec.agent.name == "claude" else "",
        ))
        mark("handover")
        wait_for_session(target, AGENT_SESSION, 120, progress)
        mark("agent")
    except BaseException:
        # Before `create` returned, nothing of ours exists under this name (the provider cleans
        # up its own half-made resources), and deleting by name could hit someone else's.
        if created and not options.keep_on_failure:
            progress("removing what was created")
            provider.delete(spec.name)
        if not created or not options.keep_on_failure:
            state.remove()
        raise
    workspace = provider.get(spec.name)
    assert workspace is not None
    return LaunchResult(workspace=workspace, target=target, timings=timings, phases=phases)


def wait_until_agent_back(provider: Provider, name: str, identities: tuple[Path, ...],
                          progress: Progress, timeout: float = 300) -> SSHTarget:
    """After a start: SSH answers and the agent's session is running again."""
    target = wait_for_ssh(lambda: ssh_target(provider, name, identities), timeout, progress)
    wait_for_session(target, AGENT_SESSION, timeout, progress)
    return target
