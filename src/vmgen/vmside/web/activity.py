"""Recent agent activity from Claude Code's transcript: messages, tool calls, files edited."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..idlewatch.transcript import parse_timestamp, project_dir_name

FILE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
TAIL_BYTES = 256 * 1024  # the recent past is at the end; transcripts can be many MB
TEXT_LIMIT = 280


@dataclass(frozen=True)
class Activity:
    kind: str  # "you", "agent", "tool", "file"
    text: str
    at: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def activity_of(entries: Iterable[dict[str, Any]], limit: int = 30) -> list[Activity]:
    """Newest last. Tool results and bookkeeping entries are left out: they are noise here."""
    items: list[Activity] = []
    for entry in entries:
        kind, message = entry.get("type"), entry.get("message") or {}
        at = parse_timestamp(entry.get("timestamp"))
        content = message.get("content")
        if kind == "user" and isinstance(content, str):
            items.append(Activity("you", _short(content), at))
        elif kind == "user" and isinstance(content, list):
            items.extend(
                Activity("you", _short(part["text"]), at)
                for part in content
                if part.get("type") == "text" and not part.get("text", "").startswith("[Request interrupted")
            )
        elif kind == "assistant" and isinstance(content, list):
            for part in content:
                if part.get("type") == "text" and part.get("text", "").strip():
                    items.append(Activity("agent", _short(part["text"]), at))
                elif part.get("type") == "tool_use":
                    items.append(_tool(part.get("name", "?"), part.get("input") or {}, at))
    return items[-limit:]


def _tool(name: str, args: dict[str, Any], at: float | None) -> Activity:
    if name in FILE_TOOLS and args.get("file_path"):
        return Activity("file", f"{name} {args['file_path']}", at)
    detail = args.get("command") or args.get("pattern") or args.get("file_path") or args.get("url") or ""
    return Activity("tool", _short(f"{name} {detail}".strip()), at)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"


def latest_transcript(claude_dir: Path, repo_dir: str) -> Path | None:
    folder = claude_dir / "projects" / project_dir_name(repo_dir)
    found = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return found[-1] if found else None


def read_tail(path: Path, size: int = TAIL_BYTES) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        f.seek(0, 2)
        start = max(0, f.tell() - size)
        f.seek(start)
        data = f.read()
    lines = data.split(b"\n")[1 if start else 0 :]  # a cut first line is a fragment
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return [e for e in entries if isinstance(e, dict)]


def recent_activity(claude_dir: Path, repo_dir: str, limit: int = 30) -> list[Activity]:
    transcript = latest_transcript(claude_dir, repo_dir)
    return activity_of(read_tail(transcript), limit) if transcript else []
