"""`vmgen telegram setup` and `vmgen telegram run`: the bot on this machine (laptop/telegram/),
answering with the same functions as the commands here."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import defaultdict

import click

from ...contract.documents import parse_duration
from ...contract.verdict_words import verdict_word, what_happens, what_holds
from ...errors import ConfigError, StatusUnavailable, VmgenError
from ..state import WorkspaceState, all_records
from ..telegram.commands import deliver_answer, permission_said
from ..telegram.records import BotRecord, UsedButtons, write_record
from ..workspace_client import SshWorkspaceClient
from .app import err, existing, main, provider_named, running_target, settings
from .backups import human_bytes
from .workspaces import send_prompt


@main.group()
def telegram() -> None:
    """A Telegram bot for your workspaces: notifications, and commands from your phone."""


@telegram.command("setup")
@click.option("--wait", default=300, show_default=True, help="Seconds to wait for your /start.")
def telegram_setup(wait: float) -> None:
    """Check a bot token (from @BotFather), then record the chat that sends the bot /start."""
    from ..telegram.bot import setup_bot  # python-telegram-bot: loaded by these commands only

    token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        token = click.prompt("bot token (from @BotFather; not shown)", hide_input=True, err=True).strip()
    record = asyncio.run(setup_bot(token, settings().telegram_api_url, err.print, wait))
    path = write_record(record)
    err.print(
        f"[green]set up[/]: chat {record.chat_id} (user {record.user_id}) recorded in {path} (0600, with the token); "
        "add `telegram` to `notify` for the workspaces you launch next, and run `vmgen telegram run` to answer "
        "commands and buttons"
    )


@telegram.command("run")
def telegram_run() -> None:
    """Answer the bot's commands and buttons until Ctrl-C (one process per bot token)."""
    from ..telegram.bot import BotLogic, serve

    s = settings()
    if not s.telegram_bot_token or not s.telegram_chat_id or not s.telegram_user_id:
        raise ConfigError("no Telegram bot is set up: run `vmgen telegram setup`")
    record = BotRecord(s.telegram_bot_token, s.telegram_chat_id, s.telegram_user_id, s.telegram_api_url)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("vmgen.telegram")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logic = BotLogic(record, LaptopWorkspaces(click.get_current_context()), UsedButtons())

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(logic, stop, lambda bot: err.print(f"answering @{bot} for chat {record.chat_id}; Ctrl-C stops"))

    asyncio.run(run())
    err.print("stopped")


class LaptopWorkspaces:
    """The bot's `Workspaces`: the laptop's own functions. The bot calls them from worker threads,
    so each runs inside the command's click context (the settings live there)."""

    def __init__(self, ctx: click.Context) -> None:
        self.ctx = ctx

    def names(self) -> list[str]:
        return [record.name for record in all_records()]

    def list(self) -> str:
        with self.ctx.scope(cleanup=False):
            by_provider: dict[str, list[str]] = defaultdict(list)
            for record in all_records():
                by_provider[record.provider].append(record.name)
            lines: list[str] = []
            for provider_name, names in sorted(by_provider.items()):
                found = {w.name: w for w in provider_named(provider_name).workspaces()}
                for name in names:
                    workspace = found.get(name)
                    lines.append(f"{name}: {workspace.status if workspace else 'gone'} ({provider_name})")
            return "\n".join(lines) or "no workspaces"

    def status(self, name: str) -> str:
        with self.ctx.scope(cleanup=False):
            client = SshWorkspaceClient(running_target(name), name)
            try:
                state = client.status(fresh=True)
            except StatusUnavailable:
                state = client.status()
            return f"{verdict_word(state)}; {what_holds(state)}; {what_happens(state)}"

    def send(self, name: str, text: str) -> str:
        with self.ctx.scope(cleanup=False):
            send_prompt(name, text)
            return "sent"

    def keepalive(self, name: str, duration: str, reason: str) -> str:
        with self.ctx.scope(cleanup=False):
            parse_duration(duration)
            return SshWorkspaceClient(running_target(name), name).keepalive(duration, reason)

    def backup(self, name: str) -> str:
        with self.ctx.scope(cleanup=False):
            result = SshWorkspaceClient(running_target(name), name).backup(lambda _line: None, 7200)
            return f"backed up: {result.backup_id}, {human_bytes(result.ciphertext_bytes)} in {result.seconds:.0f}s"

    def answer_permission(self, name: str, request_id: str, decision: str) -> str:
        """Allow / Deny pressed on the phone: the answer signed with the workspace's key (made at
        its launch; root holds the same) and relayed by the agent's SSH login to root, which checks it."""
        with self.ctx.scope(cleanup=False):
            key = WorkspaceState(name).budget_key()
            try:
                client = SshWorkspaceClient(running_target(name), name)
            except VmgenError as exc:
                return permission_said(decision, str(exc))
            return deliver_answer(
                name, request_id, decision, key, lambda text, mac: client.permission_answer(text, mac, timeout=12)
            )

    def stop(self, name: str) -> str:
        with self.ctx.scope(cleanup=False):
            provider, _ = existing(name)
            provider.stop(name)
            return f"stopped: {provider.stop_note()}"
