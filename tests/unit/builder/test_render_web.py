"""Rendering a workspace with a domain and a desktop: what reaches the VM of the web login (a
verifier, never the password; Caddy's file without any), who runs what (the login service as its
own user behind a socket only Caddy may use; the code UI with the agent's credentials, loaded as
the agent), the VNC password instead of none, the fail2ban jail, and all of it within Hetzner's
user-data limit."""

from __future__ import annotations

import json
import subprocess

from vmgen.contract.enums import StoreKind
from vmgen.contract.weblogin import WebLoginSettings
from vmgen.laptop.builder import check_schema, check_size
from vmgen.laptop.caddy import new_login
from vmgen.laptop.providers import PROVIDERS, provider_class
from vmgen.laptop.spec import WebSpec

from .test_render import files_of, make_spec, render

USER_DATA_LIMITS = {name: provider_class(name).user_data_limit for name in PROVIDERS}

LOGIN = new_login()
SPEC = make_spec(web=WebSpec(domain="dev.example.com", preview_ports=(3000, 5173, 8000, 8080)), desktop=True)
USER_DATA = render(SPEC, web_login=LOGIN)
FILES = files_of(USER_DATA)


def content(path: str) -> str:
    return FILES[path]["content"]


def test_it_is_valid_and_fits_hetzners_limit_with_every_preview():
    check_schema(USER_DATA)
    check_size(USER_DATA, USER_DATA_LIMITS["hetzner"], "hetzner")


def test_the_vm_gets_the_verifier_and_never_the_password():
    assert LOGIN.password not in USER_DATA
    assert content("/etc/vmgen/web-login/login") == LOGIN.verifier + "\n"
    for path in ("/etc/vmgen/web-login/login", "/etc/vmgen/web-login/settings.json", "/etc/vmgen/Caddyfile"):
        assert FILES[path]["permissions"] == "0600" and FILES[path]["owner"] == "root:root", path
    assert LOGIN.verifier not in content("/etc/vmgen/Caddyfile")
    settings = WebLoginSettings.loads(content("/etc/vmgen/web-login/settings.json"))
    assert (
        settings.host == "app.dev.example.com"
        and settings.desktop
        and settings.preview_ports == (3000, 5173, 8000, 8080)
    )


def test_the_login_service_is_neither_root_nor_the_agent_and_only_caddy_reaches_it():
    service = content("/etc/systemd/system/vmgen-web-login.service")
    assert "User=vmgen-web\n" in service and "RestrictAddressFamilies=AF_UNIX" in service
    # Caddy's group and no other: the page's socket (root:caddy) admits it, for the page's event
    # stream it relays; the agent's group never.
    assert "SupplementaryGroups=caddy\n" in service and "agent" not in service.split("SupplementaryGroups=")[1]
    socket = content("/etc/systemd/system/vmgen-web-login.socket")
    assert "ListenStream=/run/vmgen/web-login.sock" in socket
    assert "SocketUser=root\nSocketGroup=caddy\nSocketMode=0660" in socket
    provision = content("/usr/local/lib/vmgen/provision.sh")
    # Keys and permissions are set before fail2ban and Caddy start.
    assert provision.index("phase web-secrets") < provision.index("systemctl start fail2ban")
    assert "chown root:caddy /etc/vmgen/Caddyfile\nchmod 0640 /etc/vmgen/Caddyfile" in provision
    assert "chown -R root:vmgen-web /etc/vmgen/web-login\nchmod 0750 /etc/vmgen/web-login" in provision


def test_the_code_ui_holds_nothing_of_the_web_login():
    install = content("/usr/local/lib/vmgen/code-ui-install")
    assert "web-login" not in install and "web-user" not in install
    assert "unusable" in content("/usr/local/lib/vmgen/code-ui-setup.mjs")  # its one account's password
    unit = content("/etc/systemd/system/vmgen-code-ui.service")
    assert "User=agent" in unit and "ExecStart=/usr/local/lib/vmgen/code-ui-run" in unit
    assert "ConditionPathExists=/home/agent/.vmgen/handover-done" in unit
    assert "EnvironmentFile" not in unit and "agent.env" not in unit  # no key of its own; systemd reads no agent file
    run = content("/usr/local/lib/vmgen/code-ui-run")
    assert ". /home/agent/.config/vmgen/agent.env" in run  # as the agent, in its own process
    # vmgen's settings come after the agent's file, which cannot switch platform mode off or bind elsewhere.
    assert run.index("agent.env") < run.index("export HOST=127.0.0.1") < run.index("VITE_IS_PLATFORM=true")
    assert (
        "/usr/local/bin/node /opt/vmgen-code-ui/node_modules/@cloudcli-ai/cloudcli/dist-server/server/index.js" in run
    )
    assert "Wants=vmgen-code-ui.service" in content("/etc/systemd/system/vmgen-agent.service")


