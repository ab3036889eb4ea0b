"""Web access end to end on the simulated Hetzner cloud with a fake Cloudflare zone: real Caddy on
the VM with certificates from a real ACME server (Pebble, through the HTTP-01 challenge on the VM's
port 80, the zone's records as its DNS), asking vmgen's login service before any backend; the
chain a browser verifies, and for the hostnames that get none (DNS pointing elsewhere, the ACME
server's refusal, its rate limit) one line each in the launch's output, `vmgen status` and on the
page. In a real headless chromium, one sign-in for the workspace page (agent state, keep alive, a
message to the agent, signing out; screenshots at phone and desktop widths; the agent's changes
with their diff at a phone's width, live by the page's event stream), the Claude Code web UI
really working behind it (projects, the agent's session, a message that reaches the scripted
model), and the desktop (noVNC connecting with its VNC password); DNS records that come and go with
the workspace. The attacks on all this are in test_web_attacks.py."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator

import pytest

from tests.acme import AcmeFront, Pebble, ZoneDns, served_chain_verifies, zone_resolver
from tests.fakes.anthropic_api import Rule, Script, ToolUse
from tests.polling import eventually, wait_until
from tests.raw_https import spki_hash
from vmgen.contract.names import PORTS
from vmgen.laptop.builder.node import NODE

from .conftest import make_repo
from .web_helpers import (
    ARTIFACTS,
    ZONE,
    Launched,
    basic,
    browser,
    https,
    launch,
    records,
    root_on,
    sign_in,
    sign_in_browser,
    waiting,
)

NAME = "webby"


HOST = f"{NAME}.{ZONE}"
GOOD = (HOST, f"code.{HOST}", f"desktop.{HOST}", f"p3000.{HOST}")
# A stale record the user left (DNS not pointing at the VM), a name the ACME server refuses, and
# one past its rate limit.
ELSEWHERE, REFUSED, LIMITED = f"p8080.{HOST}", f"p8000.{HOST}", f"p5173.{HOST}"


@pytest.fixture(scope="module")
def acme(cli, web_cloud, tmp_path_factory):
    """Pebble on this machine, reached by the VMs at the cloud's gateway, asking a DNS that
    answers from the fake Cloudflare zone; the CLI set up to use it (`acme_ca`, `acme_ca_root`)."""
    fake, dns = web_cloud
    folder = tmp_path_factory.mktemp("acme")
    resolver = ZoneDns(zone_resolver(lambda: {r["name"]: r["content"] for r in dns.records(ZONE) if r["type"] == "A"}))
    pebble = Pebble(folder / "pebble", resolver.port, (fake.gateway, "127.0.0.1")).start()
    front = AcmeFront(pebble, rate_limited=[LIMITED], refused=[REFUSED])
    dns.add_record(ZONE, ELSEWHERE, "A", "192.0.2.10")
    cli.env.update(
        {
            "VMGEN_WEB_TLS": "acme",
            "VMGEN_ACME_CA": f"https://{fake.gateway}:{front.port}/dir",
            "VMGEN_ACME_CA_ROOT": str(pebble.ca.root),
        }
    )
    yield pebble
    front.stop()
    pebble.stop()
    resolver.stop()


@pytest.fixture(scope="module")
def launched(cli, web_cloud, acme, tmp_path_factory) -> Iterator[Launched]:
    _, dns = web_cloud
    workspace = launch(cli, dns, tmp_path_factory.mktemp("repos"), NAME, "--desktop")
    yield workspace
    cli("destroy", NAME, "--yes", check=False)


def trusted(acme) -> str:
    """What chromium trusts as a browser trusts Let's Encrypt: Pebble's intermediate (new each run)."""
    return spki_hash(acme.management("/intermediates/0").encode())


def test_certificates_come_from_the_acme_server_with_the_chain_a_browser_verifies(launched, acme):
    for host in GOOD:
        assert served_chain_verifies(launched.ip, 443, host, acme.root()) == "", host
    assert "certificate verify failed" in served_chain_verifies(launched.ip, 443, HOST, acme.ca.root.read_text())


def test_hostnames_without_a_certificate_say_why_at_launch_in_status_and_on_the_page(cli, launched, acme):
    from selenium.webdriver.common.by import By

    lines = {
        ELSEWHERE: "the ACME server's HTTP-01 check did not reach this VM (its check went to 192.0.2.10)",
        REFUSED: "the ACME server refuses to issue for this name",
        LIMITED: "the ACME server's rate limit: too many certificates (5) already issued",
    }
    assert "certificates: 4 of 7 issued" in launched.stderr
    status = cli("status", NAME).stdout
    for host, why in lines.items():
        assert f"no certificate for {host}: {why}" in launched.stderr, host
        assert f"no certificate for {host}: {why}" in status, host
    driver = browser(launched.ip, trusted_spki=trusted(acme))
    try:
        sign_in_browser(driver, f"https://{launched.host}/", launched.password)
        shown = wait_until(
            lambda: driver.find_element(By.ID, "certificates").text,
            lambda text: all(host in text for host in lines),
            timeout=30,
        )
        for host, why in lines.items():
            assert f"no certificate: {host}: {why}" in shown, host
    finally:
        driver.quit()


def test_launch_prints_the_url_and_login_and_creates_dns(cli, web_cloud, launched):
    _, dns = web_cloud
    assert f"https://{launched.host}/" in launched.stderr
    assert records(dns, NAME) == {launched.host: launched.ip, f"*.{launched.host}": launched.ip}
    shown = cli("login", NAME).stdout
    assert launched.password in shown and f"https://{launched.host}/" in shown


@pytest.mark.parametrize("prefix", ["", "code.", "desktop.", "p3000."])
def test_every_hostname_needs_the_login(launched, prefix):
    host = f"{prefix}{launched.host}"
    page_load = https(launched.ip, host, "/", headers={"Accept": "text/html"})
    assert page_load.status == 302 and "/.vmgen/" in page_load.headers["location"]
    assert https(launched.ip, host, "/api/anything").status == 401
    # The password itself, sent the old way, opens nothing: only the sign-in form takes it.
    assert https(launched.ip, host, "/api/anything", headers=basic("vmgen", launched.password)).status == 401
    assert https(launched.ip, host, "/healthz").status == 200  # the one open path
    reply, session = sign_in(launched.ip, launched.host, launched.password + "x")
    assert reply.status == 401 and session is None


def test_a_dev_server_is_previewed_on_its_own_hostname(cli, launched):
    cli("ssh", NAME, "--", f"cd work/{NAME} && (setsid python3 -m http.server 3000 >/dev/null 2>&1 &)")
    _, session = sign_in(launched.ip, launched.host, launched.password)
    assert session is not None
    assert session.open("p3000").status == 303
    preview = f"p3000.{launched.host}"
    eventually(lambda: session.get(preview).status == 200, timeout=30, what="the dev server on :3000 through p3000")
    assert "README.md" in session.get(preview).text
    assert https(launched.ip, preview, "/").status == 401


def test_the_workspace_page_in_a_real_browser(cli, model, launched):
    from selenium.webdriver.common.by import By

    model.script = Script(rules=[Rule(trigger="hello from the browser", text="Hello, browser!")])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = browser(launched.ip, 390, 844)
    try:
        sign_in_browser(driver, f"https://{launched.host}/", launched.password)
        wait = waiting(driver, 90)
        wait.until(lambda d: d.find_element(By.ID, "agent").text == "waiting for you")
        assert driver.find_element(By.ID, "name").text == NAME
        driver.save_screenshot(str(ARTIFACTS / "workspace-page-phone.png"))

        driver.find_element(By.CSS_SELECTOR, "button[data-hours='1']").click()
        # The toast says so for a few seconds; a page Chromium loaded again meanwhile (a network
        # change) shows it in the watchdog's card instead.
        wait.until(
            lambda d: (
                "kept alive until" in d.find_element(By.ID, "toast").text
                or "(from the workspace page)" in d.find_element(By.TAG_NAME, "body").text
            )
        )
        eventually(
            lambda: any(
                "workspace page" in r for r in json.loads(cli("status", NAME, "--json").stdout)["verdict"]["reasons"]
            ),
            timeout=60,
            what="the watchdog to count the keepalive from the page",
        )

        driver.find_element(By.ID, "message").send_keys("hello from the browser")
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: d.find_element(By.ID, "toast").text == "sent to the agent")
        model.wait_for("hello from the browser", timeout=60)
        wait.until(lambda d: "Hello, browser!" in d.find_element(By.ID, "activity").text)
        driver.set_window_size(1280, 800)
        driver.save_screenshot(str(ARTIFACTS / "workspace-page-desktop.png"))

        # Signing out ends the login: the page asks for the password again.
        driver.find_element(By.ID, "signout-button").click()
        wait.until(lambda d: d.find_elements(By.ID, "password"))
        driver.get(f"https://{launched.host}/")
        wait.until(lambda d: d.find_elements(By.ID, "password"))
    finally:
        driver.quit()


def test_the_changes_view_shows_a_file_the_agent_edited_on_a_phone(cli, model, launched):
    """Asked from the page, the agent edits README.md; the page's changes view (git run as the
    agent by root, live through the login's relay of the page's event stream) shows the file with
    its diff, at a phone's 390 px. The repository's configuration names a program for each way git
    could start one: none ever runs as root."""
    from selenium.webdriver.common.by import By

    repo = f"/home/agent/work/{NAME}"
    hostile = {
        "core.fsmonitor": MARK,
        "core.pager": MARK,
        "diff.external": MARK,
        "diff.evil.textconv": MARK,
        "gpg.program": MARK,
        "log.showSignature": "true",
    }
    cli.ssh(
        NAME,
        f"mkdir -p /home/agent/marks && printf '#!/bin/sh\\nid -u >> /home/agent/marks/hit\\ncat\\n' > {MARK}"
        f" && chmod +x {MARK} && echo '* diff=evil' > {repo}/.git/info/attributes && "
        + " && ".join(f"git -C {repo} config {key} {value}" for key, value in hostile.items()),
    )

    added = "A line the agent added, long enough to wrap on a phone: " + "words " * 12
    model.script = Script(
        rules=[
            Rule(
                trigger="add a line to the readme",
                tool=ToolUse(
                    "Bash",
                    {
                        "command": f"printf '%s\\n' '{added}' >> /home/agent/work/{NAME}/README.md",
                        "description": "edit",
                    },
                ),
                after_tool_text="I added a line to README.md.",
            )
        ]
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = browser(launched.ip, 390, 844)
    # Headless chromium keeps a window at least 500 px wide: the page is laid out at the phone's.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
    )
    try:
        sign_in_browser(driver, f"https://{launched.host}/", launched.password)
        wait = waiting(driver, 120)
        wait.until(lambda d: " @ " in d.find_element(By.ID, "changes-head").text)  # branch @ head: git answered
        driver.find_element(By.ID, "message").send_keys("add a line to the readme")
        driver.find_element(By.ID, "send").click()
        model.wait_for("add a line to the readme", timeout=90)
        wait.until(lambda d: added.strip() in d.find_element(By.ID, "changes-files").text)
        readme = driver.find_element(By.CSS_SELECTOR, "details.file[data-path='README.md']")
        assert readme.get_attribute("open") is not None and "+1" in readme.find_element(By.TAG_NAME, "summary").text
        line = readme.find_element(By.CSS_SELECTOR, ".diff .add")
        assert line.text.startswith("+A line the agent added") and line.size["width"] <= 390
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 390  # wrapped, not scrolled
        # Live: the page's event stream reached the browser through Caddy and the login's relay.
        assert driver.find_element(By.ID, "changes-card").get_attribute("data-live") == "events"
        assert "initial" in driver.find_element(By.ID, "commits").text
        driver.execute_script("document.getElementById('changes-card').scrollIntoView()")
        driver.save_screenshot(str(ARTIFACTS / "changes-view-phone.png"))
        # The agent's own git (Claude Code's, CloudCLI's) may run them as the agent; root never.
        assert "0" not in cli.ssh(NAME, "cat /home/agent/marks/hit 2>/dev/null || true").split()
    finally:
        driver.quit()
        cli.ssh(
            NAME,
            f"rm -f {repo}/.git/info/attributes; "
            + "; ".join(f"git -C {repo} config --unset {key}" for key in hostile)
            + "; true",
        )


MARK = "/home/agent/mark.sh"  # a program that notes the uid it ran as


def test_the_code_ui_works_behind_the_login(cli, model, launched):
    """Signed in through Caddy, CloudCLI lists the projects, opens the agent's own session and
    sends a message in it that reaches the model."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    model.script = Script(
        rules=[
            Rule(trigger="first words for the agent", text="Heard you in tmux."),
            Rule(trigger="typed in the code UI", text="Hello from the code UI's turn!"),
        ]
    )
    # The agent's session: a conversation it had in its tmux pane.
    cli.ssh(NAME, "tmux send-keys -t claude -l 'first words for the agent' && tmux send-keys -t claude Enter")
    model.wait_for("first words for the agent", timeout=120)
    # It installs for minutes in the background; the workspace was ready before.
    _, session = sign_in(launched.ip, launched.host, launched.password)
    assert session is not None
    session.open("code")
    eventually(
        lambda: "<title>CloudCLI UI" in session.get(f"code.{launched.host}").text,
        timeout=900,
        what="the code UI (installed in the background) behind Caddy",
        interval=5,
    )

    driver = browser(launched.ip)
    try:
        sign_in_browser(driver, f"https://code.{launched.host}/", launched.password)
        wait = waiting(driver, 120)
        showing(driver, wait, lambda d: shown(d, By.XPATH, f"//*[normalize-space(text())='{NAME}']"), "the project")
        driver.save_screenshot(str(ARTIFACTS / "code-ui-projects.png"))
        # The agent's session in the project's list, titled by its latest prompt where Claude Code
        # recorded one (the page test above may have sent one), opened: the agent's conversation.
        conversation = showing(
            driver,
            wait,
            lambda d: shown(
                d,
                By.XPATH,
                "//*[contains(normalize-space(text()), 'first words for the agent')"
                " or contains(normalize-space(text()), 'hello from the browser')"
                " or contains(normalize-space(text()), 'add a line to the readme')"
                " or normalize-space(text())='Untitled Claude Session']",
            ),
            "the agent's session",
        )
        conversation.click()
        showing(
            driver,
            wait,
            lambda d: "Heard you in tmux." in d.find_element(By.TAG_NAME, "body").text,
            "the agent's conversation",
        )
        box = wait.until(lambda d: shown(d, By.CSS_SELECTOR, "form textarea"))
        box.send_keys("typed in the code UI")
        box.send_keys(Keys.ENTER)
        request = model.wait_for("typed in the code UI", timeout=120)
        assert request.has_tools
        wait.until(lambda d: "Hello from the code UI's turn!" in d.find_element(By.TAG_NAME, "body").text)
        driver.save_screenshot(str(ARTIFACTS / "code-ui-conversation.png"))
    finally:
        driver.quit()


