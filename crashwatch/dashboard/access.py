"""Who may read the dashboard: a bearer token on every request when one is set, and on a loopback bind only
loopback host names and same-origin websockets.

A browser cannot put an ``Authorization`` header on a page it opens or on a websocket, so the token is also
taken from ``?token=`` (the page then sets it as an HTTP-only, same-site cookie and drops it from the address)
and from that cookie. Without a token a loopback dashboard is open to this machine's users only; the Host
check keeps a web page elsewhere from reaching it through DNS rebinding, and the Origin check keeps one from
opening its websocket.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from crashwatch.contract.errors import CrashwatchError
from crashwatch.monitor.transports.zeromq import is_loopback

COOKIE = "crashwatch_token"
MIN_TOKEN_LENGTH = 16


class TokenError(CrashwatchError):
    """A token file that cannot be used; the message names it."""


def read_token(path: Path) -> str:
    """The token in ``path``: its first line, at least ``MIN_TOKEN_LENGTH`` characters."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TokenError(f"{path}: cannot read the token file ({err})") from None
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"{path}: the token must be one line of at least {MIN_TOKEN_LENGTH} characters "
                         "(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def host_name(host_header: str) -> str:
    """The host of a ``Host`` header, without its port (``[::1]:8080`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Access:
    """ASGI middleware in front of the whole app: pages, API, clips and the websocket."""

    def __init__(self, app: ASGIApp, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        refusal = self._refusal(scope, headers, query)
        if refusal is not None:
            status, why = refusal
            if scope["type"] == "websocket":
                return await WebSocketClose(code=1008, reason=why)(scope, receive, send)
            return await PlainTextResponse(why, status, headers={"WWW-Authenticate": "Bearer"} if status == 401
                                           else None)(scope, receive, send)
        if self.token is not None and scope["type"] == "http" and scope["path"] == "/" and "token" in query:
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return await response(scope, receive, send)
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope, headers: Headers, query: dict[str, list[str]]) -> tuple[int, str] | None:
        """(HTTP status, why) for a request to refuse, None for one to serve."""
        host = headers.get("host", "")
        if self.loopback and not is_loopback(f"tcp://{host_name(host)}:1"):
            return 403, f"host {host!r}: this dashboard answers to loopback names only (127.0.0.1, localhost)"
        origin = headers.get("origin")
        if scope["type"] == "websocket" and origin is not None and urlsplit(origin).netloc != host:
            return 403, f"origin {origin!r}: the websocket is for the dashboard's own page"
        if self.token is None:
            return None
        given = [headers.get("authorization", "").removeprefix("Bearer ").strip(),
                 *query.get("token", []), _cookie(headers, COOKIE)]
        if any(hmac.compare_digest(candidate.encode(), self.token.encode()) for candidate in given if candidate):
            return None
        return 401, ("a bearer token is required: open the page as /?token=TOKEN, or send "
                     "'Authorization: Bearer TOKEN' (the token is in the dashboard's --token-file)")


def _cookie(headers: Headers, name: str) -> str:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""
