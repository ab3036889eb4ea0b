"""`vmgen connect`'s pickers, driven with keys as a person types them: prompt_toolkit's own pipe
input stands in for the terminal (create_pipe_input), its output goes nowhere."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from vmgen.errors import UsageError, WorkspaceNotFound
from vmgen.laptop.cli.picker import choose_workspace, pick_window, window_label
from vmgen.laptop.sessions import Window
from vmgen.laptop.state import WorkspaceRecord

DOWN, ENTER, CTRL_C = "\x1b[B", "\r", "\x03"

WINDOWS = [
    Window(0, "claude", "claude", active=False, state="waiting", detail="at its prompt", agent="claude"),
    Window(1, "review", "claude", active=True, state="working", detail="turn open", agent="claude"),
    Window(3, "cx", "codex", active=False, agent="codex"),
]


def record(name: str) -> WorkspaceRecord:
    return WorkspaceRecord(name, "docker", 0.0, f"https://github.com/me/{name}", "claude")


@pytest.fixture
def keys() -> Iterator[PipeInput]:
    with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
        yield pipe


def test_enter_takes_the_active_session(keys: PipeInput) -> None:
    keys.send_text(ENTER)
    assert pick_window(WINDOWS) == 1


def test_arrow_keys_move_to_another_session_by_its_window_index(keys: PipeInput) -> None:
    keys.send_text(DOWN + ENTER)
    assert pick_window(WINDOWS) == 3  # the window's own index, not its place in the list


def test_a_number_picks_the_session_in_that_place(keys: PipeInput) -> None:
    keys.send_text("1" + ENTER)
    assert pick_window(WINDOWS) == 0


def test_ctrl_c_leaves_without_attaching(keys: PipeInput) -> None:
    keys.send_text(CTRL_C)
    with pytest.raises(KeyboardInterrupt):
        pick_window(WINDOWS)


def test_each_session_is_shown_with_its_agent_and_state() -> None:
    assert window_label(WINDOWS[1]) == "1  review  (claude)  working: turn open"
    assert window_label(WINDOWS[2]) == "3  cx  (codex)  -"


def test_several_workspaces_are_picked_from(keys: PipeInput) -> None:
    keys.send_text(DOWN + ENTER)
    assert choose_workspace([record("api"), record("web")], terminal=True) == "web"


def test_one_workspace_needs_no_picker() -> None:
    assert choose_workspace([record("api")], terminal=True) == "api"  # no key was typed


def test_without_a_terminal_a_name_is_needed_as_before() -> None:
    with pytest.raises(UsageError, match="name the workspace"):
        choose_workspace([record("api"), record("web")], terminal=False)
    with pytest.raises(WorkspaceNotFound, match="no workspace on this machine"):
        choose_workspace([], terminal=True)
