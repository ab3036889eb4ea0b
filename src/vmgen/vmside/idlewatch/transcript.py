"""Incremental reading of what Claude Code says about itself: transcript, session status, hooks.

The transcript (`~/.claude/projects/<dir>/<sessionId>.jsonl`) tells whether a turn is open and
whether a tool is running; `~/.claude/sessions/<pid>.json` carries a "busy"/"idle" status that
Claude Code updates itself (and which alone shows an interrupted turn: Esc writes nothing to
the transcript). Each tick reads only the bytes appended since the last one.

Everything here is the agent user's to shape, and the watchdog reads it as root: every file is
opened through `AgentFiles` (no symlink followed, regular files of the agent only, never
blocking), reads are capped, and no time read from a file is later than the moment it was read.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ...contract.documents import HOOK_EVENTS, SESSION_ID, HookEvent, parse_hook_event
from ..agentfs import AgentFiles

log = logging.getLogger(__name__)

Json = dict[str, Any]

# Stop reasons "tool_use" and "pause_turn" mean the model goes on; any other ends the turn.
CONTINUE_STOP_REASONS = frozenset({"tool_use", "pause_turn"})
INTERRUPTED = "[Request interrupted by user"
HOOK_ACTIVITY = frozenset({"UserPromptSubmit", "PreToolUse", "PostToolUse"})
# Notification: idle prompt or a permission ask; StopFailure: the turn ended on an API error.
HOOK_CLOSED = frozenset({"Stop", "StopFailure", "Notification"})
assert frozenset(HOOK_EVENTS) == HOOK_ACTIVITY | HOOK_CLOSED
STATUS_MAX = 64 << 10  # a session status file is a few hundred bytes


def project_dir_name(cwd: str | os.PathLike[str]) -> str:
    """Claude Code's directory name for a working directory: non-alphanumerics become '-'."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


class JsonlTail:
    """Follows one append-only JSONL file across ticks: offset + inode, truncation, partial line.

    A file seen for the first time is read from at most `initial_tail` bytes before its end:
    the turn state lives in the last lines, and a months-old transcript can be many MB.
    """

    def __init__(
        self,
        path: Path,
        files: AgentFiles,
        initial_tail: int = 1 << 20,
        max_read: int = 8 << 20,
        max_line: int = 32 << 20,
    ) -> None:
        self.path = path
        self.files = files
        self.initial_tail = initial_tail
        self.max_read = max_read  # per tick, so one huge append cannot stall the watchdog
        self.max_line = max_line
        self._inode: int | None = None
        self._opened = False  # only the very first sight of the file is a baseline
        self._offset = 0
        self._partial = b""
        self._skip_first = False  # started mid-file: the first line is a fragment
        self._seal = b""  # the last bytes read: if they changed, the file was rewritten

    def read(self) -> tuple[list[Json], int]:
        """New complete JSON objects and the number of bytes appended since the last call."""
        try:
            with self.files.open(self.path) as f:
                st = os.fstat(f.fileno())
                appended = self._position(f, st.st_ino, st.st_size)
                data = f.read(self.max_read)
        except OSError:  # missing, or not a regular file of the agent's (a link, a FIFO...)
            self._inode = None
            return [], 0
        self._offset += len(data)
        self._seal = (self._seal + data)[-32:]
        return self._split(data), appended

    def _position(self, f: Any, inode: int, size: int) -> int:
        first = not self._opened
        self._opened = True
        if self._inode != inode or size < self._offset or not self._sealed(f):
            # A new file, rotated, truncated, or rewritten in place: start over.
            self._inode, self._partial, self._seal = inode, b"", b""
            self._offset = max(0, size - self.initial_tail) if first else 0
            self._skip_first = self._offset > 0
        f.seek(self._offset)
        # The first sight of a file is a baseline, not growth.
        return 0 if first else max(0, size - self._offset)

    def _sealed(self, f: Any) -> bool:
        """Are the bytes just before our offset still those we read? (truncate + rewrite)"""
        if not self._seal:
            return True
        f.seek(self._offset - len(self._seal))
        return bool(f.read(len(self._seal)) == self._seal)

    def _split(self, data: bytes) -> list[Json]:
        buf = self._partial + data
        lines = buf.split(b"\n")
        self._partial = lines.pop()  # b"" when the data ended on a newline
        if len(self._partial) > self.max_line:  # a runaway line: drop it rather than grow forever
            log.warning("%s: dropping a line over %d bytes", self.path, self.max_line)
            self._partial, self._skip_first = b"", True
        if self._skip_first and lines:
            lines, self._skip_first = lines[1:], False
        out: list[Json] = []
        for raw in lines:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # a torn or foreign line must not poison the rest
            if isinstance(obj, dict):
                out.append(obj)
        return out


