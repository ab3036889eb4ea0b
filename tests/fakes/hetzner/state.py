"""The project's state behind one lock, plus the lookups every route needs."""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .model import (
    Action,
    ApiError,
    Firewall,
    Image,
    Json,
    Location,
    Server,
    ServerType,
    SshKey,
    invalid_field,
    matches_selector,
    not_found,
    paginate,
)

T = TypeVar("T")


@dataclass
class Request:
    method: str
    path: str  # below /v1, e.g. "/servers/42"
    query: dict[str, list[str]]
    body: Json
    client_ip: str

    def arg(self, name: str, default: str | None = None) -> str | None:
        return self.query.get(name, [default])[0]

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])


Response = tuple[int, Json | None]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]


def route(method: str, pattern: str, handler: Callable[..., Response]) -> Route:
    return Route(method, re.compile(f"^{pattern}$"), handler)


@dataclass
class Knobs:
    max_servers: int | None = None
    # How long a server's start action runs after its create action finished; the server is
    # locked (423) meanwhile. 0: both finish together.
    start_action_seconds: float = 0.0
    # How long a firewall still counts a deleted server as applied (422 resource_in_use on delete).
    firewall_release_seconds: float = 0.0
    # command -> queued (code, message) failures for the next actions of that command
    action_faults: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class Project:
    locations: dict[str, Location]
    server_types: dict[int, ServerType]
    images: dict[int, Image]
    servers: dict[int, Server] = field(default_factory=dict)
    ssh_keys: dict[int, SshKey] = field(default_factory=dict)
    firewalls: dict[int, Firewall] = field(default_factory=dict)
    actions: dict[int, Action] = field(default_factory=dict)
    knobs: Knobs = field(default_factory=Knobs)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _ids: Iterable[int] = field(
        default_factory=lambda: itertools.count(random.randrange(10**7, 9 * 10**7, 1000)), repr=False
    )

    def next_id(self) -> int:
        return next(self._ids)  # type: ignore[call-overload]

    # -- actions --------------------------------------------------------------------------------

    def new_action(self, command: str, *resources: tuple[str, int]) -> Action:
        action = Action(self.next_id(), command, [{"id": i, "type": t} for t, i in resources])
        self.actions[action.id] = action
        return action

    def done_action(self, command: str, *resources: tuple[str, int]) -> Action:
        action = self.new_action(command, *resources)
        action.succeed()
        return action

    def take_action_fault(self, command: str) -> tuple[str, str] | None:
        queue = self.knobs.action_faults.get(command)
        return queue.pop(0) if queue else None

    def running_action_on(self, kind: str, ident: int) -> Action | None:
        return next((a for a in self.actions.values() if a.status == "running" and a.touches(kind, ident)), None)

    # -- lookups --------------------------------------------------------------------------------

    def location(self, ref: Any) -> Location:
        for loc in self.locations.values():
            if str(ref) in (loc.name, str(loc.id)):
                return loc
        raise ApiError(400, "invalid_input", f"location '{ref}' not found")

    def server_type(self, ref: Any) -> ServerType:
        for st in self.server_types.values():
            if str(ref) in (st.name, str(st.id)):
                return st
        raise ApiError(400, "invalid_input", f"server type '{ref}' not found")

    def image(self, ref: Any) -> Image:
        for img in self.images.values():
            if str(ref) == str(img.id) or (img.name is not None and str(ref) == img.name):
                return img
        raise ApiError(400, "invalid_input", f"image '{ref}' not found")

    def ssh_key(self, ref: Any) -> SshKey:
        for key in self.ssh_keys.values():
            if str(ref) in (key.name, str(key.id)):
                return key
        raise ApiError(400, "invalid_input", f"ssh key '{ref}' not found")

    @staticmethod
    def by_id(collection: dict[int, T], ident: str, kind: str) -> T:
        try:
            return collection[int(ident)]
        except (KeyError, ValueError):
            raise not_found(kind, ident) from None

    # -- rendering ------------------------------------------------------------------------------

    def type_json(self, st: ServerType) -> Json:
        return st.to_json(self.locations)

    def server_json(self, server: Server) -> Json:
        fw_ids = [
            fw.id
            for fw in self.firewalls.values()
            if server.id in fw.server_ids or any(matches_selector(server.labels, sel) for sel in fw.label_selectors)
        ]
        return server.to_json(fw_ids, self.type_json(server.server_type))

    def firewall_json(self, fw: Firewall) -> Json:
        return fw.to_json(self.servers)


def list_response(root: str, items: list[Any], req: Request, render: Callable[[Any], Json]) -> Response:
    name = req.arg("name")
    if name is not None:
        items = [i for i in items if getattr(i, "name", None) == name]
    selector = req.arg("label_selector")
    if selector:
        items = [i for i in items if matches_selector(getattr(i, "labels", {}), selector)]
    chunk, meta = paginate(sorted(items, key=lambda i: i.id), req.query)
    return 200, {root: [render(i) for i in chunk], "meta": meta}


def labels_from(body: Json, key: str = "labels") -> dict[str, str]:
    labels = body.get(key) or {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise invalid_field(key, "must be an object of string values")
    for k, v in labels.items():
        if k.startswith("hetzner.cloud/") or not re.fullmatch(
            r"([a-z0-9.-]+/)?[A-Za-z0-9]([\w.-]{0,61}[A-Za-z0-9])?", k
        ):
            raise invalid_field(key, f"invalid label key '{k}'")
        if v and not re.fullmatch(r"[A-Za-z0-9]([\w.-]{0,61}[A-Za-z0-9])?", v):
            raise invalid_field(key, f"invalid label value '{v}'")
    return dict(labels)


def required_str(body: Json, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise invalid_field(key, "is required")
    return value
