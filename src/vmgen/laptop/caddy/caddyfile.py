"""The Caddyfile (Caddy 2.6 syntax), as a pure function of the workspace's web settings.

Every hostname asks the login service (`forward_auth` over its unix socket) before anything
reaches a backend; only `/healthz` and the login's own paths (`/.vmgen/...`, answered by the
login service itself) are open, and on the workspace's own hostname the one path where the phone
presses an ntfy button (contract.phone_actions.PHONE_PATH): it goes to the page without the check,
without cookies, and the page hands its body (a capability root minted) to root, who decides.
The session cookie never reaches a backend: the login service answers each check with the
request's cookies minus its own, and Caddy sends those on instead.
Websockets and event streams go to the login service whole: it checks them the same way and
relays them for as long as the login lasts (forward_auth would ask once, at the upgrade). Nothing
else about the login exists in this file: no password, no hash.

Hostnames are explicit (no wildcard certificate): Caddy obtains one certificate per name by
HTTP-01 from Let's Encrypt or another ACME server (`acme_ca`), or issues them from its own local
CA (`tls internal`) where no ACME server is reachable. Its certificate events go to a log of
their own, which vmgen reads to say why a hostname has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...contract.enums import TlsMode
from ...contract.names import PORTS, VM, VmPaths
from ...contract.phone_actions import PHONE_PATH
from ...contract.weblogin import LOGIN_PREFIX, MAX_HEADER_BYTES, WebLoginSettings, WebSite

CODE_PORT = PORTS.code_ui  # CloudCLI, the Claude Code web UI
DESKTOP_PORT = PORTS.novnc  # websockify serving noVNC

# On vmgen's own hostnames. Deferred: they replace whatever a backend sent, except the CSP line,
# which is added (a second policy only narrows the page server's own).
SECURITY_HEADERS = (
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Frame-Options", "DENY"),
    ("+Content-Security-Policy", "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)
# CloudCLI's own login form would send whatever is typed into it to CloudCLI, the agent's process.
CODE_UI_LOGIN_PATHS = ("/api/auth/login", "/api/auth/register")


@dataclass(frozen=True)
class WebAccess:
    login: WebLoginSettings  # the hostnames, and what the login service knows of them
    tls: TlsMode = TlsMode.ACME
    acme_email: str = ""
    acme_ca: str = ""  # an ACME directory URL other than Let's Encrypt's
    acme_ca_root: bool = False  # trust VmPaths.acme_ca_root for the ACME server's own HTTPS
    # Other ports only where 80 and 443 are not Caddy's (a test on a developer's machine).
    http_port: int = 80
    https_port: int = 443

    @property
    def host(self) -> str:
        return self.login.host


def hostnames(web: WebAccess, vm: VmPaths = VM) -> dict[str, str]:
    """Each public hostname and where Caddy sends its requests."""
    return {site.hostname: upstream(site, vm) for site in web.login.sites()}


def upstream(site: WebSite, vm: VmPaths = VM) -> str:
    """Where Caddy sends a site's requests: the page's unix socket, or a port on the loopback."""
    return f"unix/{vm.page_socket}" if site.role == "page" else f"127.0.0.1:{site.port}"


def render_caddyfile(web: WebAccess, vm: VmPaths = VM) -> str:
    # Values are vmgen's own: validated hostnames, fixed words, numbers, vmgen's paths. Nothing
    # here comes from a repository or a prompt. Snippets keep it small: user-data has a limit.
    options = ["admin off", "servers {", f"\tmax_header_size {MAX_HEADER_BYTES}", "}"]
    if web.tls == TlsMode.INTERNAL:
        options.append("local_certs")
    else:
        # HTTP-01 only (through port 80): one challenge whose failure says what to fix (DNS, port
        # 80), not a second one through 443 that fails or succeeds for other reasons.
        options.append(f"cert_issuer acme {web.acme_ca} {{" if web.acme_ca else "cert_issuer acme {")
        options += [f"\temail {web.acme_email}"] if web.acme_email else []
        options += [f"\ttrusted_roots {vm.acme_ca_root}"] if web.acme_ca_root else []
        options += ["\tdisable_tlsalpn_challenge", "}"]
    if web.http_port != 80:
        options.append(f"http_port {web.http_port}")
    if web.https_port != 443:
        options.append(f"https_port {web.https_port}")
    # Certificate events alone (Caddy's and its ACME client's), in a file anyone on the VM may
    # read: no request is ever in it.
    options += ["log vmgen_tls {", f"\toutput file {vm.web_tls_log} {{", "\t\troll_disabled", "\t}"]
    options += ["\tformat json", "\tinclude tls http.acme_client", "}"]
    blocks = [
        _block("", options),
        _block(f"({LOGIN_SNIPPET})", _login_lines(vm)),
        _block(f"({OWN_SNIPPET})", ["header {", "\tdefer", *(f'\t{k} "{v}"' for k, v in SECURITY_HEADERS), "}"]),
    ]
    blocks.extend(_site(web, site, vm) for site in web.login.sites())
    return "\n".join(blocks)


LOGIN_SNIPPET = "vmgen_login"  # every site: the login service before the backend (upstream: args.0)
OWN_SNIPPET = "vmgen_own"  # vmgen's own hostnames: the security headers


def _block(name: str, lines: list[str]) -> str:
    head = f"{name} {{\n" if name else "{\n"
    return head + "".join(f"\t{line}\n" for line in lines) + "}\n"


# Caddy keeps up to 32 idle connections per handler to an upstream by default, and the login
# service holds a thread for each (at most weblogin.server.MAX_CONNECTIONS): four handlers on every
# hostname could park more idle connections than it has threads, and the next request (a desktop's
# websocket) then waited for Caddy to drop one (2 minutes). A unix socket costs nothing to connect.
LOGIN_IDLE_CONNECTIONS = 2  # per handler; 4 handlers x hostnames stays far below the service's 192


def _login_lines(vm: VmPaths) -> list[str]:
    login = f"unix/{vm.web_login_socket}"
    few_idle = ["\t\ttransport http {", f"\t\t\tkeepalive_idle_conns_per_host {LOGIN_IDLE_CONNECTIONS}", "\t\t}"]
    to_login = [f"\treverse_proxy {login} {{", "\t\theader_up X-Vmgen-Client {remote_host}", *few_idle]
    return [
        # Only the login's own paths are logged: the failed logins fail2ban counts, and never a
        # URL of a backend's (the code UI's websocket carries its token in the query).
        "log {",
        f"\toutput file {vm.web_access_log}",
        "\tformat json",
        "}",
        f"@not_login not path {LOGIN_PREFIX}/*",
        "skip_log @not_login",
        "handle /healthz {",
        '\trespond "ok" 200',
        "}",
        # The check is forward_auth's question; from outside it would only answer the same.
        f"handle {LOGIN_PREFIX}/check {{",
        "\trespond 404",
        "}",
        f"handle {LOGIN_PREFIX}/* {{",
        *to_login,
        "\t}",
        "}",
        # Websockets and event streams: the login service checks and relays them itself, and
        # closes them when the login ends.
        "@vmgen_upgrade header Upgrade *",
        "handle @vmgen_upgrade {",
        *to_login,
        "\t}",
        "}",
        "@vmgen_events header Accept *text/event-stream*",
        "handle @vmgen_events {",
        *to_login,
        "\t\tflush_interval -1",
        "\t}",
        "}",
        "handle {",
        f"\tforward_auth {login} {{",
        f"\t\turi {LOGIN_PREFIX}/check",
        "\t\tcopy_headers X-Vmgen-Cookie>Cookie",
        "\t\theader_up X-Vmgen-Client {remote_host}",
        *few_idle,
        "\t}",
        "\treverse_proxy {args.0}",
        "}",
    ]


def _site(web: WebAccess, site: WebSite, vm: VmPaths) -> str:
    lines = [f"import {OWN_SNIPPET}"] if site.own else []
    if site.role == "code":
        message = f'{{"error": "Sign in at https://{web.host}/ and open the code UI from there."}}'
        lines += [
            f"@code_ui_login path {' '.join(CODE_UI_LOGIN_PATHS)}",
            "handle @code_ui_login {",
            f"\trespond `{message}` 403",
            "}",
        ]
    if site.role == "page":
        # An ntfy button from the phone: no session; its body is its credential, checked by root.
        lines += [
            f"handle {PHONE_PATH} {{",
            f"\treverse_proxy {upstream(site, vm)} {{",
            "\t\theader_up -Cookie",
            "\t}",
            "}",
        ]
    if site.own and site.role != "page":
        # The agent's process answers here: whatever it says about caching, the browser asks
        # again before it shows a stored answer, so that after Sign out only the login answers.
        lines += [
            f"@backend not path {LOGIN_PREFIX}/*",
            "header @backend {",
            "\tdefer",
            '\tCache-Control "no-cache"',
            "}",
        ]
    lines.append(f"import {LOGIN_SNIPPET} {upstream(site, vm)}")
    return _block(site.hostname, lines)
