"""The Caddyfile: explicit hostnames, the login service asked before any backend on every site
(only /healthz and the login's own paths are open), security headers on vmgen's own hostnames and
none added to previews; checked by the real `caddy validate` (Debian's Caddy 2.6)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from vmgen.contract.enums import TlsMode
from vmgen.contract.names import VmPaths
from vmgen.contract.phone_actions import PHONE_PATH
from vmgen.contract.weblogin import WebLoginSettings, check_password
from vmgen.laptop.caddy import WebAccess, hostnames, new_login, render_caddyfile

SETTINGS = WebLoginSettings(host="app.dev.example.com", user="vmgen", desktop=True, preview_ports=(3000, 5173))
WEB = WebAccess(SETTINGS, tls=TlsMode.INTERNAL)


def blocks(text: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+) \{\n(.*?)^\}", text, flags=re.MULTILINE | re.DOTALL))


def test_every_way_to_the_login_service_keeps_few_idle_connections():
    # Each is a thread of the login service while Caddy keeps it: Caddy's default of 32 per
    # handler, over four handlers on five hostnames, could hold more than the service has.
    login = blocks(render_caddyfile(WEB))["(vmgen_login)"]
    way_in = r"(?:reverse_proxy|forward_auth) unix//run/vmgen/web-login\.sock \{\n(.*?)\n\t\t\}\n"
    ways = re.findall(way_in, login, re.DOTALL)
    assert len(ways) == 4
    for way in ways:
        assert "transport http {" in way and "keepalive_idle_conns_per_host 2" in way, way


def test_hostnames_cover_the_page_code_desktop_and_previews():
    # The page on its unix socket (no port the agent could bind first), the rest on the loopback.
    assert hostnames(WEB) == {
        "app.dev.example.com": "unix//run/vmgen/page.sock",
        "code.app.dev.example.com": "127.0.0.1:3001",
        "desktop.app.dev.example.com": "127.0.0.1:6080",
        "p3000.app.dev.example.com": "127.0.0.1:3000",
        "p5173.app.dev.example.com": "127.0.0.1:5173",
    }
    assert "desktop.app.dev.example.com" not in hostnames(
        WebAccess(WebLoginSettings(host="app.dev.example.com", user="u"))
    )


def test_every_site_asks_the_login_service_before_its_backend():
    found = blocks(render_caddyfile(WEB))
    login = found.pop("(vmgen_login)")
    found.pop("(vmgen_own)")
    assert list(found) == list(hostnames(WEB))
    for name, body in found.items():
        assert body.rstrip().endswith(f"import vmgen_login {hostnames(WEB)[name]}"), name
        if name == WEB.host:  # the one path around the login: an ntfy button's POST, without cookies
            assert body.count("handle") == 1 and f"handle {PHONE_PATH} {{" in body and "header_up -Cookie" in body
        else:
            assert "handle" not in body or name.startswith("code."), name  # nothing routed around the login
    assert "basicauth" not in login
    assert 'handle /healthz {\n\t\trespond "ok" 200' in login
    last = login[login.index("\thandle {\n") :]
    assert last.index("forward_auth unix//run/vmgen/web-login.sock") < last.index("reverse_proxy {args.0}")
    # The backend gets the cookies the login service returns: never the session cookie.
    assert "copy_headers X-Vmgen-Cookie>Cookie" in last
    assert "handle /.vmgen/check {\n\t\trespond 404" in login


def test_no_password_or_verifier_is_in_it():
    login = new_login()
    text = render_caddyfile(WEB)
    assert login.password not in text and login.verifier not in text and "sha256$" not in text


def test_security_headers_on_vmgens_own_hostnames_only():
    found = blocks(render_caddyfile(WEB))
    own = found.pop("(vmgen_own)")
    for header in (
        "Strict-Transport-Security",
        'X-Frame-Options "DENY"',
        "+Content-Security-Policy \"frame-ancestors 'none'\"",
        'X-Content-Type-Options "nosniff"',
    ):
        assert header in own
    for name in hostnames(WEB):
        assert ("import vmgen_own" in found[name]) == (not name.startswith("p")), name


def test_the_code_uis_own_login_never_reaches_it():
    code = blocks(render_caddyfile(WEB))["code.app.dev.example.com"]
    assert "@code_ui_login path /api/auth/login /api/auth/register" in code
    assert "handle @code_ui_login {\n\t\trespond `" in code


def test_what_the_agents_processes_answer_is_asked_for_again_before_it_is_shown():
    # Sign out does not clear Chromium's cache (slow): a stored answer of the code UI or the
    # desktop is shown only after the login said yes again.
    found = blocks(render_caddyfile(WEB))
    for name in hostnames(WEB):
        revalidated = (
            '@backend not path /.vmgen/*\n\theader @backend {\n\t\tdefer\n\t\tCache-Control "no-cache"' in found[name]
        )
        assert revalidated == name.startswith(("code.", "desktop.")), name


def test_only_the_logins_paths_are_logged():
    login = blocks(render_caddyfile(WEB))["(vmgen_login)"]
    assert "output file /var/log/caddy/vmgen-access.log" in login
    assert "@not_login not path /.vmgen/*\n\tskip_log @not_login" in login


def test_the_login_is_a_salted_hash_of_a_generated_password():
    login = new_login()
    assert len(login.password) >= 20 and check_password(login.verifier, login.password)
    assert not check_password(login.verifier, login.password + "x")
    assert new_login().verifier != new_login().verifier


@pytest.mark.parametrize(
    "web",
    [
        WEB,
        WebAccess(SETTINGS, tls=TlsMode.ACME, acme_email="me@example.com"),
        WebAccess(SETTINGS, tls=TlsMode.INTERNAL, http_port=8080, https_port=8443),
    ],
)
def test_caddy_validates_it(web, tmp_path):
    assert shutil.which("caddy"), "scripts/setup-system.sh installs caddy"
    config = tmp_path / "Caddyfile"
    config.write_text(render_caddyfile(web, VmPaths(log=tmp_path)))  # Caddy opens its log to validate
    result = subprocess.run(
        ["caddy", "validate", "--adapter", "caddyfile", "--config", str(config)],
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Valid configuration" in result.stdout + result.stderr
