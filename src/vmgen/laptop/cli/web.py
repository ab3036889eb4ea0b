"""`vmgen login` and `vmgen open`: the workspace's web page, on its hostname or through SSH."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import webbrowser
from datetime import timedelta
from urllib.parse import quote

import click
from rich.console import Console
from rich.markup import escape

from ...contract.documents import WebServices
from ...contract.names import DESKTOP_START, VM
from ...errors import NotServed, VmgenError, WorkspaceNotFound
from ..caddy import CODE_PORT, DESKTOP_PORT
from ..spec import validate_name
from ..ssh import tunnel_command
from ..state import WorkspaceState
from ..workspace_client import SshWorkspaceClient
from .app import age, err, out, running_target

# Where each is on the workspace: the page on its unix socket (without a domain, the agent's to
# reach, as SSH logs in as the agent), the others on the loopback.
REMOTES: dict[str, int | str] = {"page": str(VM.page_socket), "code": CODE_PORT, "desktop": DESKTOP_PORT}


def web_login(name: str) -> tuple[str, str] | None:
    try:
        user, password = (WorkspaceState(name).dir / "web-login").read_text().split("\n")[:2]
    except (FileNotFoundError, ValueError):
        return None
    return user, password


@click.command()
@click.argument("name")
def login(name: str) -> None:
    """The web login of NAME (its hostname, user and password)."""
    record = WorkspaceState(validate_name(name)).record()
    found = web_login(name)
    if record is None:
        raise WorkspaceNotFound(f"no workspace named {name!r} (see `vmgen list`)")
    if not record.host or found is None:
        raise VmgenError(f"{name} has no public web address (launched without a domain); use `vmgen open {name}`")
    out.print(f"url:      https://{record.host}/\nuser:     {found[0]}\npassword: {found[1]}")


@click.command(name="open")
@click.argument("name")
@click.option(
    "--what",
    type=click.Choice(sorted(REMOTES)),
    default="page",
    show_default=True,
    help="The workspace page, the code UI or the desktop.",
)
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
def open_(name: str, what: str, no_browser: bool) -> None:
    """Open NAME's web page: its HTTPS hostname, or a local SSH tunnel when it has no domain."""
    record = WorkspaceState(name).record()
    if what != "page":
        check_served(name, what, SshWorkspaceClient(running_target(name), name).services())
    if record is not None and record.host:
        # The desktop's hostname answers / with noVNC and its password, once signed in.
        prefix = {"page": "", "code": "code.", "desktop": "desktop."}[what]
        url = f"https://{prefix}{record.host}/"
        err.print(f"{url}  (`vmgen login {name}` for the password)")
        if not no_browser:
            webbrowser.open(url)
        return
    target = running_target(name)
    local = _free_port()
    url = f"http://127.0.0.1:{local}/"
    if what == "desktop":
        # The VNC password in the fragment: noVNC reads it there, and no server ever sees it.
        password = SshWorkspaceClient(target, name).desktop_password()
        url += f"{DESKTOP_START.lstrip('/')}#password={quote(password, safe='')}"
    with subprocess.Popen(tunnel_command(target, local, REMOTES[what])) as tunnel:
        # Killed (SIGTERM, a closed terminal's SIGHUP) as on Ctrl-C: the tunnel goes with it.
        ended_by: list[int] = []

        def close(signum: int, _frame: object) -> None:
            ended_by.append(signum)
            tunnel.terminate()

        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, close)
        err.print(f"{url}  (through SSH; Ctrl-C closes it)")
        if not no_browser:
            webbrowser.open(url)
        try:
            tunnel.wait()
        except KeyboardInterrupt:
            tunnel.terminate()
    if ended_by:
        sys.exit(128 + ended_by[0])
    if tunnel.returncode not in (0, -15, 255):
        raise VmgenError(f"the SSH tunnel to {name} ended ({tunnel.returncode})")


CERTIFICATE_WAIT_SECONDS = 90.0


def print_certificates(name: str, client: SshWorkspaceClient, console: Console, wait: float = 0.0) -> None:
    """The hostnames' certificates in a line, and one more line for each hostname without one."""
    try:
        report = client.wait_for_certificates(wait) if wait else client.certificates()
    except (VmgenError, subprocess.SubprocessError) as exc:
        console.print(f"  [yellow]certificates:[/] unknown ({escape(str(exc))})")
        return
    if not report.hosts:
        return
    pending = [host.hostname for host in report.hosts if host.state == "pending"]
    still = f" (still being obtained: {', '.join(pending)}; `vmgen status {name}` tells later)" if pending else ""
    console.print(f"  certificates: {report.summary()}{still}", highlight=False)
    for line in report.lines():
        console.print(f"  [yellow]no certificate[/] for {escape(line)}", highlight=False, soft_wrap=True)


def check_served(name: str, what: str, services: WebServices) -> None:
    """Refuse to open what is not there (a tunnel to nothing shows the browser's own error)."""
    if what == "desktop" and not services.desktop:
        raise NotServed(f"{name} has no desktop (it comes with `vmgen launch ... --desktop`)")
    if what != "code":
        return
    if services.code_ui == "absent":
        raise NotServed(
            f"{name} has no code UI (it comes with a domain: `vmgen launch ... --domain`, unless code_ui_version = off)"
        )
    if services.code_ui == "failed":
        raise NotServed(
            f"the code UI of {name} failed to install "
            f"(see `vmgen ssh {name} -- systemctl status vmgen-code-ui-install`)"
        )
    if services.code_ui == "installing":
        step = f" (step {services.code_ui_step}, for {age(timedelta(seconds=time.time() - services.code_ui_step_at))})"
        raise NotServed(
            f"the code UI of {name} is still installing in the background"
            + (step if services.code_ui_step else "")
            + "; it takes a few minutes, try again then"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        _, port = probe.getsockname()  # an AF_INET address: (host, port)
        return int(port)
