"""The agent's changes as the workspace page shows them: the working tree against HEAD, file by
file, and its recent commits. Root makes this document (git run as the agent, vmside/web/changes.py)
and answers it on its page socket; the page checks it again when it reads it.

Everything in it is already clamped: a line is cut at LINE_LIMIT characters, a file's diff at
FILE_LINES lines, the whole diff at DIFF_BUDGET bytes of JSON (what is left out is counted, never
silently dropped), paths and subjects at TEXT_LIMIT characters, at most MAX_FILES files and
MAX_COMMITS commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DocumentError
from . import codec

MAX_FILES = 200
MAX_COMMITS = 10
MAX_COMMIT_FILES = 20
FILE_LINES = 400  # a file's diff past this is cut (the count of what was left is kept)
LINE_LIMIT = 400  # characters of one diff line
TEXT_LIMIT = 300  # a path, a subject
DIFF_BUDGET = 384 << 10  # JSON bytes of diff lines in one document
DOCUMENT_MAX = 768 << 10  # JSON bytes of the whole document: the page reads 1 MiB of root's answer
# What a file is in the working tree against HEAD.
FILE_STATES = ("modified", "added", "deleted", "renamed", "copied", "untracked", "type changed", "unmerged")
# What a diff line is: context, an addition, a deletion, a hunk's head (@@), a note ("\ No newline").
LINE_KINDS = (" ", "+", "-", "@", "\\")
# Why a view is incomplete or missing.
CUT_WORDS = ("", "size", "time")


@dataclass(frozen=True)
class DiffLine:
    kind: str  # one of LINE_KINDS
    text: str  # without its marker; cut at LINE_LIMIT (then `cut` is True)
    cut: bool = False


@dataclass(frozen=True)
class FileChange:
    path: str
    state: str  # one of FILE_STATES
    old_path: str = ""  # renamed or copied: from where
    binary: bool = False  # named only, no lines
    added: int = 0  # lines, as far as the diff was read
    deleted: int = 0
    lines: tuple[DiffLine, ...] = ()
    lines_left_out: int = 0  # of this file's diff, past FILE_LINES or the document's budget


@dataclass(frozen=True)
class Commit:
    hash: str  # short
    at: float  # committer time, seconds since the epoch
    subject: str
    files: tuple[str, ...] = ()
    files_left_out: int = 0


@dataclass(frozen=True)
class Changes:
    """The working tree and the recent commits, or why not (`error`)."""

    repo: str = ""  # the repository's folder
    branch: str = ""
    head: str = ""  # short hash; "" before the first commit
    files: tuple[FileChange, ...] = ()
    files_left_out: int = 0  # past MAX_FILES
    commits: tuple[Commit, ...] = ()
    cut: str = ""  # one of CUT_WORDS: git's output was cut at the size cap, or git was stopped at its deadline
    error: str = ""  # the view could not be made: what the page says instead
    made_at: float = 0.0

    @classmethod
    def from_result(cls, value: object) -> Changes:
        changes = codec.from_value(cls, value, "the agent's changes", strict=False)
        if changes.cut not in CUT_WORDS:
            raise DocumentError("the agent's changes: unknown cut")
        for change in changes.files:
            if change.state not in FILE_STATES or any(line.kind not in LINE_KINDS for line in change.lines):
                raise DocumentError("the agent's changes: unknown file state or line kind")
        if len(changes.files) > MAX_FILES or len(changes.commits) > MAX_COMMITS:
            raise DocumentError("the agent's changes: too many files or commits")
        return changes
