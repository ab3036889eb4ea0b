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
import hashlib
import hmac
import json
import os
import re
import socket
import ssl

import pytest

from tests.conftest import RUN_LABEL
from tests.polling import eventually, wait_until

from .conftest import RUN
from .web_helpers import (
    Launched,
    browser,
    https,
    launch,
    session_cookies,
    sign_in,
    sign_in_browser,
)

NAME = "webatk"
CAPTURED = f"/home/agent/work/{NAME}/captured.jsonl"
# The agent's dev server on :3000, written by the agent: it records every request it gets and
# serves an attack page that tosses cookies and tries to ride the user's session.
EVIL_SERVER = r'''
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
'''
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
def ws(cli, web_cloud, tmp_path_factory) -> Launched:
    _, dns = web_cloud
    workspace = launch(cli, dns, tmp_path_factory.mktemp("repos"), NAME, "--desktop")
    server = EVIL_SERVER % {"log": CAPTURED, "page": ATTACK_PAGE}
    cli.ssh(NAME, f"cat > ~/evil.py <<'EOF'\n{server}\nEOF\n(setsid python3 ~/evil.py >/dev/null 2>&1 &)")
    yield workspace
    cli("destroy", NAME, "--yes", check=False)


@pytest.fixture(scope="module")
def vm(ws, docker_client):
    """Root on the simulated VM (docker exec: no SSH session, nothing the agent could see)."""
    (container,) = [c for c in docker_client.containers.list() if re.fullmatch(rf"hz-\d+-{NAME}", c.name)]

    def root(command: str) -> str:
        result = container.exec_run(["bash", "-c", command])
        return result.output.decode(errors="replace")

    return root


def captured(cli) -> list[dict]:
    text = cli.ssh(NAME, f"cat {CAPTURED} 2>/dev/null || true")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def leases(cli) -> str:
    return cli.ssh(NAME, "cat ~/.vmgen/leases.json 2>/dev/null || echo none").strip()


# --- the login itself ---------------------------------------------------------------------------

@pytest.mark.parametrize(("host_prefix", "path", "headers"), [
    ("", "/api/state", {}),
    ("", "/api/state", {"Authorization": "Bearer x"}),
    ("", "/api/state", {"Cookie": "__Host-vmgen=guess; vmgen=1"}),
    ("", "/.vmgen/check", {"X-Forwarded-Uri": "/healthz"}),
    ("", "/healthz/../api/state", {}),
    ("", "/%2e%2e/api/state", {}),
    ("", "/.vmgen/../api/state", {}),
    ("", "//api/state", {}),
    ("code.", "/api/projects", {"X-Vmgen-Cookie": "x", "X-Forwarded-Method": "GET"}),
    ("desktop.", "/websockify", {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "https://desktop.x"}),
    ("p3000.", "/", {"X-Vmgen-Client": "127.0.0.1"}),
])
def test_nothing_gets_past_the_login(ws, host_prefix, path, headers):
    reply = https(ws.ip, f"{host_prefix}{ws.host}", path, headers=headers)
    assert reply.status in (302, 401, 403, 404), (reply.status, reply.text[:200])
    assert "evil app" not in reply.text and "vmgen workspace" not in reply.text


def test_host_tricks_reach_no_backend(ws):
    # TLS for one name, Host for another, unknown names: Host decides, and needs its own login.
    _, session = sign_in(ws.ip, ws.host, ws.password)
    for host in (f"code.{ws.host}", "localhost", f"{ws.host}.evil.example", f"p3000.{ws.host}", "127.0.0.1:7392"):
        reply = https(ws.ip, host, "/api/state", headers={"Cookie": session.cookies[ws.host]}, sni=ws.host)
        assert reply.status != 200 or reply.body == b"", (host, reply.status)
    assert session.get(ws.host, "/api/state").status == 200


