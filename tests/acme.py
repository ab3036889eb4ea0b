"""A real ACME server for the web tests: Pebble (Let's Encrypt's test server, Debian's `pebble`),
the DNS it asks (answering from a zone's records, as the world would see the fake Cloudflare
zone), and a rate limit in front of it (Pebble has none).

Certificates come through the real HTTP-01 challenge: Pebble resolves each name through this DNS
and fetches the key authorization from whatever address it finds, on port 80 (or `http_port`).
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.polling import wait_until

# Let's Encrypt's answers to a new order it will not fill: RFC 8555 6.7's problem documents, in the
# words of its "New Certificates per Exact Set of Hostnames" limit (HTTP 429 with Retry-After,
# letsencrypt.org/docs/rate-limits) and of its policy refusal (HTTP 400; Boulder's policy package).
RATE_LIMITED = (
    "too many certificates (5) already issued for this exact set of identifiers in the last 168h0m0s, "
    "retry after 2030-01-01 00:00:00 UTC: see "
    "https://letsencrypt.org/docs/rate-limits/#new-certificates-per-exact-set-of-hostnames"
)
REFUSED = (
    'Error creating new order :: Cannot issue for "{name}": The ACME server refuses to issue a certificate '
    "for this domain name, because it is forbidden by policy"
)


@dataclass
class TestCA:
    """A CA of the test's own for Pebble's HTTPS (its directory and management API)."""

    folder: Path
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        now = datetime.datetime.now(datetime.UTC)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmgen test ACME server CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        alt = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n) for n in self.names]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.root.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    @property
    def root(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ZoneDns:
    """A DNS server (UDP) answering A queries with `resolve(name)`; for any other type an empty
    answer for a name that resolves (Pebble asks AAAA and CAA too), NXDOMAIN for one that does not."""

    def __init__(self, resolve: Callable[[str], str | None], host: str = "127.0.0.1") -> None:
        from dnslib import QTYPE, RCODE, RR, A
        from dnslib.server import BaseResolver, DNSServer

        class Resolver(BaseResolver):
            def resolve(self, request, handler):  # dnslib's signature
                reply = request.reply()
                name = str(request.q.qname).rstrip(".").lower()
                address = resolve(name)
                if address is None:
                    reply.header.rcode = RCODE.NXDOMAIN
                elif request.q.qtype == QTYPE.A:
                    reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=5))
                return reply

        self.port = _free_udp_port(host)
        self.server = DNSServer(Resolver(), port=self.port, address=host, logger=_Quiet())
        self.server.start_thread()

    def stop(self) -> None:
        self.server.stop()


class _Quiet:
    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def zone_resolver(records: Callable[[], dict[str, str]]) -> Callable[[str], str | None]:
    """Resolution as the public DNS does it for a zone: the exact name's A record, else the
    wildcard of its parent (`*.<parent>`)."""

    def resolve(name: str) -> str | None:
        found = records()
        if name in found:
            return found[name]
        parent = name.split(".", 1)[1] if "." in name else ""
        return found.get(f"*.{parent}")

    return resolve


@dataclass
class Pebble:
    """Pebble on this machine: its directory on `directory_port`, HTTP-01 checks to `http_port`."""

    folder: Path
    dns_port: int
    names: tuple[str, ...]  # how clients address it (the certificate's names)
    http_port: int = 80
    directory_port: int = field(default_factory=_free_tcp_port)
    management_port: int = field(default_factory=_free_tcp_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Pebble:
        assert shutil.which("pebble"), "scripts/setup-system.sh installs pebble with the test packages"
        self.ca = TestCA(self.folder / "tls", self.names)
        config = {
            "pebble": {
                "listenAddress": f"0.0.0.0:{self.directory_port}",
                "managementListenAddress": f"0.0.0.0:{self.management_port}",
                "certificate": str(self.ca.cert),
                "privateKey": str(self.ca.key),
                "httpPort": self.http_port,
                "tlsPort": 5001,
                "ocspResponderURL": "",
                # Not its domainBlocklist: Debian's 2.4.0 panics on any name with fewer labels than
                # a blocked one. AcmeFront refuses names instead.
                "externalAccountBindingRequired": False,
            }
        }
        (self.folder / "pebble.json").write_text(json.dumps(config))
        # No random sleeps or nonce rejections; and no authorization reuse, whose code in Debian's 2.4.0
        # panics on concurrent orders (index out of range in NewOrder).
        env = {
            "PATH": "/usr/bin:/bin",
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        self.log = (self.folder / "pebble.log").open("wb")
        self.process = subprocess.Popen(
            ["pebble", "-config", str(self.folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        up = wait_until(self._answers, bool, timeout=30)
        assert up, (self.folder / "pebble.log").read_text()[-2000:]
        return self

    def _answers(self) -> bool:
        try:
            self.management("/roots/0")
        except OSError:
            return False
        return True

    def management(self, path: str) -> str:
        context = ssl.create_default_context(cafile=str(self.ca.root))
        context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", self.management_port, context=context, timeout=10)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def root(self) -> str:
        """The root Pebble issues under (a new one each run): what a browser would have to trust."""
        return self.management("/roots/0")

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
            self.log.close()


class AcmeFront:
    """An HTTPS front for Pebble that answers new orders for some names as Let's Encrypt does past a
    rate limit (RATE_LIMITED) or for a name its policy forbids (REFUSED), and passes everything
    else on. The Host header is kept, so the URLs Pebble hands out (and checks in each signed
    request) are this front's."""

    def __init__(self, pebble: Pebble, rate_limited: Iterable[str] = (), refused: Iterable[str] = ()) -> None:
        self.pebble, self.limited, self.refused = pebble, frozenset(rate_limited), frozenset(refused)
        self.port = _free_tcp_port()
        self.orders_refused = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # http.server's naming
                self._pass()

            def do_HEAD(self) -> None:
                self._pass()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                names = set(_identifiers(body)) if self.path == "/order-plz" else set()
                if front.limited & names:
                    self._problem(429, "rateLimited", RATE_LIMITED, {"Retry-After": "3600"})
                elif front.refused & names:
                    self._problem(400, "rejectedIdentifier", REFUSED.format(name=min(front.refused & names)))
                else:
                    self._pass(body)

            def _problem(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> None:
                front.orders_refused += 1
                problem = json.dumps(
                    {"type": f"urn:ietf:params:acme:error:{kind}", "detail": detail, "status": status}
                ).encode()
                nonce = front._upstream("HEAD", "/nonce-plz", {"Host": self.headers["Host"]}, b"")[1]
                self._send(
                    status,
                    {
                        "Content-Type": "application/problem+json",
                        **(headers or {}),
                        "Replay-Nonce": nonce.get("Replay-Nonce", ""),
                    },
                    problem,
                )

            def _pass(self, body: bytes = b"") -> None:
                status, headers, data = front._upstream(self.command, self.path, dict(self.headers), body)
                self._send(status, headers, data)

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length") and value:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pebble.ca.cert, pebble.ca.key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _upstream(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        context = ssl.create_default_context(cafile=str(self.pebble.ca.root))
        context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", self.pebble.directory_port, context=context, timeout=30)
        try:
            conn.request(
                method,
                path,
                body=body or None,
                headers={k: v for k, v in headers.items() if k.lower() != "content-length"},
            )
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _identifiers(jws: bytes) -> list[str]:
    """The names a signed new-order request asks for (its payload is not checked here: Pebble would)."""
    try:
        payload = json.loads(jws)["payload"]
        order = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return [str(item.get("value", "")).lower() for item in order.get("identifiers", [])]
    except (ValueError, KeyError, AttributeError, TypeError):
        return []


def served_chain_verifies(address: str, port: int, hostname: str, root_pem: str, timeout: float = 10) -> str:
    """A TLS handshake as a browser does it, trusting only `root_pem`: "" if the chain the server
    sends verifies for `hostname`, else why not."""
    context = ssl.create_default_context(cadata=root_pem)
    try:
        with (
            socket.create_connection((address, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=hostname),
        ):
            return ""
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
