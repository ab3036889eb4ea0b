"""Servers and their actions. Docker work runs in background jobs; the API answers at once with
`running` actions that turn `success` (or `error`) when the container really is up, off, gone."""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

from .model import Action, ApiError, Firewall, Image, Location, Server, ServerType, invalid_field
from .state import Project, Request, Response, Route, labels_from, list_response, required_str, route

MAX_USER_DATA = 32 * 1024
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class Jobs:
    """Background work, serialized per server (a create finishes before that server's delete)."""

    def __init__(self) -> None:
        self._locks: dict[int, threading.Lock] = {}
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._stopping = threading.Event()

    def _lock_for(self, server_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(server_id, threading.Lock())

    def spawn(self, server_id: int, work: Callable[[], None]) -> None:
        def run() -> None:
            with self._lock_for(server_id):
                work()

        thread = threading.Thread(target=run, name=f"hzfake-server-{server_id}", daemon=True)
        with self._guard:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def pause(self, seconds: float) -> None:
        """Let simulated time pass inside a job (an action that runs a while); ends early on stop."""
        self._stopping.wait(seconds)

    def stop(self) -> None:
        self._stopping.set()

    def join(self, timeout: float = 60.0) -> None:
        with self._guard:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout)


class ServerRoutes:
    def __init__(self, project: Project, vms: Any, default_image: str):
        self.p = project
        self.vms = vms
        self.default_image = default_image
        self.jobs = Jobs()

    def routes(self) -> list[Route]:
        power = "poweroff|poweron|shutdown|reboot|reset"
        return [
            route("GET", "/servers", self.list_servers),
            route("POST", "/servers", self.create_server),
            route("GET", r"/servers/(?P<ident>\d+)", self.get_server),
            route("PUT", r"/servers/(?P<ident>\d+)", self.update_server),
            route("DELETE", r"/servers/(?P<ident>\d+)", self.delete_server),
            route("POST", rf"/servers/(?P<ident>\d+)/actions/(?P<op>{power})", self.power),
            route("POST", r"/servers/(?P<ident>\d+)/actions/create_image", self.create_image),
        ]

    # -- reads ----------------------------------------------------------------------------------

    def list_servers(self, req: Request) -> Response:
        servers = list(self.p.servers.values())
        for s in servers:
            self._refresh(s)
        if statuses := req.args("status"):
            servers = [s for s in servers if s.status in statuses]
        return list_response("servers", servers, req, self.p.server_json)

    def get_server(self, req: Request, ident: str) -> Response:
        server = self.p.by_id(self.p.servers, ident, "server")
        self._refresh(server)
        return 200, {"server": self.p.server_json(server)}

    def _refresh(self, server: Server) -> None:
        """A VM can power itself off (or vanish): reflect the container's real state."""
        if not server.container or self.p.running_action_on("server", server.id):
            return
        running = self.vms.is_running(server.container)
        if running is False and server.status == "running":
            server.status = "off"
        elif running and server.status == "off":
            server.status = "running"

    # -- create ---------------------------------------------------------------------------------

    def create_server(self, req: Request) -> Response:
        b = req.body
        name = required_str(b, "name")
        if not _HOSTNAME.match(name):
            raise invalid_field("name", "must be a valid hostname (RFC 1123)")
        server_type = self.p.server_type(b.get("server_type") or required_str(b, "server_type"))
        image = self.p.image(b.get("image") or required_str(b, "image"))
        location = self._location_for(b, server_type)
        self._check_orderable(server_type, location)
        if image.disk_size > server_type.disk:  # a snapshot carries its source's disk and cannot shrink
            raise ApiError(422, "invalid_input", "image disk is bigger than server type disk")
        self._check_quota(name)
        user_data = b.get("user_data") or ""
        if len(user_data.encode()) > MAX_USER_DATA:
            raise invalid_field("user_data", "is too long (maximum is 32768 bytes)")
        ssh_keys = [self.p.ssh_key(ref) for ref in b.get("ssh_keys") or []]
        firewalls = [self._firewall_ref(f) for f in b.get("firewalls") or []]
        server = Server(
            self.p.next_id(),
            name,
            server_type,
            location,
            image,
            self.vms.allocate_ip(),
            _ipv6_net(),
            user_data,
            labels_from(b),
            [k.id for k in ssh_keys],
        )
        self.p.servers[server.id] = server
        for fw in firewalls:
            fw.server_ids.append(server.id)
        start = b.get("start_after_create", True) is not False
        action = self.p.new_action("create_server", ("server", server.id))
        next_actions = [self.p.new_action("start_server", ("server", server.id))] if start else []
        fault = self.p.take_action_fault("create_server")
        self.jobs.spawn(server.id, lambda: self._boot(server, start, [action, *next_actions], fault))
        return 201, {
            "server": self.p.server_json(server),
            "action": action.to_json(),
            "next_actions": [a.to_json() for a in next_actions],
            "root_password": None if ssh_keys else secrets.token_urlsafe(15),
        }

    def _location_for(self, body: dict, server_type: ServerType) -> Location:
        if "datacenter" in body:  # removed from the API with the datacenters (changelog 2026-07-01)
            raise ApiError(
                422,
                "invalid_input",
                "invalid input: unknown field name 'datacenter'",
                {"fields": [{"name": "datacenter", "messages": ["unknown field"]}]},
            )
        if body.get("location"):
            return self.p.location(body["location"])
        for loc in self.p.locations.values():
            tl = server_type.offered_in(loc.name)
            if tl and tl.available:
                return loc
        raise ApiError(400, "invalid_input", "unsupported location for server type")

    @staticmethod
    def _check_orderable(server_type: ServerType, location: Location) -> None:
        offered = server_type.offered_in(location.name)
        removed = any(
            d is not None and d.is_past() for d in (server_type.deprecation, offered.deprecation if offered else None)
        )
        if offered is None or removed:
            raise ApiError(400, "invalid_input", "unsupported location for server type")
        if not offered.available:
            raise ApiError(412, "resource_unavailable", "error during placement")

    def _check_quota(self, name: str) -> None:
        if any(s.name == name for s in self.p.servers.values()):
            raise ApiError(409, "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]})
        limit = self.p.knobs.max_servers
        if limit is not None and len(self.p.servers) >= limit:
            raise ApiError(
                403, "resource_limit_exceeded", "server limit exceeded", {"limits": [{"name": "server_limit"}]}
            )

    def _firewall_ref(self, ref: Any) -> Firewall:
        ident = ref.get("firewall") if isinstance(ref, dict) else ref
        firewall = self.p.firewalls.get(int(str(ident))) if str(ident).isdigit() else None
        if firewall is None:
            raise ApiError(400, "invalid_input", f"firewall with ID '{ident}' not found")
        return firewall

    def _boot(self, server: Server, start: bool, actions: list[Action], fault: tuple[str, str] | None) -> None:
        if fault:
            with self.p.lock:
                self._forget(server)
                for a in actions:
                    a.fail(*fault)
            return
        try:
            container = self.vms.create(
                server.id,
                server.name,
                server.ipv4,
                server.user_data,
                self._meta_data(server),
                server.image.docker_image or self.default_image,
                start,
            )
        except Exception as exc:  # noqa: BLE001 - becomes the action's error, like a failed placement
            _log_exception()
            with self.p.lock:
                server.status = "off"
                for a in actions:
                    a.fail("action_failed", f"could not boot the simulated VM: {exc}")
            return
        create, starts = actions[0], actions[1:]
        linger = self.p.knobs.start_action_seconds if starts else 0
        with self.p.lock:
            server.container = container
            create.succeed()
            server.status = "off" if not start else "starting" if linger else "running"
            if not linger:
                for a in starts:
                    a.succeed()
        if linger:
            # The real start action outlives the create action; the server is locked until it ends.
            self.jobs.pause(linger)
            with self.p.lock:
                if server.status == "starting":
                    server.status = "running"
                for a in starts:
                    a.succeed()

    def _meta_data(self, server: Server) -> str:
        keys = [self.p.ssh_keys[k].public_key for k in server.ssh_key_ids if k in self.p.ssh_keys]
        lines = [f"instance-id: {server.id}", f"local-hostname: {json.dumps(server.name)}"]
        if keys:
            lines += ["public-keys:"] + [f"  - {json.dumps(k)}" for k in keys]
        return "\n".join(lines) + "\n"

    # -- update / delete ------------------------------------------------------------------------

    def update_server(self, req: Request, ident: str) -> Response:
        server = self.p.by_id(self.p.servers, ident, "server")
        if isinstance(req.body.get("name"), str):
            if not _HOSTNAME.match(req.body["name"]):
                raise invalid_field("name", "must be a valid hostname (RFC 1123)")
            if any(s.name == req.body["name"] and s.id != server.id for s in self.p.servers.values()):
                raise ApiError(409, "uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]})
            server.name = req.body["name"]
        if "labels" in req.body:
            server.labels = labels_from(req.body)
        return 200, {"server": self.p.server_json(server)}

    def delete_server(self, req: Request, ident: str) -> Response:
        server = self.p.by_id(self.p.servers, ident, "server")
        self._check_unlocked(server)
        server.status = "deleting"
        action = self.p.new_action("delete_server", ("server", server.id))
        self._forget(server, release_ip=False)

        def work() -> None:
            if server.container:
                self.vms.remove(server.container)
            self.vms.release_ip(server.ipv4)
            with self.p.lock:
                action.succeed()

        self.jobs.spawn(server.id, work)
        return 200, {"action": action.to_json()}

    def _forget(self, server: Server, release_ip: bool = True) -> None:
        self.p.servers.pop(server.id, None)
        for fw in self.p.firewalls.values():
            if server.id in fw.server_ids:
                fw.server_ids.remove(server.id)
                fw.release_later(server.id, self.p.knobs.firewall_release_seconds)
        if release_ip:
            self.vms.release_ip(server.ipv4)

    # -- power ----------------------------------------------------------------------------------

    POWER: ClassVar[
        dict[str, tuple[str, str, str, Any]]
    ] = {  # op: (command, status while running, final status, backend call)
        "poweroff": ("stop_server", "stopping", "off", lambda vms, c: vms.stop(c, hard=True)),
        "shutdown": ("shutdown_server", "stopping", "off", lambda vms, c: vms.stop(c, hard=False)),
        "poweron": ("start_server", "starting", "running", lambda vms, c: vms.start(c)),
        "reboot": ("reboot_server", "running", "running", lambda vms, c: vms.restart(c, hard=False)),
        "reset": ("reset_server", "running", "running", lambda vms, c: vms.restart(c, hard=True)),
    }

    def power(self, req: Request, ident: str, op: str) -> Response:
        server = self.p.by_id(self.p.servers, ident, "server")
        self._check_unlocked(server)
        command, during, final, call = self.POWER[op]
        action = self.p.new_action(command, ("server", server.id))
        fault = self.p.take_action_fault(command)
        server.status = during
        self.jobs.spawn(server.id, lambda: self._run_power(server, action, final, call, fault))
        return 201, {"action": action.to_json()}

    def _check_unlocked(self, server: Server) -> None:
        if self.p.running_action_on("server", server.id):
            raise ApiError(423, "locked", "cannot perform operation because resource is locked")

    def _run_power(
        self,
        server: Server,
        action: Action,
        final: str,
        call: Callable[[Any, str], None],
        fault: tuple[str, str] | None,
    ) -> None:
        try:
            if fault:
                raise RuntimeError(fault[1])
            if server.container:
                call(self.vms, server.container)
        except Exception as exc:  # noqa: BLE001
            with self.p.lock:
                action.fail(fault[0] if fault else "action_failed", str(exc))
                server.status = (
                    "off" if not server.container or not self.vms.is_running(server.container) else "running"
                )
            return
        with self.p.lock:
            server.status = final
            action.succeed()

    # -- snapshots ------------------------------------------------------------------------------

    def create_image(self, req: Request, ident: str) -> Response:
        server = self.p.by_id(self.p.servers, ident, "server")
        self._check_unlocked(server)
        kind = req.body.get("type") or "snapshot"
        if kind not in ("snapshot", "backup"):
            raise invalid_field("type", "must be snapshot or backup")
        image = Image(
            self.p.next_id(),
            kind,
            None,
            req.body.get("description") or f"{server.name} snapshot",
            server.image.os_flavor,
            server.image.os_version,
            status="creating",
            labels=labels_from(req.body),
            created_from={"id": server.id, "name": server.name},
            disk_size=server.server_type.disk,
        )
        self.p.images[image.id] = image
        action = self.p.new_action("create_image", ("server", server.id), ("image", image.id))
        self.jobs.spawn(server.id, lambda: self._snapshot(server, image, action))
        return 201, {"image": image.to_json(), "action": action.to_json()}

    def _snapshot(self, server: Server, image: Image, action: Action) -> None:
        try:
            ref = self.vms.commit(server.container, image.id) if server.container else None
        except Exception as exc:  # noqa: BLE001
            _log_exception()
            with self.p.lock:
                self.p.images.pop(image.id, None)
                action.fail("action_failed", f"could not snapshot the simulated VM: {exc}")
            return
        with self.p.lock:
            image.docker_image = ref or server.image.docker_image
            image.status, image.image_size = "available", 0.5
            action.succeed()


def _ipv6_net() -> str:
    return f"2a01:4f8:c0c:{secrets.randbelow(0xFFFF):x}::/64"


def _log_exception() -> None:
    traceback.print_exc(file=sys.stderr)
