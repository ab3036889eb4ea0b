"""The HTTP face of the simulated Hetzner Cloud: bearer-token auth, rate limit headers, injected
faults, the JSON API under /v1 and the metadata service under /hetzner/v1 (answered for the
container that calls, recognised by its source IP on the fake's network)."""

from __future__ import annotations

import atexit
import json
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from .catalog import default_locations, default_server_types, default_system_images
from .model import ApiError, Image, Json, Location, Server, ServerType
from .routes_project import ProjectRoutes
from .routes_servers import ServerRoutes
from .state import Knobs, Project, Request, Route
from .vms import DockerVms, NoVms

WRITE_METHODS = ("POST", "PUT", "DELETE", "PATCH")


@dataclass
class Fault:
    """An error the fake answers instead of the real result, for the next `times` matching calls."""

    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    method: str | None = None  # e.g. "POST"; None: any
    path: str | None = None  # prefix below /v1, e.g. "/servers"; None: any

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and (self.method is None or self.method == method)
            and (self.path is None or path.startswith(self.path))
        )


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    status: int
    token: str | None
    at: float


class _RateLimiter:
    """Hetzner's scheme: `limit` requests per hour, one more every 3600/limit seconds."""

    def __init__(self, limit: int):
        self.limit, self.remaining, self.last = limit, float(limit), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, dict[str, str]]:
        with self._lock:
            now = time.monotonic()
            self.remaining = min(self.limit, self.remaining + (now - self.last) * self.limit / 3600)
            self.last = now
            allowed = self.remaining >= 1
            if allowed:
                self.remaining -= 1
            return allowed, self.headers()

    def headers(self, remaining: int | None = None) -> dict[str, str]:
        left = int(self.remaining) if remaining is None else remaining
        reset = int(time.time() + (self.limit - left) * 3600 / self.limit)
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(left), "RateLimit-Reset": str(reset)}


