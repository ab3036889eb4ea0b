"""The real gemini CLI, in a real tmux, against the scripted Gemini API.

gemini keeps no turn log vmgen reads (its chats are saved per project below ~/.gemini/tmp). While
it waits on a slow model (a silent `streamGenerateContent` stream, nothing written in the
repository) the watchdog knows it at work by its model connection, to the endpoint its environment
names (GOOGLE_GEMINI_BASE_URL, which the CLI hands to its SDK as the base URL); at its prompt it
waits. The CLI starts past its first-run dialogs with exactly the files a workspace gets
(`render.gemini_first_run`), its key from GEMINI_API_KEY. The watchdog is given gemini's own
declaration from laptop/agents.py.
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
from tests.fakes.gemini_api import API_KEY, FakeGeminiServer, Rule, Script  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from vmgen.contract.names import agent_session  # noqa: E402
from vmgen.laptop.agents import AGENTS  # noqa: E402
from vmgen.laptop.builder.render import gemini_first_run  # noqa: E402
from vmgen.vmside.idlewatch.agent import AgentConfig, AgentWatcher  # noqa: E402
from vmgen.vmside.idlewatch.model import AgentSignals, AgentState  # noqa: E402

GEMINI_VERSION = "0.61.0"  # scripts/dev-env.sh installs this one
GEMINI = ROOT / ".cache" / "gemini" / "bin" / "gemini"
# Shorter than the other agents' stalls: this test runs in a suite over its time budget, and six
# looks at the watchdog during the silence say as much as twelve.
MODEL_DELAY = float(os.environ.get("VMGEN_TEST_GEMINI_DELAY", "15"))
TRIGGER = "SLOW-TURN"
REPLY = "The slow answer has arrived."
PROMPT = "Type your message"  # gemini's empty input line
SESSION = agent_session("gemini")


@pytest.fixture(scope="module")
def gemini_bin() -> Path:
    return npm_cli(GEMINI, f"@google/gemini-cli@{GEMINI_VERSION}", GEMINI.parents[1])


def seed_home(home: Path, repo: Path) -> None:
    for path, document in gemini_first_run(str(repo)).items():
        (home / path).parent.mkdir(parents=True, exist_ok=True)
        (home / path).write_text(json.dumps(document))


@dataclass
class Session:
    window: AgentWindow
    repo: Path
    api: FakeGeminiServer

    def screen(self) -> str:
        return self.window.screen()

    def submit(self, text: str, trigger: str) -> None:
        self.window.type(text, tries=5, shown_within=5)
        self.window.press_enter_until(model_asked(self.api.wait_for, trigger), tries=4, each=10)


@pytest.fixture
def session(gemini_bin: Path, tmp_path: Path) -> Iterator[Session]:
    home, repo = tmp_path / "home", tmp_path / "repo"
    repo.mkdir()
    seed_home(home, repo)
    api = FakeGeminiServer(Script([Rule(TRIGGER, REPLY, delay=MODEL_DELAY)]), host=bridge_ip()).start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "GEMINI_API_KEY": API_KEY,
        "GOOGLE_GEMINI_BASE_URL": api.url,
    }
    sock = str(tmp_path / "tmux.sock")
    command = [str(gemini_bin), *AGENTS["gemini"].start_command().split()[1:]]
    s = Session(start_agent_window(sock, SESSION, "gemini", repo, command, env), repo, api)
    try:
        wait_for_prompt(s.window, lambda text: PROMPT in text, timeout=60)
        yield s
    finally:
        stop_tmux(sock, started_under=tmp_path)
        api.stop()


def test_a_slow_gemini_turn_is_working_by_its_model_connection_then_waiting(session: Session) -> None:
    screen = session.screen()  # at its prompt (the fixture waited for it): no dialog in the way
    dialogs = ("trust the files in this folder", "How would you like to authenticate", "Enter Gemini API Key")
    assert not any(dialog in screen for dialog in dialogs), screen
    w = AgentWatcher(
        AgentConfig(
            user=getpass.getuser(),
            watch=AGENTS["gemini"].watch,
            hook_events=None,
            only_under=session.repo,
            stall_after=MODEL_DELAY * 2,
        )
    )
    w.poll()  # CPU baseline
    idle = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=20, every=1)
    assert idle.state is AgentState.WAITING, idle

    session.submit(f"please answer this, {TRIGGER}", TRIGGER)
    started = time.monotonic()
    every = max(0.5, MODEL_DELAY / 10)
    samples: list[tuple[float, AgentSignals]] = []
    while time.monotonic() - started + every < MODEL_DELAY - 1:  # throughout the model's stall
        time.sleep(every)
        samples.append((time.monotonic() - started, w.poll()))
    report = "\n".join(f"{t:5.1f}s {s.state.value} conns={s.model_connections} {s.detail}" for t, s in samples)
    print(f"gemini over the stall ({len(samples)} looks):\n{report}")
    assert len(samples) >= min(6, MODEL_DELAY / 3), report
    assert all(s.state is AgentState.WORKING and s.model_connections >= 1 for _, s in samples), report

    assert REPLY in wait_until(session.screen, lambda text: REPLY in text, timeout=30)
    after = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=30, every=1)
    assert after.state is AgentState.WAITING and after.model_connections == 0, after
    assert list(session.repo.iterdir()) == []  # the turn wrote no file in the repository
