"""The login service over its real unix socket, asked the way Caddy asks it: forward_auth's
check, the sign-in form, tickets to the other hostnames, the code UI's token, the desktop's
password, signing out, and the refusals (wrong password, too many, another origin)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import socket
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from vmgen.contract.weblogin import WebLoginSettings, make_verifier
from vmgen.vmside.weblogin.server import LoginConfig, LoginService, serve

HOST = "app.dev.example.com"
CODE, DESKTOP, PREVIEW = f"code.{HOST}", f"desktop.{HOST}", f"p3000.{HOST}"
PASSWORD = "correct-horse-battery-staple-0123"
SECRET = "f" * 64
NAVIGATE = {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.unix_path)


class Client:
    def __init__(self, path: str) -> None:
        self.path = path

    def request(self, method: str, host: str, target: str, headers: dict | None = None, body: str | None = None,
                ) -> http.client.HTTPResponse:
        connection = UnixConnection(self.path)
        connection.request(method, target, body=body, headers={"Host": host, **(headers or {})})
        response = connection.getresponse()
        response.body = response.read()
        connection.close()
        return response

    def check(self, host: str, uri: str = "/", headers: dict | None = None, method: str = "GET"):
        # As forward_auth asks: a GET to the check, the original method and URI in headers.
        return self.request("GET", host, "/.vmgen/check",
                            {"X-Forwarded-Method": method, "X-Forwarded-Uri": uri, **(headers or {})})

    def login(self, password: str = PASSWORD, to: str = "", path: str = "/", client: str = "198.51.100.7",
              origin: str | None = f"https://{HOST}"):
        headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Vmgen-Client": client}
        if origin:
            headers["Origin"] = origin
        form = urlencode({"user": "vmgen", "password": password, "to": to, "path": path})
        return self.request("POST", HOST, "/.vmgen/login", headers, form)


def cookie_of(response) -> str:
    return response.getheader("Set-Cookie").split(";")[0]


@pytest.fixture
def service(tmp_path):
    settings = WebLoginSettings(host=HOST, user="vmgen", desktop=True, preview_ports=(3000,), max_failures=3)
    config = LoginConfig(settings, make_verifier(PASSWORD), code_ui_secret=SECRET, desktop_password="pw+8/chr")
    server = serve(LoginService(config), tmp_path / "login.sock")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Client(str(tmp_path / "login.sock"))
    server.shutdown()
    server.server_close()


def test_without_a_session_a_page_load_goes_to_sign_in_and_anything_else_is_refused(service):
    page = service.check(HOST, "/", NAVIGATE)
    assert page.status == 302 and page.getheader("Location") == "/.vmgen/login?path=%2F"
    code = service.check(CODE, "/projects?x=1", NAVIGATE)
    assert code.status == 302
    assert code.getheader("Location") == f"https://{HOST}/.vmgen/open?to=code&path=%2Fprojects%3Fx%3D1"
    assert service.check(CODE, "/api/projects", {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}).status == 401
    assert service.check("evil.example", "/", NAVIGATE).status == 403


def test_the_sign_in_form_is_served_on_the_workspace_hostname_only(service):
    form = service.request("GET", HOST, "/.vmgen/login?to=code&path=/x")
    assert form.status == 200 and b'name=password type=password' in form.body
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


def test_a_ticket_signs_the_browser_in_on_the_code_ui_with_its_token(service):
    response = service.login(to="code", path="/session/abc")
    location = urlsplit(response.getheader("Location"))
    assert (location.scheme, location.netloc, location.path) == ("https", CODE, "/.vmgen/session")
    ticket = parse_qs(location.query)["ticket"][0]
    assert service.request("GET", PREVIEW, f"/.vmgen/session?ticket={ticket}").status == 400  # spent, wrong host
    ticket = parse_qs(urlsplit(service.request("GET", HOST, "/.vmgen/open?to=code&path=/session/abc",
                                               {"Cookie": cookie_of(response)}).getheader("Location")).query)["ticket"][0]
    arrived = service.request("GET", CODE, f"/.vmgen/session?ticket={ticket}")
    assert arrived.status == 200
    code_cookie = cookie_of(arrived)
    assert service.check(CODE, "/api/projects", {"Cookie": code_cookie}).status == 200
    assert service.check(HOST, "/", {"Cookie": code_cookie}).status == 401  # a code cookie opens nothing else
    # The page stores CloudCLI's token (HS256 with CloudCLI's key) and goes on to the path.
    html = arrived.body.decode()
    token = html.split('localStorage.setItem("auth-token", "')[1].split('"')[0]
    signed, _, signature = token.rpartition(".")
    expected = base64.urlsafe_b64encode(hmac.new(SECRET.encode(), signed.encode(), hashlib.sha256).digest())
    assert signature == expected.rstrip(b"=").decode()
    claims = json.loads(base64.urlsafe_b64decode(signed.split(".")[1] + "=="))
    assert claims["userId"] == 1 and claims["username"] == "vmgen" and claims["exp"] > claims["iat"]
    assert 'location.replace("/session/abc")' in html
    nonce = arrived.getheader("Content-Security-Policy").split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in html


def test_the_desktop_opens_with_its_vnc_password_in_the_fragment(service):
    response = service.login(to="desktop")
    ticket = parse_qs(urlsplit(response.getheader("Location")).query)["ticket"][0]
    arrived = service.request("GET", DESKTOP, f"/.vmgen/session?ticket={ticket}")
    assert arrived.status == 303
    assert arrived.getheader("Location") == "/vnc.html?autoconnect=1&resize=remote#password=pw%2B8%2Fchr"
    again = service.check(DESKTOP, "/", {"Cookie": cookie_of(arrived), **NAVIGATE})
    assert again.status == 302 and again.getheader("Location").endswith("#password=pw%2B8%2Fchr")
    assert service.check(DESKTOP, "/vnc.html", {"Cookie": cookie_of(arrived), **NAVIGATE}).status == 200


def test_the_desktop_websocket_only_from_the_desktop_itself(service):
    response = service.login(to="desktop")
    ticket = parse_qs(urlsplit(response.getheader("Location")).query)["ticket"][0]
    cookie = cookie_of(service.request("GET", DESKTOP, f"/.vmgen/session?ticket={ticket}"))
    upgrade = {"Cookie": cookie, "X-Vmgen-Upgrade": "websocket"}
    assert service.check(DESKTOP, "/websockify", {**upgrade, "Origin": f"https://{DESKTOP}"}).status == 200
    assert service.check(DESKTOP, "/websockify", {**upgrade, "Origin": f"https://{PREVIEW}"}).status == 403
    assert service.check(DESKTOP, "/websockify", upgrade).status == 403


def test_signing_out_ends_the_login_on_every_hostname(service):
    response = service.login(to="code")
    main = cookie_of(response)
    ticket = parse_qs(urlsplit(response.getheader("Location")).query)["ticket"][0]
    code = cookie_of(service.request("GET", CODE, f"/.vmgen/session?ticket={ticket}"))
    refused = service.request("POST", HOST, "/.vmgen/logout", {"Cookie": main, "Origin": f"https://{PREVIEW}"})
    assert refused.status == 403 and service.check(HOST, "/", {"Cookie": main}).status == 200
    out = service.request("POST", HOST, "/.vmgen/logout", {"Cookie": main, "Origin": f"https://{HOST}"})
    assert out.status == 303 and "Max-Age=0" in out.getheader("Set-Cookie")
    assert service.check(HOST, "/", {"Cookie": main}).status == 401
    assert service.check(CODE, "/", {"Cookie": code}).status == 401


def test_unknown_paths_and_methods(service):
    assert service.request("GET", HOST, "/.vmgen/nothing").status == 404
    assert service.request("DELETE", HOST, "/.vmgen/login").status == 501


def test_hand_overs_are_page_loads_only(service):
    cookie = cookie_of(service.login())
    fetched = {"Cookie": cookie, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    assert service.request("GET", HOST, "/.vmgen/open?to=desktop", fetched).status == 403
    navigated = {**fetched, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    ticket = parse_qs(urlsplit(service.request("GET", HOST, "/.vmgen/open?to=desktop", navigated)
                               .getheader("Location")).query)["ticket"][0]
    fetched_on_desktop = {k: v for k, v in fetched.items() if k != "Cookie"}
    assert service.request("GET", DESKTOP, f"/.vmgen/session?ticket={ticket}", fetched_on_desktop).status == 403
    assert service.request("GET", DESKTOP, f"/.vmgen/session?ticket={ticket}").status == 303
