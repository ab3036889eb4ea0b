"""Commands that make a workspace: `launch` and `render` (what launch would send, nothing created)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import click
from rich.markup import escape

from ...backup.target import BackupTarget, target_from_settings, target_on_vm
from ...contract.documents import WatchdogState
from ...contract.enums import IdleAction, PermissionMode, StoreKind
from ...contract.names import agent_session
from ...contract.notify import split_targets
from ...errors import InvalidSpec, UsageError, VmgenError
from ..config import Settings, notify_secrets
from ..devcontainer import devcontainer_for
from ..handover import laptop_extras
from ..providers import PROVIDERS, provider_class
from ..spec import (
    SIZE_PRESETS,
    RestoreSource,
    VmgenInstall,
    WatchdogTuning,
    WebSpec,
    WorkspaceSpec,
    make_spec,
)
from ..ssh import default_identities
from .access import github_deploy_keys, offer_ssh_entry, print_connect_lines, print_push_line
from .app import err, main, out, progress, provider_named, running_target, settings
from .claude_setup import laptop_plan, print_warnings, warn_missing_commands
from .host_option import host_option, use_host
from .setting_options import click_option, setting_options, with_options

if TYPE_CHECKING:
    from ...dns import CloudflareDns
    from ..caddy import Login
    from ..launch import LaunchOptions, LaunchResult
    from ..providers import Provider

Command = TypeVar("Command", bound=Callable[..., Any])


def agent_env(s: Settings, agent_variables: tuple[str, ...]) -> dict[str, str]:
    import os

    known = {"ANTHROPIC_API_KEY": s.anthropic_api_key, "ANTHROPIC_BASE_URL": s.anthropic_base_url}
    return {var: known.get(var) or os.environ.get(var, "") for var in agent_variables}


def spec_options(function: Command) -> Command:
    options = [
        click.option("--name", help="Workspace name (default: from the repository)."),
        click.option("--provider", type=click.Choice(PROVIDERS), help="Where to run it."),
        click.option("--agent", help="claude (default), codex, aider, gemini or opencode."),
        click.option("--agent-version", help="Version pin for the agent CLI (default: latest)."),
        click.option("--size", help="Size preset: small, medium or large."),
        click.option("--type", "server_type", help="An explicit server type (e.g. cx33); overrides --size."),
        click.option("--region", help="Region / location."),
        click.option("--image", help="Base image or snapshot."),
        # --idle-minutes, --idle-warn, --max-lifetime...: made from the settings' declarations.
        *(click_option(option) for option in setting_options()),
        click.option(
            "--idle-action",
            type=click.Choice(("auto", *(action.value for action in IdleAction))),
            help="What the watchdog does once idle; auto (the default): backup-then-delete with a backup store, "
            "else poweroff.",
        ),
        click.option("--desktop/--no-desktop", default=None, help="Install the noVNC desktop."),
        click.option("--domain", help="A Cloudflare zone: the workspace gets https://<name>.<domain>/."),
        click.option(
            "--devcontainer",
            "devcontainer_path",
            metavar="PATH",
            help="The devcontainer.json to bring up (a path inside the repository), when it has several.",
        ),
        click.option(
            "--no-devcontainer", is_flag=True, default=False, help="Ignore the repository's devcontainer.json."
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def vmgen_install(s: Settings) -> VmgenInstall:
    """How VMs install vmgen: this very build (its wheel goes over SSH); its dependencies from
    the index, or a mirror when one is configured."""
    from ...selfwheel import own_wheel

    wheel = own_wheel()
    return VmgenInstall(
        version=wheel.version, wheel_sha256=wheel.sha256, index_url=s.vmgen_index_url, find_links=s.vmgen_find_links
    )


class WebOptions(TypedDict, total=False):
    """The LaunchOptions a domain brings."""

    web_login: Login
    dns: CloudflareDns
    preview_dns: CloudflareDns


def web_options(s: Settings, spec: WorkspaceSpec) -> WebOptions:
    """With a domain: a fresh login for Caddy and the DNS zone's client; without, nothing."""
    if not spec.host:
        return {}
    from ...dns import DEFAULT_ENDPOINT, CloudflareDns
    from ..caddy import new_login

    endpoint = s.cloudflare_endpoint or DEFAULT_ENDPOINT
    options: WebOptions = {
        "web_login": new_login(),
        "dns": CloudflareDns(s.cloudflare_api_token, spec.web.domain, endpoint),
    }
    if spec.web.preview_domain:  # the same token, with DNS rights in the previews' zone too
        options["preview_dns"] = CloudflareDns(s.cloudflare_api_token, spec.web.preview_domain, endpoint)
    return options


