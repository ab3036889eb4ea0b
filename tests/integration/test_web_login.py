"""The workspace's web login through the real Caddy (Debian's 2.6, the Caddyfile vmgen renders) and
the real login service, in a real headless chromium, on this machine: backends that record every
request they get stand in for the page, the code UI and websockify, and an attacker's app is the
preview on p3000.

What the user would notice: one sign-in for every hostname; no backend ever receives the session
cookie (or any credential); a page on the preview hostname can neither read, set, replay nor ride
the session: no cookie tossing, no cross-origin fetch or form post, no framing, no websocket to
the desktop. The VM-side parts (CloudCLI, x11vnc, fail2ban) are in tests/e2e/test_web_*.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import raw_https
from tests.polling import wait_until
from tests.ports import free_port
from vmgen.contract.enums import TlsMode
from vmgen.contract.names import DESKTOP_START, VmPaths
from vmgen.contract.phone_actions import PHONE_PATH
from vmgen.contract.weblogin import WebLoginSettings, make_verifier
from vmgen.laptop.caddy import WebAccess, render_caddyfile, upstream
from vmgen.vmside.weblogin.server import LoginConfig, LoginService, serve

HOST = "ws.dev.example.com"
CODE, DESKTOP, PREVIEW = f"code.{HOST}", f"desktop.{HOST}", f"p3000.{HOST}"
PASSWORD = "integration-password-0123456789"
VNC_PASSWORD = "vnc+pw/1"
WS_MAGIC = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# The attacker's app on the preview hostname: everything a page there can try with the user's
# signed-in browser, each outcome written to window.results.
ATTACK_PAGE = """<!doctype html><html><body><script>
const HOST = %(host)s, PORT = %(port)s;
const url = (name, path) => `https://${name}:${PORT}${path}`;
window.results = {};
const done = (key, value) => { window.results[key] = value; };
done("cookies_seen", document.cookie);
document.cookie = "__Host-vmgen=tossed-by-script; Path=/; Secure; Domain=" + HOST;
document.cookie = "__Host-vmgen=tossed-here; Path=/; Secure";
document.cookie = "vmgen=tossed-plain; Path=/; Secure; Domain=" + HOST;
done("cookies_after", document.cookie);
fetch(url(HOST, "/api/state"), {credentials: "include"})
  .then(r => r.text()).then(t => done("fetch_page", t), e => done("fetch_page", "error: " + e));
fetch(url("code." + HOST, "/api/projects"), {credentials: "include", mode: "no-cors"})
  .then(() => done("fetch_code", "sent"), e => done("fetch_code", "error: " + e));
const ws = new WebSocket(url("desktop." + HOST, "/websockify").replace("https", "wss"));
ws.onopen = () => done("websocket", "open");
ws.onerror = () => done("websocket", "error");
const frame = document.createElement("iframe");
frame.src = url("code." + HOST, "/framed");
document.body.appendChild(frame);
const form = document.createElement("form");
form.method = "post"; form.action = url(HOST, "/api/keepalive"); form.target = "sink";
form.innerHTML = '<input name="hours" value="4">';
const sink = document.createElement("iframe"); sink.name = "sink"; document.body.appendChild(sink);
document.body.appendChild(form); form.submit();
setTimeout(() => done("finished", true), 1500);
</script></body></html>"""


# A service worker as an agent-served backend would offer it: once registered on a hostname it
# answers every page load there itself, a sign-in form included, even after Sign out.
WORKER = """self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => e.respondWith(new Response(
  "<form id=fake-sign-in><input id=password type=password></form>", {headers: {"Content-Type": "text/html"}})));
"""
REGISTER_WORKER = """<!doctype html><p id=backend>worker</p><script>
window.result = null;
navigator.serviceWorker.register("/sw.js", {scope: "/"})
  .then(() => window.result = "registered", (e) => window.result = "refused: " + e);
</script>"""
# A preview's cookie bomb: 20 cookies of 4000 bytes for the workspace's hostname and all below it.
COOKIE_BOMB = """<!doctype html><script>
for (let i = 0; i < 20; i++)
  document.cookie = `bomb${i}=${"x".repeat(4000)}; Path=/; Secure; Domain=${%(host)s}`;
