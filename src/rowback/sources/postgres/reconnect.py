"""Keep capturing across lost source connections (a PostgreSQL restart, a failover, a
network cut): each loss ends one capture session, and a new one resumes from the store's
position after a growing pause. Nothing is lost or doubled by this, for the same reason
a kill -9 loses nothing: PostgreSQL resends whatever the store has not confirmed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg2

from rowback.errors import RowbackError
from rowback.sources.postgres.capture import Capture, CaptureConfig, CaptureStatus
from rowback.store.base import Store

FIRST_WAIT = 1.0
MAX_WAIT = 30.0
ONCE_ATTEMPTS = 5  # --once gives up after this many losses in a row (cron runs again)


def lost_connection(e: BaseException) -> str | None:
    """Why ``e`` means the connection to the source was lost, or None for other errors."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, RowbackError):
        return text if text.startswith("cannot connect to the source") else None
    if isinstance(e, psycopg2.OperationalError | psycopg2.InterfaceError):
        return text
    if isinstance(e, psycopg2.DatabaseError):
        code = e.pgcode
        # no SQLSTATE: the server went away mid-stream ("no COPY in progress"); class 08
        # is connection exceptions, 57 operator intervention (shutdown, crash, recovery)
        if code is None or code[:2] in ("08", "57"):
            return text
    return None


class ReconnectingCapture:
    """``Capture`` sessions one after another for as long as the connection drops.

    Nothing is retried before the first connection succeeds (a wrong DSN is the user's
    to fix), nor any error other than a lost connection (a missing privilege, a dropped
    slot); a lost connection is reported through ``notify`` and retried after 1, 2, 4 …
    30 s, the pause starting again at 1 s once a session has lasted a while.
    """

    def __init__(
        self,
        config: CaptureConfig,
        store: Store,
        progress: Callable[[CaptureStatus], None] | None = None,
        notify: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.cfg = config
        self.store = store
        self.progress = progress
        self.notify = notify
        self.status = CaptureStatus()
        self.reconnects = 0
        self._stop = threading.Event()
        self._current: Capture | None = None

    def stop(self) -> None:
        """Safe from a signal handler: ends the session in hand, or the wait for the next."""
        self._stop.set()
        if self._current is not None:
            self._current.stop()

    @property
    def streaming(self) -> bool:
        """A session is reading the stream (not connecting, nor waiting to reconnect)."""
        current = self._current
        return current is not None and current.streaming

    def run(self) -> CaptureStatus:
        wait, losses, started = FIRST_WAIT, 0, False
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self._current = Capture(self.cfg, self.store, self.progress, self.status)
                started = True
                if self._stop.is_set():
                    self._current.stop()
                return self._current.run()
            except Exception as e:
                why = lost_connection(e) if started else None
                if why is None or self._stop.is_set():
                    raise
                if time.monotonic() - began > MAX_WAIT:
                    wait, losses = FIRST_WAIT, 0
                losses += 1
                if self.cfg.once and losses >= ONCE_ATTEMPTS:
                    raise RowbackError(
                        f"lost the source connection {losses} times in a row: {why}"
                    ) from None
                self.notify(f"source connection lost ({why}); reconnecting in {wait:.0f} s")
                self.reconnects += 1
                self._stop.wait(wait)
                wait = min(2 * wait, MAX_WAIT)
            finally:
                self._current = None
        return self.status
