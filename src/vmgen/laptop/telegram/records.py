"""What the bot keeps on this machine: the setup's record (telegram.toml beside config.toml, 0600:
it holds the bot's token) and the Keep alive buttons already used (in vmgen's state folder)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...contract.telegram import BUTTON_LIFETIME_SECONDS
from ..config import TELEGRAM_FILE, config_dir, state_dir
from ..state import write_atomically

USED_BUTTONS_FILE = "telegram-buttons.json"


@dataclass(frozen=True)
class BotRecord:
    """What `vmgen telegram setup` learnt: the token it checked, whose chat answered /start."""

    token: str
    chat_id: int
    user_id: int
    api_url: str = ""  # another Bot API server; "" for Telegram's


def record_path(directory: Path | None = None) -> Path:
    return (directory or config_dir()) / TELEGRAM_FILE


def write_record(record: BotRecord, directory: Path | None = None) -> Path:
    """telegram.toml, rewritten whole (the file is vmgen's alone), 0600 from its first byte."""
    path = record_path(directory)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = [
        "# written by `vmgen telegram setup`; it holds the bot's token: keep it to yourself",
        f"telegram_bot_token = {json.dumps(record.token)}",
        f"telegram_chat_id = {record.chat_id}",
        f"telegram_user_id = {record.user_id}",
    ]
    if record.api_url:
        lines.append(f"telegram_api_url = {json.dumps(record.api_url)}")
    write_atomically(path, ("\n".join(lines) + "\n").encode(), 0o600)
    return path


class UsedButtons:
    """The nonces of the Keep alive buttons acted on: each is used once. Entries older than a
    button can live are dropped. A file lock makes `use` one step across processes."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path or state_dir() / USED_BUTTONS_FILE
        self.clock = clock

    def use(self, nonce: str) -> bool:
        """True the first time a nonce is used, False ever after."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = self._read()
            if nonce in used:
                return False
            now = self.clock()
            used = {n: t for n, t in used.items() if now - t < 2 * BUTTON_LIFETIME_SECONDS}
            used[nonce] = now
            write_atomically(self.path, json.dumps(used).encode(), 0o600)
            return True
        finally:
            os.close(lock)

    def _read(self) -> dict[str, float]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable: the buttons' age still bounds what could be used again
        if not isinstance(data, dict):
            return {}
        return {str(n): float(t) for n, t in data.items() if isinstance(t, int | float)}


__all__ = ["BotRecord", "UsedButtons", "record_path", "write_record"]