window.planted = document.cookie.split("; ").filter(c => c.startsWith("bomb")).length;
</script>"""


@dataclass
class Backend:
    """A local server standing in for a workspace backend; it records every request."""

    name: str
    requests: list[dict] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def start(self, https_port: int) -> Backend:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                self._record()
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    accept = base64.b64encode(
                        hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_MAGIC).encode()).digest()
                    ).decode()
                    self.send_response(101)
                    self.send_header("Upgrade", "websocket")
                    self.send_header("Connection", "Upgrade")
                    self.send_header("Sec-WebSocket-Accept", accept)
                    self.end_headers()
                    self.close_connection = True
                    # Open until the other side goes: the frames are not read, only kept flowing.
                    while self.connection.recv(65536):
                        pass
                    return
                if backend.name == "preview" and self.path == "/attack":
                    body = ATTACK_PAGE % {"host": json.dumps(HOST), "port": https_port}
                    self._reply(
                        body,
                        [
                            ("Set-Cookie", f"__Host-vmgen=tossed-by-header; Path=/; Secure; Domain={HOST}"),
                            ("Set-Cookie", f"vmgen-theme=dark; Path=/; Secure; Domain={HOST}"),
                        ],
                    )
                    return
                if self.path == "/sw.js":  # whoever serves this hostname offers a worker
                    self._reply(WORKER, content_type="text/javascript")
                    return
                if self.path == "/register-worker":
                    self._reply(REGISTER_WORKER)
                    return
                if backend.name == "preview" and self.path == "/bomb":
                    self._reply(COOKIE_BOMB % {"host": json.dumps(HOST)})
                    return
                self._reply(f"<!doctype html><title>{backend.name}</title><p id=backend>{backend.name}</p>")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._record()
                self._reply("posted")

            def _record(self) -> None:
                backend.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )

            def _reply(
                self, body: str, headers: Sequence[tuple[str, str]] = (), content_type: str = "text/html; charset=utf-8"
            ) -> None:
                data = body.encode()
                self.send_response(200)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def saw(self, text: str) -> bool:
        return text in json.dumps(self.requests)


@dataclass
class Web:
    port: int
    backends: dict[str, Backend]
    log: Path
    spki: str  # the hash of Caddy's intermediate CA key: chromium treats its certificates as valid

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[Web]:
    assert shutil.which("caddy"), "scripts/setup-system.sh installs caddy"
    root = tmp_path_factory.mktemp("web")
    vm = VmPaths(run=root / "run", caddy_logs=root / "logs", etc=root / "etc", log=root / "vmgen-logs")
    for folder in (vm.run, vm.caddy_logs, vm.log):
        folder.mkdir()
    http_port, https_port = free_port(), free_port()
    settings = WebLoginSettings(host=HOST, user="vmgen", desktop=True, preview_ports=(3000,))
    backends = {role: Backend(role).start(https_port) for role in ("page", "code", "desktop", "preview")}
    login = LoginService(
        LoginConfig(settings, make_verifier(PASSWORD), desktop_password=VNC_PASSWORD),
        ports={role: backend.port for role, backend in backends.items()},
    )
    service = serve(login, vm.web_login_socket)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    caddyfile = render_caddyfile(
        WebAccess(settings, tls=TlsMode.INTERNAL, http_port=http_port, https_port=https_port), vm
    )
    for site in settings.sites():  # the contract's ports are the VM's; here, the stand-ins'
        caddyfile = caddyfile.replace(
            f"import vmgen_login {upstream(site, vm)}\n", f"import vmgen_login 127.0.0.1:{backends[site.role].port}\n"
        )
        caddyfile = caddyfile.replace(  # the page's one path without the login (an ntfy button)
            f"reverse_proxy {upstream(site, vm)} {{", f"reverse_proxy 127.0.0.1:{backends[site.role].port} {{"
        )
    (root / "Caddyfile").write_text(caddyfile)
    errors = (root / "caddy.err").open("w")
    caddy = subprocess.Popen(
        ["caddy", "run", "--adapter", "caddyfile", "--config", str(root / "Caddyfile")],
        env={
            "HOME": str(root),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "PATH": "/usr/bin:/bin",
        },
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )
    web = Web(https_port, backends, vm.web_access_log, "")
    try:
        assert wait_until(lambda: status(web, HOST, "/healthz"), lambda s: s == 200, timeout=30) == 200, (
            root / "caddy.err"
        ).read_text()[-3000:]
        web.spki = raw_https.spki_hash((root / "data/caddy/pki/authorities/local/intermediate.crt").read_bytes())
        yield web
    finally:
        caddy.terminate()
        caddy.wait(10)
        errors.close()
        service.shutdown()
        service.server_close()
        for backend in backends.values():
            assert backend.server is not None  # each was started before the login service
            backend.server.shutdown()


def request(
    web: Web,
    host: str,
    path: str,
    method: str = "GET",
    headers: dict | None = None,
    body: bytes | None = None,
    sni: str = "",
) -> tuple[int, dict[str, str], bytes]:
    """One request through Caddy, TLS unverified (Caddy's local CA), redirects not followed."""
    reply = raw_https.request(
        "127.0.0.1", web.port, f"{host}:{web.port}", path, method, headers, body, sni or host, timeout=10
    )
    return reply.status, reply.headers, reply.body


def status(web: Web, host: str, path: str) -> int:
    try:
        return request(web, host, path)[0]
    except OSError:
        return 0


def sign_in(web: Web, password: str = PASSWORD, client_to: str = "") -> tuple[int, dict[str, str]]:
    form = urllib.parse.urlencode({"user": "vmgen", "password": password, "to": client_to, "path": "/"}).encode()
    code, headers, _ = request(
        web,
        HOST,
        "/.vmgen/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{HOST}:{web.port}"},
        form,
    )
    return code, headers