def print_web_access(spec: WorkspaceSpec, options: LaunchOptions) -> None:
    if options.web_login is not None:
        err.print(
            f"  web:      https://{spec.host}/  (user {options.web_login.user}, password "
            f"{options.web_login.password}; again with `vmgen login {spec.name}`)"
        )
        # Whether each hostname got its certificate (Let's Encrypt needs DNS and port 80), and why not.
        from ..workspace_client import SshWorkspaceClient
        from .web import CERTIFICATE_WAIT_SECONDS, print_certificates

        client = SshWorkspaceClient(running_target(spec.name), spec.name)
        print_certificates(spec.name, client, err, wait=CERTIFICATE_WAIT_SECONDS)
    else:
        err.print(f"  web:      vmgen open {spec.name}")


def check_budget(provider: Provider, spec: WorkspaceSpec) -> WorkspaceSpec:
    """Refuse, before anything is made, a launch that would take the month past budget_month;
    else the spec with this workspace's share of the budget, which its watchdog counts against
    (the spend of the user's other workspaces this month, in this provider's currency, left out)."""
    budget = spec.watchdog.budget_month
    if budget <= 0:
        return spec
    from ...errors import BudgetExceeded
    from ..cost import allowance, budget_refusal, month_end, totals
    from .cost_cmd import month_lines

    now = datetime.now(UTC)
    sums = totals(month_lines(now), leave_out=spec.name)
    price = provider.price_hourly(spec)
    refusal = budget_refusal(budget, sums, price, spec.watchdog.max_lifetime_hours, now, provider.currency)
    if refusal:
        raise BudgetExceeded(refusal)
    watchdog = dataclasses.replace(
        spec.watchdog,
        budget_allowance=round(allowance(budget, sums, provider.currency), 4),
        budget_price_hourly=price or 0.0,
        budget_currency=provider.currency,
        budget_month_end=month_end(now).timestamp(),
    )
    return dataclasses.replace(spec, watchdog=watchdog)


def build_spec(
    source: str | RestoreSource, opts: dict[str, Any], backup: BackupTarget | None = None, provider: str = ""
) -> WorkspaceSpec:
    s = with_options(settings(), opts)
    if opts.get("size") and opts["size"] not in SIZE_PRESETS:
        raise InvalidSpec(f"unknown size {opts['size']!r}: use {', '.join(SIZE_PRESETS)} (or --type for a server type)")
    chosen = opts.get("idle_action") or s.idle_action
    if chosen not in ("auto", *IdleAction):
        raise InvalidSpec(f"idle action {chosen!r}: use one of auto, {', '.join(IdleAction)}")
    if chosen == "auto":
        action = IdleAction.BACKUP_THEN_DELETE if backup is not None else IdleAction.POWEROFF
    else:
        action = IdleAction(chosen)
    if action == IdleAction.BACKUP_THEN_DELETE and backup is None:
        raise UsageError(
            "idle action 'backup-then-delete' needs a backup store (r2_bucket, or a local folder on a provider "
            "that shares this machine's folders)"
        )
    spec = make_spec(
        source,
        name=opts.get("name"),
        agent=opts.get("agent") or s.agent,
        agent_version=opts.get("agent_version") or s.agent_version,
        size=opts.get("server_type") or opts.get("size") or s.size,
        region=opts.get("region") or s.region,
        image=opts.get("image") or (provider_class(provider).configured_image(s) if provider else s.image),
        desktop=opts["desktop"] if opts.get("desktop") is not None else s.desktop,
        configured_keys=s.ssh_public_keys,
        watchdog=WatchdogTuning(
            idle_minutes=s.idle_minutes,
            action=action,
            warn_minutes=s.idle_warn_minutes,
            human_minutes=s.idle_human_minutes,
            stall_minutes=s.idle_stall_minutes,
            interval_seconds=s.idle_interval_seconds,
            max_lifetime_hours=s.max_lifetime_hours,
            budget_month=s.budget_month,
            budget_action=s.budget_action,
            webhook_url=s.idle_webhook_url,
            notify=split_targets(s.notify),
            permission_mode=s.permission_mode,
        ),
        vmgen=vmgen_install(s),
        dotfiles_repo=s.dotfiles_repo,
        web=WebSpec(
            domain=(opts.get("domain") or s.domain).lower().strip("."),
            tls=s.web_tls,
            acme_email=s.acme_email,
            preview_ports=s.preview_ports,
            code_ui_version=s.code_ui_version,
            acme_ca=s.acme_ca,
            acme_ca_root=_read_pem(s.acme_ca_root),
            preview_domain=s.preview_domain.lower().strip("."),
        ),
    )
    if spec.host and provider and not provider_class(provider).public:
        raise UsageError(
            f"{provider} workspaces have no public address for {spec.host}; "
            "launch without --domain and use `vmgen open`"
        )
    if backup is not None and backup.kind == StoreKind.LOCAL:
        spec = dataclasses.replace(spec, local_backup_dir=Path(backup.path))
    return with_devcontainer(spec, opts, s)


