"""AWS EC2 on its VM: the instance was made with InstanceInitiatedShutdownBehavior=terminate, so it
deletes itself by powering off, holding no AWS credential. With a domain, its DNS records go
first: their address is the instance's public IPv4, asked of the metadata service with an IMDSv2
token (only root may reach it; the laptop's half sets a hop limit of 1, so no container can)."""

from __future__ import annotations

import logging
import subprocess
import urllib.request

from ...contract.documents import WatchSettings
from ...contract.names import VM, VmPaths
from ...errors import ActionFailed
from ..idlewatch.settings import read_secrets
from .dns import remove_dns_records

log = logging.getLogger("vmgen.idlewatch")

TOKEN_SECONDS = 60


class AwsSelf:
    deletes_itself = True
    snapshots = False  # a snapshot needs the API, and the VM holds no AWS credential
    stop_note = ""  # a powered-off instance is a terminated one: nothing is left to bill
    poweroff_keeps_disk = False  # terminated with it (DeleteOnTermination)

    def delete(self, settings: WatchSettings, paths: VmPaths = VM) -> None:
        from ...dns import TOKEN_SETTING as DNS_TOKEN_VARIABLE

        if settings.dns_zone:
            secrets = read_secrets(paths)
            remove_dns_records(settings, secrets.get(DNS_TOKEN_VARIABLE, ""), metadata(settings, "public-ipv4"))
        log.warning("powering off: the instance terminates itself (its shutdown behaviour)")
        subprocess.run(["systemctl", "poweroff", "--no-block"], check=True, capture_output=True, timeout=30)

    def snapshot(self, settings: WatchSettings, paths: VmPaths = VM) -> str:
        raise ActionFailed("an aws workspace holds no AWS credential to snapshot its disk")


def metadata(settings: WatchSettings, key: str) -> str:
    """One value of the instance's metadata, through an IMDSv2 session token."""
    if not settings.metadata_url:
        raise ActionFailed("no metadata service configured for this VM")
    ask = urllib.request.Request(
        f"{settings.metadata_url}/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_SECONDS)},
    )
    with urllib.request.urlopen(ask, timeout=10) as response:
        token = response.read().decode().strip()
    read = urllib.request.Request(
        f"{settings.metadata_url}/meta-data/{key}", headers={"X-aws-ec2-metadata-token": token}
    )
    with urllib.request.urlopen(read, timeout=10) as response:
        return str(response.read().decode().strip())


PROVIDER = AwsSelf()
