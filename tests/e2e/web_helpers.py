"""What the web tests share (their fixtures, `web_image` and `web_cloud`, are in conftest.py): a
launched workspace per test module, HTTPS requests to it as a user's client sends them (signing
in through the form, hostname by hostname), and a headless chromium that signs in like a person."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.cloudflare import FakeCloudflare
from tests.raw_https import Reply, request, unchunk

from .conftest import ROOT, WEB_ZONE, make_repo

ZONE = WEB_ZONE
ARTIFACTS = Path(os.environ.get("VMGEN_TEST_ARTIFACTS", ROOT / "test-artifacts"))


def records(dns: FakeCloudflare, workspace: str) -> dict[str, str]:
    return {r["name"]: r["content"] for r in dns.records(ZONE) if r.get("comment") == f"vmgen:ws={workspace}"}


@dataclass
class Launched:
    name: str
    ip: str
    password: str
    stderr: str

    @property
    def host(self) -> str:
        return f"{self.name}.{ZONE}"


def launch(cli, dns: FakeCloudflare, parent: Path, name: str, *flags: str) -> Launched:
    result = cli("launch", str(make_repo(parent, name)), *flags)
    password = result.stderr.split("password ")[1].split(";")[0]
    return Launched(name, records(dns, name)[f"{name}.{ZONE}"], password, result.stderr)


def root_on(docker_client, name: str):
    """Root on a simulated Hetzner VM (docker exec: no SSH session, nothing the agent could see)."""
    import re

    (container,) = [c for c in docker_client.containers.list() if re.fullmatch(rf"hz-\d+-{name}", c.name)]

    def root(command: str) -> str:
        return container.exec_run(["bash", "-c", command]).output.decode(errors="replace")

    return root


# --- HTTPS as a client sends it -------------------------------------------------------------


def https(
    ip: str,
    host: str,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    sni: str = "",
    timeout: float = 20,
) -> Reply:
    """One request to the VM's Caddy on 443 (its local CA: unverified), redirects not followed,
    a chunked body unchunked."""
    reply = request(ip, 443, host, path, method, headers, body, sni, timeout)
    if reply.headers.get("transfer-encoding") == "chunked":
        reply.body = unchunk(reply.body)
    return reply


@dataclass
class Session:
    """A signed-in client: one session cookie per hostname, as a browser keeps them."""

    ip: str
    host: str
    cookies: dict[str, str] = field(default_factory=dict)

    def get(self, hostname: str, path: str = "/", headers: dict[str, str] | None = None, **kw) -> Reply:
        cookie = {"Cookie": self.cookies[hostname]} if hostname in self.cookies else {}
        return https(self.ip, hostname, path, headers={**cookie, **(headers or {})}, **kw)

    def open(self, label: str, path: str = "/") -> Reply:
        """Sign in on `<label>.<host>` by a ticket from the workspace's hostname."""
        reply = self.get(self.host, f"/.vmgen/open?{urlencode({'to': label, 'path': path})}")
        return self._arrive(reply)

    def _arrive(self, reply: Reply) -> Reply:
        location = urlsplit(reply.headers["location"])
        hostname = location.hostname
        assert hostname is not None, reply.headers["location"]
        ticket = parse_qs(location.query)["ticket"][0]
        arrived = https(self.ip, hostname, f"/.vmgen/session?ticket={ticket}")
        self.cookies[hostname] = arrived.headers["set-cookie"].split(";")[0]
        return arrived


def sign_in(ip: str, host: str, password: str, user: str = "vmgen") -> tuple[Reply, Session | None]:
    form = urlencode({"user": user, "password": password, "to": "", "path": "/"}).encode()
    reply = https(
        ip,
        host,
        "/.vmgen/login",
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{host}"},
        form,
    )
    if reply.status != 303:
        return reply, None
    return reply, Session(ip, host, {host: reply.headers["set-cookie"].split(";")[0]})


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# --- a person in chromium ----------------------------------------------------------------------


def browser(ip: str, width: int = 1280, height: int = 800, trusted_spki: str = ""):
    """Chromium resolving the zone to the VM. Its certificates are accepted as they are; with
    `trusted_spki` (a CA key's hash) those it issued count as valid, as service workers require."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    trust = f"--ignore-certificate-errors-spki-list={trusted_spki}" if trusted_spki else "--ignore-certificate-errors"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        trust,
        f"--host-resolver-rules=MAP *.{ZONE} {ip}",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)

    class Chrome(webdriver.Chrome):
        def get(self, url: str) -> None:
            super().get(url)
            for _ in range(3):  # a load dropped for a network change: again, as Reload would
                if not reload_if_the_network_changed(self):
                    return

    return Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def sign_in_browser(driver, url: str, password: str, timeout: float = 60) -> None:
    """Open `url`; on the sign-in form that comes first, sign in; wait to be back at `url`'s host."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    waiting(driver, timeout).until(lambda d: d.find_elements(By.ID, "password"))
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "signin").click()
    target = urlsplit(url).hostname
    again = [1]

    def arrived(d) -> bool:
        if urlsplit(d.current_url).hostname == target and "/.vmgen/" not in d.current_url:
            return True
        if again and "/.vmgen/session" in d.current_url and "Sign-in link expired" in (d.title or ""):
            # The one-use link was spent by a load Chromium then dropped for a network change, and
            # the reload (see `waiting`) asked with it again: as the page says, open it again.
            again.pop()
            d.get(url)
        return False

    waiting(driver, timeout).until(arrived)


# Chromium's error page when the machine's network changed under a page load: Docker adds and
# removes an interface for every VM the other tests start or stop, and Chromium drops the loads
# in flight each time (the browser tests' timeouts on a busy machine). A person presses Reload.
NETWORK_CHANGED = "ERR_NETWORK_CHANGED"


def reload_if_the_network_changed(driver) -> bool:
    from selenium.common.exceptions import WebDriverException

    try:
        text = driver.execute_script("return document.body ? document.body.innerText : ''") or ""
    except WebDriverException:
        return False
    if NETWORK_CHANGED not in text:
        return False
    driver.refresh()
    return True


def waiting(driver, timeout: float):
    """A WebDriverWait that reloads a page load Chromium dropped for a network change, and whose
    timeout says what the browser showed instead (its address without the query, its title, the
    start of its text) and leaves a screenshot in the test's output."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    class Wait(WebDriverWait):
        def until(self, method, message: str = ""):
            def reloaded_then(d):
                reload_if_the_network_changed(d)
                return method(d)

            try:
                return super().until(reloaded_then, message)
            except TimeoutException:
                raise AssertionError(f"the browser waited {timeout:.0f}s; {showing(driver)}") from None

    def showing(d) -> str:
        try:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            d.save_screenshot(str(ARTIFACTS / "browser-timeout.png"))
            text = " ".join(d.execute_script("return document.body ? document.body.innerText : ''").split())
            url = d.current_url.split("?")[0]
            return f"it shows {url} ({d.title!r}): {text[:300]!r}"
        except WebDriverException as exc:
            return f"and it does not answer ({exc.msg})"

    return Wait(driver, timeout, poll_frequency=0.5)


def session_cookies(driver) -> list[str]:
    """The session cookies chromium holds for the current hostname (HttpOnly ones too)."""
    return [c["value"] for c in driver.get_cookies() if c["name"] == "__Host-vmgen"]
