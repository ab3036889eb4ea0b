"""The Caddyfile: explicit hostnames, auth on every site except /healthz, checked by the real
`caddy validate` (Debian's Caddy 2.6)."""

from __future__ import annotations

import re
import shutil
import subprocess

import bcrypt
import pytest

from vmgen.caddy import Login, WebAccess, hostnames, new_login, render_caddyfile

LOGIN = Login.from_password("correct horse battery staple")
WEB = WebAccess(host="app.dev.example.com", user=LOGIN.user, password_hash=LOGIN.password_hash, tls="internal",
                desktop=True, preview_ports=(3000, 5173))


def test_hostnames_cover_the_page_code_desktop_and_previews():
    assert hostnames(WEB) == {"app.dev.example.com": 7392, "code.app.dev.example.com": 3001,
                              "desktop.app.dev.example.com": 6080, "p3000.app.dev.example.com": 3000,
                              "p5173.app.dev.example.com": 5173}
    assert "desktop.app.dev.example.com" not in hostnames(WebAccess(host="app.dev.example.com", user="u",
                                                                    password_hash="h"))


def test_every_site_asks_for_the_login_except_healthz():
    text = render_caddyfile(WEB)
    sites = re.findall(r"^(\S+) \{\n(.*?)^\}", text, flags=re.M | re.S)
    assert [name for name, _ in sites] == list(hostnames(WEB))
    for name, body in sites:
        healthz, rest = body.split("\thandle {\n")
        assert "respond \"ok\" 200" in healthz and "basicauth" not in healthz
        assert f"basicauth {{\n\t\t\tvmgen {LOGIN.password_hash}\n" in rest, name
        assert "tls internal" in body
    assert LOGIN.password not in text


def test_the_login_is_a_bcrypt_hash_of_a_generated_password():
    login = new_login()
    assert len(login.password) >= 20 and bcrypt.checkpw(login.password.encode(), login.password_hash.encode())
    assert new_login().password != login.password


@pytest.mark.parametrize("web", [WEB, WebAccess(host="app.dev.example.com", user="vmgen", tls="acme",
                                                acme_email="me@example.com", password_hash=LOGIN.password_hash)])
def test_caddy_validates_it(web, tmp_path):
    assert shutil.which("caddy"), "scripts/setup-system.sh installs caddy"
    config = tmp_path / "Caddyfile"
    config.write_text(render_caddyfile(web))
    result = subprocess.run(["caddy", "validate", "--adapter", "caddyfile", "--config", str(config)],
                            capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Valid configuration" in result.stdout + result.stderr
