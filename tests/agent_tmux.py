"""A real agent CLI in a tmux window of its own, as on a workspace, for the watchdog's
real-process tests: a tmux server on a socket of the test's, the agent started in window "one"
with exactly the environment given, and the keys a person would type."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.polling import wait_until

SIZE = ("-x", "200", "-y", "50")  # wide enough that a prompt or an answer is never wrapped away


def npm_cli(binary: Path, package: str, prefix: Path) -> Path:
    """`binary`, installed first from npm (`package` pinned as name@version) below `prefix` when
    it is not there yet: scripts/dev-env.sh installs it, a test run on its own may not have."""
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"no {binary.name} at {binary} and no npm to install it (scripts/dev-env.sh installs both)")
        subprocess.run(
            [npm, "install", "-g", "--prefix", str(prefix), package], check=True, timeout=600, capture_output=True
        )
    return binary


def bridge_ip() -> str:
    """A non-loopback address of this host for the fake model API: the watchdog ignores loopback
    as "not the model"."""
    for _name, addrs in sorted(psutil.net_if_addrs().items(), key=lambda kv: kv[0] != "docker0"):
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    # The test script starts dockerd, whose docker0 bridge has one: its absence is a broken setup.
    raise AssertionError("no non-loopback IPv4 address for the fake model API (is dockerd running?)")


@dataclass
class AgentWindow:
    sock: str
    session: str
    name: str  # what the messages call the agent

    @property
    def target(self) -> str:
        return f"{self.session}:one"

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    def type(self, text: str, tries: int = 1, shown_within: float = 10) -> None:
        """Type `text` until the agent shows it (keys typed while a TUI still starts are lost)."""
        for _ in range(tries):
            if text in self.screen():
                break
            self.tmux("send-keys", "-t", self.target, "-l", text)
            wait_until(self.screen, lambda screen: text in screen, timeout=shown_within, every=0.5)
        shown = self.screen()
        assert text in shown, f"{self.name} did not show the typed prompt:\n{shown}"

    def press_enter_until(self, asked: Callable[[float], bool], tries: int = 5, each: float = 10) -> None:
        """Enter until `asked(timeout)` says the model got the prompt: an Enter that follows typed
        keys closely may be taken for part of a paste (a new line in the composer)."""
        for _ in range(tries):
            self.tmux("send-keys", "-t", self.target, "Enter")
            if asked(each):
                return
        raise AssertionError(f"{self.name} never sent the prompt to the model:\n{self.screen()}")


def model_asked(wait_for: Callable[..., object], trigger: str) -> Callable[[float], bool]:
    """For press_enter_until: whether the fake model API (its `wait_for`) got `trigger` in time."""

    def asked(timeout: float) -> bool:
        try:
            wait_for(trigger, timeout=timeout)
        except TimeoutError:
            return False
        return True

    return asked


def start_agent_window(
    sock: str, session: str, name: str, repo: Path, argv: Sequence[str], env: dict[str, str]
) -> AgentWindow:
    """`argv` in window "one" of a new tmux server on `sock`, in `repo`, with `env` alone."""
    subprocess.run(
        ["tmux", "-S", sock, "new-session", "-d", "-s", session, "-n", "one", *SIZE, "-c", str(repo), *argv],
        env=env,
        check=True,
    )
    return AgentWindow(sock, session, name)


def wait_for_prompt(window: AgentWindow, at_prompt: Callable[[str], bool], timeout: float = 90) -> None:
    ready = wait_until(window.screen, at_prompt, timeout=timeout, every=0.5)
    assert at_prompt(ready), f"{window.name} never showed its prompt:\n{ready}"


def stop_tmux(sock: str, started_under: Path | None = None) -> None:
    """The test's tmux server; with `started_under`, also whatever the agent left running in that
    folder (gemini and opencode outlive their tmux server)."""
    subprocess.run(["tmux", "-S", sock, "kill-server"], check=False, capture_output=True)
    if started_under is not None:
        for proc in psutil.process_iter(["cwd"]):
            if proc.info["cwd"] and proc.info["cwd"].startswith(str(started_under)):
                proc.kill()
