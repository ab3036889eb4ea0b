"""Web access end to end on the simulated Hetzner cloud with a fake Cloudflare zone: real Caddy
on the VM (`tls internal`: no ACME server is reachable here), basic auth on every hostname, the
workspace page in a real headless chromium (login, agent state, keep alive, a message to the
agent; screenshots at phone and desktop widths), the Claude Code web UI behind auth, the noVNC
websocket with --desktop, and DNS records that come and go with the workspace."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RUN_LABEL
from tests.fakes.anthropic_api import Rule, Script
from tests.fakes.cloudflare import FakeCloudflare
from tests.fakes.hetzner import FakeHetzner
from tests.polling import eventually

from .conftest import AGENT_VERSION, ROOT, RUN, make_repo, run_once, this_vmgen

ZONE = "dev.example.com"
NAME = "webby"
HOST = f"{NAME}.{ZONE}"
ARTIFACTS = Path(os.environ.get("VMGEN_TEST_ARTIFACTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def vm_image(vm_image, docker_client, tmp_path_factory) -> str:
    """The run's baked image plus what a workspace with a domain and a desktop installs: Caddy,
    the desktop's packages and the code UI, compiled once here instead of in every launch."""
    from vmgen.agents import AGENTS
    from vmgen.builder.install import workspace_plan
    from vmgen.providers.docker import DockerProvider
    from vmgen.providers.docker_bake import bake
    from vmgen.selfwheel import own_wheel
    from vmgen.stamps import BAKED_LABEL

    with run_once(tmp_path_factory, "web-image") as shared:
        made = shared / "image"
        if not made.exists():
            plan = workspace_plan(AGENTS["claude"], AGENT_VERSION, this_vmgen(), desktop=True, domain=ZONE,
                                  code_ui_version="1.12.0")
            image = bake(DockerProvider(vm_image, docker_client), plan, own_wheel(), lambda message: None,
                         labels={BAKED_LABEL: f"test-{RUN}", RUN_LABEL: RUN},
                         repository=f"vmgen-test-web-{RUN}")
            made.write_text(image.ref)
        return made.read_text()


@pytest.fixture(scope="module")
def cloud(cli, vm_image):
    fake = FakeHetzner(image=vm_image).start()
    dns = FakeCloudflare(zones=[ZONE], host="0.0.0.0", public_host=fake.gateway).start()
    cli.env.update({
        "VMGEN_PROVIDER": "hetzner",
        "HCLOUD_TOKEN": "test-token",
        "VMGEN_HCLOUD_ENDPOINT": fake.api_endpoint_for_vms,
        "VMGEN_HCLOUD_METADATA_URL": fake.metadata_url,
        "VMGEN_DOMAIN": ZONE,
        "CLOUDFLARE_API_TOKEN": "test-token",
        "VMGEN_CLOUDFLARE_ENDPOINT": dns.endpoint,
        "VMGEN_WEB_TLS": "internal",
        "VMGEN_IDLE_ACTION": "delete",
        "VMGEN_IDLE_WARN_MINUTES": "0.25",
        "VMGEN_IDLE_INTERVAL_SECONDS": "2",
    })
    yield fake, dns
    dns.stop()
    fake.stop()


def records(dns: FakeCloudflare, workspace: str) -> dict[str, str]:
    return {r["name"]: r["content"] for r in dns.records(ZONE) if r.get("comment") == f"vmgen:ws={workspace}"}


@pytest.fixture(scope="module")
def launched(cli, cloud, tmp_path_factory):
    fake, dns = cloud
    result = cli("launch", str(make_repo(tmp_path_factory.mktemp("repos"), NAME)), "--desktop")
    password = result.stderr.split("password ")[1].split(";")[0]
    ip = records(dns, NAME)[HOST]
    yield {"ip": ip, "password": password, "stderr": result.stderr}
    cli("destroy", NAME, "--yes", check=False)


def fetch(ip: str, url: str, auth: str | None = None) -> tuple[int, str]:
    host = url.split("/")[2]
    argv = ["curl", "-sk", "-w", "\n%{http_code}", "--max-time", "20", "--resolve", f"{host}:443:{ip}", url]
    if auth:
        argv += ["-u", auth]
    body, _, status = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.rpartition("\n")
    return int(status), body


def curl(ip: str, url: str, auth: str | None = None) -> int:
    return fetch(ip, url, auth)[0]


def test_launch_prints_the_url_and_login_and_creates_dns(cli, cloud, launched):
    _, dns = cloud
    assert f"https://{HOST}/" in launched["stderr"]
    assert records(dns, NAME) == {HOST: launched["ip"], f"*.{HOST}": launched["ip"]}
    shown = cli("login", NAME).stdout
    assert launched["password"] in shown and f"https://{HOST}/" in shown


