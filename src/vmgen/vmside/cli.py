"""`vmgen vmside ...`: the commands that run on the workspace VM itself.

Some run as root under systemd (idlewatch, control, act); the others as the agent user,
over SSH from the laptop or by hand (status, keepalive, backup, restore, web). The agent's
commands never need root: backup and restore ask root's control socket.
"""

from __future__ import annotations

import json
import sys
import time

import click

from ..contract.control import TRIGGERS, ControlRequest
from ..contract.documents import parse_duration
from ..contract.names import VM
from . import leases


@click.group()
def vmside() -> None:
    """Commands for the workspace VM (run there by systemd or over SSH)."""


@vmside.command()
@click.option("--once", is_flag=True, help="One tick, then exit.")
def idlewatch(once: bool) -> None:
    """Run the idle watchdog (the vmgen-idlewatch service, as root)."""
    from .idlewatch import service, settings

    loaded = settings.load()
    service.run(loaded, dry_run=loaded.dry_run, once=once)


@vmside.command()
def act() -> None:
    """The idle action or the hard lifetime, now (vmgen-act.service, as root; bounded)."""
    import logging

    from ..backup.target import load_vm_config
    from .idlewatch import settings
    from .idlewatch.actions import DEFAULT_DEADLINE_MINUTES, Act, machine_for, reason_now

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        loaded = settings.load()
        reason = reason_now(loaded)
        if loaded.dry_run:
            click.echo(f"dry run: would {loaded.action} now ({reason})")
            return
        backup = load_vm_config()
        deadline = backup.target.deadline_minutes if backup is not None else DEFAULT_DEADLINE_MINUTES
        record = Act(loaded, machine_for(loaded), reason, deadline).run()
    except Exception as exc:  # noqa: BLE001 - one line; systemd powers the VM off (FailureAction)
        click.echo(f"vmgen: the idle action failed: {type(exc).__name__}: {str(exc).strip()[:300]}", err=True)
        sys.exit(1)
    click.echo(record.detail)


@vmside.command()
@click.option("--fresh", is_flag=True, help="Ask the watchdog for a verdict now (through root's control socket).")
def status(fresh: bool) -> None:
    """Print the watchdog's latest state as JSON."""
    from .boot import with_age

    if fresh:
        from ..errors import ControlUnavailable, DocumentError
        from .control import ask_patiently

        refused = ""
        try:
            for reply in ask_patiently(ControlRequest("tick"), timeout=60, patience=30):
                if reply.result is not None:
                    click.echo(json.dumps(with_age(reply.result)))
                    return
                refused = reply.refused or reply.busy or refused
        except (ControlUnavailable, DocumentError, OSError) as exc:
            refused = str(exc)
        click.echo(json.dumps({"error": f"no fresh verdict: {refused or 'no answer'}"}))
        sys.exit(1)
    try:
        state = json.loads(VM.watchdog_state.read_text())
    except FileNotFoundError:
        click.echo(json.dumps({"error": "the watchdog has not reported yet"}))
        sys.exit(1)
    except ValueError:
        state = None
    if not isinstance(state, dict):
        click.echo(json.dumps({"error": "the watchdog's state cannot be read"}))
        sys.exit(1)
    click.echo(json.dumps(with_age(state)))


@vmside.command()
def services() -> None:
    """Print what the workspace serves besides its page (desktop, code UI) as JSON."""
    from ..contract import codec
    from .services import web_services

    click.echo(json.dumps(codec.to_value(web_services())))


@vmside.command()
def certificates() -> None:
    """Print each hostname's certificate (issued, pending, or failed and why) as JSON."""
    from .web.certificates import report

    click.echo(report().dumps(), nl=False)


