"""What the watchdog does: warn the humans, then delete or power off the VM.

Run as root by the service. Root's part is what needs root (the provider's and the DNS API's
tokens, powering off); telling the agent's tmux clients runs as the agent.
"""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.request
from typing import Any

from ...contract.documents import WatchSettings
from ...contract.names import AGENT_USER, VM, VmPaths
from ...errors import VmgenError
from ...privileges import RunAs, run_as
from ..agentfs import AgentFiles
from .humans import tmux_sockets
from .model import Action
from .settings import read_secrets

log = logging.getLogger("vmgen.idlewatch")


class ActionFailed(VmgenError):
    """The idle action could not be carried out; the VM stays up and the watchdog retries."""


def warn(settings: WatchSettings, text: str, paths: VmPaths = VM) -> None:
    """Tell every attached tmux client, every terminal (wall) and the webhook, if any."""
    log.warning(text)
    try:
        agent = RunAs.lookup(AGENT_USER)
    except KeyError:
        agent = None
    if agent is not None:
        for socket in tmux_sockets(paths.tmux_dir(agent.uid), AgentFiles(agent.uid)):
            try:
                run_as(agent, ["tmux", "-S", str(socket), "display-message", "-d", "15000", text], timeout=5)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.info("tmux display-message on %s: %s", socket, exc)
    _quiet(["wall", text])
    if settings.webhook_url:
        try:
            body = json.dumps({"text": text, "workspace": settings.name}).encode()
            request = urllib.request.Request(
                settings.webhook_url, data=body, headers={"Content-Type": "application/json"}
            )
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as exc:
            log.warning("webhook %s failed: %s", settings.webhook_url, exc)


def act(settings: WatchSettings, action: Action, paths: VmPaths = VM) -> None:
    """Raises ActionFailed (or the provider's error); the service retries with backoff and the
    VM stays up."""
    if action is Action.BACKUP_THEN_DELETE:
        from ..backups import run_backup

        result = run_backup("idlewatch", paths)
        if not result.ok:
            raise ActionFailed(f"backup failed, not deleting: {result.error}")
        log.warning("backup %s verified (%d bytes)", result.backup_id, result.ciphertext_bytes)
        action = Action.DELETE
    if action is Action.POWEROFF or (action is Action.DELETE and settings.provider == "docker"):
        log.warning("powering off")
        subprocess.run(["systemctl", "poweroff"], check=True)
        return
    if action is Action.DELETE and settings.provider == "hetzner":
        self_delete_hetzner(settings, paths)
        return
    raise ActionFailed(f"action {action.value} is not supported for provider {settings.provider}")


def self_delete_hetzner(settings: WatchSettings, paths: VmPaths = VM) -> None:
    from hcloud import Client
    from hcloud.servers import Server

    secrets = read_secrets(paths)
    token = secrets.get("HCLOUD_TOKEN", "")
    if not token:
        raise ActionFailed("no Hetzner token in the root-only secrets file; cannot self-delete")
    server_id = int(_metadata(settings, "instance-id"))
    if settings.dns_zone:
        remove_dns_records(settings, secrets.get("CLOUDFLARE_API_TOKEN", ""))
    kwargs: dict[str, Any] = {"api_endpoint": settings.hcloud_endpoint} if settings.hcloud_endpoint else {}
    client = Client(token=token, application_name="vmgen-idlewatch", **kwargs)
    log.warning("deleting this server (%s) through the Hetzner API", server_id)
    client.servers.delete(Server(id=server_id))


def remove_dns_records(settings: WatchSettings, token: str) -> None:
    """Only records still pointing at this VM: after a restore elsewhere, the names are the new one's."""
    from ...dns import DEFAULT_ENDPOINT, CloudflareDns

    dns = CloudflareDns(token, settings.dns_zone, settings.dns_endpoint or DEFAULT_ENDPOINT)
    removed = dns.remove_workspace(settings.name, only_ipv4=_metadata(settings, "public-ipv4"))
    log.warning("removed %d DNS record(s) of %s in %s", removed, settings.name, settings.dns_zone)


def _metadata(settings: WatchSettings, key: str) -> str:
    if not settings.metadata_url:
        raise ActionFailed("no metadata service configured for this VM; cannot find its own server")
    with urllib.request.urlopen(f"{settings.metadata_url}/{key}", timeout=10) as response:
        return str(response.read().decode().strip())


def _quiet(argv: list[str]) -> None:
    try:
        subprocess.run(argv, check=False, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("%s: %s", argv[0], exc)
