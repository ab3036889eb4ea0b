"""The documents that cross between the laptop and the VM, and between root and the agent user
on the VM: one class each, with the functions that write and read it.

Written by the renderer (cloud-init files), by root's services (results, the watchdog's state) or
by the agent user (leases, hook events). Whatever the agent user wrote is read with every value
checked and clamped: a lease never reaches past the CLI's own cap.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ..errors import DocumentError, UsageError
from . import codec, settings
from .agentwatch import AgentWatch, TurnLog
from .devcontainer import ALLOW_SETTING as ALLOW_PRIVILEGED_SETTING
from .enums import BudgetAction, IdleAction, PermissionMode, StoreKind
from .notify import parse_target
from .settings import setting

# --- the watchdog's settings (/etc/vmgen/idlewatch.toml, root's) --------------------------------

AGENT_WATCH_DEFAULTS = AgentWatch()
MAX_OTHER_AGENTS = 16  # each one more scan of the process table per tick: a bound, above any offered

# What each action does to the workspace, as `vmgen status` and the page say it: "backs up and
# deletes itself in 28 min unless something happens".
ACTION_WORDS: dict[str, str] = {
    IdleAction.POWEROFF: "powers off",
    IdleAction.DELETE: "deletes itself",
    IdleAction.BACKUP_THEN_DELETE: "backs up and deletes itself",
}


@dataclass(frozen=True)
class WatchSettings:
    """The idle watchdog's settings; the defaults are vmgen's defaults everywhere (config, spec)."""

    name: str = "workspace"
    workspace: str = ""  # the repository folder whose files count as activity; "" = the agent's work/
    interval_seconds: float = setting(
        30,
        "seconds between the watchdog's looks",
        minimum=1,
        maximum=3600,
        laptop="idle_interval_seconds",
        option="--idle-interval",
    )
    # Below a few looks the watchdog cannot tell idle from between two steps.
    idle_minutes: float = setting(
        30, "minutes idle before the idle action", minimum=0.1, laptop="idle_minutes", option=True
    )
    human_minutes: float = setting(
        120, "minutes a connected person without input still counts", minimum=0, laptop="idle_human_minutes"
    )
    warn_minutes: float = setting(
        10, "minutes of warning before the idle action", minimum=0, laptop="idle_warn_minutes", option="--idle-warn"
    )
    stall_minutes: float = setting(
        15, "minutes a turn may go without progress before it counts as stalled", minimum=0, laptop="idle_stall_minutes"
    )
    # The hard lifetime: finite by default, so a workspace that something keeps busy still has an
    # end to its bill.
    max_lifetime_hours: float = setting(
        72,
        "hours after boot when the workspace acts whatever keeps it busy (0: off)",
        minimum=0,
        maximum=24 * 366,
        laptop="max_lifetime_hours",
        option="--max-lifetime",
    )
    # The month's budget, and this workspace's share of it (see vmside/idlewatch/budget.py): the
    # laptop works the allowance out at launch and restore (budget_month less what the user's
    # other workspaces spent this month, in this provider's currency) and root counts this VM's
    # own uptime x price against it until the month it was worked out for ends.
    budget_month: float = setting(
        0,
        "the most a month of workspaces may cost, in each provider's currency apart (0: no budget)",
        minimum=0,
        maximum=100_000,
        laptop="budget_month",
    )
    budget_action: BudgetAction = BudgetAction.WARN
    budget_allowance: float = 0.0  # what this workspace may spend until budget_month_end (0: no budget)
    budget_price_hourly: float = 0.0  # its price per hour, from the provider's price source
    budget_currency: str = ""  # that price's currency ("EUR", "USD")
    budget_month_end: float = 0.0  # wall clock: the end of the month the allowance is for
    action: IdleAction = IdleAction.POWEROFF
    # Read by the agent's start command and Claude Code's managed settings on the laptop's side,
    # and by root's page (answers to permission prompts) on the VM's; a word outside the set is
    # refused on both sides (codec.py on load, the laptop's config before a launch).
    permission_mode: PermissionMode = setting(  # noqa: RUF009 - a field with its declaration, as every setting
        PermissionMode.BYPASS,
        "whether the agent asks before it acts (`bypass`: never; else Claude Code's mode, "
        "its prompts answered on the workspace page or in the terminal)",
        laptop="permission_mode",
    )
    dry_run: bool = False
    provider: str = "docker"
    webhook_url: str = ""
    notify: tuple[str, ...] = ()  # contract.notify targets; root's notifier sends to each
    # How the VM deletes itself (cloud providers): the metadata service and the provider's API
    # endpoint ("" for its default); `provider` picks the VM's half (vmgen.vmside.providers).
    metadata_url: str = ""
    api_endpoint: str = ""
    # With a domain: the zone whose records for this workspace go before the server does.
    dns_zone: str = ""
    dns_endpoint: str = ""
    preview_dns_zone: str = ""  # with a preview domain: its zone, whose records go too
    ignore: tuple[str, ...] = ()
    # How the watchdog recognises the agent (contract/agentwatch.py; the agent's own declaration
    # in laptop/agents.py): flat, as TOML documents are. The defaults are Claude Code's.
    agent_processes: tuple[str, ...] = AGENT_WATCH_DEFAULTS.processes
    agent_turn_log: TurnLog = AGENT_WATCH_DEFAULTS.turn_log
    agent_endpoint_variables: tuple[str, ...] = AGENT_WATCH_DEFAULTS.endpoint_variables
    agent_endpoint: str = AGENT_WATCH_DEFAULTS.endpoint
    agent_state_paths: tuple[str, ...] = AGENT_WATCH_DEFAULTS.state_paths
    # The other agents vmgen offers, each as it declares itself: a further session of any of them
    # (`vmgen session new --agent`) is watched as well, and the workspace works while any works.
    other_agents: tuple[AgentWatch, ...] = ()

    @property
    def agent_watch(self) -> AgentWatch:
        return AgentWatch.of(self)

    def to_toml(self) -> str:
        return codec.toml_dumps(self)

    def validate(self, where: str = "", on_laptop: bool = False) -> WatchSettings:
        settings.check(self, where, on_laptop)
        for target in self.notify:
            parse_target(target)
        check_budget_values(self, where)
        self.agent_watch.validate(where)
        for n, watch in enumerate(self.other_agents):
            watch.validate(f"{where}: other_agents[{n}]" if where else f"other_agents[{n}]")
        if len(self.other_agents) > MAX_OTHER_AGENTS:
            raise DocumentError(f"{where}: other_agents: at most {MAX_OTHER_AGENTS}")
        return self

    @classmethod
    def from_toml(cls, text: str, where: str = "idlewatch.toml") -> WatchSettings:
        return codec.toml_loads(cls, text, where).validate(where)


WATCH_DEFAULTS = WatchSettings()

CURRENCY = re.compile(r"[A-Z]{3}")
BUDGET_VALUE_MAX = 1e9  # more than any month of workspaces costs: a bound, not a guess


def check_budget_values(watch: WatchSettings, where: str = "") -> None:
    """The allowance the laptop worked out, as either side reads it: finite, not negative, a
    currency of three capitals (ISO 4217)."""
    prefix = f"{where}: " if where else ""
    for name in ("budget_allowance", "budget_price_hourly", "budget_month_end"):
        value = getattr(watch, name)
        if not _finite(value) or not 0 <= value <= (math.inf if name == "budget_month_end" else BUDGET_VALUE_MAX):
            raise DocumentError(f"{prefix}{name} is {value!r}: it takes a finite number, 0 or more")
    if watch.budget_currency and not CURRENCY.fullmatch(watch.budget_currency):
        raise DocumentError(
            f"{prefix}budget_currency is {watch.budget_currency!r}: it takes a currency code (EUR, USD)"
        )


# --- the backup store as the VM sees it (/etc/vmgen/backup.toml, root-only) --------------------


@dataclass(frozen=True)
class BackupTarget:
    """Where a workspace's backups go: a local folder or an S3-compatible bucket (R2)."""

    kind: StoreKind
    path: str = ""  # local: a directory
    bucket: str = ""
    endpoint_url: str = ""
    region: str = "auto"
    access_key_id: str = ""
    secret_access_key: str = ""
    part_size_mib: int = setting(
        32, "MiB per part of an upload to S3/R2 (S3's least is 5)", minimum=5, maximum=5120, laptop="backup_part_mib"
    )
    keep_last: int = setting(7, "the newest backups always kept", minimum=1, laptop="backup_keep")
    excludes: tuple[str, ...] = ()
    max_increments: int = setting(
        10,
        "increments after a full backup before the next full one (0: every backup full)",
        minimum=0,
        laptop="backup_max_increments",
    )
    # Retention by age besides the count: every backup of the last `keep_hours`, and the newest
    # of each of the last `keep_daily` days and `keep_weekly` weeks (see backup/retention.py).
    keep_hours: float = setting(24, "hours whose every backup is kept", minimum=0, laptop="backup_keep_hours")
    keep_daily: int = setting(7, "days whose newest backup is kept", minimum=0, laptop="backup_keep_daily")
    keep_weekly: int = setting(4, "weeks whose newest backup is kept", minimum=0, laptop="backup_keep_weekly")
    # Root's deadline for one backup: a backup that has not finished by then is stopped (its
    # stages killed), and the idle action keeps the data another way.
    deadline_minutes: float = setting(
        15, "minutes a backup may take before root stops it", minimum=0.1, laptop="backup_deadline_minutes"
    )
    # Backups asked for through the control socket (the agent, the page, the laptop over SSH)
    # that may start in an hour; the watchdog's own are never limited.
    requests_per_hour: int = setting(
        4, "asked-for backups that may start in an hour", minimum=0, laptop="backup_requests_per_hour"
    )

    def validate(self, where: str = "", on_laptop: bool = False) -> BackupTarget:
        settings.check(self, where, on_laptop)
        return self

    def describe(self) -> str:
        return (
            f"local folder {self.path}"
            if self.kind == StoreKind.LOCAL
            else f"s3://{self.bucket} at {self.endpoint_url or 'AWS'}"
        )


