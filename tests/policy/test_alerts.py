"""Webhook delivery against a real HTTP server on 127.0.0.1: signing, retries, giving up."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from rowback.alerts import MAX_DELAY, WebhookError, send, sign, verify
from rowback.errors import RowbackError
from rowback.policy import Webhook

SECRET = "correct horse battery staple"
PAYLOAD = {"incident": 7, "table": "public.products", "score": 0.93}


@dataclass
class Seen:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local webhook receiver: answers from ``script`` in order (then 200), records all."""

    url: str
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    stall: list[float] = field(default_factory=list)
    """Seconds to wait before answering, per request, in order."""
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.seen.append(Seen(self.path, dict(self.headers.items()), body))
                status, headers = state.script.pop(0) if state.script else (200, {})
                stall = state.stall.pop(0) if state.stall else 0.0
            time.sleep(stall)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/rowback"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ROWBACK_TEST_WEBHOOK_SECRET", SECRET)
    return "ROWBACK_TEST_WEBHOOK_SECRET"


class Sleeps(list[float]):
    """Records the waits ``send`` asks for instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_a_signed_post_verifies(receiver: Receiver, secret_env: str) -> None:
    delivery = send(Webhook(receiver.url, secret_env), PAYLOAD, sleep=Sleeps())
    assert (delivery.ok, delivery.attempts, delivery.status, delivery.error) == (
        True,
        1,
        200,
        None,
    )
    [request] = receiver.seen
    h = request.headers
    assert request.path == "/rowback"
    assert h["Content-Type"] == "application/json"
    assert h["X-Rowback-Event"] == "incident"
    assert h["X-Rowback-Delivery"] == delivery.delivery_id
    assert abs(int(h["X-Rowback-Timestamp"]) - time.time()) < 60
    assert orjson.loads(request.body) == PAYLOAD
    assert verify(SECRET, h["X-Rowback-Timestamp"], request.body, h["X-Rowback-Signature"])
    assert not verify("wrong", h["X-Rowback-Timestamp"], request.body, h["X-Rowback-Signature"])
    assert not verify(
        SECRET, h["X-Rowback-Timestamp"], request.body + b" ", h["X-Rowback-Signature"]
    )


def test_no_secret_env_means_no_signature(receiver: Receiver) -> None:
    assert send(Webhook(receiver.url), PAYLOAD).ok
    assert "X-Rowback-Signature" not in receiver.seen[0].headers


def test_two_503s_then_200_is_ok_after_three_attempts_with_one_delivery_id(
    receiver: Receiver, secret_env: str
) -> None:
    receiver.script = [(503, {}), (503, {})]
    sleeps = Sleeps()
    delivery = send(Webhook(receiver.url, secret_env), PAYLOAD, backoff=0.25, sleep=sleeps)
    assert (delivery.ok, delivery.attempts, delivery.status) == (True, 3, 200)
    assert len(receiver.seen) == 3
    assert {r.headers["X-Rowback-Delivery"] for r in receiver.seen} == {delivery.delivery_id}
    for r in receiver.seen:  # each attempt is signed on its own
        h = r.headers
        assert verify(SECRET, h["X-Rowback-Timestamp"], r.body, h["X-Rowback-Signature"])
    assert sleeps == [0.25, 0.5]  # exponential backoff


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_a_4xx_is_final(receiver: Receiver, status: int) -> None:
    receiver.script = [(status, {})]
    sleeps = Sleeps()
    delivery = send(Webhook(receiver.url), PAYLOAD, sleep=sleeps)
    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 1, status)
    assert f"HTTP {status}" in (delivery.error or "")
    assert len(receiver.seen) == 1
    assert sleeps == []


def test_retry_after_is_honoured_and_capped(receiver: Receiver) -> None:
    receiver.script = [(429, {"Retry-After": "7"}), (503, {"Retry-After": "3600"}), (503, {})]
    sleeps = Sleeps()
    delivery = send(Webhook(receiver.url), PAYLOAD, backoff=0.5, sleep=sleeps)
    assert (delivery.ok, delivery.attempts) == (True, 4)
    assert sleeps == [7.0, MAX_DELAY, 2.0]  # the third wait is backoff: 0.5 * 2**2


def test_a_server_that_keeps_failing_gives_up_after_the_attempts(receiver: Receiver) -> None:
    receiver.script = [(500, {})] * 3
    sleeps = Sleeps()
    delivery = send(Webhook(receiver.url), PAYLOAD, attempts=3, sleep=sleeps)
    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 3, 500)
    assert "HTTP 500" in (delivery.error or "")
    assert len(sleeps) == 2  # no wait after the last attempt


def test_a_timeout_is_retried(receiver: Receiver) -> None:
    receiver.stall = [1.0]
    delivery = send(Webhook(receiver.url), PAYLOAD, timeout=0.2, sleep=Sleeps())
    assert (delivery.ok, delivery.attempts) == (True, 2)


def test_connection_refused_retries_then_fails_with_the_reason() -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/rowback"
    sleeps = Sleeps()
    delivery = send(Webhook(url), PAYLOAD, attempts=4, backoff=0.1, sleep=sleeps)
    assert (delivery.ok, delivery.attempts, delivery.status) == (False, 4, None)
    assert delivery.error is not None
    assert url in delivery.error
    assert "ConnectError" in delivery.error
    assert "\n" not in delivery.error
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])


@pytest.mark.parametrize("value", [None, ""])
def test_an_unset_secret_is_one_line_error_before_sending(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("ROWBACK_TEST_UNSET_SECRET", raising=False)
    else:
        monkeypatch.setenv("ROWBACK_TEST_UNSET_SECRET", value)
    with pytest.raises(WebhookError) as caught:
        send(Webhook(receiver.url, "ROWBACK_TEST_UNSET_SECRET"), PAYLOAD)
    assert isinstance(caught.value, RowbackError)
    assert "ROWBACK_TEST_UNSET_SECRET" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert receiver.seen == []


def test_verify_refuses_malformed_signatures() -> None:
    good = sign(SECRET, "1", b"{}")
    assert verify(SECRET, "1", b"{}", good)
    for bad in ["", good[7:], good.upper(), "sha256=ñ", good + "0"]:
        assert not verify(SECRET, "1", b"{}", bad)
