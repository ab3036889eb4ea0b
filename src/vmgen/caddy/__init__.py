"""Caddy in front of a workspace's web services: explicit hostnames, basic auth, TLS."""

from .auth import Login, new_login
from .caddyfile import CODE_PORT, DESKTOP_PORT, PAGE_PORT, WebAccess, hostnames, render_caddyfile

__all__ = ["CODE_PORT", "DESKTOP_PORT", "PAGE_PORT", "Login", "WebAccess", "hostnames", "new_login", "render_caddyfile"]
