"""A fake Cloudflare API v4 (zones and DNS records) over real HTTP, standard library only.

It answers what vmgen.dns calls, with the real envelope ({success, errors, messages, result,
result_info}), record shapes, list filters (`name`, `type`, `content`, `comment`, each also as
`<field>.exact|contains|startswith|endswith`, case-insensitive like the real ones), pagination, and
the error codes the real API sends: 10000 (authentication), 6003/6111 (unparsable Authorization
header), 9005/9006/9021/9000/1004 (validation), 81044 (no such record), 81053/81054/81058
(conflicts), 7003 (unknown zone id), 971 (rate limit).

    with FakeCloudflare(zones=["example.com"]) as cf:
        CloudflareDns("test-token", "example.com", endpoint=cf.endpoint)

Tokens: "test-token" may do everything, "readonly-token" may read but gets 403 on writes.
Bind host="0.0.0.0" (with public_host= the address containers use) to serve simulated VMs.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]
PREFIX = "/client/v4"
VALID_TOKEN = "test-token"
READONLY_TOKEN = "readonly-token"
RECORD_TYPES = {
    "A",
    "AAAA",
    "CAA",
    "CERT",
    "CNAME",
    "DNSKEY",
    "DS",
    "HTTPS",
    "LOC",
    "MX",
    "NAPTR",
    "NS",
    "PTR",
    "SMIMEA",
    "SRV",
    "SSHFP",
    "SVCB",
    "TLSA",
    "TXT",
    "URI",
}
FILTER_FIELDS = ("name", "type", "content", "comment")


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, chain: list[Json] | None = None) -> None:
        super().__init__(message)
        self.status, self.error = status, {"code": code, "message": message}
        if chain:
            self.error["error_chain"] = chain


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _envelope(result: Any, result_info: Json | None = None) -> Json:
    body = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = result_info
    return body


class FakeCloudflare:
    def __init__(
        self,
        zones: list[str] | tuple[str, ...] = ("example.com",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_host: str | None = None,
        tokens: tuple[str, ...] = (VALID_TOKEN,),
        readonly_tokens: tuple[str, ...] = (READONLY_TOKEN,),
        max_per_page: int = 5_000_000,
    ) -> None:
        self.tokens, self.readonly_tokens, self.max_per_page = set(tokens), set(readonly_tokens), max_per_page
        self.requests: list[tuple[str, str]] = []  # (method, path?query), every request received
        self._lock = threading.Lock()
        self._zones: dict[str, Json] = {}
        self._records: dict[str, dict[str, Json]] = {}  # zone id -> record id -> record
        self._faults: list[tuple[int, str | None]] = []
        for zone in zones:
            self.add_zone(zone)
        # Bound now, so the port (and endpoint) is known before start().
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._public_host = public_host or ("127.0.0.1" if host in ("", "0.0.0.0") else host)
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://{self._public_host}:{self.port}{PREFIX}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-cloudflare", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state for tests ---------------------------------------------------------------------

    def add_zone(self, name: str) -> str:
        with self._lock:
            zid = uuid.uuid4().hex
            self._zones[zid] = {
                "id": zid,
                "name": name,
                "status": "active",
                "paused": False,
                "type": "full",
                "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
                "account": {"id": "0" * 32, "name": "test"},
                "created_on": _now(),
                "modified_on": _now(),
            }
            self._records[zid] = {}
            return zid

    def zone_id(self, zone: str) -> str:
        return next(z["id"] for z in self._zones.values() if z["name"] == zone)

    def records(self, zone: str) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._records[self.zone_id(zone)].values()))

    def add_record(
        self,
        zone: str,
        name: str,
        type: str,
        content: str,
        comment: str | None = None,
        ttl: int = 1,
        proxied: bool = False,
    ) -> Json:
        """Put a record in place without the API's checks (the user's own, or a leftover)."""
        with self._lock:
            record = self._new_record(
                {"name": name, "type": type, "content": content, "comment": comment, "ttl": ttl, "proxied": proxied}
            )
            self._records[self.zone_id(zone)][record["id"]] = record
            return copy.deepcopy(record)

    def fail_next(self, count: int = 1, status: int = 429, retry_after: str | None = "0") -> None:
        """The next `count` requests get `status` (429 with Retry-After, or e.g. 500) before any auth."""
        with self._lock:
            self._faults.extend([(status, retry_after)] * count)

    # --- the API -----------------------------------------------------------------------------

    def handle(self, method: str, target: str, authorization: str, raw: bytes) -> tuple[int, Json, dict[str, str]]:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self._lock:
            self.requests.append((method, target))
            if self._faults:
                status, retry_after = self._faults.pop(0)
                code, message = (
                    (971, "Please wait and consider throttling your request speed")
                    if status == 429
                    else (10002, "Internal server error")
                )
                headers = {"Retry-After": retry_after} if retry_after is not None else {}
                return (
                    status,
                    {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None},
                    headers,
                )
            try:
                self._authorize(method, authorization)
                return 200, self._route(method, url.path, query, raw), {}
            except ApiError as exc:
                return exc.status, {"success": False, "errors": [exc.error], "messages": [], "result": None}, {}

    def _authorize(self, method: str, authorization: str) -> None:
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token.strip() or any(c.isspace() for c in token.strip()):
            raise ApiError(
                400,
                6003,
                "Invalid request headers",
                [{"code": 6111, "message": "Invalid format for Authorization header"}],
            )
        if token not in self.tokens | self.readonly_tokens:
            raise ApiError(401, 10000, "Authentication error")
        if method != "GET" and token not in self.tokens:
            raise ApiError(403, 10000, "Authentication error")

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes) -> Json:
        parts = path[len(PREFIX) :].strip("/").split("/") if path.startswith(PREFIX + "/") else []
        if parts == ["zones"] and method == "GET":
            zones = [z for z in self._zones.values() if _match(z, {"name": query["name"]} if "name" in query else {})]
            return self._page(zones, query, default=20, maximum=50)
        if len(parts) < 3 or parts[0] != "zones" or parts[2] != "dns_records" or len(parts) > 4:
            raise ApiError(400, 7000, "No route for that URI")
        zone = self._zones.get(parts[1])
        if zone is None:
            raise ApiError(400, 7003, f"Could not route to {path}, perhaps your object identifier is invalid?")
        records = self._records[zone["id"]]
        if len(parts) == 3 and method == "GET":
            found = sorted((r for r in records.values() if _match(r, query)), key=lambda r: (r["type"], r["name"]))
            return self._page(found, query, default=100, maximum=self.max_per_page)
        if len(parts) == 3 and method == "POST":
            record = self._new_record(_validate(zone["name"], records, _body(raw), None))
            records[record["id"]] = record
            return _envelope(record)
        if len(parts) == 3:
            raise ApiError(405, 7001, "Method not allowed for this URI")
        stored = records.get(parts[3])
        if stored is None:
            raise ApiError(404, 81044, "Record does not exist.")
        record = stored
        if method == "GET":
            return _envelope(record)
        if method == "DELETE":
            del records[record["id"]]
            return _envelope({"id": record["id"]})
        if method in ("PATCH", "PUT"):
            body = _body(raw)
            merged = {**record, **body} if method == "PATCH" else body
            fields = _validate(zone["name"], records, merged, record["id"])
            if fields.get("comment") != record.get("comment"):
                record["comment_modified_on"] = _now()
            record.update(fields, proxiable=fields["type"] in ("A", "AAAA", "CNAME"), modified_on=_now())
            return _envelope(record)
        raise ApiError(405, 7001, "Method not allowed for this URI")

    def _page(self, items: list[Json], query: dict[str, str], default: int, maximum: int) -> Json:
        try:
            page = max(1, int(query.get("page", 1)))
            per_page = min(maximum, max(1, int(query.get("per_page", default))))
        except ValueError:
            raise ApiError(400, 1004, "Invalid page or per_page") from None
        chunk = items[(page - 1) * per_page : page * per_page]
        return _envelope(
            copy.deepcopy(chunk),
            {
                "page": page,
                "per_page": per_page,
                "count": len(chunk),
                "total_count": len(items),
                "total_pages": math.ceil(len(items) / per_page),
            },
        )

    @staticmethod
    def _new_record(fields: Json) -> Json:
        now = _now()
        record = {
            "id": uuid.uuid4().hex,
            "name": fields["name"],
            "type": fields["type"],
            "content": fields["content"],
            "proxiable": fields["type"] in ("A", "AAAA", "CNAME"),
            "proxied": bool(fields.get("proxied", False)),
            "ttl": int(fields.get("ttl", 1)),
            "settings": {},
            "meta": {},
            "comment": fields.get("comment"),
            "tags": [],
            "created_on": now,
            "modified_on": now,
        }
        if record["comment"]:
            record["comment_modified_on"] = now
        return record


def _body(raw: bytes) -> Json:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, 6007, "Malformed JSON in request body")
    return body


def _match(item: Json, query: dict[str, str]) -> bool:
    for key, wanted in query.items():
        field, _, op = key.partition(".")
        if field not in FILTER_FIELDS:
            continue
        actual, expected = str(item.get(field) or "").lower(), wanted.lower()
        if op == "present" or op == "absent":
            if bool(actual) != (op == "present"):
                return False
            continue
        test = {
            "": actual == expected,
            "exact": actual == expected,
            "contains": expected in actual,
            "startswith": actual.startswith(expected),
            "endswith": actual.endswith(expected),
        }.get(op)
        if test is None:
            raise ApiError(400, 1004, f"Invalid filter {key}")
        if not test:
            return False
    return True


def _validate(zone: str, records: dict[str, Json], fields: Json, own_id: str | None) -> Json:
    """The checks and normalisations the real API applies to a record's fields."""
    rtype, content = str(fields.get("type") or "").upper(), str(fields.get("content") or "")
    name = str(fields.get("name") or "").lower().rstrip(".")
    if rtype not in RECORD_TYPES:
        raise ApiError(400, 1004, "DNS Validation Error", [{"code": 9020, "message": "Invalid DNS record type"}])
    if not name or " " in name:
        raise ApiError(400, 9000, "DNS name is invalid.")
    if name != zone and not name.endswith("." + zone):
        name = f"{name}.{zone}"  # Cloudflare reads a relative name as one inside the zone
    try:
        if rtype == "A":
            ipaddress.IPv4Address(content)
        if rtype == "AAAA":
            ipaddress.IPv6Address(content)
    except ValueError:
        code, family = (9005, "IPv4") if rtype == "A" else (9006, "IPv6")
        raise ApiError(400, code, f"Content for {rtype} record must be a valid {family} address.") from None
    ttl = fields.get("ttl", 1)
    if not isinstance(ttl, int) or (ttl != 1 and not 60 <= ttl <= 86400):
        raise ApiError(400, 9021, "TTL must be between 60 and 86400 seconds, or 1 for Automatic.")
    if not isinstance(fields.get("proxied", False), bool):
        raise ApiError(400, 1004, "DNS Validation Error", [{"code": 9003, "message": "Invalid 'proxied' value"}])
    for other in records.values():
        if other["id"] == own_id or other["name"] != name:
            continue
        if (other["type"], other["content"]) == (rtype, content):
            raise ApiError(400, 81058, "An identical record already exists.")
        if rtype in ("A", "AAAA") and other["type"] == "CNAME":
            raise ApiError(400, 81054, "A CNAME record with that host already exists.")
        if rtype == "CNAME" and other["type"] in ("A", "AAAA", "CNAME"):
            raise ApiError(400, 81053, "An A, AAAA, or CNAME record with that host already exists.")
    return {
        "name": name,
        "type": rtype,
        "content": content,
        "ttl": ttl,
        "proxied": fields.get("proxied", False),
        "comment": fields.get("comment") or None,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests' sessions expect from the real API
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _serve(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake: FakeCloudflare = self.server.fake  # type: ignore[attr-defined]
        status, body, headers = fake.handle(self.command, self.path, self.headers.get("Authorization", ""), raw)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve
