"""Pure parsers of what git prints for the changes view: `git status --porcelain=v2 -z`,
`git diff -z --raw --numstat -p` and `git log -z --name-only`, into the typed document of
contract/changes.py.

git runs as the agent in the agent's repository, so its output is the agent's: any bytes, cut
anywhere (at the size cap or the deadline). Nothing here trusts a count or a shape: records that do
not parse are skipped, texts are decoded with replacement and stripped of control characters, and
everything is cut to the contract's limits; what is left out is counted.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field, replace

from ...contract import codec
from ...contract.changes import (
    DIFF_BUDGET,
    DOCUMENT_MAX,
    FILE_LINES,
    LINE_LIMIT,
    MAX_COMMIT_FILES,
    MAX_COMMITS,
    MAX_FILES,
    TEXT_LIMIT,
    Changes,
    Commit,
    DiffLine,
    FileChange,
)

HASH = re.compile(r"[0-9a-f]{4,64}")
SHORT_HASH = 12  # at most; the head is shown as git abbreviates: 7
TAB = "    "


def clean(text: str, limit: int = TEXT_LIMIT) -> tuple[str, bool]:
    """Printable text (tabs as spaces, no control or format characters: no bidi tricks), cut at
    `limit`; and whether it was cut."""
    text = text.replace("\t", TAB)
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    return (kept[:limit], True) if len(kept) > limit else (kept, False)


def _text(raw: bytes, limit: int = TEXT_LIMIT) -> str:
    return clean(raw.decode("utf-8", errors="replace"), limit)[0]


# --- git status --porcelain=v2 --branch -z --untracked-files=all --------------------------------


@dataclass
class Status:
    branch: str = ""
    head: str = ""  # short; "" before the first commit
    files: list[FileChange] = field(default_factory=list)
    files_left_out: int = 0


def _state(xy: str) -> str:
    """A tracked file's state against HEAD from porcelain's XY (index, work tree)."""
    x, y = (xy + "..")[0], (xy + "..")[1]
    if x == "A":
        return "added"
    if "D" in (x, y):
        return "deleted"
    if "T" in (x, y):
        return "type changed"
    return "modified"


def parse_status(data: bytes) -> Status:
    status = Status()
    records = iter(data.split(b"\0"))
    for record in records:
        change: FileChange | None = None
        if record.startswith(b"# branch.oid "):
            oid = record[len(b"# branch.oid ") :].decode("ascii", errors="replace")
            status.head = oid[:7] if HASH.fullmatch(oid) else ""
        elif record.startswith(b"# branch.head "):
            head = _text(record[len(b"# branch.head ") :])
            status.branch = "" if head == "(detached)" else head
        elif record.startswith(b"1 "):
            parts = record.split(b" ", 8)
            if len(parts) == 9:
                change = FileChange(_text(parts[8]), _state(parts[1].decode("ascii", errors="replace")))
        elif record.startswith(b"2 "):
            parts = record.split(b" ", 9)
            old = next(records, b"")
            if len(parts) == 10:
                kind = "copied" if parts[8].startswith(b"C") else "renamed"
                change = FileChange(_text(parts[9]), kind, old_path=_text(old))
        elif record.startswith(b"u "):
            parts = record.split(b" ", 10)
            if len(parts) == 11:
                change = FileChange(_text(parts[10]), "unmerged")
        elif record.startswith(b"? "):
            change = FileChange(_text(record[2:]), "untracked")
        if change is not None and change.path:
            if len(status.files) < MAX_FILES:
                status.files.append(change)
            else:
                status.files_left_out += 1
    return status


# --- git diff HEAD -M -z --raw --numstat -p ------------------------------------------------------


@dataclass
class FileDiff:
    path: str
    binary: bool = False
    added: int = 0
    deleted: int = 0
    lines: list[DiffLine] = field(default_factory=list)
    shown_changes: int = 0  # + and - lines among `lines`
    cut: bool = False  # lines were left out


def _raw_paths(records: list[bytes]) -> tuple[list[str], int]:
    """The paths of the raw records (a rename's new one) in order, and where numstat begins."""
    paths: list[str] = []
    i = 0
    while i < len(records) and records[i].startswith(b":"):
        status = records[i].rsplit(b" ", 1)[-1][:1]
        if status in (b"R", b"C"):
            paths.append(_text(records[i + 2] if i + 2 < len(records) else b""))
            i += 3
        else:
            paths.append(_text(records[i + 1] if i + 1 < len(records) else b""))
            i += 2
    return paths, i


def _numstat(records: list[bytes], start: int, diffs: list[FileDiff]) -> None:
    """Counts (numstat's records follow the raw ones, in the same order); `-` is a binary file."""
    i, n = start, 0
    while i < len(records) and n < len(diffs):
        fields = records[i].split(b"\t")
        if len(fields) != 3:
            return
        added, deleted, path = fields
        i += 3 if path == b"" else 1  # a rename: "a\td\t" then the old and the new path
        if added == b"-" and deleted == b"-":
            diffs[n].binary = True
        elif added.isdigit() and deleted.isdigit():
            diffs[n].added, diffs[n].deleted = int(added), int(deleted)
        n += 1


def line_cost(text: str) -> int:
    """A diff line's share of the document, in JSON bytes."""
    return len(json.dumps(text)) + 24


def budget_used(diffs: list[FileDiff]) -> int:
    return sum(line_cost(line.text) for diff in diffs for line in diff.lines)


def parse_diff(data: bytes, budget: int = DIFF_BUDGET) -> list[FileDiff]:
    """Each file's diff, in git's order (the raw records name them; the patches follow in the same
    order). Lines past FILE_LINES a file, or past `budget` bytes of JSON in all, are left out."""
    head, _, patch = data.partition(b"\0\0")  # no patch: cut before it began, or no change at all
    records = head.split(b"\0")
    paths, numstat_at = _raw_paths(records)
    diffs = [FileDiff(path) for path in paths]
    _numstat(records, numstat_at, diffs)
    index, current, in_hunk = -1, None, False
    for raw_line in patch.split(b"\n"):
        if raw_line.startswith(b"diff --git "):
            index += 1
            current = diffs[index] if index < len(diffs) else None
            in_hunk = False
            continue
        if current is None:
            continue
        if not in_hunk:  # the file's header: index, modes, ---/+++ lines, or a binary's note
            if raw_line.startswith(b"Binary files ") or raw_line == b"GIT binary patch":
                current.binary = True
            if not raw_line.startswith(b"@@"):
                continue
            in_hunk = True
        marker = raw_line[:1].decode("latin-1")
        if raw_line.startswith(b"@@"):
            kind, body = "@", raw_line
        elif marker in (" ", "+", "-", "\\"):
            kind, body = marker, raw_line[1:]
        else:  # the end of a cut output, or something git does not print
            continue
        if current.binary or len(current.lines) >= FILE_LINES or budget <= 0:
            current.cut = True
            continue
        text, cut = clean(body.decode("utf-8", errors="replace"), LINE_LIMIT)
        if kind == "\\":
            text = "\\" + text
        line = DiffLine(kind, text, cut)
        budget -= line_cost(text)
        current.lines.append(line)
        if kind in "+-":
            current.shown_changes += 1
    return diffs


# --- git log -n 10 -z --format=%x1e%h%x1f%ct%x1f%s --name-only ----------------------------------


def parse_log(data: bytes) -> list[Commit]:
    commits: list[Commit] = []
    for chunk in data.split(b"\x1e")[1:]:
        head, _, rest = chunk.partition(b"\0")
        fields = head.split(b"\x1f", 2)
        if len(fields) != 3:
            continue
        short, at, subject = fields
        hash_text = short.decode("ascii", errors="replace")
        if not HASH.fullmatch(hash_text) or not at.isdigit():
            continue
        names = [name for name in rest.lstrip(b"\n").split(b"\0") if name]
        files = tuple(_text(name) for name in names[:MAX_COMMIT_FILES])
        commits.append(
            Commit(
                hash_text[:SHORT_HASH],
                float(min(int(at), 1 << 40)),
                _text(subject),
                files,
                max(0, len(names) - MAX_COMMIT_FILES),
            )
        )
        if len(commits) == MAX_COMMITS:
            break
    return commits


# --- together --------------------------------------------------------------------------------


def combine(
    status: Status, diffs: list[FileDiff], commits: list[Commit], repo: str = "", cut: str = "", made_at: float = 0.0
) -> Changes:
    """The status's files (untracked and unmerged ones included) with the diff's lines and counts
    where the diff has the file; a file the diff never reached keeps its name and state."""
    by_path = {diff.path: diff for diff in diffs}
    files = []
    for change in status.files:
        diff = by_path.get(change.path)
        if diff is None:
            files.append(change)
            continue
        left = max(0, diff.added + diff.deleted - diff.shown_changes) if diff.cut or not diff.lines else 0
        files.append(
            replace(
                change,
                binary=diff.binary,
                added=diff.added,
                deleted=diff.deleted,
                lines=() if diff.binary else tuple(diff.lines),
                lines_left_out=0 if diff.binary else left,
            )
        )
    return fit(
        Changes(
            branch=status.branch,
            head=status.head,
            files=tuple(files),
            files_left_out=status.files_left_out,
            commits=tuple(commits),
            repo=repo,
            cut=cut,
            made_at=made_at,
        )
    )


def _size(changes: Changes) -> int:
    return len(json.dumps(codec.to_value(changes)))


def fit(changes: Changes, limit: int = DOCUMENT_MAX) -> Changes:
    """Within `limit` bytes of JSON however long the paths and names are: first the diff lines go
    (counted), then the commits' file lists, then files from the end (counted)."""
    if _size(changes) <= limit:
        return changes
    files = tuple(
        replace(f, lines=(), lines_left_out=f.lines_left_out + sum(1 for line in f.lines if line.kind in "+-"))
        for f in changes.files
    )
    commits = tuple(replace(c, files=(), files_left_out=c.files_left_out + len(c.files)) for c in changes.commits)
    changes = replace(changes, files=files, commits=commits)
    while _size(changes) > limit and changes.files:
        keep = len(changes.files) // 2
        changes = replace(
            changes,
            files=changes.files[:keep],
            files_left_out=changes.files_left_out + len(changes.files) - keep,
        )
    return changes
