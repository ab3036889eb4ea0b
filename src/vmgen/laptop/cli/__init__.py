"""The laptop's `vmgen` command line: the group in app.py, commands grouped by what they act on."""

from . import (  # noqa: F401 - register commands
    access,
    backups,
    claude_setup,
    cost_cmd,
    identities_cmd,
    images,
    launching,
    sessions_cmd,
    settings_cmd,
    telegram_cmd,
    watchdog,
    web,
    workspaces,
)
from .app import main

for _command in (
    backups.backup,
    backups.backups,
    backups.restore,
    identities_cmd.identities,
    images.image,
    web.login,
    web.open_,
):
    main.add_command(_command)

__all__ = ["main"]
