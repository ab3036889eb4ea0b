"""Certificates as they are really issued, on this machine: the Caddyfile vmgen renders, run by the
real Caddy against Pebble (Let's Encrypt's test server) through the real HTTP-01 challenge, and
what vmgen makes of Caddy's certificate log: issued, or one line saying why not (DNS pointing
elsewhere, the ACME server's refusal, its rate limit). The same on a launched workspace, with the
page, `vmgen status` and the launch saying it, is in tests/e2e/test_web_access.py."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.acme import AcmeFront, Pebble, ZoneDns, served_chain_verifies, zone_resolver
from tests.polling import wait_until
from tests.ports import free_port
from vmgen.contract.enums import TlsMode
from vmgen.contract.names import VmPaths
from vmgen.contract.weblogin import WebLoginSettings
from vmgen.laptop.caddy import WebAccess, render_caddyfile
from vmgen.vmside.web.certificates import read_events, statuses

HOST = "ws.test.example"
GOOD = (HOST, f"code.{HOST}", f"p3000.{HOST}")
ELSEWHERE, REFUSED, LIMITED = f"p8080.{HOST}", f"p8000.{HOST}", f"p5173.{HOST}"


@pytest.fixture(scope="module")
def issued(tmp_path_factory) -> Iterator[tuple[VmPaths, Pebble, int]]:
    assert shutil.which("caddy"), "scripts/setup-system.sh installs caddy"
    root = tmp_path_factory.mktemp("acme")
    http_port, https_port = free_port(), free_port()
    # The zone as the world sees it: the workspace's names here, one stale record elsewhere.
    records = {HOST: "127.0.0.1", f"*.{HOST}": "127.0.0.1", ELSEWHERE: "192.0.2.10"}
    dns = ZoneDns(zone_resolver(lambda: records))
    pebble = Pebble(root / "pebble", dns.port, ("127.0.0.1",), http_port=http_port).start()
    front = AcmeFront(pebble, rate_limited=[LIMITED], refused=[REFUSED])
    vm = VmPaths(run=root / "run", caddy_logs=root / "logs", etc=root / "etc", log=root / "log")
    for folder in (vm.run, vm.caddy_logs, vm.etc, vm.log):
        folder.mkdir()
    vm.acme_ca_root.write_bytes(pebble.ca.root.read_bytes())
    settings = WebLoginSettings(host=HOST, user="vmgen", preview_ports=(3000, 5173, 8000, 8080))
    web = WebAccess(
        settings,
        tls=TlsMode.ACME,
        acme_ca=f"https://127.0.0.1:{front.port}/dir",
        acme_ca_root=True,
        http_port=http_port,
        https_port=https_port,
    )
    (root / "Caddyfile").write_text(render_caddyfile(web, vm))
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
    names = [site.hostname for site in settings.sites()]
    try:
        done = wait_until(
            lambda: statuses(read_events(vm), names),
            lambda found: all(host.state != "pending" for host in found),
            timeout=60,
        )
        assert all(host.state != "pending" for host in done), (done, (root / "caddy.err").read_text()[-3000:])
        yield vm, pebble, https_port
    finally:
        caddy.terminate()
        caddy.wait(10)
        errors.close()
        front.stop()
        pebble.stop()
        dns.stop()


def test_a_certificate_through_http_01_with_the_chain_a_browser_verifies(issued):
    vm, pebble, https_port = issued
    found = {host.hostname: host for host in statuses(read_events(vm), list(GOOD))}
    assert {name: host.state for name, host in found.items()} == dict.fromkeys(GOOD, "issued")
    # Trusting Pebble's root alone: the leaf and Pebble's intermediate are what Caddy sends.
    for name in GOOD:
        assert served_chain_verifies("127.0.0.1", https_port, name, pebble.root()) == "", name
    assert "certificate verify failed" in served_chain_verifies(
        "127.0.0.1", https_port, HOST, pebble.ca.root.read_text()
    )


def test_each_hostname_without_a_certificate_says_why_in_one_line(issued):
    vm, _, _ = issued
    found = {host.hostname: host for host in statuses(read_events(vm), [ELSEWHERE, REFUSED, LIMITED])}
    assert {name: host.state for name, host in found.items()} == dict.fromkeys(found, "failed")
    assert found[ELSEWHERE].problem.startswith(
        "the ACME server's HTTP-01 check did not reach this VM "
        "(its check went to 192.0.2.10): point the name's DNS record"
    )
    assert found[REFUSED].problem.startswith("the ACME server refuses to issue for this name: Error creating")
    assert found[LIMITED].problem.startswith("the ACME server's rate limit: too many certificates (5) already")
    assert all("\n" not in host.problem and len(host.problem) <= 300 for host in found.values())
