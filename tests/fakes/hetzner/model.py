"""State of the simulated Hetzner project: typed records and their JSON form (the real API's shapes).

Field sets follow the Hetzner Cloud API v1 reference and what hcloud-python 2.x reads (several
keys are required there: a server type location needs `deprecation`, `available`, `recommended`;
a firewall rule needs all six keys; `public_net` needs `floating_ips`).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

Json = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class ApiError(Exception):
    """Becomes the error envelope `{"error": {"code", "message", "details"}}` with an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
    ):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers or {}

    def body(self) -> Json:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid_field(name: str, message: str) -> ApiError:
    return ApiError(
        400, "invalid_input", f"invalid input in field '{name}'", {"fields": [{"name": name, "messages": [message]}]}
    )


def not_found(kind: str, ident: Any) -> ApiError:
    return ApiError(404, "not_found", f"{kind} with ID '{ident}' not found")


# ---------------------------------------------------------------------------------------------
# Catalog: locations, server types, images


@dataclass
class Location:
    id: int
    name: str
    description: str
    country: str
    city: str
    latitude: float
    longitude: float
    network_zone: str = "eu-central"
    datacenter_name: str = ""  # only the metadata service's availability-zone still names it

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "country": self.country,
            "city": self.city,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "network_zone": self.network_zone,
        }


@dataclass
class Deprecation:
    announced: str
    unavailable_after: str

    def to_json(self) -> Json:
        return {"announced": self.announced, "unavailable_after": self.unavailable_after}

    def is_past(self) -> bool:
        return datetime.fromisoformat(self.unavailable_after) <= datetime.now(UTC)


@dataclass
class Price:
    monthly_net: str  # decimal strings, as the API sends them
    hourly_net: str
    vat: str = "0.19"

    def _pair(self, net: str) -> Json:
        gross = Decimal(net) * (1 + Decimal(self.vat))
        return {"net": str(Decimal(net).quantize(Decimal("1e-10"))), "gross": str(gross.quantize(Decimal("1e-16")))}

    def to_json(self, location: str) -> Json:
        return {
            "location": location,
            "price_hourly": self._pair(self.hourly_net),
            "price_monthly": self._pair(self.monthly_net),
            "included_traffic": 21990232555520,
            "price_per_tb_traffic": self._pair("1.0"),
        }


@dataclass
class TypeLocation:
    """Where a server type is offered; `available=False` means out of stock there."""

    location: str
    available: bool = True
    recommended: bool = False
    deprecation: Deprecation | None = None


@dataclass
class ServerType:
    id: int
    name: str
    cores: int
    memory: float
    disk: int
    price: Price
    locations: list[TypeLocation]
    description: str = ""
    category: str = "cost_optimized"
    cpu_type: str = "shared"
    architecture: str = "x86"
    deprecation: Deprecation | None = None

    def offered_in(self, location: str) -> TypeLocation | None:
        return next((tl for tl in self.locations if tl.location == location), None)

    def to_json(self, locations: dict[str, Location]) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description or self.name.upper(),
            "category": self.category,
            "cores": self.cores,
            "memory": float(self.memory),
            "disk": self.disk,
            "storage_type": "local",
            "cpu_type": self.cpu_type,
            "architecture": self.architecture,
            "deprecated": self.deprecation is not None,
            "deprecation": self.deprecation.to_json() if self.deprecation else None,
            "included_traffic": 21990232555520,
            "prices": [self.price.to_json(tl.location) for tl in self.locations],
            "locations": [
                {
                    "id": locations[tl.location].id,
                    "name": tl.location,
                    "deprecation": tl.deprecation.to_json() if tl.deprecation else None,
                    "available": tl.available,
                    "recommended": tl.recommended,
                }
                for tl in self.locations
                if tl.location in locations
            ],
        }


@dataclass
class Image:
    id: int
    type: str  # system | snapshot | backup | app
    name: str | None
    description: str
    os_flavor: str = "debian"
    os_version: str | None = None
    status: str = "available"  # creating | available
    labels: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    created_from: Json | None = None  # {"id": server id, "name": server name}
    image_size: float | None = None
    disk_size: int = 5
    architecture: str = "x86"
    docker_image: str | None = None  # what a container booted from this image runs

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "name": self.name,
            "description": self.description,
            "image_size": self.image_size,
            "disk_size": self.disk_size,
            "created": self.created,
            "created_from": self.created_from,
            "bound_to": None,
            "os_flavor": self.os_flavor,
            "os_version": self.os_version,
            "rapid_deploy": self.type == "system",
            "protection": {"delete": False},
            "deprecated": None,
            "deprecation": None,
            "labels": dict(self.labels),
            "deleted": None,
            "architecture": self.architecture,
        }


# ---------------------------------------------------------------------------------------------
# Project resources


@dataclass
class Action:
    id: int
    command: str
    resources: list[Json]
    status: str = "running"  # running | success | error
    progress: int = 0
    started: str = field(default_factory=now_iso)
    finished: str | None = None
    error: Json | None = None

    def succeed(self) -> None:
        self.status, self.progress, self.finished = "success", 100, now_iso()

    def fail(self, code: str, message: str) -> None:
        self.status, self.progress, self.finished = "error", 100, now_iso()
        self.error = {"code": code, "message": message}

    def touches(self, kind: str, ident: int | None = None) -> bool:
        return any(r["type"] == kind and (ident is None or r["id"] == ident) for r in self.resources)

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": self.progress,
            "started": self.started,
            "finished": self.finished,
            "resources": [dict(r) for r in self.resources],
            "error": self.error,
        }


