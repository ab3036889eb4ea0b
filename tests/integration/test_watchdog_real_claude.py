"""The real Claude Code CLI, in a real tmux, against the scripted model API.

The two failures of a naive watchdog, reproduced with the real agent: a turn waiting a minute
on a slow model with ~0% CPU must read WORKING throughout, and Claude at its prompt, though its
process is alive, must read WAITING.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests` is not an installed package
    sys.path.insert(0, str(ROOT))

from tests.agent_tmux import bridge_ip, npm_cli  # noqa: E402
from tests.fakes.anthropic_api import FakeAnthropicServer, Rule, Script, ToolUse  # noqa: E402
from tests.polling import wait_until  # noqa: E402
from vmgen.vmside.idlewatch.agent import AgentConfig, AgentWatcher  # noqa: E402
from vmgen.vmside.idlewatch.model import AgentSignals, AgentState  # noqa: E402

CLAUDE_VERSION = "2.1.332"
CLAUDE = Path(os.environ.get("VMGEN_TEST_CLAUDE", str(ROOT / ".cache" / "claude" / "bin" / "claude")))
MODEL_DELAY = float(os.environ.get("VMGEN_TEST_MODEL_DELAY", "60"))  # the issue asks for 60 s
API_KEY = "test-key-not-real-0123456789"
TRIGGER = "SLOW-TURN"
INTERRUPT = "INTERRUPT-ME"
REPLY = "The slow answer has arrived."


@pytest.fixture(scope="module")
def claude_bin() -> Path:
    return npm_cli(CLAUDE, f"@anthropic-ai/claude-code@{CLAUDE_VERSION}", ROOT / ".cache" / "claude")


@dataclass
class Session:
    sock: str
    repo: Path
    home: Path
    api: FakeAnthropicServer

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "agent:one")

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "agent:one", "-l", text)
        self.tmux("send-keys", "-t", "agent:one", "Enter")


def seed_home(home: Path, repo: Path, settings: dict[str, object]) -> None:
    """Exactly what keeps every first-run dialog away (onboarding, API key, folder trust)."""
    (home / ".claude").mkdir(parents=True)
    (home / ".claude.json").write_text(
        json.dumps(
            {
                "hasCompletedOnboarding": True,
                "customApiKeyResponses": {"approved": [API_KEY[-20:]], "rejected": []},
                "projects": {str(repo): {"hasTrustDialogAccepted": True}},
            }
        )
    )
    (home / ".claude" / "settings.json").write_text(
        json.dumps({"env": {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}} | settings)
    )


@contextmanager
def claude_in_tmux(
    tmp_path: Path, command: list[str], script: Script, settings: dict[str, object] | None = None
) -> Iterator[tuple[str, FakeAnthropicServer]]:
    """Claude Code in window "one" of a tmux server of its own (which passes exactly this
    environment to it; $HOME is tmp_path/home, the repository tmp_path/repo), against the
    scripted model, at its prompt: the server's socket and the model."""
    home, repo = tmp_path / "home", tmp_path / "repo"
    repo.mkdir()
    seed_home(home, repo, settings or {})
    api = FakeAnthropicServer(script, host=bridge_ip()).start()
    # IS_SANDBOX: Claude refuses to skip permissions as root, which this test may be, otherwise.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_API_KEY": API_KEY,
        "IS_SANDBOX": "1",
    }
    sock = str(tmp_path / "tmux.sock")
    subprocess.run(
        [
            "tmux",
            "-S",
            sock,
            "new-session",
            "-d",
            "-s",
            "agent",
            "-n",
            "one",
            "-x",
            "200",
            "-y",
            "50",
            "-c",
            str(repo),
            *command,
        ],
        env=env,
        check=True,
    )
    try:

        def screen() -> str:
            return subprocess.run(
                ["tmux", "-S", sock, "capture-pane", "-p", "-t", "agent:one"], capture_output=True, text=True
            ).stdout

        ready = wait_until(screen, lambda text: "❯" in text, timeout=90)
        assert "❯" in ready, f"Claude Code never showed its prompt:\n{ready}"
        yield sock, api
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], check=False, capture_output=True)
        api.stop()


@pytest.fixture
def session(claude_bin: Path, tmp_path: Path) -> Iterator[Session]:
    script = Script(rules=[Rule(TRIGGER, text=REPLY, delay=MODEL_DELAY), Rule(INTERRUPT, text="never seen", delay=600)])
    with claude_in_tmux(tmp_path, [str(claude_bin)], script) as (sock, api):
        yield Session(sock, tmp_path / "repo", tmp_path / "home", api)


def watcher(s: Session) -> AgentWatcher:
    # claude_dir is left to discovery: the process's own $HOME/.claude, as on the VM.
    return AgentWatcher(
        AgentConfig(user=getpass.getuser(), hook_events=None, only_under=s.repo, stall_after=max(30.0, MODEL_DELAY / 2))
    )