def test_the_code_uis_own_login_is_never_reached_and_nothing_of_it_answers_without_vmgens_session(cli, launched):
    """CloudCLI runs in platform mode behind vmgen's login: it asks for no token of its own, so
    vmgen's session is the only key. Without one (never had, or signed out) nothing of it answers,
    from any origin, its websockets included; and it listens on the loopback only."""
    code = f"code.{launched.host}"
    reply = https(
        launched.ip,
        code,
        "/api/auth/login",
        "POST",
        {"Content-Type": "application/json"},
        json.dumps({"username": "vmgen", "password": launched.password}).encode(),
    )
    assert reply.status == 403 and "Sign in at" in reply.text
    eventually(
        lambda: cli.ssh(NAME, "pgrep -u agent -f cloudcli/dist-server >/dev/null && echo up || true").strip() == "up",
        timeout=900,
        what="CloudCLI to run",
        interval=5,
    )
    # Node 22 from vmgen for the agent and CloudCLI alike (their installs: test_node_runtime.py).
    assert cli.ssh(
        NAME, "node --version && readlink /proc/$(pgrep -u agent -f cloudcli/dist-server | head -1)/exe"
    ).split() == [f"v{NODE.version}", "/usr/local/bin/node"]
    listening = cli.ssh(NAME, f"ss -Hltn 'sport = :{PORTS.code_ui}'")
    assert listening.split() and all(line.split()[3].startswith("127.0.0.1:") for line in listening.splitlines())
    # A token CloudCLI itself signed (its key is in its database, which the agent can read) opens nothing.
    _, session = sign_in(launched.ip, launched.host, launched.password)
    assert session is not None
    session.open("code")
    minted = session.get(code, "/api/auth/refresh", method="POST", headers={"Origin": f"https://{code}"})
    assert minted.status == 200, minted.text
    token = json.loads(minted.text).get("token", "")
    websocket = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }

    def nothing_answers(cookie: dict[str, str]) -> None:
        for origin in (
            f"https://{code}",
            f"https://p3000.{launched.host}",
            f"https://{launched.host}",
            "https://evil.example",
            "null",
            None,
        ):
            sent = {**cookie, **({"Origin": origin} if origin else {})}
            for path in ("/api/projects", f"/api/projects?token={token}", "/api/auth/user"):
                reply = https(launched.ip, code, path, headers={**sent, "Authorization": f"Bearer {token}"})
                assert reply.status in (401, 403), (path, origin, reply.status)
            for path in ("/ws", f"/ws?token={token}", "/shell"):
                reply = https(launched.ip, code, path, headers={**sent, **websocket})
                assert reply.status in (401, 403), (path, origin, reply.status)

    nothing_answers({})
    # With the session, the code UI answers (its websocket only from its own origin: the browser
    # test above talks through it); after Sign out, the same cookie and CloudCLI's own token open
    # nothing again.
    cookie = {"Cookie": session.cookies[code]}
    assert https(launched.ip, code, "/api/projects", headers=cookie).status == 200
    assert (
        https(
            launched.ip, code, "/ws", headers={**cookie, **websocket, "Origin": f"https://p3000.{launched.host}"}
        ).status
        == 403
    )
    signed_out = https(
        launched.ip,
        launched.host,
        "/.vmgen/logout",
        "POST",
        {"Cookie": session.cookies[launched.host], "Origin": f"https://{launched.host}"},
    )
    assert signed_out.status in (200, 303), signed_out.status
    nothing_answers(cookie)
    # Nothing of the web login is in CloudCLI's account either (its password is unusable).
    hashes = cli.ssh(
        NAME,
        "python3 -c \"import sqlite3; print(sqlite3.connect('/home/agent/.cloudcli/auth.db')"
        ".execute('select password_hash from users').fetchall())\"",
    )
    assert "sha256$" not in hashes and launched.password not in hashes