class FakeHetzner:
    """A simulated Hetzner Cloud project. Point hcloud at `api_endpoint` with one of `tokens`."""

    def __init__(
        self,
        *,
        image: str = "vmgen-debian12:latest",
        boot: bool = True,
        tokens: Iterable[str] = ("test-token",),
        readonly_tokens: Iterable[str] = ("readonly-token",),
        host: str = "0.0.0.0",
        port: int = 0,
        locations: list[Location] | None = None,
        server_types: list[ServerType] | None = None,
        images: list[Image] | None = None,
        max_servers: int | None = None,
        rate_limit: int = 3600,
        start_action_seconds: float = 0.0,
        firewall_release_seconds: float = 0.0,
        readonly_error_code: str = "token_readonly",
        network_name: str | None = None,
        subnet: str | None = None,
        docker_client: Any = None,
    ):
        self.tokens, self.readonly_tokens = list(tokens), list(readonly_tokens)
        self.readonly_error_code = readonly_error_code
        self.project = Project(
            locations={loc.name: loc for loc in (locations or default_locations())},
            server_types={t.id: t for t in (server_types or default_server_types())},
            images={i.id: i for i in (images or default_system_images())},
            knobs=Knobs(
                max_servers=max_servers,
                start_action_seconds=start_action_seconds,
                firewall_release_seconds=firewall_release_seconds,
            ),
        )
        self.vms = DockerVms(docker_client, network_name, subnet) if boot else NoVms()
        self._servers = ServerRoutes(self.project, self.vms, image)
        self._routes: list[Route] = self._servers.routes() + ProjectRoutes(self.project, self.vms).routes()
        self._faults: list[Fault] = []
        self._limiter = _RateLimiter(rate_limit)
        self._bind = (host, port)
        self._http: ThreadingHTTPServer | None = None
        self.requests: list[RecordedRequest] = []

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeHetzner:
        self.vms.setup()
        try:
            self._http = ThreadingHTTPServer(self._bind, _Handler)
        except Exception:
            self.vms.close()
            raise
        self._http.daemon_threads = True
        self._http.fake = self  # type: ignore[attr-defined]
        threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="hzfake-http", daemon=True
        ).start()
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Stop serving and remove every container, snapshot image and the network it made."""
        atexit.unregister(self.stop)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        self._servers.jobs.stop()
        self._servers.jobs.join(timeout=60)
        self.vms.close()

    close = stop

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where to reach it ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._http, "start() first"
        return self._http.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_endpoint(self) -> str:
        """What hcloud wants as `api_endpoint` (it appends paths such as `/servers`)."""
        return f"{self.url}/v1"

    @property
    def gateway(self) -> str | None:
        return self.vms.gateway

    @property
    def api_endpoint_for_vms(self) -> str:
        """The API as seen from inside a simulated VM (for self-delete)."""
        return f"http://{self.gateway or '127.0.0.1'}:{self.port}/v1"

    @property
    def metadata_url(self) -> str:
        """Base of the metadata service as seen from inside a simulated VM."""
        return f"http://{self.gateway or '127.0.0.1'}:{self.port}/hetzner/v1/metadata"

    @property
    def network_name(self) -> str | None:
        return self.vms.network_name

    @property
    def token(self) -> str:
        return self.tokens[0]

    @property
    def readonly_token(self) -> str:
        return self.readonly_tokens[0]

    @property
    def state(self) -> Project:
        """Live state (servers, ssh_keys, firewalls, images, actions: dicts by id). Read only."""
        return self.project

    def client(self, token: str | None = None, **kwargs: Any) -> Any:
        from hcloud import Client

        kwargs.setdefault("poll_interval", 0.25)
        return Client(token=token or self.token, api_endpoint=self.api_endpoint, **kwargs)

    def server(self, name: str) -> Server | None:
        with self.project.lock:
            return next((s for s in self.project.servers.values() if s.name == name), None)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait for background work (boots, stops, deletes, snapshots) to finish."""
        self._servers.jobs.join(timeout)

    # -- fault knobs ----------------------------------------------------------------------------

    @property
    def max_servers(self) -> int | None:
        return self.project.knobs.max_servers

    @max_servers.setter
    def max_servers(self, value: int | None) -> None:
        self.project.knobs.max_servers = value

    def fail_next(
        self,
        code: str,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
        message: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        fault = Fault(
            status, code, message or code.replace("_", " "), details, dict(headers or {}), times, method, path
        )
        with self.project.lock:
            self._faults.append(fault)
        return fault

    def rate_limit_next(self, times: int = 1, *, method: str | None = None, path: str | None = None) -> Fault:
        limit = self._limiter.limit
        return self.fail_next(
            "rate_limit_exceeded",
            429,
            times=times,
            method=method,
            path=path,
            message=f"limit of {limit} requests per hour reached",
            headers=self._limiter.headers(remaining=0),
        )

    def fail_action(
        self, command: str, code: str = "action_failed", message: str = "action failed", times: int = 1
    ) -> None:
        """Make the next `times` actions of `command` (e.g. create_server) end in status error."""
        with self.project.lock:
            self.project.knobs.action_faults.setdefault(command, []).extend([(code, message)] * times)

    def set_availability(self, server_type: str, location: str, available: bool) -> None:
        """Out of stock (`available=False`): creates there fail with resource_unavailable."""
        with self.project.lock:
            tl = self.project.server_type(server_type).offered_in(location)
            if tl is None:
                raise ValueError(f"{server_type} is not offered in {location}")
            tl.available = available

    def clear_faults(self) -> None:
        with self.project.lock:
            self._faults.clear()
            self.project.knobs.action_faults.clear()

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.project.lock:
            fault = next((f for f in self._faults if f.matches(method, path)), None)
            if fault:
                fault.times -= 1
                self._faults = [f for f in self._faults if f.times > 0]
            return fault

    # -- the API --------------------------------------------------------------------------------

    def handle_api(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes, token: str | None, client_ip: str
    ) -> tuple[int, Json | None, dict[str, str]]:
        headers = {"X-Correlation-Id": secrets.token_hex(8)}
        try:
            allowed, limit_headers = self._limiter.take()
            headers.update(limit_headers)
            if fault := self._take_fault(method, path):
                raise ApiError(fault.status, fault.code, fault.message, fault.details, fault.headers)
            if not allowed:
                raise ApiError(429, "rate_limit_exceeded", f"limit of {self._limiter.limit} requests per hour reached")
            self._authorize(method, token)
            handler, groups = self._route(method, path)
            request = Request(method, path, query, _json_body(raw) if method in ("POST", "PUT") else {}, client_ip)
            with self.project.lock:
                status, payload = handler(request, **groups)
        except ApiError as err:
            status, payload = err.status, err.body()
            headers.update(err.headers)
        except Exception:  # noqa: BLE001 - a bug in the fake: answer like the API would, and say so
            traceback.print_exc(file=sys.stderr)
            status, payload = 500, ApiError(500, "server_error", "internal error in the fake").body()
        self.requests.append(RecordedRequest(method, path, status, token, time.time()))
        return status, payload, headers

    def _authorize(self, method: str, token: str | None) -> None:
        if token not in self.tokens and token not in self.readonly_tokens:
            raise ApiError(401, "unauthorized", "unable to authenticate")
        if token in self.readonly_tokens and token not in self.tokens and method in WRITE_METHODS:
            raise ApiError(403, self.readonly_error_code, "The token is only allowed to perform GET requests")

    def _route(self, method: str, path: str) -> tuple[Any, dict[str, str]]:
        for r in self._routes:
            if r.method == method and (m := r.pattern.match(path)):
                return r.handler, {k: v for k, v in m.groupdict().items() if v is not None}
        raise ApiError(404, "not_found", f"{method} {path} not found")

    # -- metadata service -----------------------------------------------------------------------

    def handle_metadata(self, path: str, client_ip: str) -> tuple[int, str]:
        with self.project.lock:
            server = next((s for s in self.project.servers.values() if s.ipv4 == client_ip), None)
            if server is None:
                return 404, "not found\n"
            keys = [self.project.ssh_keys[k].public_key for k in server.ssh_key_ids if k in self.project.ssh_keys]
            values = {
                "hostname": server.name,
                "instance-id": str(server.id),
                "public-ipv4": server.ipv4 or "",
                "region": server.location.network_zone,
                "availability-zone": server.location.datacenter_name,
                "private-networks": "[]",
                "public-keys": json.dumps(keys),
                "userdata": server.user_data,
            }
        if path == "/hetzner/v1/userdata":  # the real path; .../metadata/userdata is served too
            return 200, values["userdata"]
        if path.rstrip("/") == "/hetzner/v1/metadata":
            summary = {k: v for k, v in values.items() if k not in ("private-networks", "public-keys", "userdata")}
            return 200, "".join(f"{k}: {v}\n" for k, v in sorted(summary.items()))
        key = path.removeprefix("/hetzner/v1/metadata/")
        return (200, values[key]) if key in values else (404, "not found\n")


def _json_body(raw: bytes) -> Json:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "json_error", "invalid JSON in request body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "json_error", "request body must be a JSON object")
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        fake: FakeHetzner = self.server.fake  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        client_ip = self.client_address[0]
        if split.path.startswith("/hetzner/v1/"):
            status, text = fake.handle_metadata(split.path, client_ip)
            self._send(status, text.encode(), "text/plain; charset=utf-8", {})
            return
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        path = split.path[3:] if split.path.startswith("/v1/") else split.path
        status, payload, headers = fake.handle_api(
            self.command, path.rstrip("/") or "/", parse_qs(split.query), raw, token, client_ip
        )
        data = b"" if payload is None else json.dumps(payload).encode()
        self._send(status, data, "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
