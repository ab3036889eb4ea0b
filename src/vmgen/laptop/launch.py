"""Launching a workspace: render, check, create, wait, hand over, wait for the agent."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..backup.target import BackupTarget
from ..contract.budgetgrant import BUDGET_KEY_VARIABLE, new_key
from ..contract.documents import RestoreResult, WatchdogState
from ..dns import TOKEN_SETTING as DNS_TOKEN_VARIABLE
from ..errors import DeployKeyError, LeftoversExist, UsageError, WorkspaceExists
from ..selfwheel import VmgenWheel, own_wheel
from .builder import RenderOptions, check_schema, check_size, generate_host_key, render_user_data
from .builder.hostkeys import HostKey
from .builder.install import plan_of
from .claudesetup import SyncPlan
from .cost import observed
from .deploykeys import (
    DeployKey,
    GitHubDeployKeys,
    GitHubRepo,
    forget_key,
    github_repo,
    key_title,
    new_key_pair,
    record_key,
)
from .handover import Handover, claude_key_to_approve
from .identities import discard_identity, ensure_identity, has_identity
from .interrupts import interrupts_deferred
from .providers import Provider, Workspace
from .readiness import Phase
from .sourcecheck import check_git_source
from .spec import GitSource, LocalSource, WorkspaceSpec
from .state import WorkspaceRecord, WorkspaceState, name_lock
from .targets import ssh_target
from .values import UptimeLog
from .workspace_client import ClientFactory, SshWorkspaceClient, WorkspaceClient

if TYPE_CHECKING:
    from ..dns import CloudflareDns
    from .caddy import Login

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LaunchOptions:
    agent_env: dict[str, str]
    # The store the VM backs up to (as the VM sees it); None: no backups. The workspace's own
    # identity is made for it, under the name's lock, if it has none yet.
    backup: BackupTarget | None = None
    # For a restore: the identity text the new VM's root restores with (over SSH, never on disk).
    restore_identity: str | None = None
    identities: tuple[Path, ...] = ()
    claude_credentials: bytes | None = None
    # The laptop's Claude Code setup, handed over before the agent first starts (`sync_config`).
    claude_setup: SyncPlan | None = None
    gitconfig: bytes | None = None
    keep_on_failure: bool = False
    # The vmgen wheel the spec names (this CLI's own build): delivered once SSH answers.
    wheel: VmgenWheel | None = None
    # Launch from the newest image vmgen baked for the provider, unless spec.image names one.
    use_baked: bool = True
    # With a domain: the login Caddy checks and the DNS zone the workspace's names go in.
    web_login: Login | None = None
    dns: CloudflareDns | None = None
    preview_dns: CloudflareDns | None = None  # with a preview domain: its zone
    boot_timeout: float = 900
    # Check a git source from this machine before anything is made (git ls-remote).
    check_source: bool = True
    # The store as the laptop reaches it, described: `vmgen destroy` looks there for backups
    # that need the workspace's identity.
    backup_store: str = ""
    # The notify targets' secrets (config.notify_secrets: the ntfy token, the Telegram bot's token
    # and chat id), for root's secrets file on the VM (with `notify` targets only).
    notify_secrets: tuple[tuple[str, str], ...] = ()
    # With a github_token: GitHub's deploy keys, for push access to a GitHub source (deploykeys.py),
    # and who the key's title names (the owner id, or user@host).
    deploy_keys: GitHubDeployKeys | None = None
    deploy_key_owner: str = ""
    # For a restore: the GitHub repository the backed-up workspace was launched from.
    push_repo: GitHubRepo | None = None


@dataclass
class LaunchResult:
    workspace: Workspace
    client: WorkspaceClient
    # Seconds from the start of the launch to the end of each step, for the benchmark.
    timings: dict[str, float] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    image: str = ""  # the image it booted from, when vmgen chose a baked one or one was named
    # The watchdog's first verdict with the agent running (None: it did not report in time).
    verdict: WatchdogState | None = None
    restored: RestoreResult | None = None  # what the VM reported of the restore, for a restore
    # For a restore: whether the agent had a conversation to resume (None: not a restore).
    resumed: bool | None = None
    # git push: the GitHub repository the workspace's deploy key opens ("" without one), or why
    # it got none (a refusal of GitHub's: the launch went on without push access).
    push_repo: str = ""
    push_refused: str = ""


@dataclass
class _Made:
    """What this launch made: a failure removes exactly that, and nothing another one made."""

    state: bool = False
    identity: bool = False
    workspace: bool = False
    deploy_key: DeployKey | None = None


def launch(
    spec: WorkspaceSpec,
    provider: Provider,
    options: LaunchOptions,
    progress: Progress,
    client_for: ClientFactory = SshWorkspaceClient.booting,
    checked: Callable[[], None] | None = None,
) -> LaunchResult:
    """Make the workspace, or nothing. `checked` is called once everything that can be checked
    before anything is made was checked and found fine (warnings that matter only then).

    The whole launch holds the name's lock (state.name_lock): a second launch, restore or destroy
    of the name is refused at once, and what this launch finds under the name is no other
    launch's half-made workspace."""
    with name_lock(spec.name, "restoring" if options.restore_identity is not None else "launching"):
        return _launch(spec, provider, options, progress, client_for, checked)


