"""The Caddyfile (Caddy 2.6 syntax), as a pure function of the workspace's web settings.

Every hostname asks the login service (`forward_auth` over its unix socket) before anything
reaches a backend; only `/healthz` and the login's own paths (`/.vmgen/...`, answered by the
login service itself) are open. The session cookie never reaches a backend: the login service
answers each check with the request's cookies minus its own, and Caddy sends those on instead.
Nothing else about the login exists in this file: no password, no hash.

Hostnames are explicit (no wildcard certificate): Caddy obtains one certificate per name by
HTTP-01, or issues them from its own local CA (`tls internal`) where no ACME server is reachable,
as in the simulated cloud.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contract.names import PORTS, VM, VmPaths
from ..contract.weblogin import LOGIN_PREFIX, WebLoginSettings, WebSite

PAGE_PORT = PORTS.page  # vmgen's workspace page (vmside web)
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
    tls: str = "acme"  # "acme" (Let's Encrypt by HTTP-01) or "internal" (Caddy's local CA)
    acme_email: str = ""
    # Other ports only where 80 and 443 are not Caddy's (a test on a developer's machine).
    http_port: int = 80
    https_port: int = 443

    @property
    def host(self) -> str:
        return self.login.host


def hostnames(web: WebAccess) -> dict[str, int]:
    """Each public hostname and the local port it is proxied to."""
    return {site.hostname: site.port for site in web.login.sites()}


def render_caddyfile(web: WebAccess, vm: VmPaths = VM) -> str:
    # Values are vmgen's own: validated hostnames, fixed words, numbers, vmgen's paths. Nothing
    # here comes from a repository or a prompt. Snippets keep it small: user-data has a limit.
    options = ["admin off"]
    if web.tls == "internal":
        options.append("local_certs")
    elif web.acme_email:
        options.append(f"email {web.acme_email}")
    if web.http_port != 80:
        options.append(f"http_port {web.http_port}")
    if web.https_port != 443:
        options.append(f"https_port {web.https_port}")
    blocks = [
        _block("", options),
        _block(f"({LOGIN_SNIPPET})", _login_lines(vm)),
        _block(f"({OWN_SNIPPET})", ["header {", "\tdefer", *(f'\t{k} "{v}"' for k, v in SECURITY_HEADERS), "}"]),
    ]
    blocks.extend(_site(web, site) for site in web.login.sites())
    return "\n".join(blocks)


LOGIN_SNIPPET = "vmgen_login"  # every site: the login service before the backend (port: args.0)
OWN_SNIPPET = "vmgen_own"  # vmgen's own hostnames: the security headers


def _block(name: str, lines: list[str]) -> str:
    head = f"{name} {{\n" if name else "{\n"
    return head + "".join(f"\t{line}\n" for line in lines) + "}\n"


def _login_lines(vm: VmPaths) -> list[str]:
    login = f"unix/{vm.web_login_socket}"
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
        f"\treverse_proxy {login} {{",
        "\t\theader_up X-Vmgen-Client {remote_host}",
        "\t}",
        "}",
        "handle {",
        f"\tforward_auth {login} {{",
        f"\t\turi {LOGIN_PREFIX}/check",
        "\t\tcopy_headers X-Vmgen-Cookie>Cookie",
        "\t\theader_up X-Vmgen-Client {remote_host}",
        # Upgrade is hop-by-hop: a proxy drops it, so the login service gets it under this name.
        "\t\theader_up X-Vmgen-Upgrade {http.request.header.Upgrade}",
        "\t}",
        "\treverse_proxy 127.0.0.1:{args.0}",
        "}",
    ]


def _site(web: WebAccess, site: WebSite) -> str:
    lines = [f"import {OWN_SNIPPET}"] if site.own else []
    if site.role == "code":
        message = f'{{"error": "Sign in at https://{web.host}/ and open the code UI from there."}}'
        lines += [
            f"@code_ui_login path {' '.join(CODE_UI_LOGIN_PATHS)}",
            "handle @code_ui_login {",
            f"\trespond `{message}` 403",
            "}",
        ]
    lines.append(f"import {LOGIN_SNIPPET} {site.port}")
    return _block(site.hostname, lines)