def test_the_desktop_has_a_vnc_password_and_its_link_goes_through_the_login():
    vnc = content("/etc/systemd/system/vmgen-desktop-vnc.service")
    assert "-nopw" not in vnc and "-passwdfile /etc/vmgen/desktop-password" in vnc
    assert json.loads(content("/etc/vmgen/web.json"))["desktop_url"] == "https://desktop.app.dev.example.com/"


def test_fail2ban_watches_the_web_login():
    jail = content("/etc/fail2ban/jail.d/vmgen.local")
    assert "[vmgen-web]" in jail and "logpath = /var/log/caddy/vmgen-access.log" in jail
    assert "maxretry = 5" in jail
    assert "<ADDR>" in content("/etc/fail2ban/filter.d/vmgen-web.conf")


def test_without_a_domain_no_web_login_and_no_web_jail():
    files = files_of(render(make_spec(desktop=True)))
    assert not [path for path in files if "web-login" in path or "Caddyfile" in path]
    assert "[vmgen-web]" not in files["/etc/fail2ban/jail.d/vmgen.local"]["content"]
    assert "-passwdfile" in files["/etc/systemd/system/vmgen-desktop-vnc.service"]["content"]


def test_the_scripts_lose_only_their_comments():
    """Comments stay in the templates (user-data has a size limit); the scripts still parse."""
    scripts = {path: f["content"] for path, f in FILES.items() if f["permissions"] == "0755"}
    assert "/usr/local/lib/vmgen/provision.sh" in scripts
    for path, script in scripts.items():
        assert script.startswith("#!"), path
        assert not any(line.lstrip().startswith("#") for line in script.splitlines()[1:]), path
        if script.startswith("#!/usr/bin/python3"):
            compile(script, path, "exec")
        else:
            subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_every_unit_root_runs_has_a_finite_start_and_stop_timeout():
    """Nothing vmgen runs may sit "activating" or "deactivating" for ever (the lifetime unit did)."""
    from dataclasses import replace

    from vmgen.contract.documents import ACT_FALLBACK_SECONDS, BackupTarget
    from vmgen.laptop.spec import WatchdogTuning

    spec = replace(SPEC, watchdog=WatchdogTuning(max_lifetime_hours=2))
    store = BackupTarget(kind=StoreKind.S3, bucket="b", deadline_minutes=20)
    files = files_of(render(spec, web_login=LOGIN, backup=(store, "age1x")))
    units = {path: f["content"] for path, f in files.items() if path.endswith(".service")}
    assert len(units) >= 14
    for path, text in units.items():
        timeouts = dict(line.split("=", 1) for line in text.splitlines() if line.startswith("Timeout"))
        assert {"TimeoutStartSec", "TimeoutStopSec"} <= set(timeouts), path
        assert all(value not in ("infinity", "0") for value in timeouts.values()), path
    act = units["/etc/systemd/system/vmgen-act.service"]
    # The backup's deadline, then the fallback (snapshot, delete), then a margin; then systemd powers off.
    assert f"TimeoutStartSec={20 * 60 + ACT_FALLBACK_SECONDS + 60}s" in act and "FailureAction=poweroff" in act
    assert "Unit=vmgen-act.service" in files["/etc/systemd/system/vmgen-lifetime.timer"]["content"]
    socket = files["/etc/systemd/system/vmgen-control.socket"]["content"]
    assert "Accept=no" in socket and "TriggerLimitIntervalSec=0" in socket


