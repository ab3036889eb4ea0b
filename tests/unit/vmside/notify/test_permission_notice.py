"""A permission prompt root holds tells the phone once, in vmgen's words and the tool's name (one
plain word, else "a tool"), through the real notifier and a fake ntfy; the hook's own
permission notification then only re-arms its session; a flood of prompts is one message."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.ntfy import FakeNtfy
from vmgen.contract.documents import HookEvent, WatchSettings
from vmgen.contract.enums import PermissionMode
from vmgen.contract.names import VmPaths
from vmgen.contract.notify import NTFY_TOKEN_VARIABLE
from vmgen.contract.permissions import PermissionAsk
from vmgen.vmside.notify.policy import Dedupe, notices_of_hooks, permission_notice
from vmgen.vmside.permissions import PermissionDesk, PromptNotifier

TOKEN = "tk_test-token"
TOPIC = "vmgen-app"


@pytest.fixture
def ntfy() -> Iterator[FakeNtfy]:
    with FakeNtfy(protected={TOPIC: {TOKEN}}) as fake:
        yield fake


def test_the_tool_is_named_only_as_one_plain_word() -> None:
    assert permission_notice("Bash").text == "the agent asks to use Bash: Allow or Deny on the workspace page"
    for forged in ("evil.example/click", "Bash now: visit x", "", "a" * 80):
        assert "a tool:" in permission_notice(forged).text


def test_with_root_telling_the_hooks_permission_notice_is_silent() -> None:
    events = [HookEvent(1.0, "Notification", "s1", kind="permission_prompt")]
    assert [n.kind for n in notices_of_hooks(Dedupe(), events)] == ["permission"]
    assert notices_of_hooks(Dedupe(), events, prompts_by_root=True) == []


def test_a_new_prompt_reaches_the_phone_once(ntfy: FakeNtfy, tmp_path: Path) -> None:
    paths = VmPaths(etc=tmp_path / "etc", run=tmp_path / "run", state=tmp_path / "state")
    paths.etc.mkdir()
    target = f"ntfy:{ntfy.endpoint}/{TOPIC}"
    settings = WatchSettings(name="app", notify=(target,), permission_mode=PermissionMode.DEFAULT)
    paths.watch_settings.write_text(settings.to_toml())
    paths.secrets.write_text(f"{NTFY_TOKEN_VARIABLE}={TOKEN}\n")
    desk = PermissionDesk(wait=0.5, on_ask=PromptNotifier(paths))
    asks = [threading.Thread(target=desk.ask, args=(PermissionAsk(tool="Bash", command="rm -rf /"),)) for _ in range(3)]
    for thread in asks:
        thread.start()
    (message,) = ntfy.wait_for_messages(TOPIC, 1)
    assert message["title"] == "app: permission requested"
    assert message["message"] == "the agent asks to use Bash: Allow or Deny on the workspace page"
    for thread in asks:
        thread.join(5)
    assert len(ntfy.messages(TOPIC)) == 1  # three prompts in a row: one message
    assert "rm -rf" not in str(ntfy.messages(TOPIC))
