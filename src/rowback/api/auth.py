"""Every request carries the service's access token (``Authorization: Bearer …``).

The token is random per service start and written, with the address, into the store
directory with mode 0600: whoever may read the store may ask the service, nobody else.
Roles and TLS come later; until then a non-loopback address is the operator's choice.
"""

from __future__ import annotations

import hmac

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from rowback.api.problems import MEDIA

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Probes a supervisor (systemd, Kubernetes) calls without credentials; they say only
whether the service is up and caught up."""


DETAIL = (
    "missing or wrong access token: send 'Authorization: Bearer <token>' "
    "(the token is in the store directory's service.json)"
)


class TokenGuard:
    """Pure ASGI middleware (no body re-streaming, unlike Starlette's BaseHTTPMiddleware):
    a request without the token gets a 401 problem and never reaches a route."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._ok(scope):
            await self.app(scope, receive, send)
            return
        body = orjson.dumps(
            {
                "type": "about:blank",
                "title": "Unauthorized",
                "status": 401,
                "detail": DETAIL,
                "instance": scope["path"],
            }
        )
        headers = [
            (b"content-type", MEDIA.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="rowback"'),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _ok(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self.token
                )
        return False
