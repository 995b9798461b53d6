"""Every request carries the service's access token (``Authorization: Bearer …``).

The token is random per service start and written, with the address, into the store
directory with mode 0600: whoever may read the store may ask the service, nobody else.
Roles and TLS come later; until then a non-loopback address is the operator's choice.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from rowback.api.problems import Problem

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Probes a supervisor (systemd, Kubernetes) calls without credentials; they say only
whether the service is up and caught up."""


def check(request: Request, token: str) -> None:
    if request.url.path in OPEN_PATHS:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), token):
        raise Problem(
            401,
            "Unauthorized",
            "missing or wrong access token: send 'Authorization: Bearer <token>' "
            "(the token is in the store directory's service.json)",
            headers={"WWW-Authenticate": 'Bearer realm="rowback"'},
        )