@pytest.mark.parametrize("prefix", ["", "code.", "desktop.", "p3000."])
def test_every_hostname_needs_the_login(launched, prefix):
    ip, url = launched["ip"], f"https://{prefix}{HOST}/"
    assert curl(ip, url) == 401
    assert curl(ip, url, f"vmgen:{launched['password']}x") == 401
    assert curl(ip, f"https://{prefix}{HOST}/healthz") == 200  # the one open path


def test_a_dev_server_is_previewed_on_its_own_hostname(cli, launched):
    cli("ssh", NAME, "--", f"cd work/{NAME} && (setsid python3 -m http.server 3000 >/dev/null 2>&1 &)")
    auth = f"vmgen:{launched['password']}"
    eventually(lambda: fetch(launched["ip"], f"https://p3000.{HOST}/", auth)[0] == 200, timeout=30,
               what="the dev server on :3000 through p3000")
    assert "README.md" in fetch(launched["ip"], f"https://p3000.{HOST}/", auth)[1]
    assert curl(launched["ip"], f"https://p3000.{HOST}/") == 401


def websocket_handshake(ip: str, host: str, path: str, auth: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((ip, 443), timeout=20) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        key = base64.b64encode(os.urandom(16)).decode()
        tls.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n"
                     f"Authorization: Basic {base64.b64encode(auth.encode()).decode()}\r\n\r\n").encode())
        return tls.recv(4096).decode(errors="replace").split("\r\n")[0]


def test_the_desktop_websocket_handshake_succeeds(launched):
    auth = f"vmgen:{launched['password']}"
    eventually(lambda: curl(launched["ip"], f"https://desktop.{HOST}/vnc.html", auth) == 200, timeout=120,
               what="noVNC's page behind Caddy")
    status = websocket_handshake(launched["ip"], f"desktop.{HOST}", "/websockify", auth)
    assert " 101 " in status, status


def browser(ip: str, password: str, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                 f"--host-resolver-rules=MAP *.{ZONE} {ip}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    token = base64.b64encode(f"vmgen:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    return driver


def test_the_workspace_page_in_a_real_browser(cli, model, launched):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    model.script = Script(rules=[Rule(trigger="hello from the browser", text="Hello, browser!")])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = browser(launched["ip"], launched["password"], 390, 844)
    try:
        driver.get(f"https://{HOST}/")
        wait = WebDriverWait(driver, 90, poll_frequency=0.5)
        wait.until(lambda d: d.find_element(By.ID, "agent").text == "waiting for you")
        assert d_text(driver, "name") == NAME
        driver.save_screenshot(str(ARTIFACTS / "workspace-page-phone.png"))

        driver.find_element(By.CSS_SELECTOR, "button[data-hours='1']").click()
        wait.until(lambda d: "kept alive until" in d.find_element(By.ID, "toast").text)
        eventually(lambda: any("workspace page" in r for r in
                               json.loads(cli("status", NAME, "--json").stdout)["verdict"]["reasons"]),
                   timeout=60, what="the watchdog to count the keepalive from the page")

        driver.find_element(By.ID, "message").send_keys("hello from the browser")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.ID, "toast").text == "sent to the agent")
        model.wait_for("hello from the browser", timeout=60)
        wait.until(lambda d: "Hello, browser!" in d.find_element(By.ID, "activity").text)
        driver.set_window_size(1280, 800)
        driver.save_screenshot(str(ARTIFACTS / "workspace-page-desktop.png"))
    finally:
        driver.quit()


def d_text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_the_code_ui_answers_behind_auth(launched):
    # It compiles native modules for minutes in the background; the workspace was ready before.
    auth = f"vmgen:{launched['password']}"
    eventually(lambda: curl(launched["ip"], f"https://code.{HOST}/", auth) == 200,
               timeout=900, what="the code UI (installed in the background) behind Caddy", interval=5)
    assert "<title>Claude Code UI" in fetch(launched["ip"], f"https://code.{HOST}/", auth)[1]


def test_destroy_removes_the_dns_records(cli, cloud, launched):
    _, dns = cloud
    cli("destroy", NAME, "--yes")
    assert records(dns, NAME) == {}


def test_a_self_deleting_workspace_takes_its_records_along(cli, cloud, tmp_path):
    fake, dns = cloud
    cli("launch", str(make_repo(tmp_path, "fleeting")), "--idle-minutes", "0.5")
    assert len(records(dns, "fleeting")) == 2
    eventually(lambda: "fleeting" not in {s.name for s in fake.state.servers.values()}, timeout=240,
               what="the idle workspace to delete itself", interval=3)
    assert records(dns, "fleeting") == {}
