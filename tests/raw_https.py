"""One HTTPS request as a client sends it, byte for byte: for testing Caddy and the web login,
where the Host header, SNI and headers must be exactly what a test chose (no client library
adds, fixes or follows anything). TLS is not verified (Caddy's local CA)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes  # as sent (a chunked body stays chunked: see unchunk)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def request(
    address: str,
    port: int,
    host: str,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    sni: str = "",
    timeout: float = 20,
) -> Reply:
    """`host` is the Host header as sent; the SNI name is `sni`, or `host` without a port."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((address, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=sni or host.split(":")[0]) as tls,
    ):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        tls.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        data = b""
        # Until the server closes; a switched protocol (101) stays open: its head is enough.
        while chunk := tls.recv(65536):
            data += chunk
            if data.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in data:
                break
    head, _, content = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode(errors="replace").split("\r\n")
    found: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        found[key] = f"{found[key]}, {value.strip()}" if key in found else value.strip()
    return Reply(int(status_line.split()[1]), found, content)


def unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        length = int(size.split(b";")[0] or b"0", 16)
        if length == 0:
            break
        out, data = out + rest[:length], rest[length + 2 :]
    return out


def spki_hash(pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate: what chromium's SPKI list names."""
    import base64
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(pem).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()
