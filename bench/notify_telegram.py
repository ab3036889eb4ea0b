"""Latency of the Telegram paths, against the fake Bot API over real HTTP (tests/fakes/telegram.py).

    .venv/bin/python bench/notify_telegram.py [--runs N]

Measured, median of N each:
- root's channel: a notice handed to the Notifier (as the hook follower or the tick does) -> the
  message stored in the user's chat (the VM's side: urllib, one sendMessage);
- the laptop's bot (`vmgen telegram run`'s logic, python-telegram-bot long polling): a /status
  written in the chat -> the bot's answer stored, with the laptop's functions answering at once
  (so this is the bot's own overhead; a real /status adds an SSH round trip);
- a Keep alive press -> the callback answered.
Writes bench/results/notify_telegram.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "notify_telegram.json"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.fakes.telegram import TOKEN, FakeTelegram, TelegramUser

from vmgen.contract.names import VmPaths
from vmgen.contract.notify import TELEGRAM_CHAT_VARIABLE, TELEGRAM_TOKEN_VARIABLE
from vmgen.laptop.telegram.bot import BotLogic, serve
from vmgen.laptop.telegram.records import BotRecord, UsedButtons
from vmgen.vmside.notify.policy import warning_notice
from vmgen.vmside.notify.sender import notifier_for

USER = TelegramUser(5151, "Bench", "bench")


class Instant:
    """The laptop's functions, answering at once."""

    def names(self) -> list[str]:
        return ["app"]

    def list(self) -> str:
        return "app: running"

    def status(self, name: str) -> str:
        return "idle"

    def send(self, name: str, text: str) -> str:
        return "sent"

    def keepalive(self, name: str, duration: str, reason: str) -> str:
        return f"kept alive for {duration}"

    def backup(self, name: str) -> str:
        return "backed up"

    def stop(self, name: str) -> str:
        return "stopped"

    def answer_permission(self, name: str, request_id: str, decision: str) -> str:
        return "Allowed" if decision == "allow" else "Denied"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeTelegram() as fake:
        fake.open_chat(USER)
        paths = VmPaths(state=Path(tmp) / "s", run=Path(tmp) / "r", etc=Path(tmp) / "e", home=Path(tmp) / "h")
        secrets = {TELEGRAM_TOKEN_VARIABLE: TOKEN, TELEGRAM_CHAT_VARIABLE: str(USER.id)}
        notifier = notifier_for("app", (f"telegram:{fake.root_url}",), secrets, paths)

        to_chat: list[float] = []
        for run in range(args.runs):
            started = time.perf_counter()
            notifier.send(warning_notice("idle: will be deleted in 10 min", float(run)))
            fake.wait_for_sent(USER.id, run + 1, timeout=30)
            to_chat.append(time.perf_counter() - started)
        warnings = fake.sent(USER.id)

        logic = BotLogic(BotRecord(TOKEN, USER.id, USER.id, fake.root_url), Instant(), UsedButtons(Path(tmp) / "u"))
        ready = threading.Event()
        holder: dict[str, Any] = {}

        def run_bot() -> None:
            async def bot() -> None:
                holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
                await serve(logic, holder["stop"], lambda _: ready.set())

            asyncio.run(bot())

        thread = threading.Thread(target=run_bot, daemon=True)
        thread.start()
        ready.wait(30)
        fake.wait_for_poller()

        command: list[float] = []
        for _ in range(args.runs):
            before = len(fake.sent(USER.id))
            started = time.perf_counter()
            fake.user_says("/status app", user=USER)
            fake.wait_for_sent(USER.id, before + 1, timeout=30)
            command.append(time.perf_counter() - started)

        press: list[float] = []
        for warning in warnings:
            started = time.perf_counter()
            query = fake.press(warning, user=USER)
            with fake._lock:
                fake._lock.wait_for(lambda q=query: q in fake.callback_answers, 30)  # type: ignore[misc]
            press.append(time.perf_counter() - started)
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(30)

    result = {
        "runs": args.runs,
        "root_notice_to_chat_median_s": round(statistics.median(to_chat), 3),
        "root_notice_to_chat_max_s": round(max(to_chat), 3),
        "bot_command_to_answer_median_s": round(statistics.median(command), 3),
        "bot_command_to_answer_max_s": round(max(command), 3),
        "keepalive_press_to_answer_median_s": round(statistics.median(press), 3),
        "target_s": 1.0,
        "machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
