"""What the login service shows and hands over: the sign-in form, the code UI's token and the
desktop's address. Every page is static apart from escaped values, and forbids being framed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from html import escape
from urllib.parse import quote

from ...contract.weblogin import LOGIN_PREFIX

# The code UI keeps its token under this localStorage key (CloudCLI's AuthContext).
CODE_UI_TOKEN_KEY = "auth-token"
DESKTOP_START = "/vnc.html?autoconnect=1&resize=remote"

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


def code_ui_handoff(token: str, path: str) -> tuple[bytes, str]:
    """A page on the code UI's hostname that stores its token where its frontend looks, then
    goes on; and the Content-Security-Policy that lets exactly this script run."""
    nonce = secrets.token_urlsafe(16)
    # json.dumps quotes both values; "<" is escaped so that neither can end the script element.
    script = (
        f"localStorage.setItem({json.dumps(CODE_UI_TOKEN_KEY)}, {json.dumps(token)});"
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


def code_ui_token(secret: str, user_id: int, user: str, expires: float, now: float | None = None) -> str:
    """A token CloudCLI accepts (HS256, its `jsonwebtoken`), expiring with the web session."""

    def part(value: object) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    issued = int(time.time() if now is None else now)
    signed = (
        part({"alg": "HS256", "typ": "JWT"})
        + "."
        + part({"userId": user_id, "username": user, "iat": issued, "exp": int(expires)})
    )
    signature = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return signed + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