def with_devcontainer(spec: WorkspaceSpec, opts: dict[str, Any], s: Settings) -> WorkspaceSpec:
    """The repository's dev container, found, read and checked before anything is made: a
    refusal is one line naming the field and `devcontainer_allow_privileged`."""
    answer = devcontainer_for(
        spec.source,
        Path(spec.repo_dir).name,
        chosen=opts.get("devcontainer_path") or "",
        disabled=bool(opts.get("no_devcontainer")),
        allow_privileged=s.devcontainer_allow_privileged,
    )
    found = answer.spec
    if found is None:
        return spec
    if not spec.agent.container_install:
        raise UsageError(
            f"{found.config}: {spec.agent.name} does not run inside a dev container yet (claude does); "
            "launch with --no-devcontainer"
        )
    if spec.watchdog.permission_mode != PermissionMode.BYPASS:
        raise UsageError(
            f"{found.config}: permission_mode {spec.watchdog.permission_mode.value!r} is not available inside a dev "
            "container yet (its prompts are answered by root's hook on the VM); use 'bypass' or --no-devcontainer"
        )
    for warning in answer.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    for note in answer.notes:
        err.print(f"note: {escape(note)}")
    # Its ports join the configured previews (p<port>.<host> behind the login).
    previews = tuple(dict.fromkeys((*spec.web.preview_ports, *found.forward_ports)))
    return dataclasses.replace(spec, devcontainer=found, web=dataclasses.replace(spec.web, preview_ports=previews))


def _read_pem(path: str) -> str:
    """The acme_ca_root setting's file, which the VM gets in its user-data (a public certificate)."""
    if not path:
        return ""
    try:
        return Path(path).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"acme_ca_root {path}: {exc}") from None


@main.command()
@click.argument("source")
@spec_options
@click.option("--copy-claude-login", is_flag=True, help="Copy this machine's Claude Code login to the workspace.")
@click.option("--keep-on-failure", is_flag=True, help="Keep the workspace for inspection if the launch fails.")
@click.option("--cold", is_flag=True, help="Ignore baked images: install everything on a stock image.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (with step timings).")
@host_option
def launch(
    source: str,
    copy_claude_login: bool,
    keep_on_failure: bool,
    cold: bool,
    as_json: bool,
    host: str | None,
    **opts: Any,
) -> None:
    """Launch a workspace for SOURCE (git URL with optional #branch, or a local directory)."""
    from ..launch import LaunchOptions, launch as launch_workspace

    use_host(opts.get("provider"), host)
    provider = provider_named(opts.get("provider"))
    target = target_from_settings(settings(), provider.shares_local_folders)
    spec = check_budget(provider, build_spec(source, opts, target, provider.name))
    credentials, gitconfig = laptop_extras(copy_claude_login)
    claude_setup = laptop_plan() if settings().sync_config and spec.agent.name == "claude" else None
    if claude_setup is not None:
        print_warnings(claude_setup)
    environment = agent_env(settings(), spec.agent.key_variables)
    options = LaunchOptions(
        agent_env=environment,
        backup=target_on_vm(target) if target is not None else None,
        backup_store=target.describe() if target is not None else "",
        identities=default_identities(),
        claude_credentials=credentials,
        claude_setup=claude_setup,
        gitconfig=gitconfig,
        keep_on_failure=keep_on_failure,
        use_baked=not cold,
        notify_secrets=notify_secrets(settings()),
        deploy_keys=github_deploy_keys(),
        deploy_key_owner=deploy_key_owner(),
        **web_options(settings(), spec),
    )
    bake_after = auto_bake_wanted(provider)
    started = time.monotonic()
    with progress(f"launching {spec.name}") as update:
        result = launch_workspace(
            spec,
            provider,
            options,
            update,
            checked=lambda: warn_without_credentials(spec, environment, credentials is not None),
        )
    elapsed = time.monotonic() - started
    offered = offer_ssh_entry(spec.name, result.workspace.ssh, options.identities)
    if claude_setup is not None and claude_setup.commands and result.workspace.ssh is not None:
        warn_missing_commands(running_target(spec.name), claude_setup)
    if bake_after:
        bake_for_next_time(provider, spec)
    if as_json:
        print_launch_json(spec.name, provider.name, elapsed, result)
        return
    err.print(
        f"[green]ready[/]: {spec.name} on {provider.name} in {elapsed:.0f}s "
        f"({spec.agent.name} runs in tmux session '{agent_session(spec.agent.name)}')"
    )
    err.print(f"  connect:  vmgen connect {spec.name}")
    err.print(f'  prompt:   vmgen send {spec.name} "..."')
    print_connect_lines(spec.name, spec.repo_dir, offered)
    print_push_line(spec.name, result.push_repo, result.push_refused)
    print_web_access(spec, options)
    print_first_verdict(result.verdict)


