"""The laptop's `vmgen` command line: the group in app.py, commands grouped by what they act on,
each module imported when one of its commands runs (see `VmgenGroup`)."""

from .app import main

_PACKAGE = __name__
COMMANDS = {
    "backup": "backups:backup",
    "backups": "backups:backups",
    "config": "settings_cmd:config",
    "connect": "workspaces:connect",
    "cost": "cost_cmd:cost",
    "destroy": "workspaces:destroy",
    "forward": "access:forward",
    "identities": "identities_cmd:identities",
    "image": "images:image",
    "info": "access:info",
    "keepalive": "watchdog:keepalive",
    "launch": "launching:launch",
    "list": "workspaces:list_",
    "login": "web:login",
    "open": "web:open_",
    "render": "launching:render",
    "restore": "backups:restore",
    "send": "workspaces:send",
    "session": "sessions_cmd:session",
    "sizes": "workspaces:sizes",
    "ssh": "workspaces:ssh",
    "ssh-config": "access:ssh_config",
    "start": "workspaces:start",
    "status": "watchdog:status",
    "stop": "workspaces:stop",
    "sync-config": "claude_setup:sync_config",
    "telegram": "telegram_cmd:telegram",
}
main.lazy.update({name: f"{_PACKAGE}.{where}" for name, where in COMMANDS.items()})

__all__ = ["COMMANDS", "main"]
