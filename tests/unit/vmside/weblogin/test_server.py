"""The login service over its real unix socket, asked the way Caddy asks it: forward_auth's
check, the sign-in form, tickets to the other hostnames, the code UI's token, the desktop's
password, signing out, and the refusals (wrong password, too many, another origin)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import socket
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from vmgen.contract.names import DESKTOP_START
from vmgen.contract.weblogin import WebLoginSettings, make_verifier
from vmgen.vmside.weblogin.server import LoginConfig, LoginService, serve

HOST = "app.dev.example.com"
CODE, DESKTOP, PREVIEW = f"code.{HOST}", f"desktop.{HOST}", f"p3000.{HOST}"
PASSWORD = "correct-horse-battery-staple-0123"
NAVIGATE = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


class Response(http.client.HTTPResponse):
    """A response with its body, read before its connection closed."""

    body: bytes = b""


class UnixConnection(http.client.HTTPConnection):
    response_class = Response

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.unix_path)


class Client:
    def __init__(self, path: str) -> None:
        self.path = path

    def request(
        self,
        method: str,
        host: str,
        target: str,
        headers: dict | None = None,
        body: str | None = None,
    ) -> Response:
        connection = UnixConnection(self.path)
        connection.request(method, target, body=body, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        assert isinstance(response, Response)  # the connection's response_class
        response.body = response.read()
        connection.close()
        return response

    def check(self, host: str, uri: str = "/", headers: dict | None = None, method: str = "GET"):
        # As forward_auth asks: a GET to the check, the original method and URI in headers.
        return self.request(
            "GET", host, "/.vmgen/check", {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, **(headers or {})}
        )

    def login(
        self,
        password: str = PASSWORD,
        to: str = "",
        path: str = "/",
        client: str = "198.51.100.7",
        origin: str | None = f"https://{HOST}",
    ):
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Vmgen-Client": client}
        if origin:
            headers["Origin"] = origin
        form = urlencode({"user": "vmgen", "password": password, "to": to, "path": path})
        return self.request("POST", HOST, "/.vmgen/login", headers, form)


def cookie_of(response) -> str:
    return response.getheader("Set-Cookie").split(";")[0]


class Backend:
    """A backend on the loopback (the desktop's websockify, a preview's dev server): it answers a
    websocket upgrade and then echoes, and an event stream that sends a line a second; it records
    every request head it got."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            text = head.decode("latin-1")
            self.heads.append(text)
            if "upgrade: websocket" in text.lower():
                key = next(
                    line.split(":", 1)[1].strip()
                    for line in text.split("\r\n")
                    if line.lower().startswith("sec-websocket-key")
                )
                accept = base64.b64encode(hashlib.sha1((key + WS_MAGIC).encode()).digest()).decode()
                conn.sendall(
                    (
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                    ).encode()
                )
                while data := conn.recv(65536):
                    conn.sendall(data)
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive\r\n\r\n")
            with contextlib.suppress(OSError):
                for i in range(600):
                    conn.sendall(f"data: tick {i}\n\n".encode())
                    time.sleep(1)

    def close(self) -> None:
        self.listener.close()


WS_MAGIC = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend():
    server = Backend()
    yield server
    server.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def login(tmp_path, backend, clock):
    settings = WebLoginSettings(host=HOST, user="vmgen", desktop=True, preview_ports=(3000,), max_failures=3)
    config = LoginConfig(settings, make_verifier(PASSWORD), desktop_password="pw+8/chr")
    login = LoginService(config, clock, ports={"desktop": backend.port, "preview": backend.port})
    server = serve(login, tmp_path / "login.sock")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield login, Client(str(tmp_path / "login.sock"))
    server.shutdown()
    server.server_close()


@pytest.fixture
def service(login):
    return login[1]


def test_without_a_session_a_page_load_goes_to_sign_in_and_anything_else_is_refused(service):
    page = service.check(HOST, "/", NAVIGATE)
    assert page.status == 302 and page.getheader("Location") == "/.vmgen/login?path=%2F"
    code = service.check(CODE, "/projects?x=1", NAVIGATE)
    assert code.status == 302
    assert code.getheader("Location") == f"https://{HOST}/.vmgen/open?to=code&path=%2Fprojects%3Fx%3D1"
    assert (
        service.check(CODE, "/api/projects", {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}).status == 401
    )
    assert service.check("evil.example", "/", NAVIGATE).status == 403


