"""Reaching a workspace from this machine's own tools: `ssh vmgen-<name>` and the IDEs through
the ssh config entries (`vmgen ssh-config`), `vmgen info`, and `vmgen forward` for its ports."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ...contract.names import PORTS
from ...errors import ForwardFailed, SshConfigError, UsageError
from ..deploykeys import GitHubDeployKeys
from ..forwards import (
    LISTENING_COMMAND,
    PortPair,
    check_local_ports,
    forward_command,
    parse_listening,
    ports_to_forward,
    running_forwards,
    start_background,
    stop_background,
    wait_until_up,
)
from ..ssh import SSHTarget, run
from ..sshconfig import SshFiles, connect_lines, sync
from ..state import SshReach, WorkspaceState, ssh_alias
from ..values import SSHEndpoint
from .app import err, existing, main, out, running_target, settings


def offer_ssh_entry(name: str, endpoint: SSHEndpoint | None, identities: tuple[Path, ...]) -> bool:
    """Once NAME came up (a launch, restore or start): its entry in ~/.ssh/vmgen/config, and the
    Include line in ~/.ssh/config if it is not there yet. False when the user opted out
    (`ssh_config = false`) or it has no SSH endpoint."""
    if not settings().ssh_config or endpoint is None:
        return False
    # The workspace is up whatever happens here: a ~/.ssh vmgen cannot write is a warning.
    try:
        WorkspaceState(name).record_reach(SshReach(endpoint, identities))
        files = SshFiles.of_home()
        note = files.install_include()
        sync(files)
    except (SshConfigError, OSError) as exc:
        err.print(f"[yellow]warning:[/] no `ssh {ssh_alias(name)}` entry: {escape(str(exc))}; `vmgen ssh {name}` works")
        return False
    if note:
        err.print(f"[yellow]note:[/] {escape(note)}")
    return True


def forget_ssh_entries() -> None:
    """After a destroy, or a workspace found gone: its entry leaves vmgen's file (made from the
    records), which stays missing when there is none."""
    try:
        sync(create=False)
    except (SshConfigError, OSError) as exc:
        err.print(f"[yellow]warning:[/] ~/.ssh/vmgen/config not updated: {escape(str(exc))}")


def github_deploy_keys() -> GitHubDeployKeys | None:
    """GitHub's deploy keys with the configured github_token; None without one."""
    s = settings()
    return GitHubDeployKeys(s.github_token, s.github_api_url) if s.github_token else None


def print_push_line(name: str, push_repo: str, push_refused: str) -> None:
    """The ready message's word on git push: the deploy key's repository, or how to push without one."""
    if push_repo:
        err.print(f"  push:     git push to {push_repo} works from the workspace (its own deploy key, gone with it)")
        return
    if push_refused:
        err.print(f"  [yellow]push:[/]     no deploy key ({escape(push_refused)})")
    err.print(
        f"  push:     `ssh -A {ssh_alias(name)}` forwards your own ssh keys for git push (or add a key of your "
        "own there); a github_token gives a GitHub repository's workspace a deploy key"
    )


def print_connect_lines(name: str, repo_dir: str, offered: bool) -> None:
    """The ready message's lines for the terminal and the IDEs."""
    if not offered:
        err.print(f"  shell:    vmgen ssh {name}")
        return
    for label, line in connect_lines(name, repo_dir):
        err.print(f"  {label + ':':<10}{line}")


@main.command(name="ssh-config")
@click.option("--uninstall", is_flag=True, help="Remove the Include line from ~/.ssh/config and vmgen's file.")
def ssh_config(uninstall: bool) -> None:
    """Keep `ssh vmgen-<name>` working for your workspaces (an entry each in ~/.ssh/vmgen/config,
    one Include line at the top of ~/.ssh/config); --uninstall takes both out again."""
    files = SshFiles.of_home()
    if uninstall:
        done = files.uninstall()
        for line in done or ["nothing of vmgen's was in ~/.ssh"]:
            err.print(line, markup=False)
        if settings().ssh_config:
            err.print("the next launch, restore or start adds them again; `ssh_config = false` keeps them out")
        return
    if not settings().ssh_config:
        raise UsageError("ssh_config is false: vmgen leaves ~/.ssh alone (set it to true to have the entries)")
    note = files.install_include()
    sync(files)
    if note:
        err.print(f"[yellow]note:[/] {escape(note)}")
    hosts = [line.split()[1] for line in files.vmgen_config.read_text().splitlines() if line.startswith("Host ")]
    listed = ", ".join(hosts) if hosts else "no workspace recorded as reachable yet"
    err.print(f"{files.vmgen_config}: {listed}", markup=False)