def claude_cpu(s: Session) -> float:
    ours = [
        p for p in psutil.process_iter(["name", "cwd"]) if p.info["name"] == "claude" and p.info["cwd"] == str(s.repo)
    ]
    # Claude Code may start a short-lived helper of its own name in the same folder: the session
    # is the one claude whose parent is not a claude.
    procs = [p for p in ours if p.ppid() not in {q.pid for q in ours}]
    assert len(procs) == 1, ours
    t = procs[0].cpu_times()
    return float(t.user + t.system)


def test_slow_model_turn_is_working_then_waiting(session: Session) -> None:
    w = watcher(session)
    w.poll()  # CPU baseline
    idle = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=20, every=2)
    assert idle.state is AgentState.WAITING and not idle.turn_open, idle  # alive, but not activity

    session.type(f"please answer this, {TRIGGER}")
    session.api.wait_for(TRIGGER, timeout=60)
    started, cpu0 = time.monotonic(), claude_cpu(session)
    every = min(5.0, max(0.5, MODEL_DELAY / 12))
    samples: list[tuple[float, float, AgentSignals]] = []  # (time, CPU share since last, signals)
    last_t, last_cpu = 0.0, cpu0
    while time.monotonic() - started + every < MODEL_DELAY - 2:  # throughout the model's stall
        time.sleep(every)
        t, cpu = time.monotonic() - started, claude_cpu(session)
        samples.append((t, (cpu - last_cpu) / (t - last_t), w.poll()))
        last_t, last_cpu = t, cpu
    cpu_share = (claude_cpu(session) - cpu0) / (time.monotonic() - started)

    report = "\n".join(
        f"{t:5.1f}s {s.state.value} conns={s.model_connections} cpu={c:.1%} cpu_busy={s.cpu_busy} {s.detail}"
        for t, c, s in samples
    )
    print(f"claude CPU over the stall: {cpu_share:.2%} of a core\n{report}")
    assert len(samples) >= min(8, MODEL_DELAY / 6), report
    assert all(s.state is AgentState.WORKING and s.turn_open for _, _, s in samples), report
    assert all(s.model_connections >= 1 for _, _, s in samples), report
    # Claude's own CPU while it waits (its TUI spinner) varies with the machine's load (2-27% of a
    # core seen here), so WORKING must come from the open turn plus the model connection:
    # the check on each sample's detail below says the watchdog relies on exactly that.
    assert all("model connection" in s.detail for _, _, s in samples), report

    after = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=30, every=1)
    assert after.state is AgentState.WAITING and not after.turn_open, after
    assert REPLY in wait_until(session.screen, lambda text: REPLY in text, timeout=10)


def test_interrupted_turn_is_waiting(session: Session) -> None:
    """Esc writes nothing to the transcript (the prompt stays unanswered there); Claude's own
    session status says idle, and that newer statement must win: WAITING, not stalled."""
    w = watcher(session)
    w.poll()
    session.type(f"take forever, {INTERRUPT}")
    session.api.wait_for(INTERRUPT, timeout=60)
    busy = wait_until(w.poll, lambda s: s.state is AgentState.WORKING, timeout=10)
    assert busy.state is AgentState.WORKING and busy.turn_open, busy
    session.tmux("send-keys", "-t", "agent", "Escape")
    after = wait_until(w.poll, lambda s: s.state is AgentState.WAITING, timeout=20)
    assert after.state is AgentState.WAITING and not after.turn_open, after
    assert "session status" in after.detail, after


# -- sessions and tool calls, with the hooks the VM installs -----------------------------------------

SLOW_SECOND = "SECOND-SESSION-SLOW"
QUICK_FIRST = "FIRST-SESSION-QUICK"
SILENT_TOOL = "SILENT-TOOL-CALL"
SECOND_DELAY = float(os.environ.get("VMGEN_TEST_SECOND_DELAY", "40"))
TOOL_SECONDS = 25
# A step of a build or a test run that prints nothing (Claude Code refuses a bare `sleep`).
SILENT_COMMAND = f"python3 -c 'import time; time.sleep({TOOL_SECONDS})'"
STALL_AFTER = 5.0  # seconds: far shorter than the silent tool call


def claude_command(claude: Path) -> list[str]:
    """The agent's start command on the VM, with this Claude Code."""
    from vmgen.laptop.agents import AGENTS

    return [str(claude), *AGENTS["claude"].start_command().split()[1:]]


