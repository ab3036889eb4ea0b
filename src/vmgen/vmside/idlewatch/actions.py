"""What the watchdog does: warn the humans, then delete or power off the VM.

Every action is a plain function of its inputs, run as root by the service.
"""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.request
from pathlib import Path

from .model import Action
from .settings import WatchSettings, read_secrets

log = logging.getLogger("vmgen.idlewatch")

def warning_text(workspace: str, action: Action, seconds_left: float) -> str:
    minutes = max(1, round(seconds_left / 60))
    what = {Action.DELETE: "deleted", Action.POWEROFF: "powered off",
            Action.BACKUP_THEN_DELETE: "backed up and deleted"}.get(action, action.value)
    return (f"vmgen: workspace {workspace} is idle and will be {what} in {minutes} min; to keep it, run "
            f"`vmgen keepalive --for 1h` here, or `vmgen keepalive {workspace} --for 1h` on your laptop")


def warn(settings: WatchSettings, text: str) -> None:
    """Tell every attached tmux client, every terminal (wall) and the webhook, if any."""
    log.warning(text)
    for socket in Path(f"/tmp/tmux-{_uid(settings.agent_user)}").glob("*"):
        _quiet(["runuser", "-u", settings.agent_user, "--", "tmux", "-S", str(socket),
                "display-message", "-d", "15000", text])
    _quiet(["wall", text])
    if settings.webhook_url:
        try:
            body = json.dumps({"text": text, "workspace": settings.name}).encode()
            request = urllib.request.Request(settings.webhook_url, data=body, headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).close()
        except OSError as exc:
            log.warning("webhook %s failed: %s", settings.webhook_url, exc)


def act(settings: WatchSettings, action: Action) -> None:
    """Raises on failure; the service retries with backoff and the VM stays up."""
    if action is Action.BACKUP_THEN_DELETE:
        from ..backups import run_backup

        result = run_backup("idlewatch")
        if not result["ok"]:
            raise RuntimeError(f"backup failed, not deleting: {result['error']}")
        log.warning("backup %s verified (%d bytes)", result["backup_id"], result["ciphertext_bytes"])
        action = Action.DELETE
    if action is Action.POWEROFF or (action is Action.DELETE and settings.provider == "docker"):
        log.warning("powering off")
        subprocess.run(["systemctl", "poweroff"], check=True)
        return
    if action is Action.DELETE and settings.provider == "hetzner":
        self_delete_hetzner(settings)
        return
    raise RuntimeError(f"action {action.value} is not supported for provider {settings.provider}")


def self_delete_hetzner(settings: WatchSettings) -> None:
    from hcloud import Client
    from hcloud.servers import Server

    token = read_secrets().get("HCLOUD_TOKEN", "")
    if not token:
        raise RuntimeError("no Hetzner token in the root-only secrets file; cannot self-delete")
    server_id = int(_metadata(settings, "instance-id"))
    if settings.dns_zone:
        remove_dns_records(settings, read_secrets().get("CLOUDFLARE_API_TOKEN", ""))
    kwargs = {"api_endpoint": settings.hcloud_endpoint} if settings.hcloud_endpoint else {}
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
    with urllib.request.urlopen(f"{settings.metadata_url}/{key}", timeout=10) as response:
        return response.read().decode().strip()


def _uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


def _quiet(argv: list[str]) -> None:
    try:
        subprocess.run(argv, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("%s: %s", argv[0], exc)