def test_the_sign_in_form_is_served_on_the_workspace_hostname_only(service):
    form = service.request("GET", HOST, "/.vmgen/login?to=code&path=/x")
    assert form.status == 200 and b"name=password type=password" in form.body
    assert b'name=to value="code"' in form.body and b'name=path value="/x"' in form.body
    assert "frame-ancestors 'none'" in form.getheader("Content-Security-Policy")
    assert service.request("GET", CODE, "/.vmgen/login").getheader("Location") == f"https://{HOST}/.vmgen/login"


def test_signing_in_sets_a_host_only_strict_cookie(service):
    response = service.login(path="/somewhere")
    assert response.status == 303 and response.getheader("Location") == "/somewhere"
    attributes = [part.strip() for part in response.getheader("Set-Cookie").split(";")]
    assert attributes[0].startswith("__Host-vmgen=") and len(attributes[0]) > 40
    assert {"Path=/", "Secure", "HttpOnly", "SameSite=Strict"} <= set(attributes)
    assert not any(a.lower().startswith("domain") for a in attributes)
    assert 0 < int(next(a for a in attributes if a.startswith("Max-Age=")).split("=")[1]) <= 12 * 3600
    assert service.check(HOST, "/api/state", {"Cookie": cookie_of(response)}).status == 200


def test_the_backend_gets_the_other_cookies_but_never_the_session(service):
    cookie = cookie_of(service.login())
    checked = service.check(HOST, "/", {"Cookie": f"theme=dark; {cookie}; lang=en"})
    assert checked.status == 200 and checked.getheader("X-Vmgen-Cookie") == "theme=dark; lang=en"


def test_wrong_passwords_are_refused_then_the_address_is_refused_unchecked(service):
    for _ in range(3):
        response = service.login("wrong")
        assert response.status == 401 and response.getheader("Set-Cookie") is None
        assert b"Wrong user or password." in response.body
    assert service.login().status == 429  # even the right password, from that address
    assert service.login(client="198.51.100.8").status == 303


def test_a_login_posted_from_another_origin_is_refused(service):
    assert service.login(origin=f"https://{PREVIEW}").status == 403


def test_a_ticket_signs_the_browser_in_on_the_code_ui_without_a_credential_of_its_own(service):
    response = service.login(to="code", path="/session/abc")
    location = urlsplit(response.getheader("Location"))
    assert (location.scheme, location.netloc, location.path) == ("https", CODE, "/.vmgen/session")
    ticket = parse_qs(location.query)["ticket"][0]
    assert service.request("GET", PREVIEW, f"/.vmgen/session?ticket={ticket}").status == 400  # spent, wrong host
    ticket = parse_qs(
        urlsplit(
            service.request(
                "GET", HOST, "/.vmgen/open?to=code&path=/session/abc", {"Cookie": cookie_of(response)}
            ).getheader("Location")
        ).query
    )["ticket"][0]
    arrived = service.request("GET", CODE, f"/.vmgen/session?ticket={ticket}")
    assert arrived.status == 200
    code_cookie = cookie_of(arrived)
    assert service.check(CODE, "/api/projects", {"Cookie": code_cookie}).status == 200
    assert service.check(HOST, "/", {"Cookie": code_cookie}).status == 401  # a code cookie opens nothing else
    # The page opens CloudCLI's frontend with a placeholder: unsigned, it names no account and
    # no key, so it is nothing a server could accept (CloudCLI in platform mode asks for none).
    html = arrived.body.decode()
    token = html.split('localStorage.setItem("auth-token", "')[1].split('"')[0]
    header, claims, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "none"}
    assert "userId" not in json.loads(base64.urlsafe_b64decode(claims + "==")) and signature == "none"
    assert 'location.replace("/session/abc")' in html
    nonce = arrived.getheader("Content-Security-Policy").split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in html


def test_the_desktop_opens_with_its_vnc_password_in_the_fragment(service):
    response = service.login(to="desktop")
    ticket = parse_qs(urlsplit(response.getheader("Location")).query)["ticket"][0]
    arrived = service.request("GET", DESKTOP, f"/.vmgen/session?ticket={ticket}")
    assert arrived.status == 303
    assert arrived.getheader("Location") == f"{DESKTOP_START}#password=pw%2B8%2Fchr"
    again = service.check(DESKTOP, "/", {"Cookie": cookie_of(arrived), **NAVIGATE})
    assert again.status == 302 and again.getheader("Location").endswith("#password=pw%2B8%2Fchr")
    assert service.check(DESKTOP, "/vnc.html", {"Cookie": cookie_of(arrived), **NAVIGATE}).status == 200


