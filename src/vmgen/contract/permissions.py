"""Permission prompts answered from the workspace page: what crosses from the agent's hook to root,
and from root to the page.

Claude Code runs vmgen's `PermissionRequest` hook (installed in its managed settings, root's file,
which the agent cannot replace or disable) as the agent user. The hook sends the request to root
over root's control socket and waits; root keeps it under a random single-use id and shows it to
the page, which alone may answer (root's page socket, behind vmgen's login). The answer goes back
to the waiting hook, which prints Claude Code's decision. Nothing the agent can write is an
answer: the agent may only ask, and root takes answers only from root's own page socket.

Everything the hook sends is the agent's (it can send anything): root cuts and cleans it again
(`clamp_ask`), and the page shows it as text.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

WAIT_SECONDS = 300.0  # root holds a request this long for an answer; then Claude Code's own prompt rules
HOOK_TIMEOUT_SECONDS = 330  # Claude Code's timeout for the hook (it kills the hook past it)
MAX_PENDING = 4  # requests root holds at once; one more is refused at once (the terminal asks)
DECISIONS = ("allow", "deny")
TOOL_MAX = 64
SESSION_MAX = 64
PATH_MAX = 512
COMMAND_MAX = 2000
DETAIL_MAX = 4000
ID_CHARS = re.compile(r"[A-Za-z0-9_-]{16,64}")
_TOOL = re.compile(r"[A-Za-z0-9_.:-]+")
DENIED_MESSAGE = "The user denied this from the workspace page."


@dataclass(frozen=True)
class PermissionAsk:
    """One tool call the agent asks to make, as the page shows it: every text cut and cleaned."""

    tool: str  # Claude Code's tool name (letters, digits, _ . : -)
    session: str = ""
    command: str = ""  # Bash: the command
    path: str = ""  # a file the tool writes or edits
    detail: str = ""  # the edit as a diff, what is written, or the rest of the input as JSON
    cut: bool = False  # something was longer than its cap and was cut


@dataclass(frozen=True)
class PendingPermission:
    """A request root holds: its single-use id (bound to this request alone) and since when."""

    id: str
    ask: PermissionAsk
    since: float


@dataclass(frozen=True)
class PermissionsView:
    """What the page gets: the pending requests, and whether the page may answer them (only
    behind vmgen's login: without a domain the page's socket is the agent's to reach)."""

    pending: tuple[PendingPermission, ...] = ()
    answerable: bool = False


def _clean(text: str, limit: int, lines: bool) -> tuple[str, bool]:
    """No control characters (newlines and tabs kept where `lines`), at most `limit` characters."""
    kept = "".join(ch for ch in text if (lines and ch in "\n\t") or not unicodedata.category(ch).startswith("C"))
    return kept[:limit], len(kept) > limit


def tool_word(value: object) -> str:
    """A tool's name as vmgen says it: one word of letters, digits and `_ . : -`, else "a tool"."""
    if isinstance(value, str) and 0 < len(value) <= TOOL_MAX and _TOOL.fullmatch(value):
        return value
    return "a tool"


def clamp_ask(tool_name: object, tool_input: object, session: object = "") -> PermissionAsk:
    """The hook input's request (Claude Code's `tool_name` and `tool_input`) as the page shows it."""
    data: dict[str, Any] = tool_input if isinstance(tool_input, dict) else {}
    used: set[str] = set()

    def text(*keys: str) -> str:
        for key in keys:
            if isinstance(data.get(key), str):
                used.add(key)
                return str(data[key])
        return ""

    command = text("command", "url", "pattern", "query")
    path = text("file_path", "notebook_path", "path")
    if isinstance(data.get("old_string"), str) and isinstance(data.get("new_string"), str):
        detail = _diff(text("old_string"), text("new_string"), path)
    elif isinstance(data.get("edits"), list):
        used.add("edits")
        detail = "\n".join(
            _diff(str(e.get("old_string", "")), str(e.get("new_string", "")), path)
            for e in data["edits"][:20]
            if isinstance(e, dict)
        )
    else:
        detail = text("content", "new_source", "description", "prompt")
    rest = {k: v for k, v in data.items() if k not in used}
    if rest and not detail:
        detail = json.dumps(rest, indent=1, sort_keys=True, default=str)[: DETAIL_MAX * 2]
    command, cut_command = _clean(command, COMMAND_MAX, lines=True)
    path, cut_path = _clean(path, PATH_MAX, lines=False)
    detail, cut_detail = _clean(detail, DETAIL_MAX, lines=True)
    sid = session if isinstance(session, str) else ""
    return PermissionAsk(
        tool=tool_word(tool_name),
        session=_clean(sid, SESSION_MAX, lines=False)[0],
        command=command,
        path=path,
        detail=detail,
        cut=cut_command or cut_path or cut_detail,
    )


def reclamp(ask: PermissionAsk) -> PermissionAsk:
    """Root's copy of what the hook sent: the same caps and cleaning again (the hook is the agent's)."""
    command, a = _clean(ask.command, COMMAND_MAX, lines=True)
    path, b = _clean(ask.path, PATH_MAX, lines=False)
    detail, c = _clean(ask.detail, DETAIL_MAX, lines=True)
    return PermissionAsk(
        tool=tool_word(ask.tool),
        session=_clean(ask.session, SESSION_MAX, lines=False)[0],
        command=command,
        path=path,
        detail=detail,
        cut=ask.cut or a or b or c,
    )


def _diff(old: str, new: str, path: str) -> str:
    name = path.rsplit("/", 1)[-1] or "file"
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), f"{name} (before)", f"{name} (after)", lineterm="", n=2
    )
    return "\n".join(list(lines)[: DETAIL_MAX // 8])


def hook_output(decision: str) -> dict[str, Any]:
    """What the hook prints for Claude Code (its PermissionRequest output); "" prints nothing, and
    Claude Code's own prompt decides."""
    if decision not in DECISIONS:
        raise ValueError(f"no such decision: {decision!r}")
    verdict: dict[str, Any] = {"behavior": decision}
    if decision == "deny":
        verdict["message"] = DENIED_MESSAGE
    return {"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": verdict}}


__all__ = [
    "DECISIONS",
    "HOOK_TIMEOUT_SECONDS",
    "MAX_PENDING",
    "WAIT_SECONDS",
    "PendingPermission",
    "PermissionAsk",
    "PermissionsView",
    "clamp_ask",
    "hook_output",
    "reclamp",
    "tool_word",
]
