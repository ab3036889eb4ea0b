"""`vmgen vmside ...`: the commands that run on the workspace VM itself."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from . import leases


@click.group()
def vmside() -> None:
    """Commands for the workspace VM (run there by systemd or over SSH)."""


@vmside.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="Settings file (default /etc/vmgen/idlewatch.toml).")
@click.option("--dry-run", is_flag=True, help="Log what would be done; do nothing.")
@click.option("--once", is_flag=True, help="One tick, then exit.")
def idlewatch(config_path: Path | None, dry_run: bool, once: bool) -> None:
    """Run the idle watchdog (the vmgen-idlewatch service)."""
    from .idlewatch import service, settings

    loaded = settings.load(config_path or settings.CONFIG_PATH)
    service.run(loaded, dry_run=dry_run or loaded.dry_run, once=once)


@vmside.command()
@click.option("--state", "state_path", type=click.Path(path_type=Path), default=Path("/var/lib/vmgen/idlewatch.json"))
def status(state_path: Path) -> None:
    """Print the watchdog's latest state as JSON."""
    try:
        click.echo(state_path.read_text(), nl=False)
    except FileNotFoundError:
        click.echo(json.dumps({"error": "the watchdog has not reported yet"}))
        sys.exit(1)


@vmside.command()
@click.option("--for", "duration", required=True, help="How long, e.g. 3h, 90m.")
@click.option("--reason", default="", help="Shown in the watchdog's log and status.")
@click.option("--leases", "leases_path", type=click.Path(path_type=Path), default=leases.DEFAULT_PATH)
def keepalive(duration: str, reason: str, leases_path: Path) -> None:
    """Hold off the idle watchdog on this VM."""
    lease = leases.add(leases.parse_duration(duration), reason, leases_path)
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(lease.until))
    click.echo(f"keepalive until {until} ({lease.reason})")


@vmside.command()
@click.option("--from-request", is_flag=True, help="Run for a request file (the vmgen-backup service).")
def backup(from_request: bool) -> None:
    """Back up the agent's home to the workspace's store (root only)."""
    from .backups import run_backup, run_backup_request

    result = run_backup_request() if from_request else run_backup()
    click.echo(json.dumps({k: v for k, v in result.items() if k != "trace"}))
    if not result["ok"]:
        sys.exit(1)


@vmside.command()
def restore() -> None:
    """Restore the requested backup with the identity pushed into /run (the vmgen-restore service)."""
    from .backups import run_restore

    result = run_restore()
    click.echo(json.dumps(result))
    if not result["ok"]:
        sys.exit(1)


@vmside.command()
@click.option("--port", default=7392, show_default=True, help="Port on 127.0.0.1.")
def web(port: int) -> None:
    """Serve the workspace page (the vmgen-web service; Caddy adds TLS and auth)."""
    from .web.server import WebSettings, serve

    serve(WebSettings(port=port)).serve_forever()