def _launch(
    spec: WorkspaceSpec,
    provider: Provider,
    options: LaunchOptions,
    progress: Progress,
    client_for: ClientFactory,
    checked: Callable[[], None] | None,
) -> LaunchResult:
    started = time.monotonic()
    timings: dict[str, float] = {}
    wheel = options.wheel or own_wheel()
    if spec.vmgen.wheel_sha256 and wheel.sha256 != spec.vmgen.wheel_sha256:
        raise UsageError("the vmgen wheel to deliver is not the one the workspace spec names")

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - started, 3)

    _check(spec, provider, options, progress)
    if checked is not None:
        checked()
    if options.use_baked:
        spec = with_baked_image(spec, provider, progress)
    state = WorkspaceState(spec.name)
    made = _Made()
    restored: RestoreResult | None = None
    resumed: bool | None = None
    try:
        host_key = generate_host_key()
        # The record of an earlier workspace of this name that is gone (see _check) is replaced; the
        # deploy key it recorded goes first (its `vmgen list` may never have seen it gone).
        if note := forget_key(state, options.deploy_keys):
            progress(f"warning: {note}")
        state.remove()
        made.state = True
        state.create(
            WorkspaceRecord(
                name=spec.name,
                provider=provider.name,
                created_at=time.time(),
                source=spec.source.describe(),
                agent=spec.agent.name,
                host=spec.host,
                backup_store=options.backup_store,
                preview_host=spec.preview_host,
                repo_dir=spec.repo_dir,
                forward_ports=spec.devcontainer.forward_ports if spec.devcontainer else (),
            ),
            host_key.public_openssh,
        )
        state.write(WorkspaceState.LAUNCHING, "")
        backup: tuple[BackupTarget, str] | None = None
        if options.backup is not None:
            if not has_identity(spec.name):
                # Marked before it exists: a launch killed right after leaves the mark with it.
                state.write(WorkspaceState.NEW_IDENTITY, "")
                made.identity = True
            backup = (options.backup, ensure_identity(spec.name))
        if options.web_login is not None:
            state.write("web-login", f"{options.web_login.user}\n{options.web_login.password}\n")
        # The key `vmgen start` signs a new share of the budget with (contract.budgetgrant): here
        # and in root's secrets file on the VM, nowhere the agent reads.
        budget_key = new_key()
        state.write(WorkspaceState.BUDGET_KEY, budget_key + "\n")
        user_data = _render(spec, provider, options, host_key, backup, budget_key)
        mark("render")
        progress(f"creating the workspace on {provider.name}")
        made_on_provider = provider.create(spec, user_data)
        made.workspace = True
        # Its price, for `vmgen cost`, should its watchdog delete it before vmgen sees it again.
        state.record_uptime(observed(UptimeLog(), made_on_provider, provider.currency, time.time()))
        mark("create")
        if spec.host and options.dns is not None:
            progress(f"DNS: {spec.host} and *.{spec.host} -> {made_on_provider.address}")
            options.dns.ensure_workspace(spec.name, made_on_provider.address)
            if spec.preview_host and options.preview_dns is not None:
                progress(f"DNS: *.{spec.preview_host} -> {made_on_provider.address}")
                options.preview_dns.ensure_workspace(spec.name, made_on_provider.address)
            mark("dns")
        client = client_for(spec.name, lambda: ssh_target(provider, spec.name, options.identities))
        client.wait_until_reachable(options.boot_timeout, progress)
        if spec.vmgen.wheel_sha256:
            # Sent while cloud-init installs packages and the agent: the vmgen step waits for it.
            client.deliver_wheel(wheel)
        mark("ssh")
        phases = client.follow_boot(options.boot_timeout, progress)
        mark("cloud_init")
        if options.restore_identity is not None:
            # The VM says each step of it ("restore: downloading, verifying, ...").
            restored = client.restore(
                options.restore_identity, lambda message: progress(f"restore: {message}"), options.boot_timeout
            )
            progress(f"restored backup {restored.backup_id}")
            mark("restore")
        deploy_key, push_refused = _add_deploy_key(spec, options, state, made, progress)
        progress(
            "handing over credentials"
            + (" and uploading the repository" if isinstance(spec.source, LocalSource) else "")
        )
        client.hand_over(
            Handover(
                agent_env=options.agent_env,
                claude_credentials=options.claude_credentials,
                claude_setup=options.claude_setup if spec.agent.name == "claude" else None,
                gitconfig=options.gitconfig,
                upload_from=spec.source.path if isinstance(spec.source, LocalSource) else None,
                repo_dir=spec.repo_dir,
                approve_claude_api_key=claude_key_to_approve(spec.agent, options.agent_env),
                deploy_key=deploy_key,
                push_url=made.deploy_key.repo.ssh_url if made.deploy_key else "",
                devcontainer=spec.devcontainer is not None,
                progress=progress,
            ),
        )
        mark("handover")
        client.wait_for_agent(120, progress)
        mark("agent")
        if restored is not None:
            # What the agent's start script found: a conversation to resume, or none (an agent
            # that never logged in before the backup had none).
            resumed = client.has_conversation(spec.agent, spec.repo_dir)
        # `vmgen status` and the page right after "ready" must not say the agent is absent.
        progress("waiting for the watchdog's first verdict")
        verdict = client.first_verdict(60, spec.agent.watched)
        mark("verdict")
    except BaseException:
        with interrupts_deferred("removing what was created"):
            _remove_what_was_made(spec, provider, options, state, made, progress)
        raise
    state.discard(WorkspaceState.NEW_IDENTITY)  # it came up: its identity is for keeps
    state.discard(WorkspaceState.LAUNCHING)
    workspace = provider.get(spec.name)
    assert workspace is not None
    return LaunchResult(
        workspace=workspace,
        client=client,
        timings=timings,
        phases=phases,
        image=spec.image,
        verdict=verdict,
        restored=restored,
        resumed=resumed,
        push_repo=made.deploy_key.repo.full_name if made.deploy_key else "",
        push_refused=push_refused,
    )