def test_the_page_is_its_own_user_on_a_socket_only_caddy_reaches_and_root_answers_its_requests():
    service = content("/etc/systemd/system/vmgen-web.service")
    assert "User=vmgen-page\n" in service and "User=agent" not in service and "HOME=" not in service
    # An isolated interpreter: nothing on its import path the agent could write.
    assert "ExecStart=/opt/vmgen/bin/python -I -m vmgen.vmside.main vmside web\n" in service
    assert "RestrictAddressFamilies=AF_UNIX\n" in service and "ProtectHome=true" in service
    socket = content("/etc/systemd/system/vmgen-web.socket")
    assert "ListenStream=/run/vmgen/page.sock\nSocketUser=root\nSocketGroup=caddy\nSocketMode=0660" in socket
    ops = content("/etc/systemd/system/vmgen-page-ops.socket")
    assert "SocketUser=root\nSocketGroup=vmgen-page\nSocketMode=0660\nAccept=yes" in ops
    assert "-I -m vmgen.vmside.pageops" in content("/etc/systemd/system/vmgen-page-ops@.service")
    assert "-I -m vmgen.vmside.main vmside web-login" in content("/etc/systemd/system/vmgen-web-login.service")
    caddyfile = content("/etc/vmgen/Caddyfile")
    assert "import vmgen_login unix//run/vmgen/page.sock\n" in caddyfile and "7392" not in caddyfile


def test_without_a_domain_the_page_is_reached_through_ssh_as_the_agent():
    bare = files_of(render(make_spec()))
    socket = bare["/etc/systemd/system/vmgen-web.socket"]["content"]
    assert "SocketGroup=agent\n" in socket
    assert "User=vmgen-page\n" in bare["/etc/systemd/system/vmgen-web.service"]["content"]


def test_certificates_come_by_http_01_from_the_configured_acme_server():
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    spec = make_spec(web=WebSpec(domain="dev.example.com", acme_ca="https://acme.test:14000/dir", acme_ca_root=pem))
    files = files_of(render(spec, web_login=LOGIN))
    caddyfile = files["/etc/vmgen/Caddyfile"]["content"]
    assert (
        "cert_issuer acme https://acme.test:14000/dir {\n\t\ttrusted_roots /etc/vmgen/acme-ca-root.pem\n"
        "\t\tdisable_tlsalpn_challenge\n\t}"
    ) in caddyfile
    assert files["/etc/vmgen/acme-ca-root.pem"]["content"] == pem
    # Caddy's certificate events, readable by the page and over SSH: why a hostname has none.
    assert "include tls http.acme_client" in caddyfile
    assert "-m 0644 /dev/null /var/log/vmgen/web-tls.log" in files["/usr/local/lib/vmgen/provision.sh"]["content"]


def test_previews_on_a_preview_domain_are_another_site():
    spec = make_spec(
        web=WebSpec(domain="dev.example.com", preview_domain="previews.example.net", preview_ports=(3000,))
    )
    files = files_of(render(spec, web_login=LOGIN))
    settings = WebLoginSettings.loads(files["/etc/vmgen/web-login/settings.json"]["content"])
    (preview,) = [site for site in settings.sites() if site.role == "preview"]
    assert (preview.hostname, preview.same_site) == ("p3000.app.previews.example.net", False)
    assert "\np3000.app.previews.example.net {\n" in files["/etc/vmgen/Caddyfile"]["content"]
    links = json.loads(files["/etc/vmgen/web.json"]["content"])
    assert links["previews"] == {"3000": "https://p3000.app.previews.example.net/"}


def test_a_domain_without_the_code_ui():
    spec = make_spec(web=WebSpec(domain="dev.example.com", code_ui_version="off"))
    files = files_of(render(spec, web_login=LOGIN))
    assert not any("code-ui" in path for path in files)
    settings = WebLoginSettings.loads(files["/etc/vmgen/web-login/settings.json"]["content"])
    assert not settings.code and "code.app.dev.example.com" not in files["/etc/vmgen/Caddyfile"]["content"]
    assert json.loads(files["/etc/vmgen/web.json"]["content"])["code_url"] == ""
    assert "vmgen-code-ui-install" not in files["/usr/local/lib/vmgen/provision.sh"]["content"]
