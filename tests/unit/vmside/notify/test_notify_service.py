"""The notifier with the real watchdog service code, the real hook script and a fake ntfy server
(tests/fakes/ntfy.py), no VM: a Stop hook gives exactly one "finished" message, the idle
warning one message with its countdown, and a hanging or failing ntfy holds neither the hook
nor the tick. The access token reaches ntfy as a header and no message."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import vmgen.vmside.idlewatch.service as service
from tests.fakes.ntfy import FakeNtfy
from vmgen.contract import codec
from vmgen.contract.documents import RestoreResult, WatchSettings
from vmgen.contract.enums import IdleAction
from vmgen.contract.names import VmPaths
from vmgen.contract.notify import NTFY_TOKEN_VARIABLE
from vmgen.laptop.builder.render import agent_event_hook
from vmgen.vmside.boot import boot_began
from vmgen.vmside.idlewatch.model import AgentSignals, AgentState, Snapshot
from vmgen.vmside.notify.hooks import HookFollower
from vmgen.vmside.notify.sender import Notifier, notifier_for

TOKEN = "tk_test-token"
TOPIC = "vmgen-app"


@pytest.fixture
def ntfy() -> Iterator[FakeNtfy]:
    with FakeNtfy(protected={TOPIC: {TOKEN}}) as fake:
        yield fake


@pytest.fixture
def paths(tmp_path: Path) -> VmPaths:
    return VmPaths(
        state=tmp_path / "state",
        run=tmp_path / "run",
        etc=tmp_path / "etc",
        home=tmp_path / "home",
        log=tmp_path / "log",
    )


def notifier(ntfy: FakeNtfy, paths: VmPaths) -> Notifier:
    return notifier_for("app", (f"ntfy:{ntfy.endpoint}/{TOPIC}",), {NTFY_TOKEN_VARIABLE: TOKEN}, paths)


def run_hook(paths: VmPaths, event: str, payload: str) -> None:
    """The hook program Claude Code runs, as rendered for the VM, pointed at this test's file."""
    script = paths.hook_events.parent / "agent-event"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(agent_event_hook(paths))
    subprocess.run([sys.executable, "-IS", str(script), event], input=payload, text=True, check=True, timeout=30)


def test_a_stop_hook_gives_exactly_one_finished_message(ntfy: FakeNtfy, paths: VmPaths) -> None:
    follower = HookFollower(paths.hook_events, notifier(ntfy, paths), uid_of=os.getuid, since=0)
    follower.poll()
    for event, payload in (
        ("UserPromptSubmit", '{"session_id": "s1"}'),
        ("Stop", '{"session_id": "s1", "transcript_path": "/x.jsonl"}'),
        ("Stop", '{"session_id": "s1"}'),  # a second Stop hook of the same turn
        ("Notification", '{"session_id": "s1", "notification_type": "idle_prompt", "message": "Claude is waiting"}'),
    ):
        run_hook(paths, event, payload)
    assert follower.poll() == 1
    (message,) = ntfy.wait_for_messages(TOPIC, 1)
    assert message["title"] == "app: agent finished" and message["message"] == "the agent finished its turn"
    assert ntfy.published[0].headers["authorization"] == f"Bearer {TOKEN}"
    run_hook(paths, "Notification", '{"session_id": "s1", "notification_type": "idle_prompt"}')
    assert follower.poll() == 0
    assert len(ntfy.messages(TOPIC)) == 1
    assert all(TOKEN not in str(m) for m in ntfy.messages(TOPIC))


def test_a_forged_notification_reaches_ntfy_only_as_vmgens_words(ntfy: FakeNtfy, paths: VmPaths) -> None:
    """Attack: the agent's payload (its hook input, or a line it writes itself) carries markdown,
    a link and a long text: the phone gets vmgen's fixed sentence."""
    follower = HookFollower(paths.hook_events, notifier(ntfy, paths), uid_of=os.getuid, since=0)
    evil = "**Approve now** [here](https://evil.example/p) " + "y" * 3000
    payload = f'{{"session_id": "s9", "notification_type": "permission_prompt", "message": "{evil}"}}'
    run_hook(paths, "Notification", payload)
    with paths.hook_events.open("a") as f:
        f.write(f'{{"at": 1, "event": "StopFailure", "session": "s8", "kind": "{evil[:40]}", "error": "{evil}"}}\n')
    assert follower.poll() == 2
    texts = {m["message"] for m in ntfy.wait_for_messages(TOPIC, 2)}
    assert texts == {"the agent asks permission to use a tool", "the agent's turn ended on an error"}
    assert not any(b"evil" in p.body or b"Approve" in p.body for p in ntfy.published)


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def watchdog(paths: VmPaths, clock: Clock, sender: Notifier) -> service.Watchdog:
    settings = WatchSettings(name="app", idle_minutes=30, warn_minutes=10, action=IdleAction.DELETE)

    class Idle:
        def snapshot(self) -> Snapshot:
            return Snapshot(at=clock(), agent=AgentSignals(AgentState.WAITING))

    collector: Any = Idle()  # the watchdog's SignalCollector, scripted
    paths.state.mkdir(parents=True, exist_ok=True)
    return service.Watchdog(replace(settings), collector, clock=clock, paths=paths, background=False, notifier=sender)


