"""``rowback run``: capture and serve the store from one process.

Capture owns the store's writer in the main thread; uvicorn serves the API from a thread
of its own, every request reading a snapshot apart from the writer. The address and a
random token go into ``<store>/service.json`` (mode 0600), which is how the CLI finds the
service; it is removed on a clean stop and ignored once its process is gone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from rowback.errors import BadParameter, RowbackError

SERVICE_FILE = "service.json"
DEFAULT_LISTEN = "127.0.0.1:0"


class Runner(Protocol):
    """What the service runs in its main thread: capture or a stream ingest."""

    def run(self) -> object: ...

    def stop(self) -> None:
        """Safe from a signal handler: finish the write in hand and return from ``run``."""
        ...


@dataclass(frozen=True)
class ServiceInfo:
    url: str
    token: str
    pid: int

    def alive(self) -> bool:
        """Whether the process that wrote the file still runs (a kill -9 leaves it)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; port 0 picks a free one).

    >>> parse_listen("127.0.0.1:8080")
    ('127.0.0.1', 8080)
    >>> parse_listen("[::1]:0")
    ('::1', 0)
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise BadParameter(
            "--listen", f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_info(store: Path) -> ServiceInfo | None:
    """The running service of ``store``, if its file is there and its process alive."""
    try:
        doc = orjson.loads((store / SERVICE_FILE).read_bytes())
        info = ServiceInfo(str(doc["url"]), str(doc["token"]), int(doc["pid"]))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RowbackError(f"{store / SERVICE_FILE}: unreadable ({e})") from None
    return info if info.alive() else None


def _write_info(store: Path, info: ServiceInfo) -> None:
    """Atomically, readable by the owner only: the token is a credential."""
    tmp = store / f".{SERVICE_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps({"url": info.url, "token": info.token, "pid": info.pid}))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, store / SERVICE_FILE)


def _remove_info(store: Path, pid: int) -> None:
    with contextlib.suppress(FileNotFoundError, RowbackError):
        current = read_info(store)
        if current is None or current.pid == pid:
            (store / SERVICE_FILE).unlink()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before capture starts so a taken port fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto given: asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP, and
    # without it every keep-alive response waits ~40 ms on the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise RowbackError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def serving(app: Any, sock: socket.socket) -> Iterator[None]:
    """Serve ``app`` on ``sock`` from a thread while the body runs."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failed.append(e)

    thread = threading.Thread(target=serve, name="rowback-api", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.02)
    if not server.started:
        raise RowbackError(f"the API server did not start: {failed[0] if failed else '?'}")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def run_service(
    store_dir: Path,
    make_app: Callable[[str], Any],
    runner: Runner,
    listen: str | None,
    notify: Callable[[str], None],
) -> object:
    """Bind, serve, write the service file, then run ``runner`` until it ends or a
    SIGTERM/SIGINT asks it to; the service file is removed on the way out."""
    host, port = parse_listen(listen or DEFAULT_LISTEN)
    if not is_loopback(host):
        notify(
            f"warning: listening on {host}, beyond this machine; every request needs the "
            "token, but the traffic is not encrypted (TLS and roles come later)"
        )
    token = secrets.token_urlsafe(32)
    sock = bind(host, port)
    try:
        with serving(make_app(token), sock):
            info = ServiceInfo(_url(sock), token, os.getpid())
            _write_info(store_dir, info)
            notify(f"serving {info.url} (token in {store_dir / SERVICE_FILE})")
            previous = {s: signal.signal(s, lambda *_: runner.stop()) for s in (2, 15)}
            try:
                return runner.run()
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
                _remove_info(store_dir, info.pid)
    finally:
        sock.close()
