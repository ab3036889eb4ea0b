"""A workspace's DNS records, removed by its VM before the server goes."""

from __future__ import annotations

import logging

from ...contract.documents import WatchSettings

log = logging.getLogger("vmgen.idlewatch")


def remove_dns_records(settings: WatchSettings, token: str, address: str) -> None:
    """Only records still pointing at this VM's `address`: after a restore elsewhere, the names
    are the new one's."""
    from ...dns import DEFAULT_ENDPOINT, CloudflareDns

    for zone in (settings.dns_zone, settings.preview_dns_zone):
        if zone:
            dns = CloudflareDns(token, zone, settings.dns_endpoint or DEFAULT_ENDPOINT)
            removed = dns.remove_workspace(settings.name, only_ipv4=address)
            log.warning("removed %d DNS record(s) of %s in %s", removed, settings.name, zone)
