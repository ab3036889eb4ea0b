"""The real aider CLI, in a real tmux, against the scripted OpenAI Chat Completions API.

aider keeps no turn log vmgen reads: while it waits on a slow model (a silent streaming request,
nothing written, next to no CPU) the watchdog knows it at work by its model connection alone, to
the endpoint its environment names (OPENAI_API_BASE), and at its prompt afterwards it waits.
The watchdog is given aider's own declaration from laptop/agents.py.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests` is not an installed package
    sys.path.insert(0, str(ROOT))

from tests.agent_tmux import AgentWindow, bridge_ip, start_agent_window, stop_tmux, wait_for_prompt  # noqa: E402
from tests.fakes.openai_api import FakeOpenAIServer, Rule, Script  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from vmgen.contract.names import agent_session  # noqa: E402
from vmgen.laptop.agents import AGENTS  # noqa: E402
from vmgen.vmside.idlewatch.agent import AgentConfig, AgentWatcher  # noqa: E402
from vmgen.vmside.idlewatch.model import AgentSignals, AgentState  # noqa: E402

AIDER_VERSION = "0.86.2"  # scripts/dev-env.sh installs this one
AIDER_VENV = ROOT / ".cache" / "aider"
MODEL_DELAY = float(os.environ.get("VMGEN_TEST_MODEL_DELAY", "30"))
TRIGGER = "SLOW-TURN"
REPLY = "The slow answer has arrived."
SESSION = agent_session("aider")
# No git (the folder is no repository), no update check, nothing fetched at start (litellm's
# price list comes from the package), no analytics, no questions.
FLAGS = ["--model", "openai/gpt-fake", "--no-git", "--yes-always", "--no-check-update", "--no-show-release-notes"]
FLAGS += ["--analytics-disable", "--no-show-model-warnings"]


@pytest.fixture(scope="module")
def aider_bin() -> Path:
    aider = AIDER_VENV / "bin" / "aider"
    if not aider.exists():
        # uv (the test extra's): aider's hundred packages in seconds of CPU, where pip took half a minute.
        uv = str(Path(sys.executable).parent / "uv")
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(AIDER_VENV)], check=True, timeout=120)
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                str(AIDER_VENV / "bin" / "python"),
                f"aider-chat=={AIDER_VERSION}",
            ],
            check=True,
            timeout=900,
            capture_output=True,
        )
    return aider


@dataclass
class Session:
    window: AgentWindow
    repo: Path
    api: FakeOpenAIServer

    def screen(self) -> str:
        return self.window.screen()

    def submit(self, text: str) -> None:
        self.window.type(text)
        self.window.tmux("send-keys", "-t", self.window.target, "Enter")


def at_prompt(screen: str) -> bool:
    lines = [line for line in screen.splitlines() if line.strip()]
    return bool(lines) and lines[-1].rstrip() == ">"


@pytest.fixture
def session(aider_bin: Path, tmp_path: Path) -> Iterator[Session]:
    home, repo = tmp_path / "home", tmp_path / "repo"
    home.mkdir()
    repo.mkdir()
    api = FakeOpenAIServer(Script([Rule(TRIGGER, REPLY, delay=MODEL_DELAY)]), host=bridge_ip()).start()
    env = {
        "PATH": f"{aider_bin.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "OPENAI_API_KEY": "test-token",
        "OPENAI_API_BASE": api.url,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    sock = str(tmp_path / "tmux.sock")
    s = Session(start_agent_window(sock, SESSION, "aider", repo, [str(aider_bin), *FLAGS], env), repo, api)
    try:
        wait_for_prompt(s.window, at_prompt)
        yield s
    finally:
        stop_tmux(sock)
        api.stop()


def test_a_slow_aider_turn_is_working_by_its_model_connection_then_waiting(session: Session) -> None:
    w = AgentWatcher(
        AgentConfig(
            user=getpass.getuser(),
            watch=AGENTS["aider"].watch,
            hook_events=None,
            only_under=session.repo,
            stall_after=MODEL_DELAY * 2,
        )
    )
    w.poll()  # CPU baseline
    idle = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=20, every=2)
    assert idle.state is AgentState.WAITING and "no model connection" in idle.detail, idle

    session.submit(f"please answer this, {TRIGGER}")
    session.api.wait_for(TRIGGER, timeout=60)
    started = time.monotonic()
    every = min(5.0, max(0.5, MODEL_DELAY / 10))
    samples: list[tuple[float, AgentSignals]] = []
    while time.monotonic() - started + every < MODEL_DELAY - 2:  # throughout the model's stall
        time.sleep(every)
        samples.append((time.monotonic() - started, w.poll()))
    report = "\n".join(f"{t:5.1f}s {s.state.value} conns={s.model_connections} {s.detail}" for t, s in samples)
    print(report)
    assert len(samples) >= min(6, MODEL_DELAY / 6), report
    assert all(s.state is AgentState.WORKING and s.model_connections == 1 for _, s in samples), report
    assert all("model connection" in s.detail for _, s in samples), report

    assert REPLY in wait_until(session.screen, lambda text: REPLY in text, timeout=30)
    after = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=30, every=1)
    assert after.state is AgentState.WAITING and after.model_connections == 0, after