# The backup settings' defaults, whatever the store.
BACKUP_DEFAULTS = BackupTarget(kind=StoreKind.LOCAL)


@dataclass(frozen=True)
class BackupConfig:
    """The store, and the workspace's public recipient: the VM never holds the identity."""

    target: BackupTarget
    workspace: str
    recipient: str

    def to_toml(self) -> str:
        flat = {**codec.to_value(self.target), "workspace": self.workspace, "recipient": self.recipient}
        return "".join(f"{key} = {json.dumps(value)}\n" for key, value in flat.items())

    @classmethod
    def from_toml(cls, text: str, where: str = "backup.toml") -> BackupConfig:
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DocumentError(f"{where}: not valid TOML ({exc})") from None
        workspace, recipient = data.pop("workspace", None), data.pop("recipient", None)
        if not isinstance(workspace, str) or not isinstance(recipient, str):
            raise DocumentError(f"{where}: workspace and recipient must be strings")
        return cls(codec.from_value(BackupTarget, data, where).validate(where), workspace, recipient)


# The bound on the idle action and the hard lifetime's action (vmgen-act.service's start timeout,
# after which systemd powers the VM off): the backup's deadline, then the time keeping the data
# another way may take (a provider snapshot and a delete), then a margin.
ACT_FALLBACK_SECONDS = 600
ACT_MARGIN_SECONDS = 60