def run_minutes(dog: service.Watchdog, clock: Clock, minutes: float) -> None:
    end = clock.now + minutes * 60
    while clock.now <= end:
        dog.tick()
        clock.now += 30


@pytest.fixture
def quiet_terminals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "warn", lambda settings, text, paths: None)  # tmux and wall: not this test's
    monkeypatch.setattr(service, "start_action", lambda: None)


@pytest.mark.usefixtures("quiet_terminals")
def test_the_idle_warning_is_one_message_with_its_countdown(ntfy: FakeNtfy, paths: VmPaths) -> None:
    clock = Clock()
    dog = watchdog(paths, clock, notifier(ntfy, paths))
    ntfy.fail_next(1)  # a 429 first: retried
    run_minutes(dog, clock, 28)
    (message,) = ntfy.wait_for_messages(TOPIC, 1)
    assert message["title"] == "app: idle warning"
    assert "is idle and will be deleted in 10 min" in message["message"]
    assert "vmgen keepalive app --for 1h" in message["message"]
    assert message["priority"] == 4


@pytest.mark.usefixtures("quiet_terminals")
def test_a_hanging_ntfy_holds_neither_the_tick_nor_the_hook(ntfy: FakeNtfy, paths: VmPaths) -> None:
    ntfy.hang(3600)
    clock = Clock()
    dog = watchdog(paths, clock, notifier(ntfy, paths))
    run_minutes(dog, clock, 40)  # through the warning to the action
    follower = HookFollower(paths.hook_events, dog.notifier or notifier(ntfy, paths), uid_of=os.getuid, since=0)
    run_hook(paths, "Stop", '{"session_id": "s1"}')
    follower.poll()
    # Every tick and the hook returned while the warning's publish still hangs in the server.
    assert ntfy.messages(TOPIC) == [] and dog.action_started
    assert dog.warned_for is not None and paths.watchdog_state.is_file()


@pytest.mark.usefixtures("quiet_terminals")
@pytest.mark.parametrize("restored", [True, False])
def test_the_end_of_provisioning_is_said_once_and_a_restore_with_it(
    ntfy: FakeNtfy, paths: VmPaths, restored: bool
) -> None:
    clock = Clock()
    dog = watchdog(paths, clock, notifier(ntfy, paths))
    paths.log.mkdir(parents=True)
    paths.phases_log.write_text(f"vmgen-phase {dog.boot_began + 1} watchdog\n")
    run_minutes(dog, clock, 1)
    if restored:
        paths.restore_result.parent.mkdir(parents=True, exist_ok=True)
        paths.restore_result.write_text(codec.dumps(RestoreResult(ok=True, backup_id="b1")))
    with paths.phases_log.open("a") as log:
        log.write(f"vmgen-phase {dog.boot_began + 2} done\n")
    run_minutes(dog, clock, 5)
    (message,) = ntfy.wait_for_messages(TOPIC, 1)
    said = "the workspace is restored and ready" if restored else "the workspace is ready"
    assert message["message"] == said


@pytest.mark.usefixtures("quiet_terminals")
def test_a_reboot_after_provisioning_says_nothing(ntfy: FakeNtfy, paths: VmPaths) -> None:
    paths.log.mkdir(parents=True)
    paths.phases_log.write_text("vmgen-phase 1000.5 done\n")  # the first boot's, long before this service
    clock = Clock()
    dog = watchdog(paths, clock, notifier(ntfy, paths))
    run_minutes(dog, clock, 5)
    assert dog.ready_told and ntfy.published == []


@pytest.mark.usefixtures("quiet_terminals")
def test_provisioning_that_ended_before_the_watchdog_started_is_still_said(ntfy: FakeNtfy, paths: VmPaths) -> None:
    # The web phase can take less than the watchdog's own start-up: `done` is then written
    # before the service's first look, in the same boot.
    paths.log.mkdir(parents=True)
    paths.phases_log.write_text(f"vmgen-phase {boot_began() + 0.5} watchdog\nvmgen-phase {boot_began() + 0.7} done\n")
    clock = Clock()
    dog = watchdog(paths, clock, notifier(ntfy, paths))
    run_minutes(dog, clock, 5)
    (message,) = ntfy.wait_for_messages(TOPIC, 1)
    assert message["message"] == "the workspace is ready"
