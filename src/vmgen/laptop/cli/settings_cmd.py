"""`vmgen config show`: the effective settings, secrets masked.

A setting left empty has a default that lives elsewhere (the SSH keys a launch finds, the backup
excludes, what `auto` means for the configured provider): the value shown is the one a launch
uses, with a note saying where it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.text import Text

from ... import __version__
from ...backup.archive import DEFAULT_EXCLUDES
from ...backup.target import target_from_settings
from ...contract import settings as declarations
from ...contract.documents import LAPTOP_DOCUMENTS
from ..config import Settings
from ..providers import shares_local_folders
from .app import err, main, out, settings

# What each setting the VM's documents declare takes, as its note when nothing else is said.
TAKES = {
    declared.laptop: f"takes {declarations.accepts(kind, declared)}"
    for document in LAPTOP_DOCUMENTS
    for _, kind, declared in declarations.declared(document)
    if declared.laptop
}


@main.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
def config_show() -> None:
    """Print the effective settings (defaults resolved), secrets masked."""
    s = settings()
    rows = [(key, *effective(s, key, value)) for key, value in s.masked().items()]
    width = max(len(key) for key, _, _ in rows)
    # Lines as long as what they say: a table pads every row to its longest value and note.
    for key, shown, note in rows:
        line = Text(f"{key:<{width}}  ")
        line.append(json.dumps(shown) if not isinstance(shown, str) else (shown or "-"))
        if note:
            line.append(f"  # {note}", style="dim")
        out.print(line, soft_wrap=True)
    err.print("from: " + (", ".join(s.sources) or "defaults only"))


def effective(s: Settings, key: str, value: Any) -> tuple[Any, str]:
    """The value a launch uses for `key`, and a note when it is a default resolved elsewhere."""
    if key == "ssh_public_keys" and not value:
        home = Path.home()
        found = [f"~/{path.relative_to(home)}" for path in sorted((home / ".ssh").glob("*.pub"))]
        return found, "default: every ~/.ssh/*.pub" + ("" if found else " (none yet: `ssh-keygen -t ed25519`)")
    if key == "backup_excludes" and not value:
        return list(DEFAULT_EXCLUDES), "default"
    if key == "idle_action" and value == "auto":
        store = target_from_settings(s, shares_local_folders(s.provider))
        meaning = "backup-then-delete" if store is not None else "poweroff"
        why = f"{s.provider} has a backup store" if store is not None else f"no backup store for {s.provider}"
        return value, f"= {meaning} ({why})"
    if key == "auto_bake" and value == "auto":
        from ..providers import auto_bakes

        return value, f"= {'yes' if auto_bakes(s.provider) else 'no'} on {s.provider}"
    if key == "vmgen_version" and not value:
        return __version__, "default: the CLI's own version"
    if key == "vmgen_index_url" and not value and not s.vmgen_find_links:
        return value, "default: PyPI"
    if key == "max_lifetime_hours" and not value:
        return value, "off: nothing bounds what a busy workspace costs"
    return value, TAKES.get(key, "")