def act_timeout_seconds(deadline_minutes: float) -> int:
    return round(max(1.0, deadline_minutes) * 60) + ACT_FALLBACK_SECONDS + ACT_MARGIN_SECONDS


# --- backups and restores: what root reports (world-readable, no secrets) ------------------------


@dataclass(frozen=True)
class ExcludedRecord:
    pattern: str
    entries: int = 0
    files: int = 0
    bytes: int = 0


# The trigger of the backups the watchdog makes itself (the idle action, the hard lifetime): the
# laptop's `vmgen list` tells an idle stop's backup by it, and root never rate-limits them.
WATCHDOG_TRIGGER = "idlewatch"


@dataclass(frozen=True)
class BackupResult:
    ok: bool
    backup_id: str = ""
    ciphertext_bytes: int = 0
    plaintext_bytes: int = 0
    excluded: tuple[ExcludedRecord, ...] = ()
    skipped: int = 0  # entries a backup could not hold (FIFOs, sockets, devices, unreadable ones)
    skipped_paths: tuple[str, ...] = ()  # the first of them, each with why
    parent: str = ""  # an increment: the backup it builds on ("" for a full backup)
    files: int = 0  # files and links archived
    unchanged: int = 0  # an increment: files and links left to earlier backups of its chain
    error: str = ""
    trigger: str = ""  # "laptop", "page", "idlewatch"
    seconds: float = 0.0
    finished_at: float = 0.0
    # Of the skipped, those holding data the backup lacks (files and folders it could not read,
    # not even as their owner), each with why: the VM still has them, the backup does not.
    left_out: int = 0
    left_out_paths: tuple[str, ...] = ()

    def reason_not_to_delete(self) -> str:
        """Why the VM must not be deleted on the strength of this backup ("" when it may be):
        it failed, or it left out files that the VM holds, so a delete would lose them."""
        if not self.ok:
            return f"the backup failed: {self.error}"
        if not self.left_out:
            return ""
        shown = "; ".join(self.left_out_paths[:5])
        more = f"; and {self.left_out - 5} more" if self.left_out > 5 else ""
        return (
            f"backup {self.backup_id} left out {self.left_out} file(s) or folder(s) it could not read, "
            f"which deleting the VM would lose: {shown}{more}"
        )