@dataclass
class Workspace:
    """Claude Code as the VM runs it: permissions skipped, the watchdog's hook program installed
    (rendered from the VM's own template), in windows of one tmux session."""

    sock: str
    repo: Path
    events: Path  # what the hooks write
    api: FakeAnthropicServer
    claude: Path

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], check=True, capture_output=True, text=True).stdout

    def screen(self, window: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", f"agent:{window}")

    def type(self, window: str, text: str) -> None:
        self.tmux("send-keys", "-t", f"agent:{window}", "-l", text)
        self.tmux("send-keys", "-t", f"agent:{window}", "Enter")

    def open_window(self, window: str) -> None:
        self.tmux("new-window", "-t", "agent", "-n", window, "-c", str(self.repo), *claude_command(self.claude))
        ready = wait_until(lambda: self.screen(window), lambda text: "❯" in text, timeout=90)
        assert "❯" in ready, f"Claude Code never showed its prompt in window {window}:\n{ready}"

    def hook_lines(self) -> list[dict]:
        text = self.events.read_text() if self.events.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    def watcher(self) -> AgentWatcher:
        return AgentWatcher(
            AgentConfig(user=getpass.getuser(), hook_events=self.events, only_under=self.repo, stall_after=STALL_AFTER)
        )


@pytest.fixture
def workspace(claude_bin: Path, tmp_path: Path) -> Iterator[Workspace]:
    from vmgen.contract.names import VmPaths
    from vmgen.laptop.builder.render import agent_event_hook, claude_hooks

    paths = VmPaths(home=tmp_path / "home")
    program = tmp_path / "agent-event"
    program.write_text(agent_event_hook(paths))
    program.chmod(0o755)
    script = Script(
        rules=[
            Rule(SLOW_SECOND, text="The slow second answer.", delay=SECOND_DELAY),
            Rule(QUICK_FIRST, text="The quick first answer."),
            Rule(
                SILENT_TOOL,
                tool=ToolUse("Bash", {"command": SILENT_COMMAND, "description": "a quiet step"}),
                after_tool_text="The quiet wait is over.",
            ),
        ]
    )
    settings = {"skipDangerousModePermissionPrompt": True, "hooks": claude_hooks(str(program))}
    with claude_in_tmux(tmp_path, claude_command(claude_bin), script, settings) as (sock, api):
        yield Workspace(sock, tmp_path / "repo", paths.hook_events, api, claude_bin)


def test_two_sessions_one_at_its_prompt_one_mid_turn_are_working(workspace: Workspace) -> None:
    """Issue 24, finding 1: the first session's turn ends after the second's began, so its
    hooks' statements are the newest; they speak for the first session only."""
    w = workspace
    w.open_window("two")
    watcher = w.watcher()
    watcher.poll()
    w.type("two", f"take your time, {SLOW_SECOND}")
    w.api.wait_for(SLOW_SECOND, timeout=60)
    started = time.monotonic()
    w.type("one", f"be quick, {QUICK_FIRST}")
    assert "quick first answer" in wait_until(lambda: w.screen("one"), lambda t: "quick first answer" in t, timeout=60)
    # The newest statement in the hooks' file is the first session's end of turn.
    stop = wait_until(w.hook_lines, lambda lines: bool(lines) and lines[-1]["event"] == "Stop", timeout=20)
    sessions = {line.get("session") for line in stop}
    assert stop[-1]["event"] == "Stop" and len(sessions) == 2 and None not in sessions, stop
    assert all(line["transcript"].endswith(f"{line['session']}.jsonl") for line in stop), stop

    samples = []
    while time.monotonic() - started < SECOND_DELAY - 4:
        samples.append(watcher.poll())
        time.sleep(2)
    report = "\n".join(f"{s.state.value} {s.detail}" for s in samples)
    assert len(samples) >= 5, report
    assert all(s.state is AgentState.WORKING and s.sessions == 2 for s in samples), report
    # The second session's model connection holds it; the first waits at its prompt. Right after
    # its turn the first may still work for a moment (a request of its own for the conversation's
    # title, its hook programs), and then its reason is the one shown.
    settled = samples[len(samples) // 2 :]
    assert all("model connection" in s.detail and "1 waiting" in s.detail for s in settled), report
    assert "slow second answer" in wait_until(lambda: w.screen("two"), lambda t: "slow second answer" in t, timeout=30)
    after = wait_until(watcher.poll, lambda s: s.state is AgentState.WAITING, timeout=30, every=1)
    assert after.state is AgentState.WAITING and after.sessions == 2, after


def test_a_silent_tool_call_longer_than_the_stall_limit_is_working(workspace: Workspace) -> None:
    """Issue 24, finding 3: a tool call that prints nothing for longer than stall_minutes, its
    process alive, is working; once it is over and the turn ended, the agent waits."""
    w = workspace
    watcher = w.watcher()
    watcher.poll()
    w.type("one", f"wait a little, {SILENT_TOOL}")
    w.api.wait_for(SILENT_TOOL, timeout=60)
    started = time.monotonic()
    samples = []
    while time.monotonic() - started < TOOL_SECONDS - 3:
        time.sleep(2)
        samples.append((time.monotonic() - started, watcher.poll()))
    report = "\n".join(f"{t:5.1f}s {s.state.value} {s.detail}" for t, s in samples) + "\n" + w.screen("one")
    quiet = [s for t, s in samples if t > STALL_AFTER + 3]  # past the stall limit, nothing written
    assert len(quiet) >= 4, report
    assert all(s.state is AgentState.WORKING and s.tool_alive and "tool running" in s.detail for s in quiet), report
    assert "quiet wait is over" in wait_until(lambda: w.screen("one"), lambda t: "quiet wait is over" in t, timeout=30)
    after = wait_until(watcher.poll, lambda s: s.state is AgentState.WAITING, timeout=30, every=1)
    assert after.state is AgentState.WAITING and not after.tool_running, after