def showing(driver, wait, condition, what: str):
    """`wait.until(condition)`, failing with what the code UI shows instead (and a screenshot)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By

    try:
        return wait.until(condition)
    except TimeoutException:
        driver.save_screenshot(str(ARTIFACTS / "code-ui-failed.png"))
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(f"the code UI did not show {what}; it shows: {body[:1500]!r}") from None


def shown(driver, by: str, selector: str):
    """The first matching element on screen (CloudCLI renders some parts twice, for phones)."""
    return next((element for element in driver.find_elements(by, selector) if element.is_displayed()), None)


# What the desktop's way in says when the page does not connect: its units' logs, and how many
# connections Caddy holds to the login service (each one of its threads, MAX_CONNECTIONS at most).
DESKTOP_DIAGNOSTICS = (
    "journalctl -u vmgen-web-login -u 'vmgen-desktop-*' -n 60 --no-pager;"
    " echo connections to the login service: $(ss -Hx src /run/vmgen/web-login.sock | wc -l)"
)


def test_the_desktop_opens_with_its_password_after_the_login(launched, docker_client):
    driver = browser(launched.ip)
    try:
        sign_in_browser(driver, f"https://desktop.{launched.host}/", launched.password)
        assert "vnc.html?autoconnect=1" in driver.current_url and "#password=" in driver.current_url
        # noVNC authenticates with the password it was given (no prompt) and shows the screen.
        try:
            waiting(driver, 120).until(
                lambda d: d.execute_script("return document.documentElement.classList.contains('noVNC_connected');")
            )
        except AssertionError as exc:  # what the page shows, and what the relay and websockify logged
            root = root_on(docker_client, NAME)
            raise AssertionError(f"{exc}\n{root(DESKTOP_DIAGNOSTICS)}") from None
        assert not driver.execute_script(
            "return document.getElementById('noVNC_credentials_dlg').classList.contains('noVNC_open');"
        )
        driver.save_screenshot(str(ARTIFACTS / "desktop.png"))
    finally:
        driver.quit()


def test_destroy_removes_the_dns_records(cli, web_cloud, launched):
    _, dns = web_cloud
    cli("destroy", NAME, "--yes")
    assert records(dns, NAME) == {}


def test_a_self_deleting_workspace_takes_its_records_along(cli, web_cloud, tmp_path):
    fake, dns = web_cloud
    cli("launch", str(make_repo(tmp_path, "fleeting")), "--idle-minutes", "0.5")
    assert len(records(dns, "fleeting")) == 2
    eventually(
        lambda: "fleeting" not in {s.name for s in fake.state.servers.values()},
        timeout=240,
        what="the idle workspace to delete itself",
        interval=3,
    )
    assert records(dns, "fleeting") == {}