@dataclass(frozen=True)
class RestoreRequest:
    """Which backup a new VM restores (rendered into /etc/vmgen/restore.json)."""

    workspace: str
    backup_id: str = ""  # "" = the latest


@dataclass(frozen=True)
class RestoreResult:
    ok: bool
    backup_id: str = ""
    workspace: str = ""  # whose backup it was (a restore --as NEW restores another's)
    plaintext_bytes: int = 0
    error: str = ""
    seconds: float = 0.0
    finished_at: float = 0.0


# --- what the workspace is (rendered; read by the page server and the CLI) ----------------------


@dataclass(frozen=True)
class WorkspaceInfo:
    name: str
    agent: str
    repo_dir: str
    source: str
    idle_minutes: float
    desktop: bool
    vmgen_version: str
    # Cloned and installed by the agent's own script at the first boot (not a restore's: the
    # home comes back with them); the laptop checks the URL as it checks a repository source.
    dotfiles_repo: str = setting(
        "",
        "a git repository of dotfiles, cloned as the agent into ~/dotfiles and its install script run "
        "(install.sh, bootstrap, setup...; none: its dotfiles linked into the home)",
        laptop="dotfiles_repo",
        takes='a git URL (https://, ssh://, git@host:path), `#branch` optional; `""`: none',
    )
    # The repository's dev container (docs/devcontainers.md): its devcontainer.json, relative to
    # the repository ("" without one), brought up by the agent with rootless Podman.
    devcontainer: str = ""
    # Checked on the laptop before anything is made (contract.devcontainer.refusals); carried to
    # the VM for its check of the CLI's merged configuration.
    devcontainer_allow_privileged: bool = setting(
        False,
        "let a devcontainer.json ask for what vmgen refuses (privileged, host namespaces, added "
        "capabilities, devices, mounts of the VM's folders); count it as giving the agent root "
        "(see docs/devcontainers.md)",
        laptop=ALLOW_PRIVILEGED_SETTING,
    )


# The documents whose declared settings are the laptop's too (config.toml, VMGEN_<NAME>, the
# options of `vmgen launch`, `vmgen config show`, the README's table), in the table's order.
LAPTOP_DOCUMENTS: tuple[type, ...] = (WatchSettings, BackupTarget, WorkspaceInfo)


