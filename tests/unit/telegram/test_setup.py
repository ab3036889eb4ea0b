"""`vmgen telegram setup` as a user runs it, against the fake Bot API: the token checked, the chat
that sends /start recorded (0600, the token never printed), a refused token one clear line; and a
launch with `notify = "telegram"` carrying the bot's token and chat id to root's secrets only."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.telegram import TOKEN, FakeTelegram, TelegramUser
from vmgen.contract.notify import TELEGRAM_CHAT_VARIABLE, TELEGRAM_TOKEN_VARIABLE
from vmgen.errors import ConfigError
from vmgen.laptop.builder import generate_host_key
from vmgen.laptop.config import load_settings, notify_secrets
from vmgen.laptop.launch import LaunchOptions, _render
from vmgen.laptop.spec import WatchdogTuning
from vmgen.laptop.state import WorkspaceRecord, WorkspaceState
from vmgen.laptop.telegram.records import BotRecord, write_record

from ..builder.test_render import files_of, make_spec
from ..cli.test_cli import one_error_line, vmgen
from ..test_notify_setting import Provider

USER = TelegramUser(5151, "Sam", "sam")
STRANGER = TelegramUser(6666, "Eve", "eve")


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def setup_process(home: Path, fake: FakeTelegram, token: str = TOKEN) -> subprocess.Popen[str]:
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src"),
        "TELEGRAM_BOT_TOKEN": token,
        "VMGEN_TELEGRAM_API_URL": fake.root_url,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vmgen", "telegram", "setup", "--wait", "60"],
        env=environment,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_setup_records_the_chat_that_sends_start(home: Path, telegram: FakeTelegram) -> None:
    process = setup_process(home, telegram)
    telegram.wait_for_poller(timeout=30)
    telegram.user_says("hello", user=STRANGER)  # not /start: not recorded
    telegram.user_says("/start", user=USER)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "bot @vmgen_test_bot answers; now open https://t.me/vmgen_test_bot and send it /start" in stderr
    assert f"set up: chat {USER.id} (user {USER.id}) recorded in" in stderr
    assert TOKEN not in stdout + stderr
    record = home / ".config/vmgen/telegram.toml"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert tomllib.loads(record.read_text()) == {
        "telegram_bot_token": TOKEN,
        "telegram_chat_id": USER.id,
        "telegram_user_id": USER.id,
        "telegram_api_url": telegram.root_url,
    }
    (welcome,) = telegram.sent(USER.id)
    assert welcome["text"].startswith("vmgen: this chat now gets your workspaces' notifications.")
    assert telegram.pending_updates() == []  # /start confirmed: `vmgen telegram run` will not see it
    shown = vmgen(home, "config", "show")
    assert TOKEN not in shown.stdout
    assert re.search(rf"^telegram_chat_id +{USER.id}$", shown.stdout, re.MULTILINE)
    assert re.search(r"^telegram_bot_token +\*\*\*\*-000$", shown.stdout, re.MULTILINE)


def test_a_refused_token_is_one_line_and_records_nothing(home: Path, telegram: FakeTelegram) -> None:
    wrong = "7000000001:test-token-wrong"
    process = setup_process(home, telegram, token=wrong)
    stdout, stderr = process.communicate(timeout=60)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert process.returncode == 1
    assert one_error_line(result) == "error: Telegram refused the bot token (getMe); check it with @BotFather"
    assert wrong not in stdout + stderr
    assert not (home / ".config/vmgen/telegram.toml").exists()


def test_run_without_setup_says_what_to_do(home: Path) -> None:
    result = vmgen(home, "telegram", "run")
    assert result.returncode == 2
    assert one_error_line(result) == "error: no Telegram bot is set up: run `vmgen telegram setup`"


def test_the_bot_reaches_roots_secrets_only_and_needs_a_setup(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('notify = "telegram"\n')
    with pytest.raises(ConfigError, match=r"^notify names telegram, but no bot is set up: run `vmgen telegram setup`"):
        notify_secrets(load_settings({}, config, tmp_path / ".env"))
    (tmp_path / "telegram.toml").write_text(
        f'telegram_bot_token = "{TOKEN}"\ntelegram_chat_id = {USER.id}\ntelegram_user_id = {USER.id}\n'
    )
    pairs = notify_secrets(load_settings({}, config, tmp_path / ".env"))
    assert pairs == ((TELEGRAM_TOKEN_VARIABLE, TOKEN), (TELEGRAM_CHAT_VARIABLE, str(USER.id)))
    spec = make_spec(watchdog=WatchdogTuning(notify=("telegram",)))
    options = LaunchOptions(agent_env={}, notify_secrets=pairs)
    files = files_of(_render(spec, Provider(), options, generate_host_key(), None))  # type: ignore[arg-type]
    assert [path for path, f in files.items() if TOKEN in f["content"]] == ["/etc/vmgen/provider.env"]
    assert f"{TELEGRAM_CHAT_VARIABLE}={USER.id}\n" in files["/etc/vmgen/provider.env"]["content"]
    assert files["/etc/vmgen/provider.env"]["permissions"] == "0600"


def test_run_answers_with_the_laptops_own_functions_until_ctrl_c(home: Path, telegram: FakeTelegram) -> None:
    """`vmgen telegram run` as a process: the real laptop functions answer inside the command's
    click context (from the bot's worker threads), a stranger is logged, Ctrl-C stops it."""
    write_record(BotRecord(TOKEN, USER.id, USER.id, telegram.root_url), home / ".config/vmgen")
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "vmgen", "telegram", "run"],
        env=environment,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        telegram.wait_for_poller(timeout=30)
        telegram.user_says("/stop app", user=STRANGER)
        telegram.user_says("/list", user=USER)
        assert telegram.wait_for_sent(USER.id, 1)[-1]["text"] == "no workspaces"
        WorkspaceState("app", home / ".local/state/vmgen").create(
            WorkspaceRecord("app", "docker", 0.0, "https://example.com/app.git", "claude"), "ssh-ed25519 AAAA"
        )
        telegram.user_says("/keepalive app 2h", user=USER)
        # No such workspace on this machine's docker (or no docker here): the CLI's own error line.
        answer = telegram.wait_for_sent(USER.id, 2)[-1]["text"]
        assert answer.startswith("app: error: ")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert f"answering @vmgen_test_bot for chat {USER.id}; Ctrl-C stops" in stderr
    assert f"telegram: ignored a message from chat {STRANGER.id}, user {STRANGER.id}" in stderr
    assert stderr.rstrip().endswith("stopped") and TOKEN not in stderr
    assert telegram.sent(STRANGER.id) == []
