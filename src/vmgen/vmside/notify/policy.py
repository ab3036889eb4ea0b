"""Which events make which messages, and only once per state change; pure functions.

The agent user controls its hook payloads (it can write any line to the events file), so a
message never carries its text: every word is vmgen's, and the only values taken from a hook are
its event name and a `kind` from contract.documents.HOOK_KINDS, each mapped to fixed words here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...contract.documents import ActionRecord, BudgetRecord, HookEvent

# A session's states as notifications see them; "working" is silent (it re-arms the others).
WORKING, WAITING, PERMISSION, QUESTION, FAILED = "working", "waiting", "permission", "question", "failed"

_FAILURES = {
    "rate_limit": "rate limited by the model API",
    "authentication_failed": "the model API refused its credentials",
    "billing_error": "a billing error at the model API",
    "invalid_request": "the model API refused the request",
    "server_error": "a model API server error",
    "max_output_tokens": "the reply hit its output limit",
}
# Messages about a workspace that is going or gone: holding its watchdog off means nothing (no Keep
# alive button under them, on any channel).
NO_KEEPALIVE = frozenset({"acting", "deleted", "powered off", "backup failed"})
BACKUP_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.:")


@dataclass(frozen=True)
class Notice:
    """One thing to tell: `scope` and `state` dedupe it (a scope's state said once until it changes)."""

    kind: str  # finished, permission, waiting, question, failed, warning, stalled, acting, ...
    title: str  # vmgen's words
    text: str  # vmgen's words
    scope: str = ""
    state: str = ""
    priority: int = 3  # ntfy's 1-5
    tags: tuple[str, ...] = ()
    request_id: str = ""  # a permission prompt root holds: its single-use id (Allow / Deny on Telegram and ntfy)


@dataclass(frozen=True)
class Message:
    """A notice for one workspace, as every channel sends it."""

    workspace: str
    kind: str
    title: str
    text: str
    link: str  # the workspace page ("" without a domain)
    priority: int = 3
    tags: tuple[str, ...] = ()
    request_id: str = ""  # a permission prompt root holds: its single-use id (Allow / Deny on Telegram and ntfy)


def hook_state(event: HookEvent) -> tuple[str, Notice | None]:
    """A hook event's state for its session, and what to say should that state be new."""
    if event.event in ("UserPromptSubmit", "PreToolUse", "PostToolUse"):
        return WORKING, None
    if event.event == "Stop":
        return WAITING, Notice(
            "finished", "agent finished", "the agent finished its turn", priority=3, tags=("white_check_mark",)
        )
    if event.event == "StopFailure":
        why = _FAILURES.get(event.kind, "an error")
        return FAILED, Notice(
            "failed", "agent turn failed", f"the agent's turn ended on {why}", priority=4, tags=("x",)
        )
    if event.event == "Notification":
        if event.kind == "permission_prompt":
            return PERMISSION, Notice(
                "permission", "permission asked", "the agent asks permission to use a tool", priority=4, tags=("lock",)
            )
        if event.kind == "elicitation_dialog":
            return QUESTION, Notice(
                "question", "question", "the agent asks you a question", priority=4, tags=("question",)
            )
        if event.kind == "idle_prompt":
            return WAITING, Notice("waiting", "agent waiting", "the agent waits for your input", tags=("hourglass",))
    return "", None


@dataclass
class Dedupe:
    """Each scope's last state: a notice goes out only when its scope's state changes."""

    seen: dict[str, str] = field(default_factory=dict)
    limit: int = 256  # scopes remembered (sessions come and go)

    def admit(self, notice: Notice) -> bool:
        if self.seen.get(notice.scope) == notice.state:
            return False
        self.seen.pop(notice.scope, None)
        self.seen[notice.scope] = notice.state
        while len(self.seen) > self.limit:
            self.seen.pop(next(iter(self.seen)))
        return True

    def note(self, scope: str, state: str) -> None:
        """A state that says nothing (working) but re-arms the scope."""
        self.seen.pop(scope, None)
        self.seen[scope] = state


def notices_of_hooks(dedupe: Dedupe, events: list[HookEvent], prompts_by_root: bool = False) -> list[Notice]:
    """The notices a batch of hook events makes, oldest first; `dedupe` remembers across batches.
    With `prompts_by_root` (a permission mode other than bypass), root's control daemon tells of
    each permission prompt itself, with the tool's name (`permission_notice`), so the hook's own
    permission notification only re-arms its session."""
    out: list[Notice] = []
    for event in events:
        state, notice = hook_state(event)
        scope = f"session:{event.session}"
        if not state:
            continue
        if prompts_by_root and state == PERMISSION:
            notice = None
        if notice is None:
            dedupe.note(scope, state)
            continue
        said = Notice(notice.kind, notice.title, notice.text, scope, state, notice.priority, notice.tags)
        # An idle prompt after a finished turn is the same state: said once.
        if dedupe.admit(said):
            out.append(said)
    return out


def warning_notice(text: str, deadline: float) -> Notice:
    """The idle warning (text from contract.verdict_words: the countdown, in vmgen's words)."""
    return Notice("warning", "idle warning", text, "watchdog:warning", f"{deadline:.0f}", 4, ("warning",))


def stall_notice(stall_minutes: float) -> Notice:
    return Notice(
        "stalled",
        "agent stalled",
        f"the agent looks stalled: a turn is open but nothing has moved for {stall_minutes:g} min; "
        "the idle countdown runs",
        "watchdog:stall",
        "stalled",
        4,
        ("warning",),
    )


def action_notice(event: str, record: ActionRecord | None, workspace: str) -> Notice | None:
    """What the idle action's steps (contract ACTION_STEPS, "acting") say: fixed words, the backup's or
    snapshot's id (vmgen's own) at most, never an error's text (it may quote a URL or a store's answer)."""
    backup = _plain(record.backup_id) if record else ""
    snapshot = _plain(record.snapshot) if record else ""
    scope = "watchdog:action"
    if event == "acting":
        why = _ACT_REASONS.get(record.reason if record else "", "idle")
        return Notice("acting", "backing up", f"{why}: backing up, then deleting", scope, event, 3, ("floppy_disk",))
    if event in ("deleting", "done"):
        if backup:
            return Notice(
                "deleted",
                "backed up and deleted",
                f"backup {backup} done; workspace deleted (`vmgen restore {workspace}` brings it back)",
                scope,
                "deleted",
                3,
                ("wastebasket",),
            )
        return Notice("deleted", "deleted", "workspace deleted", scope, "deleted", 3, ("wastebasket",))
    if event == "powering off":
        done = f"backup {backup} done; workspace powered off" if backup else "workspace powered off"
        return Notice("powered off", "powered off", f"{done} (`vmgen start {workspace}` brings it back)", scope, event)
    if event == "kept":
        kept = f"snapshot {snapshot} keeps its disk" if snapshot else "its disk is kept"
        return Notice(
            "backup failed",
            "backup failed",
            f"no verified backup could be made; {kept}",
            scope,
            f"kept {kept}",
            5,
            ("x",),
        )
    return None


# Why the act unit runs (ActionRecord.reason), as a notice's first words.
_ACT_REASONS = {"idle": "idle", "lifetime": "hard lifetime over", "budget": "budget spent"}


def budget_notice(record: BudgetRecord) -> Notice:
    """The month's share of the budget is spent: root's own numbers, said once a month."""
    stop = record.action == "stop"
    then = "it stops now (budget_action = stop)" if stop else "it keeps running (budget_action = warn)"
    currency = record.currency if record.currency.isalpha() and len(record.currency) <= 3 else ""
    return Notice(
        "budget",
        "budget spent",
        f"spent {record.spent:.2f} of its {record.allowance:.2f} {currency} share of budget_month; {then}",
        "watchdog:budget",
        f"{record.month_end:.0f}",
        5 if stop else 4,
        ("money_with_wings",),
    )


_TOOL_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")


def permission_notice(tool: str, request_id: str = "") -> Notice:
    """A permission prompt root holds for the page: vmgen's words and the tool's name, if that
    is one plain word (Bash, Edit, mcp__server__tool: the agent names it, so nothing else of it
    goes out: no dots, no slashes, nothing a phone could take for a link). `request_id`, root's
    own single-use id of the request, is for the channels that offer Allow / Deny (Telegram, ntfy)."""
    word = tool if _TOOL_WORD.fullmatch(tool) else "a tool"
    return Notice(
        "permission",
        "permission requested",
        f"the agent asks to use {word}: Allow or Deny on the workspace page",
        "permissions",
        word,
        4,
        ("lock",),
        request_id,
    )


def ready_notice(restored: bool) -> Notice:
    if restored:
        return Notice(
            "restored", "restored", "the workspace is restored and ready", "watchdog:ready", "restored", 3, ("tada",)
        )
    return Notice("ready", "ready", "the workspace is ready", "watchdog:ready", "ready", 3, ("tada",))


def message_of(notice: Notice, workspace: str, link: str) -> Message:
    return Message(
        workspace,
        notice.kind,
        f"{workspace}: {notice.title}",
        notice.text,
        link,
        notice.priority,
        notice.tags,
        notice.request_id,
    )


def _plain(value: str) -> str:
    return value if value and len(value) <= 80 and set(value) <= BACKUP_ID_CHARS else ""


__all__ = [
    "NO_KEEPALIVE",
    "Dedupe",
    "Message",
    "Notice",
    "action_notice",
    "budget_notice",
    "hook_state",
    "message_of",
    "notices_of_hooks",
    "permission_notice",
    "ready_notice",
    "stall_notice",
    "warning_notice",
]
