"""Public hostnames for workspaces. Only Cloudflare for now (see cloudflare.py)."""

from __future__ import annotations

from .cloudflare import (
    DEFAULT_ENDPOINT,
    PERMISSION,
    TOKEN_SETTING,
    TTL,
    CloudflareDns,
    DnsRecord,
    hostnames,
    tag_for,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "PERMISSION",
    "TOKEN_SETTING",
    "TTL",
    "CloudflareDns",
    "DnsRecord",
    "hostnames",
    "tag_for",
]
