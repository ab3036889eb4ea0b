"""Hetzner on its VM: the server deletes itself through the Hetzner API with the project token in
root's secrets file, finding its own id from the metadata service (which only root may reach);
without a verified backup it first keeps its disk as a labelled snapshot. A server that is only
powered off still bills."""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.request
from typing import Any

from ...contract.documents import WatchSettings
from ...contract.names import (
    LABEL,
    LOCATION_LABEL,
    OWNER_ID_LABEL,
    OWNER_LABEL,
    RESCUE_LABEL,
    TYPE_LABEL,
    VM,
    WS_LABEL,
    VmPaths,
)
from ...errors import ActionFailed
from ..idlewatch.settings import read_secrets
from .dns import remove_dns_records

log = logging.getLogger("vmgen.idlewatch")

# The variables of root's secrets file this half reads (the laptop's half writes them).
TOKEN_VARIABLE = "HCLOUD_TOKEN"
SNAPSHOT_SECONDS = 480  # of ACT_FALLBACK_SECONDS, waiting for a provider snapshot


class HetznerSelf:
    deletes_itself = True
    snapshots = True
    stop_note = "Hetzner bills a stopped server"
    poweroff_keeps_disk = True

    def delete(self, settings: WatchSettings, paths: VmPaths = VM) -> None:
        from hcloud.servers import Server

        from ...dns import TOKEN_SETTING as DNS_TOKEN_VARIABLE

        client, server_id, secrets = _hcloud(settings, paths)
        if settings.dns_zone:
            remove_dns_records(settings, secrets.get(DNS_TOKEN_VARIABLE, ""), metadata(settings, "public-ipv4"))
        log.warning("deleting this server (%s) through the Hetzner API", server_id)
        client.servers.delete(Server(id=server_id))

    def snapshot(self, settings: WatchSettings, paths: VmPaths = VM, wait: float = SNAPSHOT_SECONDS) -> str:
        """A snapshot of this server's disk, labelled for the laptop to find and to make the server
        again from (`vmgen list`, `vmgen restore NAME --snapshot ID`); its id once available."""
        client, server_id, _secrets = _hcloud(settings, paths)
        server = client.servers.get_by_id(server_id)
        keep = (LABEL, WS_LABEL, OWNER_LABEL, OWNER_ID_LABEL)
        labels = {k: v for k, v in (server.labels or {}).items() if k in keep}
        labels |= {LABEL: "1", WS_LABEL: settings.name, RESCUE_LABEL: "1"}
        if server.server_type is not None and server.server_type.name:
            labels[TYPE_LABEL] = server.server_type.name
        if server.location is not None and server.location.name:
            labels[LOCATION_LABEL] = server.location.name
        try:
            subprocess.run(["sync"], check=False, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.info("sync: %s", exc)
        made = client.servers.create_image(
            server, type="snapshot", description=f"vmgen: {settings.name}, kept without a backup", labels=labels
        )
        until, action = time.monotonic() + wait, made.action
        while True:
            action.reload()
            if action.status != "running":
                break
            if time.monotonic() > until:
                raise ActionFailed(f"snapshot {made.image.id} did not finish within {wait:.0f}s")
            time.sleep(2)
        if action.status != "success":
            raise ActionFailed(f"the snapshot failed: {action.error or action.status}")
        return str(made.image.id)


def _hcloud(settings: WatchSettings, paths: VmPaths) -> tuple[Any, int, dict[str, str]]:
    from hcloud import Client

    secrets = read_secrets(paths)
    token = secrets.get(TOKEN_VARIABLE, "")
    if not token:
        raise ActionFailed("no Hetzner token in the root-only secrets file")
    kwargs: dict[str, Any] = {"api_endpoint": settings.api_endpoint} if settings.api_endpoint else {}
    client = Client(token=token, application_name="vmgen-idlewatch", **kwargs)
    return client, int(metadata(settings, "instance-id")), secrets


def metadata(settings: WatchSettings, key: str) -> str:
    if not settings.metadata_url:
        raise ActionFailed("no metadata service configured for this VM; cannot find its own server")
    with urllib.request.urlopen(f"{settings.metadata_url}/{key}", timeout=10) as response:
        return str(response.read().decode().strip())


PROVIDER = HetznerSelf()
