"""How root's watchdog recognises a coding agent: its processes, its model API, its state files.

Declared with each agent in laptop/agents.py and handed to the VM in the watchdog's settings
(idlewatch.toml, root's: `agent_*` keys, written by `flatten` and read back by `AgentWatch.of`),
so the VM side knows no agent by name. Checked on both sides: a path is relative to the agent's
home and never leaves it, a process name is a plain word.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from ..errors import DocumentError

PROCESS_NAME = re.compile(r"[A-Za-z0-9._-]{1,40}")
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
STATE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


class TurnLog(enum.StrEnum):
    """Which of the agent's own files says whether a turn is open."""

    NONE = ""  # none vmgen reads: the model connections and its state files' writes tell
    CLAUDE = "claude"  # Claude Code: hooks, per-session status files and transcripts
    CODEX = "codex"  # codex's rollout (~/.codex/sessions/Y/M/D/rollout-*.jsonl): task_started/complete


@dataclass(frozen=True)
class AgentWatch:
    # Program names: a process's own name, its argv[0], or the script an interpreter (node,
    # python) runs. The first of the agent's processes in a tree is a session.
    processes: tuple[str, ...] = ("claude",)
    turn_log: TurnLog = TurnLog.CLAUDE
    # The model API: the variables that point the agent at an endpoint (read from the agent
    # process's environment), else its default. Without a turn log, only connections to this
    # endpoint's port (and address, when it is one) count as model connections.
    endpoint_variables: tuple[str, ...] = ("ANTHROPIC_BASE_URL",)
    endpoint: str = "https://api.anthropic.com"
    # Files or folders below the agent's home where it keeps its conversations: a write there is
    # work (for an agent without a turn log).
    state_paths: tuple[str, ...] = ()

    def validate(self, where: str = "") -> AgentWatch:
        prefix = f"{where}: " if where else ""
        for name in self.processes:
            if not PROCESS_NAME.fullmatch(name):
                raise DocumentError(f"{prefix}agent process name {name!r}: letters, digits, '.', '-', '_' only")
        if not self.processes:
            raise DocumentError(f"{prefix}agent_processes is empty: the watchdog would see no agent")
        for variable in self.endpoint_variables:
            if not VARIABLE.fullmatch(variable):
                raise DocumentError(f"{prefix}endpoint variable {variable!r} is not an environment variable name")
        if endpoint_of(self.endpoint) is None:
            raise DocumentError(f"{prefix}agent_endpoint {self.endpoint!r} is not an http(s) URL")
        for folder in self.state_paths:
            if not STATE_PATH.fullmatch(folder) or ".." in folder.split("/"):
                raise DocumentError(f"{prefix}state path {folder!r} must be a plain path below the agent's home")
        return self

    @classmethod
    def of(cls, document: Any) -> AgentWatch:
        """From a document carrying the flattened `agent_*` fields (WatchSettings)."""
        return cls(**{f.name: getattr(document, f"agent_{f.name}") for f in fields(cls)})


def flatten(watch: AgentWatch) -> dict[str, Any]:
    """The `agent_*` fields of WatchSettings (TOML documents are flat)."""
    return {f"agent_{f.name}": getattr(watch, f.name) for f in fields(watch)}


def endpoint_of(url: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) URL; None for anything else (the agent's environment may say
    anything: it is parsed, never resolved or connected to)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)