@dataclass(frozen=True)
class WebLinks:
    """What the workspace page links to; empty without a domain (`vmgen open` tunnels)."""

    url: str = ""
    code_url: str = ""
    desktop_url: str = ""
    previews: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebServices:
    """What `vmgen open` can open: read on the VM as the agent (`vmgen vmside services`)."""

    desktop: bool
    code_ui: str  # "absent" (only a workspace with a domain has it), "installing", "ready", "failed"
    code_ui_step: str = ""  # while installing: the install's latest phase
    code_ui_step_at: float = 0.0  # when that phase started (wall clock)


# --- the watchdog's state (/run/vmgen/idlewatch.json; world-readable) -----------------------


@dataclass(frozen=True)
class VerdictRecord:
    busy: bool  # activity or a lease holds it up (a silent person does not)
    reasons: tuple[str, ...]
    idle_since: float  # wall clock, like every time below (for showing; never compared elsewhere)
    idle_for_seconds: float
    next_action: str
    action_at: float
    deadline: float
    action: str = ""  # the action that will run at the deadline (next_action may say "warn")
    # What holds it up: "working", "kept-alive", "human" or "idle" (WATCH_CONDITIONS); "" from
    # a VM before it was recorded.
    condition: str = ""
    # Seconds from the verdict to the deadline, as the VM's own monotonic clock measured them:
    # what a laptop shows, whatever its clock says and whatever the VM's wall clock did.
    left_seconds: float = 0.0
    held_for_seconds: float = 0.0  # what remains of the longest keepalive lease
    held_by: str = ""  # its reason
    by_lifetime: bool = False  # the deadline is the hard lifetime's
    # The hard lifetime: its length and what is left of it at the verdict (the VM's monotonic
    # clock); 0 hours when it is off. Absent from a VM before it was recorded (None).
    lifetime_hours: float | None = None
    lifetime_left_seconds: float = 0.0


WATCH_CONDITIONS = ("working", "kept-alive", "human", "idle")


# The most sessions whose states the watchdog's state document lists (the overall state counts all).
MAX_SESSION_RECORDS = 16


@dataclass(frozen=True)
class SessionRecord:
    """One agent process the watchdog judged: its pid (the laptop matches it to a tmux window by
    the pane's descendants) and its state ("working", "waiting", "stalled")."""

    pid: int
    state: str
    detail: str = ""


@dataclass(frozen=True)
class AgentRecord:
    state: str = "absent"
    detail: str = ""
    sessions: tuple[SessionRecord, ...] = ()  # at most MAX_SESSION_RECORDS


@dataclass(frozen=True)
class ActionRecord:
    """What the idle action or the hard lifetime is doing or did, in words for people: written
    by root's action (/run/vmgen/action.json) at every step and carried in the watchdog's state,
    so that `vmgen status`, the page and the webhook say the same."""

    reason: str  # "idle", "lifetime" or "budget"
    action: str  # the configured action (an IdleAction; a string, as read from any VM)
    step: str  # ACTION_STEPS
    detail: str  # one sentence: what happened, and how to get the data back
    started_at: float  # wall clock
    deadline_at: float  # wall clock: the backup is given up then
    updated_at: float
    backup_id: str = ""
    snapshot: str = ""  # a provider snapshot made instead of a backup (its id)


# "backing up" and "deleting" are under way; "kept" means the compute was stopped without a
# verified backup, the data kept another way (the detail says how).
ACTION_STEPS = ("backing up", "deleting", "snapshotting", "powering off", "kept", "done")


@dataclass(frozen=True)
class BudgetRecord:
    """This workspace's spend against its share of the month's budget, as root counts it:
    `vmgen status` and the page show it."""

    budget_month: float  # the user's budget_month when the allowance was worked out
    allowance: float  # what this workspace may spend until month_end
    spent: float  # what it has spent since (its uptime x price_hourly)
    price_hourly: float
    currency: str
    month_end: float  # wall clock
    action: str  # a BudgetAction: "warn" or "stop"
    crossed: bool  # spent reached the allowance within its month
    counting: bool  # False once the month is over: the allowance no longer holds


