"""The Caddyfile (Caddy 2.6 syntax), as a pure function of the workspace's web settings.

Every site requires the login except `/healthz`. Hostnames are explicit (no wildcard
certificate): Caddy obtains one certificate per name by HTTP-01, or issues them from its own
local CA (`tls internal`) where no ACME server is reachable, as in the simulated cloud.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..contract.names import PORTS

PAGE_PORT = PORTS.page  # vmgen's workspace page (vmside web)
CODE_PORT = PORTS.code_ui  # CloudCLI, the Claude Code web UI
DESKTOP_PORT = PORTS.novnc  # websockify serving noVNC


@dataclass(frozen=True)
class WebAccess:
    host: str  # the workspace's own hostname, e.g. app.dev.example.com
    user: str
    password_hash: str  # bcrypt
    tls: str = "acme"  # "acme" (Let's Encrypt by HTTP-01) or "internal" (Caddy's local CA)
    acme_email: str = ""
    code: bool = True
    desktop: bool = False
    preview_ports: tuple[int, ...] = ()


def hostnames(web: WebAccess) -> dict[str, int]:
    """Each public hostname and the local port it is proxied to."""
    names = {web.host: PAGE_PORT}
    if web.code:
        names[f"code.{web.host}"] = CODE_PORT
    if web.desktop:
        names[f"desktop.{web.host}"] = DESKTOP_PORT
    for port in web.preview_ports:
        names[f"p{port}.{web.host}"] = port
    return names


def render_caddyfile(web: WebAccess) -> str:
    # Values are vmgen's own: a validated hostname, fixed words, a bcrypt hash ($ is literal in
    # a Caddyfile token), numbers. Nothing here comes from a repository or a prompt.
    options = ["admin off"]
    if web.tls == "acme" and web.acme_email:
        options.append(f"email {web.acme_email}")
    blocks = ["{\n" + "".join(f"\t{line}\n" for line in options) + "}\n"]
    for name, port in hostnames(web).items():
        tls = "\ttls internal\n" if web.tls == "internal" else ""
        blocks.append(
            f"{name} {{\n"
            f"{tls}"
            '\thandle /healthz {\n\t\trespond "ok" 200\n\t}\n'
            "\thandle {\n"
            f"\t\tbasicauth {{\n\t\t\t{web.user} {web.password_hash}\n\t\t}}\n"
            f"\t\treverse_proxy 127.0.0.1:{port}\n"
            "\t}\n"
            "}\n"
        )
    return "\n".join(blocks)