def browser(web: Web):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # Certificates of Caddy's local CA count as valid (not merely ignored): a browser registers
    # service workers only on an origin whose certificate it trusts.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--ignore-certificate-errors-spki-list={web.spki}",
        f"--host-resolver-rules=MAP *.{HOST} 127.0.0.1, MAP {HOST} 127.0.0.1",
        "--window-size=1000,800",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def signed_in_browser(web: Web):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser(web)
    driver.get(web.url(CODE, "/"))  # not signed in: the form, on the workspace's hostname
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "password"))
    assert driver.current_url.startswith(web.url(HOST, "/.vmgen/login"))
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin").click()
    WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "backend"))
    return driver


# --- signing in -------------------------------------------------------------------------------


def test_one_sign_in_opens_every_hostname_in_the_browser(web):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = signed_in_browser(web)
    try:
        assert driver.current_url == web.url(CODE, "/") and driver.find_element(By.ID, "backend").text == "code"
        # The code UI's frontend finds a token where it looks for one (a placeholder: CloudCLI checks none).
        assert driver.execute_script("return localStorage.getItem('auth-token')").count(".") == 2
        for host, name in ((HOST, "page"), (PREVIEW, "preview")):
            driver.get(web.url(host, "/"))
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "backend"))
            assert driver.find_element(By.ID, "backend").text == name
        # The desktop's address opens noVNC's page with its password, in the fragment only.
        driver.get(web.url(DESKTOP, "/"))
        WebDriverWait(driver, 20).until(lambda d: "vnc.html" in d.current_url)
        assert driver.current_url.endswith(f"{DESKTOP_START}#password=vnc%2Bpw%2F1")
        assert not web.backends["desktop"].saw("vnc%2Bpw") and not web.backends["desktop"].saw("vnc+pw")
        # Signing out on the page ends the login on every hostname.
        driver.get(web.url(HOST, "/"))
        driver.execute_script("""const f = document.createElement('form'); f.method = 'post';
            f.action = '/.vmgen/logout'; document.body.appendChild(f); f.submit();""")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "password"))
        requests_before = len(web.backends["code"].requests)
        driver.get(web.url(CODE, "/"))
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "password"))
        assert len(web.backends["code"].requests) == requests_before
    finally:
        driver.quit()


def test_every_hostname_refuses_without_the_login(web):
    for host in (HOST, CODE, DESKTOP, PREVIEW):
        code, headers, _ = request(web, host, "/", headers={"Accept": "text/html"})
        assert code == 302 and "/.vmgen/" in headers["location"], host
        assert request(web, host, "/api/anything")[0] == 401, host
        # Basic auth, the old login, opens nothing either.
        basic = base64.b64encode(f"vmgen:{PASSWORD}".encode()).decode()
        assert request(web, host, "/api/anything", headers={"Authorization": f"Basic {basic}"})[0] == 401
    assert all(
        b.requests == []
        or all("cookie" not in r["headers"] or "__host-vmgen" not in r["headers"]["cookie"].lower() for r in b.requests)
        for b in web.backends.values()
    )