def _add_deploy_key(
    spec: WorkspaceSpec, options: LaunchOptions, state: WorkspaceState, made: _Made, progress: Progress
) -> tuple[bytes | None, str]:
    """A deploy key with write access on the GitHub repository the workspace clones, recorded
    here before anything else happens (a failure after it removes it). GitHub refusing one is a
    warning: the workspace comes up without push access. Returns the private half (None without
    one) and GitHub's refusal ("" without one)."""
    repo = github_repo(spec.source) or options.push_repo
    if repo is None or options.deploy_keys is None:
        return None, ""
    progress(f"adding a deploy key to {repo.full_name} (git push from the workspace)")
    pair = new_key_pair(key_title(spec.name, options.deploy_key_owner))
    try:
        key = options.deploy_keys.create(repo, key_title(spec.name, options.deploy_key_owner), pair.public_openssh)
    except DeployKeyError as exc:
        progress(f"warning: no push access: {exc}")
        return None, str(exc)
    made.deploy_key = key
    record_key(state, key)
    return pair.private_openssh, ""


def _remove_what_was_made(
    spec: WorkspaceSpec,
    provider: Provider,
    options: LaunchOptions,
    state: WorkspaceState,
    made: _Made,
    progress: Progress,
) -> None:
    """After a failure or an interrupt: what this launch made, nothing else. Before `create`
    returned, nothing of ours exists under this name (the provider cleans up its own half-made
    resources), and deleting by name could hit someone else's. The local record goes last: if
    this is cut short anyway (the process killed), it is what lets `vmgen list` and `vmgen
    destroy` find the rest."""
    if made.deploy_key is not None and not (options.keep_on_failure and made.workspace):
        # Not left open on a repository for a workspace that is not there.
        note = forget_key(state, options.deploy_keys, made.deploy_key)
        if note:
            progress(f"warning: {note}")
    if options.keep_on_failure and made.workspace:
        return
    if made.workspace:
        progress(f"removing what was created on {provider.name}")
        provider.delete(spec.name)
        for dns in (options.dns, options.preview_dns):
            if spec.host and dns is not None:
                dns.remove_workspace(spec.name)
    if made.identity:
        discard_identity(spec.name)
    if made.state:
        state.remove()


