"""What the login service shows and hands over: the sign-in form, the code UI's opening page and
the desktop's address. Every page is static apart from escaped values, and forbids being framed."""

from __future__ import annotations

import json
import secrets
from html import escape
from urllib.parse import quote

from ...contract.names import DESKTOP_START
from ...contract.weblogin import LOGIN_PREFIX

# The code UI keeps its token under this localStorage key (CloudCLI's AuthContext); its frontend
# opens only with one shaped like a JWT there. This one has no expiry (so the frontend never asks
# to refresh it) and no signature: no server accepts it, and CloudCLI, in platform mode, asks none.
CODE_UI_TOKEN_KEY = "auth-token"
CODE_UI_PLACEHOLDER = "eyJhbGciOiJub25lIn0.eyJ2bWdlbiI6InNpZ25lZCBpbiBieSB2bWdlbidzIGxvZ2luIn0.none"

STYLE = (
    "body{font:16px system-ui,sans-serif;max-width:22rem;margin:12vh auto;padding:0 1rem;color:#222}"
    "h1{font-size:1.3rem}label{display:block;margin:.8rem 0 .2rem}"
    "input{width:100%;box-sizing:border-box;padding:.5rem;font:inherit}"
    "button{margin-top:1rem;padding:.5rem 1.2rem;font:inherit}.error{color:#b00020}"
)
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"


def login_page(workspace: str, user: str, to: str, path: str, error: str = "") -> bytes:
    message = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>vmgen: sign in</title><style>{STYLE}</style></head><body>"
        f"<h1>Sign in to {escape(workspace)}</h1>{message}"
        f'<form method=post action="{LOGIN_PREFIX}/login">'
        f'<input type=hidden name=to value="{escape(to)}"><input type=hidden name=path value="{escape(path)}">'
        f'<label for=user>User</label><input id=user name=user autocomplete=username value="{escape(user)}">'
        "<label for=password>Password</label>"
        "<input id=password name=password type=password autocomplete=current-password autofocus required>"
        "<button id=signin type=submit>Sign in</button></form>"
        "<p><small>The password: <code>vmgen login &lt;name&gt;</code> on your machine.</small></p>"
        "</body></html>"
    ).encode()


def message_page(title: str, text: str) -> bytes:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><p>{escape(text)}</p></body></html>"
    ).encode()


def code_ui_handoff(path: str) -> tuple[bytes, str]:
    """A page on the code UI's hostname that opens it signed in, then goes on; and the
    Content-Security-Policy that lets exactly this script run. CloudCLI runs in platform mode
    behind vmgen's login (vmgen/builder/codeui.py) and checks no token, but its frontend opens only
    with one in its storage: it gets `CODE_UI_PLACEHOLDER`, which opens nothing anywhere."""
    nonce = secrets.token_urlsafe(16)
    # json.dumps quotes both values; "<" is escaped so that neither can end the script element.
    script = (
        f"localStorage.setItem({json.dumps(CODE_UI_TOKEN_KEY)}, {json.dumps(CODE_UI_PLACEHOLDER)});"
        f"location.replace({json.dumps(path)});"
    ).replace("<", "\\u003c")
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>vmgen: opening the code UI</title>"
        f'</head><body><script nonce="{nonce}">{script}</script></body></html>'
    ).encode()
    return body, f"default-src 'none'; script-src 'nonce-{nonce}'; base-uri 'none'; frame-ancestors 'none'"


def desktop_start(password: str) -> str:
    """noVNC's page, connecting at once; the VNC password in the fragment, which no server sees."""
    return f"{DESKTOP_START}#password={quote(password, safe='')}"
