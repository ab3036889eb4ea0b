"""Workspace hostnames on Cloudflare DNS, through API v4 with plain `requests`.

A workspace `<ws>` gets two A records, `<ws>.<zone>` and `*.<ws>.<zone>`, pointing at the VM's IPv4.
They are not proxied: Caddy on the VM gets its own certificates by HTTP-01, and SSH goes to the same
name. Every record vmgen creates carries the comment `vmgen:ws=<ws>` (comments exist on every plan;
tags are paid-only), and removal deletes only records whose comment is exactly that, so records the
user made under the same names survive.

This module runs on the laptop (launch, destroy) and on the VM as root (self-delete), which is why it
is three endpoints on `requests` and not the Cloudflare SDK.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from .. import __version__
from ..errors import (
    DnsAuthError,
    DnsConflict,
    DnsError,
    DnsRateLimited,
    DnsRequestFailed,
    DnsUnavailable,
    DnsZoneNotFound,
    InvalidSpec,
)

Json = dict[str, Any]

DEFAULT_ENDPOINT = "https://api.cloudflare.com/client/v4"
TAG_PREFIX = "vmgen:ws="
# The smallest TTL a non-Enterprise zone accepts. A restored workspace comes back on a new IP and a
# deleted VM's IP goes back to the provider's pool, so stale answers should die fast; "automatic"
# (ttl=1) means 300 s for unproxied records.
TTL = 60
PERMISSION = "Zone:DNS:Edit"
TOKEN_SETTING = "CLOUDFLARE_API_TOKEN"
# Record types that cannot share a name with our A records without hijacking or splitting traffic.
ADDRESS_TYPES = frozenset({"A", "AAAA", "CNAME"})
# Cloudflare's codes for a token it cannot parse (sent with HTTP 400, not 401).
BAD_HEADER_CODES = frozenset({6003, 6111})
ZONES_PER_PAGE = 50  # the documented maximum for GET /zones
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

log = logging.getLogger("vmgen.dns")


@dataclass(frozen=True)
class DnsRecord:
    id: str
    name: str
    type: str
    content: str
    comment: str = ""
    ttl: int = 1
    proxied: bool = False

    @classmethod
    def from_api(cls, d: Any) -> DnsRecord:
        try:
            return cls(
                id=str(d["id"]),
                name=str(d["name"]),
                type=str(d["type"]),
                content=str(d.get("content", "")),
                comment=str(d.get("comment") or ""),
                ttl=int(d.get("ttl") or 1),
                proxied=bool(d.get("proxied")),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise DnsRequestFailed("the Cloudflare API answered with a DNS record vmgen cannot read") from None


def normal_zone(zone: str) -> str:
    """Cloudflare names records in lowercase Punycode without the trailing dot."""
    zone = zone.strip().rstrip(".").lower()
    try:
        return zone.encode("idna").decode("ascii")
    except UnicodeError:
        return zone


def tag_for(workspace: str) -> str:
    """The comment that marks a record as vmgen's, for this workspace."""
    return f"{TAG_PREFIX}{workspace}"


def hostnames(workspace: str, zone: str) -> tuple[str, str]:
    """The workspace's own name and its wildcard (`app.example.com`, `*.app.example.com`)."""
    zone = normal_zone(zone)
    return f"{workspace}.{zone}", f"*.{workspace}.{zone}"