def parse_timestamp(value: Any) -> float | None:
    """Wall epoch seconds from an ISO timestamp ("2026-11-25T12:25:09.412Z") or epoch ms/s."""
    if isinstance(value, (int, float)):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


@dataclass
class TurnTracker:
    """The turn state machine, fed one transcript line at a time."""

    turn_open: bool = False
    pending_tools: set[str] = field(default_factory=set)
    tool_since: float | None = None  # wall time of the line that opened the oldest pending tool
    changed_at: float | None = None  # wall time of the last line that said open/closed
    last_event: str = ""
    tentative: bool = False  # closed only by a text line with no stop_reason yet (streaming)
    _msg_id: str | None = None
    _msg_has_tool: bool = False

    def feed(self, line: Json) -> None:
        if line.get("isSidechain") or line.get("isMeta"):
            return  # sub-agent chatter and injected context do not move the main turn
        kind = line.get("type")
        raw = line.get("message")
        message: Json = raw if isinstance(raw, dict) else {}
        if kind == "user":
            self._user(message.get("content"))
        elif kind == "assistant":
            self._assistant(message)
        elif kind == "system" and line.get("subtype") == "turn_duration":
            self._set(False, "turn finished")  # written after the final message of a turn
        else:
            return  # mode, permission-mode, attachments, api-request*, cost-state, ...
        at = parse_timestamp(line.get("timestamp"))
        # A time in the future would win every "most recent statement" comparison for ever.
        self.changed_at = min(at, time.time()) if at is not None else self.changed_at
        if not self.pending_tools:
            self.tool_since = None
        elif self.tool_since is None:
            self.tool_since = self.changed_at

    def _set(self, open_: bool, event: str, tentative: bool = False) -> None:
        self.turn_open, self.last_event, self.tentative = open_, event, tentative
        if not open_:
            self.pending_tools.clear()

    def _user(self, content: Any) -> None:
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        texts = [str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        text = "\n".join(texts)
        if INTERRUPTED in text or any(INTERRUPTED in json.dumps(b.get("content", "")) for b in results):
            self._set(False, "interrupted by the user")
        elif text.lstrip().startswith(("<local-command-stdout>", "<local-command-stderr>")):
            self._set(False, "local command finished")  # /model, /clear ...: no model turn
        elif results:
            for block in results:
                self.pending_tools.discard(str(block.get("tool_use_id")))
            self._set(True, "tool result")
        else:
            self.pending_tools.clear()  # a new prompt: anything pending was abandoned
            self._set(True, "prompt")

    def _assistant(self, message: Json) -> None:
        # Claude Code may write one line per content block, all with the same message id and
        # stop_reason null until the last: remember whether this message used a tool at all.
        msg_id = message.get("id")
        if msg_id != self._msg_id or msg_id is None:
            self._msg_id, self._msg_has_tool = msg_id, False
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                self.pending_tools.add(str(block.get("id")))
                self._msg_has_tool = True
        stop = message.get("stop_reason")
        if self._msg_has_tool or stop in CONTINUE_STOP_REASONS:
            self._set(True, "tool use")
        else:  # a final stop reason, or a text-only message with none yet (may still go on)
            self._set(False, f"assistant {stop or 'reply'}", tentative=stop is None)


@dataclass(frozen=True)
class SessionStatus:
    """`~/.claude/sessions/<pid>.json`, written by Claude Code for each running session."""

    pid: int
    status: str  # "busy" | "idle" (other values are treated as not busy)
    updated_at: float | None  # wall
    session_id: str | None
    cwd: str | None


def read_session_status(claude_dir: Path, pid: int, files: AgentFiles) -> SessionStatus | None:
    try:
        data = json.loads(files.read(claude_dir / "sessions" / f"{pid}.json", STATUS_MAX))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    updated = parse_timestamp(data.get("statusUpdatedAt") or data.get("updatedAt"))
    session_id, cwd = data.get("sessionId"), data.get("cwd")
    return SessionStatus(
        pid,
        str(data.get("status") or ""),
        min(updated, time.time()) if updated is not None else None,
        session_id if isinstance(session_id, str) and _plain_name(session_id) else None,
        cwd if isinstance(cwd, str) else None,
    )


def _plain_name(text: str) -> bool:
    """A session id names a file: no separators, nothing that walks elsewhere."""
    return bool(re.fullmatch(r"[A-Za-z0-9._-]{1,128}", text)) and text not in (".", "..")


@dataclass(frozen=True)
class TranscriptState:
    path: Path | None
    turn_open: bool = False
    tool_running: bool = False
    tool_since: float | None = None  # wall time the open tool call began (None: unknown)
    grew: int = 0  # bytes appended since the last poll (or 1 when only sub-agents wrote)
    changed_at: float | None = None  # wall time of the line that set turn_open
    tentative: bool = False  # closed by a streamed text line without a stop_reason
    mtime: float | None = None  # wall time of the last write (transcript or its sub-agents)
    last_event: str = ""


class TranscriptReader:
    """Follows the transcript of one working directory; switches when a newer session appears."""

    def __init__(self, claude_dir: Path, cwd: str | os.PathLike[str], files: AgentFiles) -> None:
        self.claude_dir = claude_dir
        self.files = files
        self.project_dir = claude_dir / "projects" / project_dir_name(cwd)
        self._tail: JsonlTail | None = None
        self._turn = TurnTracker()
        self._sidecar_mtime: float | None = None

    def locate(self, session_id: str | None = None, hint: Path | None = None) -> Path | None:
        """The session's transcript: where its hooks said it is (`hint`, checked to be one of
        Claude's transcripts), its own file by id (from its status file), else the newest one."""
        if hint is not None and self.is_transcript(hint) and _is_file(self.files, hint):
            return hint
        if session_id:
            exact = self.project_dir / f"{session_id}.jsonl"
            if _is_file(self.files, exact):
                return exact
        try:
            found = [
                (st.st_mtime, self.project_dir / name)
                for name, st in self.files.listdir(self.project_dir)
                if name.endswith(".jsonl") and stat.S_ISREG(st.st_mode)
            ]
        except OSError:
            return None
        return max(found)[1] if found else None

    def is_transcript(self, path: Path) -> bool:
        """A path the agent named is only followed if it is a transcript of Claude's own folder."""
        projects = self.claude_dir / "projects"
        return (
            path.is_absolute()
            and path.parent.parent == projects
            and path.suffix == ".jsonl"
            and ".." not in path.parts
            and SESSION_ID.fullmatch(path.stem) is not None
        )

    def poll(self, session_id: str | None = None, hint: Path | None = None) -> TranscriptState:
        path = self.locate(session_id, hint)
        if path is None:
            return TranscriptState(None)
        if self._tail is None or self._tail.path != path:
            self._tail, self._turn, self._sidecar_mtime = JsonlTail(path, self.files), TurnTracker(), None
        lines, grew = self._tail.read()
        for line in lines:
            self._turn.feed(line)
        mtime = _mtime(self.files, path)
        sidecar = self._subagents_mtime(path)
        if sidecar is not None:
            if self._sidecar_mtime is not None and sidecar > self._sidecar_mtime:
                grew = max(grew, 1)  # a sub-agent (Task tool) is writing its own transcript
            self._sidecar_mtime = sidecar
            mtime = max(mtime or 0.0, sidecar)
        turn = self._turn
        running = turn.turn_open and bool(turn.pending_tools)
        return TranscriptState(
            path,
            turn.turn_open,
            running,
            turn.tool_since if running else None,
            grew,
            turn.changed_at,
            turn.tentative,
            mtime,
            turn.last_event,
        )

    def _subagents_mtime(self, path: Path) -> float | None:
        folder = path.with_suffix("") / "subagents"
        try:
            newest = max(
                (st.st_mtime for _, st in self.files.listdir(folder) if stat.S_ISREG(st.st_mode)), default=None
            )
        except OSError:
            return None
        return min(newest, time.time()) if newest is not None else None


def _is_file(files: AgentFiles, path: Path) -> bool:
    try:
        return stat.S_ISREG(files.stat(path).st_mode)
    except OSError:
        return False


def _mtime(files: AgentFiles, path: Path) -> float | None:
    try:
        return min(files.stat(path).st_mtime, time.time())
    except OSError:
        return None


@dataclass
class HookState:
    """What one session's hooks said last."""

    event: str = ""
    detail: str = ""
    at: float | None = None  # wall
    activity_at: float | None = None  # last prompt/tool event
    transcript: str = ""  # the session's transcript, as its hooks named it


MAX_HOOK_SESSIONS = 64  # the agent may invent thousands: the oldest are forgotten


class HookReader:
    """The JSONL file Claude Code hooks append to: {"at", "event", "session", "transcript"} per
    line. Each session's newest statement counts for that session only: one session's idle
    notification says nothing about another that is mid-turn. Lines without a session (an older
    hook script) are kept under ""."""

    def __init__(self, path: Path, files: AgentFiles) -> None:
        self._tail = JsonlTail(path, files, initial_tail=64 << 10, max_read=1 << 20, max_line=4096)
        self.sessions: dict[str, HookState] = {}

    def poll(self) -> dict[str, HookState]:
        now = time.time()
        events = (parse_hook_event(line, now) for line in self._tail.read()[0])
        self.sessions = fold_hook_events(self.sessions, (event for event in events if event is not None))
        return self.sessions


def fold_hook_events(sessions: dict[str, HookState], events: Iterable[HookEvent]) -> dict[str, HookState]:
    """Each session's newest statement, after `events` (in the order they were written)."""
    for hook in events:
        state = sessions.setdefault(hook.session, HookState())
        state.event, state.at = hook.event, hook.at
        state.transcript = hook.transcript or state.transcript
        if hook.event in HOOK_ACTIVITY:
            state.activity_at = hook.at
    if len(sessions) > MAX_HOOK_SESSIONS:
        sessions = dict(sorted(sessions.items(), key=lambda kv: kv[1].at or 0.0)[-MAX_HOOK_SESSIONS:])
    return sessions


Claim = tuple[float, bool, str]  # when (wall), whether the turn is open, which source said so


def _claims(transcript: TranscriptState, status: SessionStatus | None, hook: HookState) -> list[Claim]:
    """What each source last said about the turn."""
    claims: list[Claim] = []
    if transcript.path is not None and transcript.changed_at is not None:
        claims.append((transcript.changed_at, transcript.turn_open, "transcript"))
    if status is not None and status.updated_at is not None and status.status:
        claims.append((status.updated_at, status.status == "busy", "session status"))
    if hook.at is not None and (hook.event in HOOK_ACTIVITY or hook.event in HOOK_CLOSED):
        claims.append((hook.at, hook.event in HOOK_ACTIVITY, "hook"))
    return claims


def fuse_turn(transcript: TranscriptState, status: SessionStatus | None, hook: HookState) -> tuple[bool, str]:
    """Whether a turn is open: the most recent statement of the three sources wins.

    Esc writes nothing to the transcript but flips the status to idle; a permission prompt
    leaves a tool_use unanswered but fires a Notification hook. A transcript closed only by a
    streamed text line (no stop_reason yet) yields to a status that still says busy.
    """
    claims = _claims(transcript, status, hook)
    if transcript.tentative and status is not None and status.status == "busy":
        return True, "session status (reply streaming)"
    if not claims:
        return transcript.turn_open, "transcript" if transcript.path else "no transcript yet"
    _, open_, source = max(claims, key=lambda c: c[0])
    return open_, source


def statement_at(transcript: TranscriptState, status: SessionStatus | None, hook: HookState) -> float | None:
    """When the session last said anything about its turn (wall clock)."""
    return max((c[0] for c in _claims(transcript, status, hook)), default=None)
