"""Caddy in front of a workspace's web services: explicit hostnames, TLS, and the login service
asked before any backend (`forward_auth`)."""

from .auth import Login, new_login
from .caddyfile import CODE_PORT, DESKTOP_PORT, WebAccess, hostnames, render_caddyfile, upstream
from .fail2ban import WEB_BAN, WebBan

__all__ = [
    "CODE_PORT",
    "DESKTOP_PORT",
    "WEB_BAN",
    "Login",
    "WebAccess",
    "WebBan",
    "hostnames",
    "new_login",
    "render_caddyfile",
    "upstream",
]