@main.command()
@click.argument("name")
def info(name: str) -> None:
    """How to reach NAME (ssh, VS Code, Cursor, JetBrains Gateway) and the TCP ports listening on it."""
    _, workspace = existing(name)
    state = WorkspaceState(name)
    record = state.record()
    address = f"{workspace.ssh.host}:{workspace.ssh.port}" if workspace.ssh else (workspace.address or "-")
    out.print(f"{name}: {workspace.provider}, {workspace.status}, ssh at {address}")
    entry = settings().ssh_config and state.reach() is not None
    if entry:
        for label, line in connect_lines(name, record.repo_dir if record else ""):
            out.print(f"  {label + ':':<10}{line}")
    else:
        out.print(f"  {'ssh:':<10}vmgen ssh {name}  (no ~/.ssh entry: ssh_config = false, or not launched from here)")
    if record and record.host:
        out.print(f"  {'web:':<10}https://{record.host}/")
    if not workspace.running:
        out.print(f"  {'ports:':<10}- (it is {workspace.status})")
        return
    listening = parse_listening(run(running_target(name), LISTENING_COMMAND, timeout=30).stdout.decode())
    known = {22: "sshd", 80: "Caddy", 443: "Caddy", PORTS.code_ui: "code UI", PORTS.vnc: "VNC", PORTS.novnc: "noVNC"}
    out.print(f"  {'ports:':<10}" + ("" if listening else "none"))
    for port, addresses in listening.items():
        what = f"  ({known[port]})" if port in known else ""
        out.print(f"    {port:<6} {', '.join(addresses)}{what}")


@main.command()
@click.argument("name", required=False)
@click.argument("ports", nargs=-1)
@click.option("-d", "--detach", is_flag=True, help="Run in the background (see --list, --stop).")
@click.option("--list", "list_", is_flag=True, help="The forwards running in the background.")
@click.option("--stop", "stop", is_flag=True, help="Stop background forwards (of NAME, or all).")
def forward(name: str | None, ports: tuple[str, ...], detach: bool, list_: bool, stop: bool) -> None:
    """Forward ports of NAME to this machine: `vmgen forward app 3000 5432:5433` (LOCAL:REMOTE)
    until Ctrl-C, or in the background with -d. Without ports: its dev container's forwardPorts."""
    if list_ or stop:
        if ports or detach or (list_ and stop):
            raise UsageError("--list and --stop take no ports, -d or each other (`vmgen forward --stop [NAME]`)")
        if list_:
            _list_forwards(name)
        else:
            stopped = stop_background(name)
            for record in stopped:
                err.print(f"stopped {record.describe()}")
            if not stopped:
                err.print("no forward running in the background" + (f" for {name}" if name else ""))
        return
    if name is None:
        raise UsageError("which workspace? `vmgen forward NAME PORT...`")
    known = WorkspaceState(name).record()
    pairs = ports_to_forward(ports, known.forward_ports if known else ())
    check_local_ports(pairs)
    target = running_target(name)
    check_local_ports(pairs)  # again, right before ssh: finding the workspace took a moment
    if detach:
        record = start_background(target, name, pairs)
        err.print(f"forwarding {record.describe()} in the background (pid {record.pid}); `vmgen forward --stop {name}`")
        return
    _forward_here(target, name, pairs)


def _list_forwards(name: str | None) -> None:
    records = [r for r in running_forwards() if name is None or r.name == name]
    if not records:
        err.print("no forward running in the background")
        return
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "LOCAL", "REMOTE", "PID"):
        table.add_column(column)
    for record in records:
        for local, remote in record.pairs:
            table.add_row(record.name, f"localhost:{local}", str(remote), str(record.pid))
    out.print(table)


def _forward_here(target: SSHTarget, name: str, pairs: tuple[PortPair, ...]) -> None:
    """ssh in the foreground: up, said, until Ctrl-C (or ssh ends: its reason, exit 1). Killed
    (SIGTERM, a closed terminal's SIGHUP) as on Ctrl-C: the forward goes with it."""
    process = subprocess.Popen(
        forward_command(target, pairs), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    said: list[str] = []
    up = threading.Event()

    def relay() -> None:
        # Kept until up (the reason of a failed start); after, what ssh says (a refused
        # connection to a port nothing listens on, on the VM) goes to the user as it comes.
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            said.append(line)
            if up.is_set() and not line.startswith("Killed by signal"):
                err.print(f"ssh: {line}", markup=False)

    def last_word() -> str:
        reader.join(timeout=2)  # ssh ended: its last line is on its way
        return said[-1] if said else ""

    ended_by: list[int] = []

    def close(signum: int, _frame: object) -> None:
        ended_by.append(signum)
        process.terminate()

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, close)
    try:
        wait_until_up(process, pairs, last_word)
        up.set()
        err.print("forwarding " + ", ".join(pair.describe(name) for pair in pairs) + "; Ctrl-C stops", markup=False)
        process.wait()
    except KeyboardInterrupt:
        ended_by.append(signal.SIGINT)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if ended_by == [signal.SIGINT]:
        err.print("stopped forwarding")
        return
    if ended_by:
        sys.exit(128 + ended_by[0])
    raise ForwardFailed(f"the forward ended: ssh exited ({process.returncode})" + (f": {last_word()}" if said else ""))
