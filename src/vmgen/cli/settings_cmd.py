"""`vmgen config show`: the effective settings, secrets masked."""

from __future__ import annotations

import json

from rich.table import Table

from .app import err, main, out, settings


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
def config_show() -> None:
    """Print the effective settings, secrets masked."""
    s = settings()
    table = Table(box=None, show_header=False)
    for key, value in s.masked().items():
        table.add_row(key, json.dumps(value) if not isinstance(value, str) else (value or "-"))
    out.print(table)
    err.print("from: " + (", ".join(s.sources) or "defaults only"))