def signed_in_on(service: Client, label: str) -> tuple[str, str]:
    """(the workspace hostname's cookie, the cookie of `<label>.<host>`)."""
    response = service.login(to=label)
    ticket = parse_qs(urlsplit(response.getheader("Location")).query)["ticket"][0]
    host = urlsplit(response.getheader("Location")).hostname
    return cookie_of(response), cookie_of(service.request("GET", host, f"/.vmgen/session?ticket={ticket}"))


def open_stream(
    path: str, host: str, cookie: str, origin: str | None = None, websocket: bool = True, target: str = "/events"
) -> socket.socket:
    """As Caddy hands a websocket (or an event stream) over: the request whole, on its own connection."""
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(10)
    conn.connect(path)
    lines = [
        "GET /websockify HTTP/1.1" if websocket else f"GET {target} HTTP/1.1",
        f"Host: {host}",
        f"Cookie: theme=dark; {cookie}",
    ]
    if websocket:
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ]
    else:
        lines += ["Accept: text/event-stream"]
    if origin:
        lines.append(f"Origin: {origin}")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return conn


def head_of(conn: socket.socket) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


def closed_within(conn: socket.socket, seconds: float) -> bool:
    """Whether the connection ends (EOF or reset) within `seconds`, reading whatever still comes."""
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_the_desktop_websocket_only_from_the_desktop_itself(login, backend):
    service = login[1]
    _, cookie = signed_in_on(service, "desktop")
    path = service.path
    for origin in (f"https://{PREVIEW}", f"https://{HOST}", "null", None):
        with open_stream(path, DESKTOP, cookie, origin) as conn:
            assert head_of(conn).startswith("HTTP/1.1 403"), origin
    with open_stream(path, DESKTOP, "__Host-vmgen=guessed", f"https://{DESKTOP}") as conn:
        assert head_of(conn).startswith("HTTP/1.1 401")
    assert len(backend.heads) == 0  # nothing refused reached the backend
    with open_stream(path, DESKTOP, cookie, f"https://{DESKTOP}") as conn:
        assert head_of(conn).startswith("HTTP/1.1 101")
        conn.sendall(b"frames both ways")
        assert conn.recv(100) == b"frames both ways"
    # The backend got the upgrade with the other cookies, never the session's.
    (head,) = backend.heads
    assert "Cookie: theme=dark\r\n" in head and "__Host-vmgen" not in head and "X-Vmgen" not in head


def test_signing_out_ends_the_login_on_every_hostname_and_its_live_connections(login, backend):
    service = login[1]
    main, desktop = signed_in_on(service, "desktop")
    _, _code = signed_in_on(service, "code")
    ws = open_stream(service.path, DESKTOP, desktop, f"https://{DESKTOP}")
    assert head_of(ws).startswith("HTTP/1.1 101")
    refused = service.request("POST", HOST, "/.vmgen/logout", {"Cookie": main, "Origin": f"https://{PREVIEW}"})
    assert refused.status == 403 and service.check(HOST, "/", {"Cookie": main}).status == 200
    ws.sendall(b"still open")
    assert ws.recv(100) == b"still open"
    out = service.request("POST", HOST, "/.vmgen/logout", {"Cookie": main, "Origin": f"https://{HOST}"})
    assert out.status == 303 and "Max-Age=0" in out.getheader("Set-Cookie")
    assert service.check(HOST, "/", {"Cookie": main}).status == 401
    # The desktop's websocket, opened before: closed now, not just refused on the next request.
    assert closed_within(ws, 5)
    ws.close()
    # Only that login's: another browser's session (and its websocket) go on.
    assert service.check(DESKTOP, "/", {"Cookie": desktop}).status == 401


def test_an_expiring_login_closes_its_live_connections(login, backend, clock):
    service, client = login
    _, preview = signed_in_on(client, "p3000")
    events = open_stream(client.path, PREVIEW, preview, websocket=False)
    head = head_of(events)
    assert head.startswith("HTTP/1.1 200") and "Connection: close" in head and "keep-alive" not in head.lower()
    assert b"data: tick" in events.recv(100)
    clock.now += 12 * 3600 + 1  # the session's lifetime passes; the service sweeps every second
    assert closed_within(events, 5)
    events.close()
    assert service.streams.count() == 0


