"""The `vmgen` command line: the group in app.py, commands grouped by what they act on."""

from ..vmside.cli import vmside
from . import backups, images, launching, settings_cmd, watchdog, web, workspaces  # noqa: F401 - register commands
from .app import main

main.add_command(vmside)
for _command in (backups.backup, backups.backups, backups.restore, images.image, web.login, web.open_):
    main.add_command(_command)

__all__ = ["main"]
