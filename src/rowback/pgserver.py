"""Start a throwaway PostgreSQL cluster with logical decoding on, for the demo and the tests.

PostgreSQL refuses to run as root, so as root the server runs as an unprivileged user
(``postgres`` if it exists, else a system user ``rowback-pg`` created on first use).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from rowback.errors import RowbackError

_TOOLS = ("initdb", "pg_ctl", "postgres")


class PgNotFound(RowbackError):
    """The PostgreSQL server binaries are not installed."""


def _has_tools(bindir: Path) -> bool:
    return all((bindir / tool).is_file() for tool in _TOOLS)


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))


def find_pg_bindir() -> Path:
    """Find the directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    env = os.environ.get("ROWBACK_PG_BINDIR")
    if env:
        if _has_tools(Path(env)):
            return Path(env)
        raise PgNotFound(f"ROWBACK_PG_BINDIR={env} does not hold initdb, pg_ctl and postgres")
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and _has_tools(Path(out.stdout.strip())):
            return Path(out.stdout.strip())
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_tools(p)]
    if candidates:
        return max(candidates, key=_version_key)
    initdb = shutil.which("initdb")
    if initdb and _has_tools(Path(initdb).parent):
        return Path(initdb).parent
    raise PgNotFound(
        "PostgreSQL server not found (initdb, pg_ctl, postgres): "
        "install it with `apt-get install postgresql` (Debian) or set ROWBACK_PG_BINDIR"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> str | None:
    """The user to run PostgreSQL as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "rowback-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "rowback-pg"])
    return "rowback-pg"


def _run(cmd: list[str], user: str | None = None, cwd: Path | None = None) -> str:
    """Run a command (as ``user`` if given); raise RowbackError with its last output line."""
    name = Path(cmd[0]).name
    if user is not None:
        if shutil.which("runuser"):
            cmd = ["runuser", "-u", user, "--", *cmd]
        else:
            cmd = ["su", user, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    try:
        out = subprocess.run(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except OSError as exc:
        raise RowbackError(f"{name} could not run: {exc}") from exc
    if out.returncode != 0:
        lines = out.stdout.strip().splitlines() or [f"exit status {out.returncode}"]
        raise RowbackError(f"{name} failed: {lines[-1].strip()}")
    return out.stdout


class PgServer:
    """A throwaway PostgreSQL cluster on a free loopback port; superuser ``postgres``, no password.

    Use as a context manager, or call ``start()`` and ``stop()``; ``stop()`` also runs at exit.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        base_dir: Path | None = None,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        fast: bool = False,
    ) -> None:
        self._own_base = base_dir is None
        self._base_dir = base_dir
        self._port = port
        self._settings = dict(settings or {})
        self._fast = fast
        self._user: str | None = None
        self._bindir: Path | None = None
        self._running = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise RowbackError("PgServer has no port until start() is called")
        return self._port

    @property
    def base_dir(self) -> Path:
        """The directory holding the cluster: a new one under /tmp unless given."""
        if self._base_dir is None:
            self._base_dir = Path(tempfile.mkdtemp(prefix="rowback-pg-", dir="/tmp"))
        return self._base_dir

    @property
    def bindir(self) -> Path:
        """Where the server binaries are (pgbench and psql too, on Debian)."""
        if self._bindir is None:
            self._bindir = find_pg_bindir()
        return self._bindir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "socket"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq connection string for ``dbname`` as the superuser."""
        if not dbname or re.search(r"[\s'\\]", dbname):
            dbname = "'" + dbname.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return f"host={self.host} port={self.port} user=postgres dbname={dbname}"

    def start(self) -> PgServer:
        """Create the cluster (first time only) and start it; return once it takes connections."""
        if self._running:
            return self
        self._bindir = self.bindir  # raises PgNotFound before anything is created
        self._user = _unprivileged_user()
        atexit.register(self.stop)
        try:
            if not self.data_dir.exists():
                self._init_cluster()
            self._pg_ctl("-l", str(self.log_file), "-w", "-t", "60", "start")
        except RowbackError:
            reason = self._log_reason()
            self.stop()
            if not reason:
                raise
            raise RowbackError(f"PostgreSQL did not start: {reason}") from None
        self._running = True
        return self

    def _log_reason(self) -> str:
        """Why a start failed: the server log's messages up to its last FATAL one, on one line."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        entries = re.findall(r"\b([A-Z]+):\s+(.*)", text.split("starting PostgreSQL")[-1])
        fatal = [i for i, (level, _) in enumerate(entries) if level in ("FATAL", "PANIC")]
        if not fatal:
            return entries[-1][1].strip() if entries else ""
        skip = ("HINT", "DETAIL", "CONTEXT", "STATEMENT")
        messages = [m.strip() for level, m in entries[: fatal[-1] + 1] if level not in skip]
        return "; ".join(m for m in messages if not m.startswith("listening on"))

    def _init_cluster(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)
        self.socket_dir.mkdir(mode=0o755, exist_ok=True)
        if self._user is not None:
            for parent in self.base_dir.resolve().parents:  # the user must reach base_dir
                mode = stat.S_IMODE(parent.stat().st_mode)
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
            for path in (self.base_dir, self.socket_dir):
                shutil.chown(path, self._user, pwd.getpwnam(self._user).pw_gid)
        self._port = self._port or free_port()
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        initdb += ["--auth=trust", "-E", "UTF8", "--locale=C"]
        _run([*initdb, "--no-sync"] if self._fast else initdb, self._user, self.base_dir)
        settings: dict[str, str] = {
            "wal_level": "logical",
            "max_replication_slots": "20",
            "max_wal_senders": "20",
            "listen_addresses": self.host,
            "port": str(self._port),
            "unix_socket_directories": str(self.socket_dir),
            "shared_buffers": "128MB",
            "max_connections": "100",
            **({"fsync": "off"} if self._fast else {}),
            **self._settings,
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# rowback PgServer\n")
            for key, value in settings.items():
                quoted = value.replace("'", "''")
                conf.write(f"{key} = '{quoted}'\n")
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )

    def _pg_ctl(self, *args: str) -> None:
        _run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-s", *args],
            self._user,
            self.base_dir,
        )

    def restart(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> PgServer:
        """Stop the server (``mode``: smart, fast or immediate) keeping its data, then start it."""
        if self._running:
            self._pg_ctl("-m", mode, "-w", "stop")
            self._running = False
        return self.start()

    def stop(self) -> None:
        """Stop the server at once and delete its directory. Safe to call more than once."""
        atexit.unregister(self.stop)
        self._running = False
        if self._base_dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self._pg_ctl("-m", "immediate", "-w", "stop")
            except RowbackError:
                pass  # no server behind the pid file: nothing left to stop
        if self._own_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            return
        for path in (self.data_dir, self.socket_dir):
            shutil.rmtree(path, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its DSN."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.dsn())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.dsn(name)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
