"""Replace a JSON file whole, so that a reader on the VM never sees half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, value: Any, mode: int | None = 0o644) -> None:
    """`mode` None keeps the writer's umask (files the agent user owns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)