def _check(spec: WorkspaceSpec, provider: Provider, options: LaunchOptions, progress: Progress) -> None:
    """Everything that can be checked before anything is made; a refusal leaves nothing behind."""
    if spec.vmgen.local_wheels is not None and not provider.shares_local_folders:
        raise UsageError(
            f"vmgen_find_links must be a URL for the {provider.name} provider "
            f"(its VMs cannot see this machine's folders)"
        )
    if spec.local_backup_dir is not None and not provider.shares_local_folders:
        raise UsageError(
            f"a local backup folder cannot be shared with a {provider.name} VM; configure an "
            f"S3/R2 store (r2_bucket, r2_endpoint and keys)"
        )
    if spec.host:
        if not provider.public:
            raise UsageError(
                f"a {provider.name} workspace has no public address for {spec.host}; "
                "launch without a domain and use `vmgen open`"
            )
        if options.dns is None or options.web_login is None:
            raise UsageError(f"a domain needs a Cloudflare API token (cloudflare_api_token) for {spec.web.domain}")
        if spec.preview_host and options.preview_dns is None:
            raise UsageError(f"a preview domain needs the Cloudflare API token for {spec.web.preview_domain} too")
    earlier = WorkspaceState(spec.name)
    if provider.get(spec.name) is not None:
        record = earlier.record()
        if earlier.cut_short() and (record is None or record.provider == provider.name):
            # This launch holds the name's lock: the launch that made it is no longer running.
            raise LeftoversExist(
                f"an earlier launch of {spec.name!r} was cut short before the workspace came up; "
                f"remove what it left with `vmgen destroy {spec.name}`"
            )
        raise WorkspaceExists(f"a workspace named {spec.name!r} already exists on {provider.name}")
    left = [leftover.what for leftover in provider.leftovers(spec.name)]
    # A record of a workspace that came up and is gone (it backed up and deleted itself) is
    # replaced: launching or restoring that name again is the normal way back.
    if earlier.cut_short():
        left.append(f"local state in {earlier.dir}")
    elif (record := earlier.record()) is not None and record.provider != provider.name:
        # Gone from this provider says nothing of that one: it may still run there.
        left.append(f"a record of it on {record.provider}")
    if left:
        raise LeftoversExist(
            f"an earlier workspace named {spec.name!r} left {', '.join(left)}; "
            f"remove them with `vmgen destroy {spec.name}`"
        )
    provider.check(spec)
    if isinstance(spec.source, GitSource) and options.check_source:
        progress("checking the repository from this machine (git ls-remote)")
        note = check_git_source(spec.source)
        if note:
            progress(f"note: {note}")


def _render(
    spec: WorkspaceSpec,
    provider: Provider,
    options: LaunchOptions,
    host_key: HostKey,
    backup: tuple[BackupTarget, str] | None,
    budget_key: str = "",
) -> str:
    """The user-data, checked against the provider's limit and cloud-init's schema."""
    self_delete = provider.self_delete_spec()
    if budget_key:
        self_delete = replace(self_delete, secrets=(*self_delete.secrets, (BUDGET_KEY_VARIABLE, budget_key)))
    if spec.host and options.dns is not None:
        self_delete = replace(
            self_delete,
            secrets=(*self_delete.secrets, (DNS_TOKEN_VARIABLE, options.dns.token)),
            dns_endpoint=options.dns.endpoint,
        )
    if options.notify_secrets and spec.watchdog.notify:
        self_delete = replace(self_delete, secrets=(*self_delete.secrets, *options.notify_secrets))
    user_data = render_user_data(
        spec,
        RenderOptions(host_key=host_key, self_delete=self_delete, backup=backup, web_login=options.web_login),
    )
    check_size(user_data, provider.user_data_limit, provider.name)
    check_schema(user_data)
    return user_data


def with_baked_image(spec: WorkspaceSpec, provider: Provider, progress: Progress) -> WorkspaceSpec:
    """The newest image vmgen baked from the provider's base image, unless the spec names one.
    Steps whose stamps differ from what this launch wants are redone on the VM."""
    if spec.image:
        return spec
    baked = provider.newest_baked(spec)
    if baked is None:
        return spec
    redo = baked.stamp.differs_from(plan_of(spec).stamp)
    progress(f"using baked image {baked.name}" + (f"; redoing {', '.join(redo)}" if redo else ""))
    return replace(spec, image=baked.ref)