def test_host_and_path_tricks_reach_no_backend(web):
    before = {name: len(b.requests) for name, b in web.backends.items()}
    tricks = [
        (HOST, "/.vmgen/check"),
        (HOST, "/healthz/../api/state"),
        (HOST, "/.vmgen/../api/state"),
        (HOST, "/%2e%2e/api/state"),
        (HOST, "//api/state"),
        (HOST, "/.VMGEN/check"),
        ("evil.example", "/api/state"),
        (f"{CODE}.evil.example", "/"),
    ]
    for host, path in tricks:
        code, _, body = request(web, host, path, sni=HOST)  # the certificate's name, another Host
        assert code in (200, 302, 400, 401, 403, 404), (host, path, code)
        assert code != 200 or body in (b"", b"ok"), (host, path, body)
    # The desktop's name in TLS, the code UI's in Host: Host decides, and it needs its own login.
    assert request(web, CODE, "/api/x", sni=DESKTOP)[0] == 401
    # A forged forward_auth answer in request headers changes nothing.
    assert (
        request(
            web,
            CODE,
            "/api/projects",
            headers={"X-Vmgen-Cookie": "x", "X-Forwarded-Uri": "/healthz", "X-Forwarded-Method": "GET"},
        )[0]
        == 401
    )
    assert {name: len(b.requests) for name, b in web.backends.items()} == before


def test_only_the_phone_buttons_path_reaches_the_page_without_the_login(web):
    """An ntfy button's POST (contract.phone_actions.PHONE_PATH) reaches the page with no session,
    and without the cookies the phone's browser might hold; no other path, method trick or hostname
    does."""
    page = web.backends["page"]
    before = len(page.requests)
    cookie = {"Cookie": "__Host-vmgen=stolen; theme=dark", "Content-Type": "text/plain"}
    code, _, _ = request(web, HOST, PHONE_PATH, "POST", cookie, b"a.e30." + b"0" * 64)
    assert code == 200
    (reached,) = page.requests[before:]
    assert (reached["method"], reached["path"]) == ("POST", PHONE_PATH) and "cookie" not in reached["headers"]
    for host, path in (
        (HOST, PHONE_PATH + "/x"),
        (HOST, PHONE_PATH + "x"),
        (HOST, PHONE_PATH + "/../state"),
        (HOST, "/api/state"),
        (CODE, PHONE_PATH),
        (PREVIEW, PHONE_PATH),
    ):
        assert request(web, host, path, "POST", cookie, b"x")[0] in (400, 401, 403), (host, path)
    assert len(page.requests) == before + 1


def test_a_wrong_password_is_logged_without_any_credential(web):
    wrong = "wrong-password-4f1c2e"
    code, headers = sign_in(web, wrong)
    assert code == 401 and "set-cookie" not in headers
    code, headers = sign_in(web)
    assert code == 303
    session = headers["set-cookie"].split(";")[0].split("=", 1)[1]
    line = wait_until(
        lambda: web.log.read_text() if web.log.exists() else "", lambda text: '"status":401' in text, timeout=10
    )
    failed = [json.loads(entry) for entry in line.splitlines() if '"status":401' in entry]
    assert failed[-1]["request"]["uri"] == "/.vmgen/login" and failed[-1]["request"]["method"] == "POST"
    assert failed[-1]["request"]["remote_ip"] == "127.0.0.1"
    text = web.log.read_text()
    assert wrong not in text and PASSWORD not in text and session not in text


def preview_cookie(web: Web) -> str:
    _, headers = sign_in(web, client_to="p3000")
    ticket = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["ticket"][0]
    _, arrived, _ = request(web, PREVIEW, f"/.vmgen/session?ticket={ticket}")
    return arrived["set-cookie"].split(";")[0]