def test_the_code_uis_own_login_is_never_reached_and_its_token_alone_opens_nothing(cli, ws):
    reply = https(ws.ip, f"code.{ws.host}", "/api/auth/login", "POST", {"Content-Type": "application/json"},
                  json.dumps({"username": "vmgen", "password": ws.password}).encode())
    assert reply.status == 403 and "Sign in at" in reply.text
    # The agent reads CloudCLI's key (its own process) and mints a token: from outside, without
    # the web login, Caddy refuses it.
    eventually(lambda: cli.ssh(NAME, "pgrep -u agent -f claude-code-ui >/dev/null && echo up || true").strip() == "up",
               timeout=900, what="CloudCLI to run", interval=5)
    secret = cli.ssh(NAME, "tr '\\0' '\\n' < /proc/$(pgrep -u agent -f claude-code-ui | head -1)/environ"
                           " | sed -n 's/^JWT_SECRET=//p'").strip()
    assert len(secret) == 64

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    signed = part({"alg": "HS256", "typ": "JWT"}) + "." + part({"userId": 1, "username": "vmgen"})
    token = signed + "." + base64.urlsafe_b64encode(
        hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    assert https(ws.ip, f"code.{ws.host}", "/api/projects", headers={"Authorization": f"Bearer {token}"}).status == 401


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
        for host, path in ((ws.host, "/api/state"), (f"code.{ws.host}", "/api/projects"),
                           (f"desktop.{ws.host}", "/vnc.html")):
            assert https(ws.ip, host, path, headers={"Cookie": cookie}).status == 401, (host, cookie)


def test_a_preview_can_neither_read_set_nor_ride_the_session(cli, ws):
    before = leases(cli)
    driver = browser(ws.ip)
    try:
        sign_in_browser(driver, f"https://{ws.host}/", ws.password)
        (ours,) = session_cookies(driver)
        driver.get(f"https://p3000.{ws.host}/attack")
        results = wait_until(lambda: driver.execute_script("return window.results || {}"),
                             lambda r: r.get("finished") and "websocket" in r and "fetch_page" in r, timeout=60)
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
    session.open("desktop")
    desktop = f"desktop.{ws.host}"
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Protocol": "binary"}
    for origin in (f"https://p3000.{ws.host}", f"https://{ws.host}", "null", None):
        headers = {**handshake, **({"Origin": origin} if origin else {})}
        assert session.get(desktop, "/websockify", headers).status == 403, origin
    assert https(ws.ip, desktop, "/websockify", headers={**handshake, "Origin": f"https://{desktop}"}).status == 401
    security = vnc_security_types(ws.ip, desktop, session.cookies[desktop])
    assert security == [2], "VNC asks for its password (type 2), never none (type 1)"


def vnc_security_types(ip: str, host: str, cookie: str) -> list[int]:
    """Open the desktop's websocket as its own page does and read what the VNC server offers."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((ip, 443), timeout=20) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall((f"GET /websockify HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
                     f"Origin: https://{host}\r\nCookie: {cookie}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        version = ws_read(tls)
        assert version.startswith(b"RFB 003.008"), version
        ws_send(tls, b"RFB 003.008\n")
        offered = ws_read(tls)
        return list(offered[1:1 + offered[0]])


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
    session.open("code")
    for host, path in ((ws.host, "/"), (ws.host, "/.vmgen/login"), (f"code.{ws.host}", "/"),
                       (f"desktop.{ws.host}", "/vnc.html")):
        reply = session.get(host, path)
        assert reply.headers["x-frame-options"] == "DENY", host
        assert "frame-ancestors 'none'" in reply.headers["content-security-policy"], host
        assert reply.headers["x-content-type-options"] == "nosniff", host
        assert reply.headers["strict-transport-security"].startswith("max-age=31536000"), host
    # A frame of a vmgen hostname, asked for from a preview, is refused before any backend.
    framed = session.get(f"code.{ws.host}", "/", {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate",
                                                  "Sec-Fetch-Dest": "iframe"})
    assert framed.status == 403
    session.open("p3000")
    preview = session.get(f"p3000.{ws.host}", "/")
    assert preview.status == 200 and preview.headers["x-frame-options"] == "SAMEORIGIN"
    assert preview.headers["x-evil-app"] == "its own header" and "content-security-policy" not in preview.headers


def test_csrf_against_the_login_and_the_page_is_refused(cli, ws):
    before = leases(cli)
    _, session = sign_in(ws.ip, ws.host, ws.password)
    cookie = {"Cookie": session.cookies[ws.host]}
    preview = f"https://p3000.{ws.host}"
    form = "application/x-www-form-urlencoded"
    login = f"user=vmgen&password={ws.password}".encode()
    posted = https(ws.ip, ws.host, "/.vmgen/login", "POST", {"Content-Type": form, "Origin": preview}, login)
    assert posted.status == 403 and "set-cookie" not in posted.headers
    assert https(ws.ip, ws.host, "/.vmgen/logout", "POST", {**cookie, "Origin": preview}).status == 403
    assert https(ws.ip, ws.host, "/api/keepalive", "POST", {**cookie, "Origin": preview, "X-Vmgen-Action": "1",
                                                             "Content-Type": "application/json"},
                 b'{"hours": 4}').status == 403
    assert session.get(ws.host, "/api/state").status == 200 and leases(cli) == before


def test_xss_through_the_agents_messages_and_file_names_stays_text(cli, ws):
    from selenium.webdriver.common.by import By

    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    transcript = [
        {"type": "user", "timestamp": "2030-01-01T00:00:00Z", "message": {"role": "user", "content": payload}},
        {"type": "assistant", "timestamp": "2030-01-01T00:00:01Z", "message": {"role": "assistant", "content": [
            {"type": "text", "text": payload},
            {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": f"/tmp/{payload}.md"}}]}},
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

def test_failed_logins_are_logged_without_credentials_and_then_banned(ws, vm, web_cloud, docker_client, web_image):
    fake, _ = web_cloud
    # Another address on the cloud's network (the test's own must stay unbanned): a container of
    # this run's image, which has curl, doing nothing but guessing.
    attacker = docker_client.containers.run(web_image, ["sleep", "600"], detach=True, network=fake.network_name,
                                            name=f"vmgen-test-attacker-{RUN}", labels={RUN_LABEL: RUN})
    try:
        attacker.reload()
        attacker_ip = attacker.attrs["NetworkSettings"]["Networks"][fake.network_name]["IPAddress"]

        def guess(i: int) -> str:
            result = attacker.exec_run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "--connect-timeout",
                                        "5", "--max-time", "10", "--resolve", f"{ws.host}:443:{ws.ip}",
                                        "-H", f"Origin: https://{ws.host}", "--data",
                                        f"user=vmgen&password=guess-{i}-{RUN}", f"https://{ws.host}/.vmgen/login"])
            return result.output.decode().strip() or f"exit {result.exit_code}"

        answers = [guess(i) for i in range(5)]
        assert answers == ["401"] * 5
        # fail2ban reads the log and bans the address: its connections go nowhere now.
        eventually(lambda: guess(99) not in ("401", "429"), timeout=60, what="fail2ban to ban the guessing address",
                   interval=2)
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
        attacker.remove(force=True)


# --- the login's secrets against the agent ------------------------------------------------------

def test_the_logins_secrets_are_not_the_agents(cli, ws, vm):
    assert vm("stat -c '%U:%G %a' /etc/vmgen/Caddyfile").strip() == "root:caddy 640"
    assert vm("stat -c '%U:%G %a' /etc/vmgen/web-login").strip() == "root:vmgen-web 750"
    assert set(vm("stat -c '%U:%G %a' /etc/vmgen/web-login/*").split("\n")) - {""} == {"root:vmgen-web 640"}
    assert vm("stat -c '%U:%G %a' /run/vmgen/web-login.sock").strip() == "root:caddy 660"
    assert vm("stat -c '%U:%G %a' /etc/vmgen/cloudcli.env").strip() == "root:root 600"
    assert "vmgen-web" in vm("ps -o user= -C vmgen || ps -eo user,args | grep '[v]mside web-login'")
    verifier = vm("cat /etc/vmgen/web-login/login").strip()
    assert verifier.startswith("sha256$")
    for path in ("/etc/vmgen/Caddyfile", "/etc/vmgen/web-login/login", "/etc/vmgen/web-login/code-ui-secret"):
        assert "Permission denied" in cli.ssh(NAME, f"cat {path} 2>&1 || true"), path
    connect = cli.ssh(NAME, "python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect("
                            "\"/run/vmgen/web-login.sock\")' 2>&1 || true")
    assert "Permission denied" in connect
    # Neither the password nor its verifier anywhere the agent can read, CloudCLI's account included.
    for secret in (ws.password, verifier.split("$")[2]):
        found = cli.ssh(NAME, f"grep -rlsF -- {secret} ~ /etc /var/log /tmp /run 2>/dev/null | head -3 || true")
        assert found.strip() == "", found
    hashes = cli.ssh(NAME, "python3 -c \"import sqlite3; print(sqlite3.connect('/home/agent/.cloudcli/auth.db')"
                           ".execute('select password_hash from users').fetchall())\"")
    assert "sha256$" not in hashes