def deploy_key_owner() -> str:
    """Who a deploy key's title names: this user's owner id (owner.py), else user@host."""
    from ..owner import local_owner, owner_id

    try:
        return owner_id()
    except OSError:
        return local_owner()


def auto_bake_wanted(provider: Provider) -> bool:
    """Read before the launch: a wrong setting is an error before anything is made."""
    from ..autobake import wanted

    return wanted(settings().auto_bake, provider)


def bake_for_next_time(provider: Provider, spec: WorkspaceSpec) -> None:
    """auto_bake after a launch that installed what no image had; a bake that cannot start
    changes nothing for this launch or the next."""
    from ..autobake import has_image_for, start

    try:
        if spec.image or has_image_for(provider, spec):
            return  # an image the user named, or one with every step baked in
        bake = start(provider, spec)
    except (OSError, VmgenError) as exc:  # the workspace is up: this is worth a line, not a failure
        err.print(f"[yellow]auto_bake:[/] could not start a bake ({exc}); launches keep installing")
        return
    if not bake.started:
        err.print(f"  auto_bake: a bake of this install plan is already running (log: {bake.log})")
        return
    err.print(
        "  auto_bake: baking this install plan on a separate build VM in the background, so the next "
        f"launch skips the installs; {provider.image_cost_note()}; log: {bake.log} (auto_bake = no turns it off)"
    )


def print_launch_json(name: str, provider: str, elapsed: float, result: LaunchResult) -> None:
    """A launch's or a restore's outcome with its step timings (the benchmarks read it)."""
    report: dict[str, Any] = {
        "name": name,
        "provider": provider,
        "seconds": round(elapsed, 1),
        "image": result.image,
        "timings": result.timings,
        "phases": [{"name": p.name, "at": p.at} for p in result.phases],
    }
    if result.restored is not None:
        report["restored"] = {
            "backup_id": result.restored.backup_id,
            "plaintext_bytes": result.restored.plaintext_bytes,
            "seconds_on_vm": result.restored.seconds,
        }
    out.print_json(json.dumps(report))


def warn_without_credentials(spec: WorkspaceSpec, environment: dict[str, str], login_copied: bool) -> None:
    """Once the launch is checked, before anything is made: an agent without a key or a login
    starts at its login screen, and every prompt sent to it goes nowhere."""
    variables = spec.agent.credential_variables
    if login_copied or not variables or any(environment.get(variable) for variable in variables):
        return
    missing = " or ".join(variables)
    copy = " and no --copy-claude-login" if spec.agent.name == "claude" else ""
    err.print(f"[yellow]warning:[/] {spec.agent.name} will have no credentials: {missing} is not set{copy}.")
    err.print(f"  It will wait at its login screen: set {missing}, or log in with `vmgen connect {spec.name}` once up.")


def print_first_verdict(verdict: WatchdogState | None) -> None:
    from ...contract.verdict_words import what_happens

    if verdict is None:
        err.print("  watchdog: no verdict yet (see `vmgen status` in a moment)")
        return
    err.print(f"  watchdog: agent {verdict.agent.state}; {what_happens(verdict)}")


@main.command()
@spec_options
@click.argument("source")
def render(source: str, **opts: Any) -> None:
    """Print the cloud-init user-data for SOURCE; nothing is created."""
    from ..builder import RenderOptions, check_schema, check_size, generate_host_key, render_user_data
    from ..providers import redacted_self_delete

    provider = opts.get("provider") or settings().provider
    spec = build_spec(source, opts, provider=provider)
    # Rendering contacts no provider: the self-delete settings are shown with secrets redacted.
    self_delete = redacted_self_delete(provider)
    user_data = render_user_data(
        spec, RenderOptions(host_key=generate_host_key(), self_delete=self_delete, redact_secrets=True)
    )
    check_size(user_data, provider_class(provider).user_data_limit, provider)
    check_schema(user_data)
    click.echo(user_data, nl=False)