def test_the_security_headers_on_vmgens_own_hostnames_and_not_on_previews(web):
    for host in (HOST, CODE, DESKTOP):
        _, headers, _ = request(web, host, "/api/x")
        assert headers["x-frame-options"] == "DENY", host
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["strict-transport-security"].startswith("max-age=31536000")
    code, headers, body = request(web, PREVIEW, "/", headers={"Cookie": preview_cookie(web)})
    assert code == 200 and body.endswith(b"<p id=backend>preview</p>")
    assert not {"x-frame-options", "content-security-policy", "strict-transport-security"} & set(headers)


# --- the attacker's preview ---------------------------------------------------------------------


def session_cookies(driver) -> list[str]:
    """The session cookies chromium holds for the current hostname (HttpOnly ones included)."""
    return [c["value"] for c in driver.get_cookies() if c["name"] == "__Host-vmgen"]


def test_a_preview_app_can_neither_read_set_replay_nor_ride_the_session(web):
    driver = signed_in_browser(web)
    try:
        driver.get(web.url(HOST, "/"))
        (ours,) = session_cookies(driver)
        counts = {name: len(b.requests) for name, b in web.backends.items()}
        driver.get(web.url(PREVIEW, "/attack"))
        results = wait_until(
            lambda: driver.execute_script("return window.results || {}"),
            lambda r: r.get("finished") and "websocket" in r and "fetch_page" in r,
            timeout=20,
        )
        # Read: the preview's own session cookie is HttpOnly, and its backend never got one.
        preview_session = [v for v in session_cookies(driver) if not v.startswith("tossed")]
        assert preview_session and preview_session[0] not in results["cookies_seen"]
        preview = web.backends["preview"]
        assert not preview.saw(preview_session[0]) and not preview.saw("__Host-vmgen=")
        assert not preview.saw(ours) and not preview.saw("authorization")
        # Set: a __Host- cookie with a Domain is refused, so the workspace's hostname still holds
        # exactly its own session, and is still signed in.
        driver.get(web.url(HOST, "/"))
        assert session_cookies(driver) == [ours]
        assert driver.find_element("id", "backend").text == "page"
        # Ride: no fetch, form post, frame or websocket from the preview reached a backend.
        assert results["fetch_page"].startswith("error")  # CORS: nothing to read
        assert results["websocket"] == "error"
        new_page = web.backends["page"].requests[counts["page"] :]
        assert [r for r in new_page if r["method"] == "POST" or r["path"] not in ("/", "/favicon.ico")] == [], new_page
        assert web.backends["code"].requests[counts["code"] :] == []
        assert web.backends["desktop"].requests[counts["desktop"] :] == []
    finally:
        driver.quit()


def test_the_desktop_websocket_opens_from_the_desktop_only(web):
    driver = signed_in_browser(web)
    try:
        driver.get(web.url(DESKTOP, "/vnc.html"))
        opened = driver.execute_async_script(f"""const done = arguments[0];
            const ws = new WebSocket("wss://{DESKTOP}:{web.port}/websockify");
            ws.onopen = () => done("open"); ws.onerror = () => done("error");""")
        assert opened == "open"
        upgrade = [r for r in web.backends["desktop"].requests if r["headers"].get("upgrade") == "websocket"]
        assert upgrade and upgrade[-1]["headers"]["origin"] == f"https://{DESKTOP}:{web.port}"
        assert "__Host-vmgen" not in upgrade[-1]["headers"].get("cookie", "")
    finally:
        driver.quit()


def test_a_replayed_preview_cookie_opens_nothing_else(web):
    # Suppose a preview did capture its own hostname's session cookie (it cannot: see above).
    _, headers = sign_in(web, client_to="p3000")
    ticket = urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["ticket"][0]
    _, arrived, _ = request(web, PREVIEW, f"/.vmgen/session?ticket={ticket}")
    stolen = arrived["set-cookie"].split(";")[0]
    assert request(web, PREVIEW, "/api/x", headers={"Cookie": stolen})[0] == 200
    for host in (HOST, CODE, DESKTOP):
        assert request(web, host, "/api/x", headers={"Cookie": stolen})[0] == 401, host
    assert request(web, PREVIEW, f"/.vmgen/session?ticket={ticket}")[0] == 400  # a ticket works once


# --- what issue 22 found: a worker that outlives Sign out, a cookie bomb, a websocket after Sign out


