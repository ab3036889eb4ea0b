"""`vmgen connect`'s pickers in a terminal: the workspace (when none is named and there are
several), then the agent session (when it has several). prompt_toolkit's `choice()`: arrow keys
or a number to move, Enter to take, Ctrl-C to leave; it reads the terminal's keys itself (and in
tests a pipe: prompt_toolkit's create_pipe_input)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TypeVar

from ...errors import UsageError, WorkspaceNotFound
from ..sessions import Window
from ..state import WorkspaceRecord

T = TypeVar("T")


def in_a_terminal() -> bool:
    """Whether a person can answer a picker: keys come from a terminal and it is drawn on one."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def pick(message: str, options: Sequence[tuple[T, str]], default: T | None = None) -> T:
    """One of `options` (value, label), the person's choice; labels are plain text, never markup
    (they show names the agent chose)."""
    # Imported here: prompt_toolkit takes ~70 ms to import, and every command of this module but
    # an interactive pick (list, stop, start, destroy, ...) would pay it.
    from prompt_toolkit.shortcuts import choice

    return choice(message=message, options=list(options), default=default)


def window_label(window: Window) -> str:
    state = f"{window.state}: {window.detail}" if window.detail else window.state or "-"
    return f"{window.index}  {window.name}  ({window.agent or window.runs})  {state}"


def pick_window(windows: list[Window]) -> int:
    """The index of the agent session to attach at, the active one first in line."""
    default = next((w.index for w in windows if w.active), windows[0].index)
    return pick("Which agent session?", [(w.index, window_label(w)) for w in windows], default)


def choose_workspace(records: list[WorkspaceRecord], terminal: bool) -> str:
    """The workspace `vmgen connect` without a name goes to: the only one, else the person's pick
    in a terminal; without one a name is needed, as it always was."""
    if not terminal:
        raise UsageError("name the workspace: `vmgen connect NAME` (`vmgen list` shows them)")
    if not records:
        raise WorkspaceNotFound("no workspace on this machine: `vmgen launch` makes one")
    if len(records) == 1:
        return records[0].name
    options = [(r.name, f"{r.name}  ({r.agent}, {r.provider})  {r.source}") for r in records]
    return pick("Which workspace?", options)
