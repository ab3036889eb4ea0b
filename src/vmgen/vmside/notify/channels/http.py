"""One JSON POST with a timeout, its failures as SendError (shared by the HTTP channels)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from .base import SendError


def post_json(url: str, body: dict[str, Any], headers: dict[str, str], timeout: float) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}, method="POST"
    )
    try:
        urllib.request.urlopen(request, timeout=max(0.1, timeout)).close()
    except urllib.error.HTTPError as exc:
        # 4xx but 408/429 will not change by trying again (a wrong token, a bad topic).
        raise SendError(f"HTTP {exc.code}", retry=exc.code >= 500 or exc.code in (408, 429)) from None
    except (OSError, ValueError) as exc:
        raise SendError(type(exc).__name__ if not str(exc) else str(exc)[:200]) from None