class CloudflareDns:
    """One zone's DNS records, as far as vmgen's workspaces are concerned."""

    def __init__(
        self,
        token: str,
        zone: str,
        endpoint: str = DEFAULT_ENDPOINT,
        timeout: float = 15.0,
        *,
        max_retries: int = 3,
        max_wait: float = 30.0,
        per_page: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        if not token or not token.strip():
            raise DnsAuthError(
                f"no Cloudflare API token: set {TOKEN_SETTING} to a token with {PERMISSION} on {zone or 'your zone'}"
            )
        if not zone or not zone.strip(". "):
            raise DnsZoneNotFound("no Cloudflare zone configured for workspace hostnames")
        self.zone = normal_zone(zone)
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.per_page = per_page
        self._token = token.strip()
        self._sleep = sleep
        self._session = session or requests.Session()
        self._zone_id: str | None = None

    def __repr__(self) -> str:  # the default would be harmless, but make sure no token ever shows
        return f"CloudflareDns(zone={self.zone!r}, endpoint={self.endpoint!r})"

    @property
    def token(self) -> str:
        """For the VM's root-only secrets file: its watchdog removes the records on self-delete."""
        return self._token

    # --- the operations vmgen uses -----------------------------------------------------------

    def zone_id(self) -> str:
        if self._zone_id is None:
            zones = self._list("/zones", {"name": self.zone}, "look up the zone", ZONES_PER_PAGE)
            found = [z for z in zones if str(z.get("name", "")).lower() == self.zone]
            if not found:
                raise DnsZoneNotFound(
                    f"Cloudflare has no zone {self.zone!r} this token can see: check the domain, "
                    "and that the token's zone resources include it"
                )
            self._zone_id = str(found[0]["id"])
        return self._zone_id

    def records_for(self, workspace: str) -> list[DnsRecord]:
        """Every record tagged for this workspace, whatever its name or type."""
        tag = tag_for(_check_workspace(workspace))
        found = self._list(
            f"/zones/{self.zone_id()}/dns_records", {"comment.exact": tag}, f"list the DNS records of {workspace}"
        )
        # Cloudflare's comment filters ignore case; ownership is decided on the exact text.
        return [r for r in map(DnsRecord.from_api, found) if r.comment == tag]

    def ensure_workspace(self, workspace: str, ipv4: str) -> list[DnsRecord]:
        """Point both hostnames at `ipv4`: create what is missing, update what differs, and never
        touch or shadow a record vmgen did not create (that is a DnsConflict)."""
        tag = tag_for(_check_workspace(workspace))
        address = _check_ipv4(ipv4)
        path = f"/zones/{self.zone_id()}/dns_records"
        # Look at both names before writing either, so a conflict leaves nothing half done.
        plan: list[tuple[str, list[DnsRecord]]] = []
        for name in hostnames(workspace, self.zone):
            existing = [DnsRecord.from_api(r) for r in self._list(path, {"name.exact": name}, f"look up {name}")]
            foreign = [r for r in existing if r.comment != tag and r.type in ADDRESS_TYPES]
            if foreign:
                r = foreign[0]
                raise DnsConflict(
                    f"{name} already has a {r.type} record vmgen did not create ({r.content}): "
                    "delete it in Cloudflare or choose another workspace name"
                )
            plan.append((name, [r for r in existing if r.comment == tag]))
        result = []
        for name, ours in plan:
            want = {"type": "A", "name": name, "content": address, "ttl": TTL, "proxied": False, "comment": tag}
            # Prefer one that already holds the address: patching another onto it would be refused
            # as an identical record.
            candidates = sorted((r for r in ours if r.type == "A"), key=lambda r: r.content != address)
            keep = candidates[0] if candidates else None
            if keep is None:
                keep = DnsRecord.from_api(self._request("POST", path, f"create {name}", body=want)["result"])
                log.info("created A %s -> %s", name, address)
            elif (keep.content, keep.ttl, keep.proxied) != (address, TTL, False):
                keep = DnsRecord.from_api(
                    self._request("PATCH", f"{path}/{keep.id}", f"update {name}", body=want)["result"]
                )
                log.info("updated A %s -> %s", name, address)
            # Duplicates of our own (e.g. two launches racing) would split traffic: keep one.
            for extra in candidates[1:]:
                self._delete(extra, path)
            result.append(keep)
        return result

    def remove_workspace(self, workspace: str, *, only_ipv4: str | None = None) -> int:
        """Delete the records tagged for this workspace and return how many went.

        `only_ipv4` keeps records that point elsewhere: a VM removing its own names passes its own
        address, so it cannot take down the records of a workspace already restored on a new VM.
        """
        records = self.records_for(workspace)
        if only_ipv4 is not None:
            address = _check_ipv4(only_ipv4)
            records = [r for r in records if r.content == address]
        path = f"/zones/{self.zone_id()}/dns_records"
        return sum(1 for r in records if self._delete(r, path))

    # --- HTTP ------------------------------------------------------------------------------

    def _delete(self, record: DnsRecord, path: str) -> bool:
        gone = self._call("DELETE", f"{path}/{record.id}", f"delete {record.name}", missing_ok=True)
        if gone is not None:
            log.info("deleted %s %s", record.type, record.name)
        return gone is not None  # None: someone else removed it first, which is what we wanted

    def _list(self, path: str, params: dict[str, str], action: str, per_page: int | None = None) -> list[Json]:
        """All pages of a list call, following result_info rather than guessing from counts."""
        items: list[Json] = []
        page = 1
        while True:
            data = self._request(
                "GET", path, action, params={**params, "page": page, "per_page": per_page or self.per_page}
            )
            result = data.get("result")
            if not isinstance(result, list):
                raise self._error(
                    DnsRequestFailed, f"Cloudflare answered a list call with no list while trying to {action}"
                )
            items.extend(result)
            total_pages = int((data.get("result_info") or {}).get("total_pages") or 1)
            if page >= total_pages or not result:
                return items
            page += 1

    def _request(
        self, method: str, path: str, action: str, *, params: dict[str, Any] | None = None, body: Json | None = None
    ) -> Json:
        data = self._call(method, path, action, params=params, body=body)
        assert data is not None  # only missing_ok calls can come back empty
        return data

    def _call(
        self,
        method: str,
        path: str,
        action: str,
        *,
        params: dict[str, Any] | None = None,
        body: Json | None = None,
        missing_ok: bool = False,
    ) -> Json | None:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": f"vmgen/{__version__}",
        }
        attempt = 0
        while True:
            log.debug("%s %s", method, path)
            try:
                response = self._session.request(
                    method, self.endpoint + path, params=params, json=body, headers=headers, timeout=self.timeout
                )
            except requests.Timeout:
                raise self._error(
                    DnsUnavailable,
                    f"the Cloudflare API at {self.endpoint} did not answer within "
                    f"{self.timeout:g}s while trying to {action}",
                ) from None
            except requests.RequestException as exc:
                raise self._error(
                    DnsUnavailable,
                    f"cannot reach the Cloudflare API at {self.endpoint} while trying to {action}: {_reason(exc)}",
                ) from None
            # 429 means nothing happened, so any method may retry; a 5xx POST may have created the record.
            retry = response.status_code == 429 or (response.status_code in (502, 503, 504) and method != "POST")
            if retry and attempt < self.max_retries:
                self._sleep(self._wait(response, attempt))
                attempt += 1
                continue
            if missing_ok and response.status_code == 404:
                return None
            return self._envelope(response, action, attempt)

    def _wait(self, response: requests.Response, attempt: int) -> float:
        """Retry-After in seconds or as an HTTP date; else exponential backoff. Capped at max_wait."""
        value = response.headers.get("Retry-After", "").strip()
        wait = float(2**attempt)
        if value.isdigit():
            wait = float(value)
        elif value:
            with contextlib.suppress(TypeError, ValueError):
                wait = parsedate_to_datetime(value).timestamp() - time.time()
        return min(self.max_wait, max(0.0, wait))

    def _envelope(self, response: requests.Response, action: str, retries: int) -> Json:
        status = response.status_code
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._error(
                DnsRequestFailed, f"the Cloudflare API answered HTTP {status} without JSON while trying to {action}"
            )
        if response.ok and data.get("success"):
            return data
        errors = [(e.get("code"), str(e.get("message", ""))) for e in data.get("errors") or [] if isinstance(e, dict)]
        errors += [
            (c.get("code"), str(c.get("message", "")))
            for e in data.get("errors") or []
            if isinstance(e, dict)
            for c in e.get("error_chain") or []
            if isinstance(c, dict)
        ]
        codes = {code for code, _ in errors}
        detail = "; ".join(f"{message} ({code})" for code, message in errors) or f"HTTP {status}"
        if status == 401 or (status == 400 and codes & BAD_HEADER_CODES):
            raise self._error(
                DnsAuthError,
                f"Cloudflare rejected the API token (HTTP {status}): check "
                f"{TOKEN_SETTING}; it needs {PERMISSION} on {self.zone}",
            )
        if status == 403:
            raise self._error(
                DnsAuthError,
                f"the Cloudflare API token may not {action}: it needs the permission "
                f"{PERMISSION} on zone {self.zone} (HTTP 403: {detail})",
            )
        if status == 429:
            raise self._error(
                DnsRateLimited,
                f"Cloudflare's API rate limit is still exhausted after {retries} "
                f"retries while trying to {action}; try again in a few minutes",
            )
        raise self._error(DnsRequestFailed, f"Cloudflare API error while trying to {action}: {detail} (HTTP {status})")

    def _error(self, cls: type[DnsError], message: str) -> DnsError:
        """Every message leaves through here, so none can carry the token, whatever a server echoes."""
        return cls(message.replace(self._token, "[token]"))


def _check_workspace(workspace: str) -> str:
    if not _LABEL.fullmatch(workspace or ""):
        raise InvalidSpec(f"workspace name {workspace!r} is not a valid DNS label")
    return workspace


def _check_ipv4(ipv4: str) -> str:
    try:
        return str(ipaddress.IPv4Address(ipv4.strip()))
    except (ValueError, AttributeError):
        raise InvalidSpec(f"{ipv4!r} is not an IPv4 address") from None


def _reason(exc: requests.RequestException) -> str:
    """A few words for the common network failures instead of urllib3's nested repr."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed"
    if "refused" in text.lower():
        return "connection refused"
    if any(
        s in text
        for s in (
            "Name or service not known",
            "nodename nor servname",
            "Temporary failure in name",
            "getaddrinfo failed",
            "NameResolutionError",
        )
    ):
        return "host name not resolved"
    if "unreachable" in text.lower():
        return "network unreachable"
    return type(exc).__name__