def test_sign_out_walks_through_vmgens_hostnames_clearing_each(service):
    main, _ = signed_in_on(service, "code")
    out = service.request("POST", HOST, "/.vmgen/logout", {"Cookie": main, "Origin": f"https://{HOST}"})
    assert out.getheader("Clear-Site-Data") == '"storage", "executionContexts"'  # not "cache": slow in Chromium
    step = urlsplit(out.getheader("Location"))
    assert (step.netloc, step.path) == (CODE, "/.vmgen/signed-out")
    walk = parse_qs(step.query)["walk"][0]
    at_code = service.request("GET", CODE, f"/.vmgen/signed-out?walk={walk}")
    assert at_code.getheader("Clear-Site-Data") and urlsplit(at_code.getheader("Location")).netloc == DESKTOP
    at_desktop = service.request("GET", DESKTOP, f"/.vmgen/signed-out?walk={walk}")
    assert at_desktop.getheader("Clear-Site-Data")
    assert at_desktop.getheader("Location") == f"https://{HOST}/.vmgen/login"
    # The walk is single-use and its own: another site cannot send a browser through it.
    for host in (CODE, DESKTOP, PREVIEW):
        again = service.request("GET", host, f"/.vmgen/signed-out?walk={walk}")
        assert again.status == 303 and again.getheader("Clear-Site-Data") is None, host
    assert service.request("GET", CODE, "/.vmgen/signed-out?walk=guess").getheader("Clear-Site-Data") is None


def test_no_service_worker_on_vmgens_own_hostnames(service):
    main, code = signed_in_on(service, "code")
    worker = {
        "Service-Worker": "script",
        "Sec-Fetch-Dest": "serviceworker",
        "Sec-Fetch-Mode": "same-origin",
        "Sec-Fetch-Site": "same-origin",
    }
    assert service.check(HOST, "/sw.js", {"Cookie": main, **worker}).status == 403
    assert service.check(CODE, "/sw.js", {"Cookie": code, **worker}).status == 403
    assert service.request("GET", HOST, "/.vmgen/login", worker).status == 403
    assert service.check(CODE, "/sw.js", {"Cookie": code}).status == 200  # the same script, not as a worker
    # A preview is the agent's app: its workers are its own (and its site's, with a preview domain).
    _, preview = signed_in_on(service, "p3000")
    assert service.check(PREVIEW, "/sw.js", {"Cookie": preview, **worker}).status == 200


def test_a_cookie_bomb_from_a_preview_locks_no_hostname(service):
    """20 cookies of 4000 bytes for the parent domain, as a preview can set them: every hostname
    still answers, the backends get a Cookie header within the budget, and a page load tells the
    browser to expire them."""
    bomb = "; ".join(f"bomb{i}={'x' * 4000}" for i in range(20))
    main, code = signed_in_on(service, "code")
    checked = service.check(CODE, "/api/projects", {"Cookie": f"{bomb}; {code}"})
    assert checked.status == 200 and len(checked.getheader("X-Vmgen-Cookie")) <= 8 << 10
    page_load = service.check(HOST, "/", {"Cookie": f"{bomb}; {main}", **NAVIGATE})
    assert page_load.status == 303 and page_load.getheader("Location") == "/"
    expired = page_load.headers.get_all("Set-Cookie")
    assert "bomb19=; Path=/; Max-Age=0; Secure; Domain=dev.example.com" in expired
    assert any(v.startswith("__Host-vmgen-tidy=1;") for v in expired)
    # Once the browser is told, the page load goes on, with or without its help.
    tidied = service.check(HOST, "/", {"Cookie": f"{bomb}; {main}; __Host-vmgen-tidy=1", **NAVIGATE})
    assert tidied.status == 200
    # The sign-in form too, and as large as Caddy lets a request be: 180 cookies of 4 KB.
    huge = "; ".join(f"c{i}={'y' * 4090}" for i in range(180))
    form = service.request("GET", HOST, "/.vmgen/login", {"Cookie": huge})
    assert form.status == 200 and b"password" in form.body
    assert len(form.headers.get_all("Set-Cookie")) == 64 * 4  # at most 64 names, each on every level