@dataclass
class SshKey:
    id: int
    name: str
    public_key: str
    fingerprint: str
    labels: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "public_key": self.public_key,
            "labels": dict(self.labels),
            "created": self.created,
        }


@dataclass
class FirewallRule:
    direction: str
    protocol: str
    source_ips: list[str] = field(default_factory=list)
    destination_ips: list[str] = field(default_factory=list)
    port: str | None = None
    description: str | None = None

    def to_json(self) -> Json:
        return {
            "direction": self.direction,
            "protocol": self.protocol,
            "port": self.port,
            "source_ips": list(self.source_ips),
            "destination_ips": list(self.destination_ips),
            "description": self.description,
        }


@dataclass
class Firewall:
    id: int
    name: str
    rules: list[FirewallRule] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    server_ids: list[int] = field(default_factory=list)  # applied directly
    label_selectors: list[str] = field(default_factory=list)  # applied by selector
    created: str = field(default_factory=now_iso)
    # Deleted servers it still counts as applied, until a time.monotonic() deadline.
    releasing: dict[int, float] = field(default_factory=dict)

    def release_later(self, server_id: int, seconds: float) -> None:
        if seconds > 0:
            self.releasing[server_id] = time.monotonic() + seconds

    def _still_releasing(self) -> list[int]:
        now = time.monotonic()
        return [sid for sid, until in self.releasing.items() if until > now]

    def in_use(self) -> bool:
        return bool(self.server_ids or self.label_selectors or self._still_releasing())

    def to_json(self, servers: dict[int, Server]) -> Json:
        applied: list[Json] = [
            {"type": "server", "server": {"id": sid}} for sid in [*self.server_ids, *self._still_releasing()]
        ]
        for selector in self.label_selectors:
            matched = [s.id for s in servers.values() if matches_selector(s.labels, selector)]
            applied.append(
                {
                    "type": "label_selector",
                    "label_selector": {"selector": selector},
                    "applied_to_resources": [{"type": "server", "server": {"id": sid}} for sid in matched],
                }
            )
        return {
            "id": self.id,
            "name": self.name,
            "labels": dict(self.labels),
            "created": self.created,
            "rules": [r.to_json() for r in self.rules],
            "applied_to": applied,
        }


@dataclass
class Server:
    id: int
    name: str
    server_type: ServerType
    location: Location
    image: Image
    ipv4: str | None
    ipv6_net: str
    user_data: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ssh_key_ids: list[int] = field(default_factory=list)
    status: str = "initializing"  # initializing | starting | running | stopping | off | deleting
    created: str = field(default_factory=now_iso)
    container: str | None = None  # docker container name, when booted for real
    ipv4_id: int = field(default_factory=lambda: secrets.randbelow(10**8))
    ipv6_id: int = field(default_factory=lambda: secrets.randbelow(10**8))

    def to_json(self, firewall_ids: list[int], type_json: Json) -> Json:
        loc = self.location
        ipv4 = (
            None
            if self.ipv4 is None
            else {
                "id": self.ipv4_id,
                "ip": self.ipv4,
                "blocked": False,
                "dns_ptr": f"static.{'.'.join(reversed(self.ipv4.split('.')))}.clients.your-server.de",
            }
        )
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created": self.created,
            "public_net": {
                "ipv4": ipv4,
                "ipv6": {"id": self.ipv6_id, "ip": self.ipv6_net, "blocked": False, "dns_ptr": []},
                "floating_ips": [],
                "firewalls": [{"id": fid, "status": "applied"} for fid in firewall_ids],
            },
            "private_net": [],
            "server_type": type_json,
            "location": loc.to_json(),
            "image": self.image.to_json(),
            "iso": None,
            "rescue_enabled": False,
            "locked": False,
            "backup_window": None,
            "outgoing_traffic": 0,
            "ingoing_traffic": 0,
            "included_traffic": 21990232555520,
            "protection": {"delete": False, "rebuild": False},
            "labels": dict(self.labels),
            "volumes": [],
            "load_balancers": [],
            "primary_disk_size": self.server_type.disk,
            "placement_group": None,
        }


# ---------------------------------------------------------------------------------------------
# Label selectors and pagination (API reference: "Label Selector", "Pagination")

_SET_EXPR = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\((.*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _matches_one(labels: dict[str, str], expr: str) -> bool:
    if m := _SET_EXPR.match(expr):
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        return (labels.get(key) in values) if op == "in" else (key in labels and labels[key] not in values)
    if "!=" in expr:
        key, value = (s.strip() for s in expr.split("!=", 1))
        return labels.get(key) != value
    if "=" in expr:
        key, value = (s.strip() for s in expr.replace("==", "=").split("=", 1))
        return labels.get(key) == value
    if expr.startswith("!"):
        return expr[1:].strip() not in labels
    return expr in labels


def matches_selector(labels: dict[str, str], selector: str | None) -> bool:
    return not selector or all(_matches_one(labels, e) for e in _split_selector(selector))


def paginate(items: list[Any], query: dict[str, list[str]]) -> tuple[list[Any], Json]:
    try:
        page = max(1, int(query.get("page", ["1"])[0]))
        per_page = min(50, max(1, int(query.get("per_page", ["25"])[0])))
    except ValueError as exc:
        raise invalid_field("page", "must be an integer") from exc
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    meta = {
        "pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < last else None,
            "last_page": last,
            "total_entries": len(items),
        }
    }
    return chunk, meta
