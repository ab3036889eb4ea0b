"""What other agents than Claude Code say about their turns, read the way transcripts are.

codex keeps one rollout per conversation, `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-*.jsonl`
(CODEX_HOME defaults to ~/.codex): each turn opens with an `event_msg` of type `task_started` and
ends with `task_complete` (or `turn_aborted`, Esc); a tool call is a `response_item` of type
`function_call` (`custom_tool_call`, `local_shell_call`) answered by one `*_output` with its
`call_id`. The file read is the one a process of the session holds open, else the newest.

An agent without a turn log of its own leaves its state files: a write below them is work
(`StateFolders`: only their modification times, never their contents).

All of it is the agent's: opened through AgentFiles (no link followed, regular files of the
agent only, never blocking), listings and reads capped, and no time later than the reading.
"""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..agentfs import AgentFiles
from .transcript import Json, JsonlTail, TranscriptState, parse_timestamp

ROLLOUT = re.compile(r"rollout-[A-Za-z0-9._-]{1,200}\.jsonl")
DATE_PART = re.compile(r"[0-9]{1,4}")
TOOL_CALLS = frozenset({"function_call", "custom_tool_call", "local_shell_call"})
TOOL_OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output", "local_shell_call_output"})
TURN_CLOSED = frozenset({"task_complete", "turn_aborted"})


@dataclass
class RolloutTurn:
    """codex's turn state machine, fed one rollout line at a time."""

    turn_open: bool = False
    pending: set[str] = field(default_factory=set)
    tool_since: float | None = None
    changed_at: float | None = None
    last_event: str = ""

    def feed(self, line: Json) -> None:
        payload = line.get("payload")
        if not isinstance(payload, dict):
            return
        kind, what = line.get("type"), payload.get("type")
        at = parse_timestamp(line.get("timestamp"))
        at = min(at, time.time()) if at is not None else None
        if kind == "event_msg" and what == "task_started":
            self.turn_open, self.last_event, self.changed_at = True, "task started", at or self.changed_at
            self.pending.clear()
        elif kind == "event_msg" and what in TURN_CLOSED:
            self.turn_open, self.last_event, self.changed_at = False, str(what).replace("_", " "), at or self.changed_at
            self.pending.clear()
        elif kind == "response_item" and what in TOOL_CALLS and self.turn_open:
            self.pending.add(str(payload.get("call_id") or payload.get("id")))
            self.tool_since = self.tool_since or at
        elif kind == "response_item" and what in TOOL_OUTPUTS:
            self.pending.discard(str(payload.get("call_id")))
        if not self.pending:
            self.tool_since = None


class RolloutReader:
    """Follows the rollout of one codex session below `sessions` (its CODEX_HOME's)."""

    def __init__(self, sessions: Path, files: AgentFiles) -> None:
        self.sessions = sessions
        self.files = files
        self._tail: JsonlTail | None = None
        self._turn = RolloutTurn()

    def is_rollout(self, path: Path) -> bool:
        """A path a process holds open is followed only if it is a rollout of this folder."""
        try:
            relative = path.relative_to(self.sessions)
        except ValueError:
            return False
        parts = relative.parts
        return (
            len(parts) == 4
            and all(DATE_PART.fullmatch(p) for p in parts[:3])
            and ROLLOUT.fullmatch(parts[3]) is not None
        )

    def locate(self, held_open: Iterable[Path] = ()) -> Path | None:
        """The rollout the session's processes hold open, else the newest of the newest day."""
        for path in held_open:
            if self.is_rollout(path):
                return path
        folder = self.sessions
        for _ in range(3):  # year, month, day: the greatest number of each
            try:
                names = [
                    n for n, st in self.files.listdir(folder) if stat.S_ISDIR(st.st_mode) and DATE_PART.fullmatch(n)
                ]
            except OSError:
                return None
            if not names:
                return None
            folder = folder / max(names, key=int)
        try:
            found = [
                (st.st_mtime, folder / name)
                for name, st in self.files.listdir(folder)
                if stat.S_ISREG(st.st_mode) and ROLLOUT.fullmatch(name)
            ]
        except OSError:
            return None
        return max(found)[1] if found else None

    def poll(self, held_open: Iterable[Path] = ()) -> TranscriptState:
        path = self.locate(held_open)
        if path is None:
            return TranscriptState(None)
        if self._tail is None or self._tail.path != path:
            self._tail, self._turn = JsonlTail(path, self.files), RolloutTurn()
        lines, grew = self._tail.read()
        for line in lines:
            self._turn.feed(line)
        turn = self._turn
        running = turn.turn_open and bool(turn.pending)
        return TranscriptState(
            path,
            turn_open=turn.turn_open,
            tool_running=running,
            tool_since=turn.tool_since if running else None,
            grew=grew,
            changed_at=turn.changed_at,
            last_event=turn.last_event,
        )


class StateFolders:
    """The newest modification time of the agent's regular files among its state paths (a
    file, or the files below a folder); a newer one than last time is a write. Bounded: so many
    levels, so many entries a tick."""

    def __init__(self, files: AgentFiles, depth: int = 6, budget: int = 5000) -> None:
        self.files = files
        self.depth = depth
        self.budget = budget
        self._newest: float | None = None

    def written(self, folders: Iterable[Path]) -> bool:
        """Whether a file below `folders` changed since the last call (the first is a baseline)."""
        newest, left = 0.0, self.budget
        stack = [(folder, 0) for folder in folders]
        while stack and left > 0:
            folder, level = stack.pop()
            try:
                entries = self.files.listdir(folder)
            except OSError:  # not a folder (reached without a link): a state file itself?
                newest = max(newest, self._own_file_mtime(folder) if level == 0 else 0.0)
                continue
            for name, st in entries[:left]:
                left -= 1
                if stat.S_ISREG(st.st_mode) and st.st_uid == self.files.uid:
                    newest = max(newest, min(st.st_mtime, time.time()))
                elif stat.S_ISDIR(st.st_mode) and level + 1 < self.depth:
                    stack.append((folder / name, level + 1))
        before, self._newest = self._newest, newest
        return before is not None and newest > before

    def _own_file_mtime(self, path: Path) -> float:
        try:
            st = self.files.stat(path)  # lstat, no link followed on the way
        except OSError:
            return 0.0
        if stat.S_ISREG(st.st_mode) and st.st_uid == self.files.uid:
            return min(st.st_mtime, time.time())
        return 0.0
