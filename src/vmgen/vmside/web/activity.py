"""Recent agent activity from Claude Code's transcript: messages, tool calls, files edited.

Root reads it for the page (vmside/pageops.py), so the transcript is untrusted input: the file is
found and opened through `AgentFiles` (no link followed, a regular file of the agent only, never
blocking), only its last TAIL_BYTES are read, and every entry is checked for its shape; anything
else is skipped. Texts are cut and stripped of control characters.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...contract.documents import clean_text
from ...contract.pageops import MAX_ITEMS, TEXT_LIMIT, ActivityItem
from ..agentfs import AgentFiles
from ..idlewatch.transcript import parse_timestamp, project_dir_name

FILE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
TAIL_BYTES = 256 * 1024  # the recent past is at the end; transcripts can be many MB


def activity_of(entries: Iterable[Any], limit: int = MAX_ITEMS) -> list[ActivityItem]:
    """Newest last. Tool results and bookkeeping entries are left out: they are noise here."""
    items: list[ActivityItem] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("message"), dict):
            continue
        kind, content = entry.get("type"), entry["message"].get("content")
        at = _time(entry.get("timestamp"))
        if kind == "user" and isinstance(content, str):
            items.append(ActivityItem("you", _short(content), at))
        elif kind == "user" and isinstance(content, list):
            items.extend(
                ActivityItem("you", _short(part["text"]), at)
                for part in content
                if _text_part(part) and not part["text"].startswith("[Request interrupted")
            )
        elif kind == "assistant" and isinstance(content, list):
            for part in content:
                if _text_part(part) and part["text"].strip():
                    items.append(ActivityItem("agent", _short(part["text"]), at))
                elif isinstance(part, dict) and part.get("type") == "tool_use":
                    name, args = part.get("name"), part.get("input")
                    name = name if isinstance(name, str) else "?"
                    items.append(_tool(name, args if isinstance(args, dict) else {}, at))
    return items[-limit:]


def _text_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)


def _time(value: Any) -> float | None:
    try:
        return parse_timestamp(value)
    except (OverflowError, ValueError):
        return None


def _tool(name: str, args: dict[str, Any], at: float | None) -> ActivityItem:
    path = args.get("file_path")
    if name in FILE_TOOLS and isinstance(path, str) and path:
        return ActivityItem("file", _short(f"{name} {path}"), at)
    detail = next((args[k] for k in ("command", "pattern", "file_path", "url") if isinstance(args.get(k), str)), "")
    return ActivityItem("tool", _short(f"{name} {detail}".strip()), at)


def _short(text: str) -> str:
    text = " ".join(clean_text(" ".join(text.split()), TEXT_LIMIT + 1).split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def latest_transcript(files: AgentFiles, claude_dir: Path, repo_dir: str) -> Path | None:
    """The most recently written transcript of the repository's project (a regular file of the
    agent's, found without following any link)."""
    folder = claude_dir / "projects" / project_dir_name(repo_dir)
    try:
        entries = files.listdir(folder)
    except OSError:
        return None
    transcripts = [
        (st.st_mtime, name)
        for name, st in entries
        if name.endswith(".jsonl") and stat.S_ISREG(st.st_mode) and st.st_uid == files.uid
    ]
    return folder / max(transcripts)[1] if transcripts else None


def read_tail(files: AgentFiles, path: Path, size: int = TAIL_BYTES) -> list[Any]:
    with files.open(path) as f:
        end = os.fstat(f.fileno()).st_size
        start = max(0, end - size)
        f.seek(start)
        data = f.read(size)
    lines = data.split(b"\n")[1 if start else 0 :]  # a cut first line is a fragment
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except (ValueError, RecursionError):
            continue
    return entries


def recent_activity(files: AgentFiles, claude_dir: Path, repo_dir: str, limit: int = MAX_ITEMS) -> list[ActivityItem]:
    transcript = latest_transcript(files, claude_dir, repo_dir)
    if transcript is None:
        return []
    try:
        return activity_of(read_tail(files, transcript), limit)
    except OSError:
        return []
