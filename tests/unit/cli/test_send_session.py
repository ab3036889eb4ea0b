"""`vmgen send --session`: the prompt goes to the named agent session's pane, and a session that
does not exist is one line, nothing typed anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from vmgen.cli import main
from vmgen.laptop.agent_screen import AgentScreen, PaneState
from vmgen.laptop.cli import workspaces


@dataclass
class Client:
    windows: tuple[str, ...]
    typed: list[tuple[str, str]] = field(default_factory=list)

    def agent_screen(self, agent: object, window: str = "") -> AgentScreen:
        if window and window not in self.windows:
            return AgentScreen(PaneState.NO_SESSION)
        return AgentScreen(PaneState.RUNNING, text="❯ ")

    def type_prompt(self, prompt: str, window: str = "") -> None:
        self.typed.append((prompt, window))


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Client:
    made = Client(windows=("main", "review"))
    monkeypatch.setattr(workspaces, "running_target", lambda name: object())
    monkeypatch.setattr(workspaces, "SshWorkspaceClient", lambda target, name: made)
    return made


def test_the_prompt_goes_to_the_named_session(client: Client) -> None:
    done = CliRunner().invoke(main, ["send", "app", "look again", "--session", "review"])
    assert done.exit_code == 0, done.output
    assert client.typed == [("look again", "review")]
    assert "sent to app (session review)" in done.output


def test_without_a_session_it_goes_to_the_current_window(client: Client) -> None:
    assert CliRunner().invoke(main, ["send", "app", "hi"]).exit_code == 0
    assert client.typed == [("hi", "")]


def test_a_session_that_does_not_exist_is_one_line_and_nothing_is_typed(client: Client) -> None:
    done = CliRunner().invoke(main, ["send", "app", "hi", "--session", "nope"])
    assert done.exit_code != 0 and "has no agent session named 'nope'" in done.output, done.output
    assert "Traceback" not in done.output and client.typed == []


def test_a_malformed_session_name_is_refused_before_connecting(client: Client) -> None:
    done = CliRunner().invoke(main, ["send", "app", "hi", "--session", "a b;rm"])
    assert done.exit_code == 2 and "invalid session name" in done.output, done.output
    assert client.typed == []