def test_no_service_worker_on_vmgens_hostnames_and_sign_out_clears_their_storage(web):
    """Whatever serves the page or the code UI, a worker is never registered there: it would answer
    for the hostname, sign-in form included, after Sign out. Sign out clears their storage (the
    code UI's token) too. A preview, the agent's own app, keeps its workers."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = signed_in_browser(web)
    try:
        for host in (HOST, CODE):
            driver.get(web.url(host, "/register-worker"))
            result = wait_until(lambda: driver.execute_script("return window.result"), bool, timeout=20)
            assert result.startswith("refused"), (host, result)
            assert (
                driver.execute_script("return navigator.serviceWorker.getRegistrations().then(r => r.length)") == 0
            ), host
        driver.get(web.url(CODE, "/"))
        assert driver.execute_script("return localStorage.getItem('auth-token')")
        driver.get(web.url(PREVIEW, "/register-worker"))
        assert wait_until(lambda: driver.execute_script("return window.result"), bool, timeout=20) == "registered"
        # Sign out: every one of vmgen's hostnames is walked through, clearing its site data.
        driver.get(web.url(HOST, "/"))
        driver.execute_script("""const f = document.createElement('form'); f.method = 'post';
            f.action = '/.vmgen/logout'; document.body.appendChild(f); f.submit();""")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "password"))
        assert driver.current_url.startswith(web.url(HOST, "/.vmgen/login"))
        driver.get(web.url(CODE, "/.vmgen/nothing"))  # a page of the login's own on the code UI's origin
        assert driver.execute_script("return localStorage.getItem('auth-token')") is None
    finally:
        driver.quit()


def test_a_cookie_bomb_from_a_preview_locks_no_hostname(web):
    """20 cookies of 4000 bytes that a preview planted for the workspace's hostname (and so for all
    of vmgen's): they answered 431 on every hostname until the cookies were cleared by hand. Now the
    hostnames go on working, and the browser is told to drop them."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = signed_in_browser(web)
    try:
        driver.get(web.url(PREVIEW, "/bomb"))
        assert wait_until(lambda: driver.execute_script("return window.planted"), bool, timeout=20) == 20
        for host, name in ((HOST, "page"), (CODE, "code")):
            driver.get(web.url(host, "/"))
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "backend"))
            assert driver.find_element(By.ID, "backend").text == name, host
            fetched = driver.execute_async_script(
                "fetch('/api/x').then(r => arguments[0](r.status), e => arguments[0](String(e)))"
            )
            assert fetched == 200, host
            assert sum(len(r["headers"].get("cookie", "")) for r in web.backends[name].requests[-2:]) < 2 * (8 << 10)
        # What did not fit in the budget of what vmgen's backends get is gone from the browser.
        kept = [c for c in driver.get_cookies() if c["name"].startswith("bomb")]
        assert sum(len(c["name"]) + len(c["value"]) for c in kept) <= 8 << 10 and len(kept) < 3
    finally:
        driver.quit()


def test_sign_out_closes_a_websocket_opened_before(web):
    """A desktop websocket opened before Sign out kept working after it (only new requests were
    refused): it is the login's, and ends with it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = signed_in_browser(web)
    try:
        driver.get(web.url(DESKTOP, "/vnc.html"))
        opened = driver.execute_async_script(f"""const done = arguments[0];
            window.ws = new WebSocket("wss://{DESKTOP}:{web.port}/websockify");
            window.ws.onopen = () => done("open"); window.ws.onerror = () => done("error");
            window.ws.onclose = () => window.closedAt = Date.now();""")
        assert opened == "open"
        time.sleep(1)  # what is asserted: the websocket stays open (no event to wait for)
        assert driver.execute_script("return window.ws.readyState") == 1  # OPEN
        desktop = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(web.url(HOST, "/"))
        signing_out = time.time()
        driver.execute_script("""const f = document.createElement('form'); f.method = 'post';
            f.action = '/.vmgen/logout'; document.body.appendChild(f); f.submit();""")
        WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.ID, "password"))
        driver.switch_to.window(desktop)
        closed_at = wait_until(lambda: driver.execute_script("return window.closedAt || 0"), bool, timeout=10)
        assert 0 <= closed_at / 1000 - signing_out < 5
    finally:
        driver.quit()