@dataclass(frozen=True)
class WatchdogState:
    boot_id: str
    history: dict[str, Any]  # the policy's memory, for the watchdog itself
    verdict: VerdictRecord
    agent: AgentRecord
    updated_at: float
    last_seen: dict[str, float] = field(default_factory=dict)
    dry_run: bool = False
    failures: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    updated_boottime: float = 0.0  # CLOCK_BOOTTIME when written, in boot `boot_id`
    # How old the state was when read (on the VM, on CLOCK_BOOTTIME): 0 as written.
    age_seconds: float = 0.0
    acting: ActionRecord | None = None  # the idle action or the hard lifetime, once started
    budget: BudgetRecord | None = None  # with a budget: this workspace's spend against its share

    def dumps(self) -> str:
        return codec.dumps(self)

    @classmethod
    def loads(cls, text: str | bytes) -> WatchdogState:
        return codec.loads(cls, text, "the watchdog's state", strict=False)


# --- written by the agent user: keepalive leases and hook events --------------------------------

LEASE_MAX_SECONDS = 30 * 86400  # the longest `vmgen keepalive --for` accepts
REASON_MAX = 120


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> float:
    """`3h`, `90m`, `1h30m`, `45s`, `2d` -> seconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise UsageError(f"invalid duration {text!r}: use e.g. 3h, 90m, 1h30m")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0 or seconds > LEASE_MAX_SECONDS:
        raise UsageError(f"duration {text!r} must be between 1s and {LEASE_MAX_SECONDS // 86400}d")
    return seconds


@dataclass(frozen=True)
class Lease:
    """A keepalive until `until` (wall clock). Taken on the VM, it also carries its end on that
    boot's CLOCK_BOOTTIME: within the same boot that end is what counts, so a step of the wall
    clock (NTP, a resumed VM) neither drops nor stretches it; in another boot (stopped and
    started, restored) the wall-clock end is all there is."""

    until: float  # wall-clock epoch seconds
    reason: str
    boot: str = ""  # the boot it was taken in ("" for a lease from before vmgen knew of boots)
    boot_until: float = 0.0  # CLOCK_BOOTTIME seconds at its end, in that boot


@dataclass(frozen=True)
class Clocks:
    """One reading of the clocks a lease is measured on."""

    wall: float  # time.time()
    boot: str = ""  # the boot's id
    boottime: float = 0.0  # CLOCK_BOOTTIME


def dump_leases(leases: list[Lease] | tuple[Lease, ...]) -> str:
    return json.dumps([codec.to_value(lease) for lease in leases], indent=2) + "\n"


def _finite(value: object) -> TypeGuard[int | float]:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def parse_leases(raw: bytes | str, now: float | Clocks) -> tuple[Lease, ...]:
    """The live leases in a leases file, each clamped to at most the CLI's cap from now, with
    `until` measured from `now`: a lease of this boot by its boot-relative end (what remains of
    it, whatever the wall clock did since), any other by its wall-clock end. Anything that is not
    a lease is dropped: a broken file must not keep the VM up forever."""
    clocks = now if isinstance(now, Clocks) else Clocks(wall=now)
    try:
        data = json.loads(raw)
    except ValueError:
        return ()
    leases = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        boot, boot_until, until = item.get("boot"), item.get("boot_until"), item.get("until")
        if clocks.boot and boot == clocks.boot and _finite(boot_until):
            left = float(boot_until) - clocks.boottime
        elif _finite(until):
            left = float(until) - clocks.wall
        else:
            continue
        if left <= 0:
            continue
        left = min(left, LEASE_MAX_SECONDS)
        # The wall-clock end as written while the wall clock agrees with it (the two clocks are
        # read a moment apart); re-derived from what remains once the wall clock stepped.
        written = float(until) if _finite(until) else math.inf
        reason = item.get("reason")
        leases.append(
            Lease(
                until=written if abs(written - (clocks.wall + left)) < 1.0 else clocks.wall + left,
                reason=clean_text(reason if isinstance(reason, str) else "", REASON_MAX) or "keepalive",
                boot=clocks.boot,
                boot_until=clocks.boottime + left if clocks.boot else 0.0,
            )
        )
    return tuple(leases)


def with_lease(leases: tuple[Lease, ...], seconds: float, reason: str, now: float | Clocks) -> tuple[Lease, ...]:
    clocks = now if isinstance(now, Clocks) else Clocks(wall=now)
    seconds = min(seconds, LEASE_MAX_SECONDS)
    lease = Lease(
        until=clocks.wall + seconds,
        reason=clean_text(reason, REASON_MAX) or "keepalive",
        boot=clocks.boot,
        boot_until=clocks.boottime + seconds if clocks.boot else 0.0,
    )
    return (*leases, lease)


# Claude Code hook events the watchdog follows; the hook script appends one line per event.
HOOK_EVENTS = ("UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "StopFailure", "Notification")
# What a Notification's `notification_type` or a StopFailure's `error` may be: anything else the
# agent wrote is read as "" (its hook payload is its own, and notifications carry vmgen's words).
HOOK_KINDS = frozenset(
    {
        "permission_prompt",
        "idle_prompt",
        "elicitation_dialog",
        "auth_success",
        "rate_limit",
        "authentication_failed",
        "billing_error",
        "invalid_request",
        "server_error",
        "max_output_tokens",
        "unknown",
    }
)


SESSION_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
TRANSCRIPT_MAX = 4096


@dataclass(frozen=True)
class HookEvent:
    """One line of the hook events file: what one agent session said, and when."""

    at: float  # wall clock, never later than when it was read
    event: str
    session: str = ""  # the agent's session id ("" from a hook that did not say)
    transcript: str = ""  # that session's transcript, as the agent named it (a path to check)
    kind: str = ""  # a Notification's type or a StopFailure's error, one of HOOK_KINDS


def parse_hook_event(line: dict[str, Any], now: float) -> HookEvent | None:
    at, event = line.get("at"), line.get("event")
    if not _finite(at) or event not in HOOK_EVENTS:
        return None
    session, transcript = line.get("session"), line.get("transcript")
    plain = isinstance(session, str) and SESSION_ID.fullmatch(session) and session not in (".", "..")
    path = transcript if isinstance(transcript, str) and len(transcript) <= TRANSCRIPT_MAX else ""
    return HookEvent(
        at=min(float(at), now),
        event=str(event),
        session=str(session) if plain else "",
        transcript=path if path == clean_text(path, TRANSCRIPT_MAX) else "",
        kind=kind if isinstance(kind := line.get("kind"), str) and kind in HOOK_KINDS else "",
    )


def clean_text(text: str, limit: int) -> str:
    """Text from the agent's side, safe to show: no control characters, bounded length."""
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))[:limit]


__all__ = [
    "ACTION_STEPS",
    "ACTION_WORDS",
    "ACT_FALLBACK_SECONDS",
    "BACKUP_DEFAULTS",
    "HOOK_EVENTS",
    "HOOK_KINDS",
    "LAPTOP_DOCUMENTS",
    "LEASE_MAX_SECONDS",
    "WATCHDOG_TRIGGER",
    "WATCH_CONDITIONS",
    "WATCH_DEFAULTS",
    "ActionRecord",
    "AgentRecord",
    "BackupConfig",
    "BackupResult",
    "BackupTarget",
    "BudgetRecord",
    "Clocks",
    "ExcludedRecord",
    "HookEvent",
    "Lease",
    "RestoreRequest",
    "RestoreResult",
    "VerdictRecord",
    "WatchSettings",
    "WatchdogState",
    "WebLinks",
    "WebServices",
    "WorkspaceInfo",
    "act_timeout_seconds",
    "check_budget_values",
    "clean_text",
    "dump_leases",
    "parse_duration",
    "parse_hook_event",
    "parse_leases",
    "with_lease",
]
