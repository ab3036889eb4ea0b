"""The `vmgen` command line: the group in app.py, commands grouped by what they act on."""

from ..vmside.cli import vmside
from . import (  # noqa: F401 - register commands
    backups,
    identities_cmd,
    images,
    launching,
    settings_cmd,
    watchdog,
    web,
    workspaces,
)
from .app import main

main.add_command(vmside)
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
