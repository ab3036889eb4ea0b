"""Whether a prompt would reach an agent that can act on it: `vmgen send` refuses a login
screen, an agent that exited, and a missing session, each with what to do about it."""

from __future__ import annotations

import pytest

from vmgen.laptop.agent_screen import AgentScreen, PaneState, parse_screen, why_prompts_are_lost
from vmgen.laptop.agents import AGENTS

CLAUDE = AGENTS["claude"]
AT_PROMPT = '╭──────╮\n│ > Try "fix lint errors" │\n╰──────╯\n  ? for shortcuts\n'
LOGIN = "╭──────╮\n│ >  │\n╰──────╯\n  Not logged in · Please run /login\n"


def test_an_agent_at_its_prompt_with_credentials_gets_the_prompt() -> None:
    screen = parse_screen("running\nyes\n" + AT_PROMPT)
    assert (screen.credentials, screen.text) == (True, AT_PROMPT)
    assert why_prompts_are_lost(screen, CLAUDE, "app") == ""
    # An agent whose login files vmgen does not know is given the benefit of the doubt.
    assert why_prompts_are_lost(parse_screen("running\nunknown\n" + AT_PROMPT), AGENTS["codex"], "app") == ""


def test_an_agent_without_key_or_login_is_refused_before_its_screen_says_so() -> None:
    # Claude Code shows its usual prompt until it is sent one; only then "Not logged in".
    why = why_prompts_are_lost(parse_screen("running\nno\n" + AT_PROMPT), CLAUDE, "app")
    assert "claude on app is not logged in (it has neither a key nor a login)" in why


@pytest.mark.parametrize(
    "screen, expected",
    [
        (AgentScreen(PaneState.RUNNING, LOGIN, credentials=True), "not logged in (its screen says 'Not logged in')"),
        (AgentScreen(PaneState.EXITED, "$ "), "claude is not running on app: it exited"),
        (AgentScreen(PaneState.NO_SESSION), "tmux session is not running on app"),
        (AgentScreen(PaneState.UNSETTLED, "..."), "did not settle"),
    ],
)
def test_a_prompt_that_would_reach_no_working_agent_is_explained(screen: AgentScreen, expected: str) -> None:
    why = why_prompts_are_lost(screen, CLAUDE, "app")
    assert expected in why and "vmgen " in why  # and the command that helps


def test_the_login_hint_names_the_agents_own_credentials() -> None:
    why = why_prompts_are_lost(AgentScreen(PaneState.RUNNING, LOGIN), CLAUDE, "app")
    assert "ANTHROPIC_API_KEY" in why and "ANTHROPIC_BASE_URL" not in why and "--copy-claude-login" in why


def test_an_unknown_first_line_is_no_session() -> None:
    assert parse_screen("").state is PaneState.NO_SESSION