def test_unknown_paths_and_methods(service):
    assert service.request("GET", HOST, "/.vmgen/nothing").status == 404
    assert service.request("DELETE", HOST, "/.vmgen/login").status == 501


def test_hand_overs_are_page_loads_only(service):
    cookie = cookie_of(service.login())
    fetched = {"Cookie": cookie, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    assert service.request("GET", HOST, "/.vmgen/open?to=desktop", fetched).status == 403
    navigated = {**fetched, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    ticket = parse_qs(
        urlsplit(service.request("GET", HOST, "/.vmgen/open?to=desktop", navigated).getheader("Location")).query
    )["ticket"][0]
    fetched_on_desktop = {k: v for k, v in fetched.items() if k != "Cookie"}
    assert service.request("GET", DESKTOP, f"/.vmgen/session?ticket={ticket}", fetched_on_desktop).status == 403
    assert service.request("GET", DESKTOP, f"/.vmgen/session?ticket={ticket}").status == 303


def test_previews_on_a_preview_domain_are_signed_in_across_sites(tmp_path):
    settings = WebLoginSettings(host=HOST, user="vmgen", preview_ports=(3000,), preview_host="app.previews.example.net")
    server = serve(LoginService(LoginConfig(settings, make_verifier(PASSWORD))), tmp_path / "login.sock")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = Client(str(tmp_path / "login.sock"))
    try:
        preview = "p3000.app.previews.example.net"
        page_load = client.check(preview, "/x", NAVIGATE)
        assert page_load.getheader("Location") == f"https://{HOST}/.vmgen/open?to=p3000&path=%2Fx"
        response = client.login(to="p3000", path="/x")
        location = urlsplit(response.getheader("Location"))
        assert location.netloc == preview
        arrived = client.request("GET", preview, f"/.vmgen/session?{location.query}")
        # Lax: a page load that comes from the workspace's page (another site now) carries it.
        assert "SameSite=Lax" in arrived.getheader("Set-Cookie", "")
        assert "SameSite=Strict" in response.getheader("Set-Cookie")  # the workspace's own stays Strict
        assert client.check(preview, "/x", {"Cookie": cookie_of(arrived)}).status == 200
        fetched = {
            "Cookie": cookie_of(response),
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "cors",
            "Sec-Fetch-Dest": "empty",
        }
        assert client.check(HOST, "/api/state", fetched).status == 403  # a preview's fetch of the page
    finally:
        server.shutdown()
        server.server_close()


def test_the_pages_event_stream_is_relayed_to_its_socket_and_ends_with_the_login(tmp_path, clock):
    """The changes view's events: the page is on a unix socket (no loopback port), and its stream
    goes through the login's relay like any other, closed at Sign out."""
    from vmgen.contract.names import VmPaths
    from vmgen.vmside.web.server import STREAM_PATH, WebSettings, serve as serve_page

    vm = VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path)
    changes = {"branch": "main", "files": [{"path": "README.md", "state": "modified"}]}
    page = serve_page(WebSettings(vm=vm, ops=lambda request: changes), vm.page_socket)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    settings = WebLoginSettings(host=HOST, user="vmgen")
    login = LoginService(LoginConfig(settings, make_verifier(PASSWORD)), clock, page_socket=vm.page_socket)
    server = serve(login, tmp_path / "login.sock")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = Client(str(tmp_path / "login.sock"))
    try:
        main = cookie_of(client.login())
        with open_stream(client.path, HOST, "__Host-vmgen=guessed", websocket=False, target=STREAM_PATH) as refused:
            assert head_of(refused).startswith("HTTP/1.1 401")
        events = open_stream(client.path, HOST, main, websocket=False, target=STREAM_PATH)
        head = head_of(events)
        assert head.split("\r\n")[0].endswith(" 200 OK") and "Content-Type: text/event-stream" in head
        received = head.encode("latin-1")  # the head's reads may have carried the first event
        while b"README.md" not in received:
            received += events.recv(65536)
        out = client.request("POST", HOST, "/.vmgen/logout", {"Cookie": main, "Origin": f"https://{HOST}"})
        assert out.status == 303
        assert closed_within(events, 5)
        events.close()
    finally:
        server.shutdown()
        server.server_close()
        page.shutdown()
        page.server_close()
