"""The real opencode CLI, in a real tmux, against the scripted OpenAI Chat Completions API.

opencode keeps no turn log vmgen reads; it keeps its conversations in a database of its own. While
it waits on a slow model (a silent streaming request, nothing written in the repository) the
watchdog knows it at work by its model connection, to the endpoint its environment names (the
provider's baseURL is `{env:OPENAI_BASE_URL}` in its config), and at its prompt it waits. The
watchdog is given opencode's own declaration from laptop/agents.py.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests` is not an installed package
    sys.path.insert(0, str(ROOT))

from tests.agent_tmux import (  # noqa: E402
    AgentWindow,
    bridge_ip,
    model_asked,
    npm_cli,
    start_agent_window,
    stop_tmux,
    wait_for_prompt,
)
from tests.fakes.openai_api import FakeOpenAIServer, Rule, Script  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from vmgen.contract.names import agent_session  # noqa: E402
from vmgen.laptop.agents import AGENTS  # noqa: E402
from vmgen.vmside.idlewatch.agent import AgentConfig, AgentWatcher  # noqa: E402
from vmgen.vmside.idlewatch.model import AgentSignals, AgentState  # noqa: E402

OPENCODE_VERSION = "1.18.33"  # scripts/dev-env.sh installs this one
OPENCODE = ROOT / ".cache" / "opencode" / "bin" / "opencode"
MODEL_DELAY = float(os.environ.get("VMGEN_TEST_MODEL_DELAY", "30"))
TRIGGER = "SLOW-TURN"
REPLY = "The slow answer has arrived."
SESSION = agent_session("opencode")


@pytest.fixture(scope="module")
def opencode_bin() -> Path:
    return npm_cli(OPENCODE, f"opencode-ai@{OPENCODE_VERSION}", OPENCODE.parents[1])


def seed_home(home: Path) -> None:
    """A provider of the OpenAI-compatible kind whose endpoint is the environment's (opencode
    installs its SDK package from the npm registry on first use), no update, no sharing."""
    config = home / ".config" / "opencode"
    config.mkdir(parents=True)
    provider = {
        "npm": "@ai-sdk/openai-compatible",
        "name": "Fake",
        "options": {"baseURL": "{env:OPENAI_BASE_URL}", "apiKey": "{env:OPENAI_API_KEY}"},
        "models": {"gpt-fake": {"name": "gpt-fake"}},
    }
    document = {"provider": {"fake": provider}, "model": "fake/gpt-fake", "autoupdate": False, "share": "disabled"}
    (config / "opencode.json").write_text(json.dumps(document))


@dataclass
class Session:
    window: AgentWindow
    repo: Path
    api: FakeOpenAIServer

    def screen(self) -> str:
        return self.window.screen()

    def submit(self, text: str, trigger: str) -> None:
        # Keys typed while its TUI still starts are lost; the first time, its SDK is installed
        # before the model is asked.
        self.window.type(text, tries=10, shown_within=5)
        self.window.press_enter_until(model_asked(self.api.wait_for, trigger), tries=6, each=20)


@pytest.fixture
def session(opencode_bin: Path, tmp_path: Path) -> Iterator[Session]:
    home, repo = tmp_path / "home", tmp_path / "repo"
    repo.mkdir()
    seed_home(home)
    api = FakeOpenAIServer(Script([Rule(TRIGGER, REPLY, delay=MODEL_DELAY)]), host=bridge_ip()).start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "OPENAI_API_KEY": "test-token",
        "OPENAI_BASE_URL": api.url,
    }
    sock = str(tmp_path / "tmux.sock")
    s = Session(start_agent_window(sock, SESSION, "opencode", repo, [str(opencode_bin)], env), repo, api)
    try:
        wait_for_prompt(s.window, lambda text: "Ask anything" in text)
        yield s
    finally:
        stop_tmux(sock, started_under=tmp_path)
        api.stop()


def test_a_slow_opencode_turn_is_working_by_its_model_connection_then_waiting(session: Session) -> None:
    w = AgentWatcher(
        AgentConfig(
            user=getpass.getuser(),
            watch=AGENTS["opencode"].watch,
            hook_events=None,
            only_under=session.repo,
            stall_after=MODEL_DELAY * 2,
        )
    )
    w.poll()  # CPU baseline
    idle = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=30, every=2)
    assert idle.state is AgentState.WAITING, idle

    session.submit(f"please answer this, {TRIGGER}", TRIGGER)
    started = time.monotonic()
    every = min(5.0, max(0.5, MODEL_DELAY / 10))
    samples: list[tuple[float, AgentSignals]] = []
    while time.monotonic() - started + every < MODEL_DELAY - 2:  # throughout the model's stall
        time.sleep(every)
        samples.append((time.monotonic() - started, w.poll()))
    report = "\n".join(f"{t:5.1f}s {s.state.value} conns={s.model_connections} {s.detail}" for t, s in samples)
    print(report)
    assert len(samples) >= min(6, MODEL_DELAY / 6), report
    assert all(s.state is AgentState.WORKING and s.model_connections >= 1 for _, s in samples), report

    assert REPLY in wait_until(session.screen, lambda text: REPLY in text, timeout=30)
    after = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=60, every=1)
    assert after.state is AgentState.WAITING and after.model_connections == 0, after
    assert list(session.repo.iterdir()) == []  # the turn wrote no file in the repository
