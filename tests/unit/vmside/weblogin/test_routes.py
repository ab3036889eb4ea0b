"""The login service's routes as functions, without a socket: forward_auth's answer, signing in
and the ticket to another hostname, and the refusals, each a Reply."""

from __future__ import annotations

from email.message import Message
from urllib.parse import urlencode, urlsplit

from vmgen.contract.weblogin import WebLoginSettings, make_verifier
from vmgen.vmside.weblogin.routes import Allowed, LoginRequest, answer
from vmgen.vmside.weblogin.server import LoginConfig, LoginService

HOST = "app.dev.example.com"
CODE = f"code.{HOST}"
PASSWORD = "correct-horse-battery-staple-0123"


def service() -> LoginService:
    settings = WebLoginSettings(host=HOST, user="vmgen", max_failures=3)
    return LoginService(LoginConfig(settings, make_verifier(PASSWORD)), clock=lambda: 1000.0)


def request(method: str, host: str, target: str, body: bytes = b"", **headers: str) -> LoginRequest:
    message = Message()
    message["Host"] = host
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return LoginRequest(method, target, message, body)


def sign_in(login: LoginService, to: str = "", password: str = PASSWORD):
    form = urlencode({"user": "vmgen", "password": password, "to": to, "path": "/"}).encode()
    sent = request(
        "POST",
        HOST,
        "/.vmgen/login",
        form,
        Content_Type="application/x-www-form-urlencoded",
        Origin=f"https://{HOST}",
        X_Vmgen_Client="198.51.100.7",
    )
    return answer(login, sent)


def header(reply, name: str) -> str:
    return next(value for key, value in reply.headers if key == name)


def test_forward_auth_sends_a_stranger_to_sign_in_and_lets_a_session_through() -> None:
    login = service()
    stranger = answer(login, request("GET", CODE, "/.vmgen/check", X_Forwarded_Uri="/x", Accept="text/html"))
    assert stranger.status == 302 and header(stranger, "Location").startswith(f"https://{HOST}/.vmgen/open?")
    signed = sign_in(login)
    assert signed.status == 303
    cookie = header(signed, "Set-Cookie").split(";")[0]
    allowed = answer(login, request("GET", HOST, "/.vmgen/check", X_Forwarded_Uri="/", Cookie=cookie))
    assert isinstance(allowed, Allowed) and allowed.status == 200


def test_signing_in_for_another_hostname_gives_a_ticket_there() -> None:
    reply = sign_in(service(), to="code")
    target = urlsplit(header(reply, "Location"))
    assert (target.netloc, target.path) == (CODE, "/.vmgen/session") and target.query.startswith("ticket=")


def test_a_wrong_password_and_another_origin_are_refused() -> None:
    login = service()
    assert sign_in(login, password="wrong").status == 401
    elsewhere = request("POST", HOST, "/.vmgen/login", b"", Origin="https://evil.example")
    assert answer(login, elsewhere).status == 403
    assert answer(login, request("GET", HOST, "/.vmgen/nothing")).status == 404
    worker = answer(login, request("GET", HOST, "/.vmgen/login", Service_Worker="script"))
    assert worker.status == 403 and b"service worker" in worker.body
