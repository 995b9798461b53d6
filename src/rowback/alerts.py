"""POST alerts to the policy's webhooks, signed, retried, and safe to receive twice.

Each delivery has one id (``X-Rowback-Delivery``) kept across its retries, so a receiver
that saw a request whose answer was lost can drop the repeat. The body is signed with
HMAC-SHA256 over ``"{timestamp}.{body}"`` (``X-Rowback-Signature: sha256=<hex>``), the
timestamp in ``X-Rowback-Timestamp``: signing the time too lets a receiver refuse old
requests replayed by someone else. A retry is a fresh request, so it carries a fresh
timestamp and signature. Connection errors, timeouts, 429 and 5xx are retried with
exponential backoff (or the server's ``Retry-After`` seconds, capped); other answers are
final. Building the payload is the caller's business.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from rowback.errors import RowbackError
from rowback.policy import Webhook

__all__ = ["MAX_DELAY", "Delivery", "WebhookError", "send", "sign", "verify"]

MAX_DELAY = 30.0
"""The longest wait between attempts, in seconds, whatever ``Retry-After`` asks."""


class WebhookError(RowbackError):
    """A webhook cannot be sent at all (its secret is missing); nothing was attempted."""


@dataclass(frozen=True)
class Delivery:
    """How sending one alert went."""

    ok: bool
    attempts: int
    status: int | None
    """The last HTTP status; None when no answer came (connection error, timeout)."""
    error: str | None
    """Why it failed, in one line; None when ok."""
    delivery_id: str = ""
    """The ``X-Rowback-Delivery`` id every attempt carried."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Rowback-Signature`` value for ``body`` sent at ``timestamp``.

    >>> sign("s3cret", "1764763200", b'{"a":1}')[:15]
    'sha256=ed5d9ae4'
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (the header's value) signs ``body`` at ``timestamp``.

    Compares in constant time. Receivers should also refuse timestamps far from now.

    >>> verify("s3cret", "1", b"{}", sign("s3cret", "1", b"{}"))
    True
    >>> verify("s3cret", "2", b"{}", sign("s3cret", "1", b"{}"))
    False
    """
    expected = sign(secret, timestamp, body).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def send(
    webhook: Webhook,
    payload: Mapping[str, Any],
    *,
    attempts: int = 5,
    backoff: float = 0.5,
    timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> Delivery:
    """POST ``payload`` as JSON to ``webhook``, trying up to ``attempts`` times.

    Waits ``backoff``, then twice that, and so on between attempts, or ``Retry-After``
    seconds when the server gives them; never more than ``MAX_DELAY``. Raises
    ``WebhookError`` when the webhook names a secret variable that is unset or empty;
    every failure to deliver is in the returned ``Delivery`` instead.
    """
    secret = _secret(webhook)
    body = orjson.dumps(dict(payload))
    delivery_id = str(uuid.uuid4())
    status: int | None = None
    error = "no attempt made"
    attempt = 0
    with httpx.Client(timeout=timeout, transport=transport) as client:
        for attempt in range(1, max(attempts, 1) + 1):
            delay: float | None = None
            try:
                response = client.post(
                    webhook.url, content=body, headers=_headers(delivery_id, body, secret)
                )
            except httpx.TimeoutException:
                status, error = None, f"POST {webhook.url}: no answer within {timeout:g} s"
            except httpx.TransportError as e:
                status, error = None, f"POST {webhook.url}: {type(e).__name__}: {e}"
            else:
                status = response.status_code
                if response.is_success:
                    return Delivery(True, attempt, status, None, delivery_id)
                error = f"POST {webhook.url}: HTTP {status} {response.reason_phrase}".rstrip()
                if status != 429 and status < 500:
                    return Delivery(False, attempt, status, error, delivery_id)
                delay = _retry_after(response)
            if attempt < attempts:
                wait = backoff * 2 ** (attempt - 1) if delay is None else delay
                sleep(min(wait, MAX_DELAY))
    return Delivery(False, attempt, status, error, delivery_id)


def _secret(webhook: Webhook) -> str | None:
    if webhook.secret_env is None:
        return None
    secret = os.environ.get(webhook.secret_env, "")
    if not secret:
        raise WebhookError(
            f"webhook {webhook.url}: secret_env {webhook.secret_env} is not set "
            "(or is empty) in the environment; set it, or remove secret_env to send unsigned"
        )
    return secret


def _headers(delivery_id: str, body: bytes, secret: str | None) -> dict[str, str]:
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "rowback-webhook",
        "X-Rowback-Event": "incident",
        "X-Rowback-Delivery": delivery_id,
        "X-Rowback-Timestamp": timestamp,
    }
    if secret is not None:
        headers["X-Rowback-Signature"] = sign(secret, timestamp, body)
    return headers


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, if the server gave a number of them (dates are ignored)."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