@vmside.command()
@click.option("--for", "duration", required=True, help="How long, e.g. 3h, 90m.")
@click.option("--reason", default="", help="Shown in the watchdog's log and status.")
def keepalive(duration: str, reason: str) -> None:
    """Hold off the idle watchdog on this VM."""
    lease = leases.add(parse_duration(duration), reason)
    until = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(lease.until))
    click.echo(f"keepalive until {until} ({lease.reason})")


def _relay(request: ControlRequest) -> None:
    """Print root's answer as JSON lines (the laptop reads them); exit 1 unless it succeeded.
    While root is busy (another backup, a flood of requests) it asks again for a while, saying so."""
    from .control import ask_patiently

    def busy(reason: str) -> None:
        click.echo(json.dumps({"progress": f"{reason}; asking again"}))

    ok = answered = False
    for reply in ask_patiently(request, said=busy):
        if reply.progress:
            click.echo(json.dumps({"progress": reply.progress}))
        elif reply.refused or reply.busy:
            click.echo(json.dumps({"refused": reply.refused or f"{reply.busy}; try again later"}))
            answered = True
        elif reply.result is not None:
            click.echo(json.dumps({"result": reply.result}))
            ok, answered = reply.result.get("ok") is True, True
    if not answered:
        # Root's side ended without a word (it failed before it could answer): say where to look.
        click.echo(
            f"vmgen: root's control service ended without an answer to {request.op!r} "
            "(as root: journalctl -u vmgen-control)",
            err=True,
        )
    sys.exit(0 if ok else 1)


@vmside.command()
@click.option("--trigger", type=click.Choice(TRIGGERS), default="shell", show_default=True, help="Who asks.")
def backup(trigger: str) -> None:
    """Back up the agent's home now (asks root, which holds the store's keys); JSON lines."""
    _relay(ControlRequest("backup", trigger=trigger))


@vmside.command()
def restore() -> None:
    """Restore the backup this VM was launched for, with the identity read from stdin (once)."""
    identity = sys.stdin.read(64 << 10)
    _relay(ControlRequest("restore", trigger="laptop", identity=identity))


@vmside.command(name="budget-grant")
def budget_grant() -> None:
    """Hand root a new share of the month's budget, signed by the laptop (read from stdin as
    JSON: grant and mac); root checks the signature."""
    grant, mac = _signed_from_stdin("grant")
    _relay(ControlRequest("budget", trigger="laptop", grant=grant, mac=mac))


@vmside.command(name="permission-answer")
def permission_answer() -> None:
    """Hand root an answer to a pending permission prompt, signed by the laptop (read from stdin
    as JSON: answer and mac); root checks the signature."""
    answer, mac = _signed_from_stdin("answer")
    _relay(ControlRequest("signed-answer", trigger="laptop", answer=answer, mac=mac))


def _signed_from_stdin(field: str) -> tuple[str, str]:
    """A message the laptop signed, relayed on stdin as JSON ({field: ..., "mac": ...}); one line
    of refusal and exit 1 when it is not that."""
    try:
        data = json.loads(sys.stdin.read(16 << 10))
        return str(data[field]), str(data["mac"])
    except (ValueError, KeyError, TypeError):
        click.echo(json.dumps({"refused": f'expected {{"{field}": ..., "mac": ...}} on stdin'}))
        sys.exit(1)


@vmside.command(hidden=True)
def control() -> None:
    """Root's control daemon (vmgen-control.service; systemd passes the listening socket)."""
    import logging

    from .control import main_listening

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    main_listening()


@vmside.command()
def web() -> None:
    """Serve the workspace page (vmgen-web, as its own user on the socket systemd passes; Caddy
    adds TLS, the login service the login)."""
    import logging

    from .web.server import WebSettings, serve

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    serve(WebSettings()).serve_forever()


@vmside.command(name="web-login")
def web_login() -> None:
    """The web login service (vmgen-web-login, as its own user on the socket systemd passes)."""
    import logging

    from .weblogin.server import LoginService, load_config, serve

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    serve(LoginService(load_config())).serve_forever()
