"""Root's record of the ntfy Keep alive buttons it acted on (contract.phone_actions): each acts once.

A JSON object of nonce -> when its button was issued, in root's state folder (root's own, 0600),
under an exclusive lock: root's page socket runs one process per connection, so two presses of
one button at the same moment meet here and only the first acts. Entries older than twice a
button's lifetime are dropped (an older button is refused as expired anyway), and the record is
capped: a full record refuses further buttons rather than forgetting one that acted.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ..contract.phone_actions import KEEPALIVE_BUTTON_SECONDS

MAX_RECORDED = 4096
READ_MAX = 1 << 20


def take_once(path: Path, nonce: str, issued_at: float, now: float) -> bool:
    """Record `nonce` as acted on; False when it was already (or the record is full)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "r+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            used = json.loads(f.read(READ_MAX) or b"{}")
        except ValueError:
            used = {}
        if not isinstance(used, dict):
            used = {}
        used = {
            str(n): float(t)
            for n, t in used.items()
            if isinstance(t, (int, float)) and now - t < 2 * KEEPALIVE_BUTTON_SECONDS
        }
        if nonce in used or len(used) >= MAX_RECORDED:
            return False
        used[nonce] = issued_at
        f.seek(0)
        f.truncate()
        f.write(json.dumps(used).encode())
        f.flush()
        os.fsync(f.fileno())
    return True


__all__ = ["take_once"]
