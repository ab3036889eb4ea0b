"""What every channel is, and how one try fails."""

from __future__ import annotations

from typing import Protocol

from ..policy import Message


class SendError(Exception):
    """One try failed; `retry` is False where trying again cannot help (a refused token)."""

    def __init__(self, text: str, retry: bool = True) -> None:
        super().__init__(text)
        self.retry = retry


class Channel(Protocol):
    name: str  # for the journal: never a token

    def send(self, message: Message, timeout: float) -> None: ...


__all__ = ["Channel", "SendError"]
