"""The real codex CLI, in a real tmux, against the scripted OpenAI Responses API.

The failure issue 28 names, reproduced with the real agent: a codex turn waiting on a slow model
writes no file and burns no CPU, and must read WORKING throughout (its rollout says the turn is
open, its app-server holds the model connection); once the answer is on the screen, codex at its
prompt must read WAITING. The watchdog is given codex's own declaration from laptop/agents.py.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
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

CODEX_VERSION = "0.169.0"  # scripts/dev-env.sh installs this one
CODEX = Path(os.environ.get("VMGEN_TEST_CODEX", str(ROOT / ".cache" / "codex" / "bin" / "codex")))
MODEL_DELAY = float(os.environ.get("VMGEN_TEST_MODEL_DELAY", "30"))
TRIGGER = "SLOW-TURN"
REPLY = "The slow answer has arrived."
PROMPT = "Ask Codex to do anything"  # codex's empty prompt line
SESSION = agent_session("codex")


@pytest.fixture(scope="module")
def codex_bin() -> Path:
    return npm_cli(CODEX, f"@openai/codex@{CODEX_VERSION}", ROOT / ".cache" / "codex")


def seed_home(home: Path, repo: Path, api_url: str) -> None:
    """codex pointed at the fake through a provider of its own (it takes the key from the
    environment, so no login screen), the folder trusted, no update check."""
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(
        f"""model = "gpt-fake"
model_provider = "fake"
check_for_update_on_startup = false

[model_providers.fake]
name = "fake"
base_url = "{api_url}"
env_key = "OPENAI_API_KEY"
wire_api = "responses"

[projects."{repo}"]
trust_level = "trusted"
"""
    )


@dataclass
class Session:
    window: AgentWindow
    repo: Path
    home: Path
    api: FakeOpenAIServer

    def screen(self) -> str:
        return self.window.screen()

    def submit(self, text: str, trigger: str) -> None:
        self.window.type(text)
        self.window.press_enter_until(model_asked(self.api.wait_for, trigger))


def ours(home: Path) -> list[psutil.Process]:
    """codex's processes of this test: its app-server outlives the TUI, from a copy it put in
    this test's home."""
    found = []
    for proc in psutil.process_iter(["exe", "cmdline"]):
        argv = proc.info["cmdline"] or []
        if any(str(home) in part for part in [proc.info["exe"] or "", *argv[:1]]):
            found.append(proc)
    return found


@pytest.fixture
def session(codex_bin: Path, tmp_path: Path) -> Iterator[Session]:
    home, repo = tmp_path / "home", tmp_path / "repo"
    repo.mkdir()
    api = FakeOpenAIServer(Script([Rule(TRIGGER, REPLY, delay=MODEL_DELAY)]), host=bridge_ip()).start()
    seed_home(home, repo, api.url)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "OPENAI_API_KEY": "test-token",
    }
    sock = str(tmp_path / "tmux.sock")
    command = [str(codex_bin), *AGENTS["codex"].start_command().split()[1:]]
    s = Session(start_agent_window(sock, SESSION, "codex", repo, command, env), repo, home, api)
    try:
        wait_for_prompt(s.window, lambda text: PROMPT in text)
        yield s
    finally:
        stop_tmux(sock)
        for proc in ours(home):
            proc.kill()
        api.stop()


def tree_cpu(s: Session) -> float:
    total = 0.0
    for proc in ours(s.home) + [
        p for p in psutil.process_iter(["cwd"]) if p.info["cwd"] == str(s.repo) and p.pid != os.getpid()
    ]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def test_a_slow_codex_turn_is_working_then_waiting(session: Session) -> None:
    w = AgentWatcher(
        AgentConfig(
            user=getpass.getuser(),
            watch=AGENTS["codex"].watch,
            hook_events=None,
            only_under=session.repo,
            stall_after=max(20.0, MODEL_DELAY / 2),
        )
    )
    w.poll()  # CPU baseline
    idle = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=20, every=2)
    assert idle.state is AgentState.WAITING and not idle.turn_open, idle  # alive, but not activity

    session.submit(f"please answer this, {TRIGGER}", TRIGGER)
    started, cpu0 = time.monotonic(), tree_cpu(session)
    every = min(5.0, max(0.5, MODEL_DELAY / 10))
    samples: list[tuple[float, AgentSignals]] = []
    while time.monotonic() - started + every < MODEL_DELAY - 2:  # throughout the model's stall
        time.sleep(every)
        samples.append((time.monotonic() - started, w.poll()))
    cpu_share = (tree_cpu(session) - cpu0) / (time.monotonic() - started)
    report = "\n".join(
        f"{t:5.1f}s {s.state.value} turn={s.turn_open} conns={s.model_connections} {s.detail}" for t, s in samples
    )
    print(f"codex CPU over the stall: {cpu_share:.2%} of a core\n{report}")
    assert len(samples) >= min(6, MODEL_DELAY / 6), report
    assert all(s.state is AgentState.WORKING and s.turn_open for _, s in samples), report
    # Working because its rollout opened the turn and its app-server holds the model connection
    # (nothing was written in the repository, and no CPU figure decides it).
    assert all(s.model_connections >= 1 and "model connection" in s.detail for _, s in samples), report

    assert REPLY in wait_until(session.screen, lambda text: REPLY in text, timeout=30)
    after = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=30, every=1)
    assert after.state is AgentState.WAITING and not after.turn_open, after
    assert list(session.repo.iterdir()) == []  # the turn wrote no file: the connection alone told
