"""A real external PostgreSQL (Debian's server package) and a real PgBouncer, as an operator runs them.

Not the embedded server: TCP on 127.0.0.1, SCRAM passwords, a non-superuser app
role that owns nothing but its database's objects, and PgBouncer in transaction
mode in front, in a database the app role does not own, with a schema of its own. `.ci/run` installs the
packages (`make test-deps`); where they are missing the tests that need them are skipped, saying which
package to install.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

APP_ROLE, APP_PASSWORD = "hq_app", "app-Pw-0f-hq"
REPORTER_PASSWORD = "reporter-Pw-0f-hq"
DATABASE = "hq"
SCHEMA = "hq"
RUN_AS = "postgres"  # Debian's server package creates this system user; PostgreSQL refuses to run as root


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _server_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, check=True, **kwargs)  # type: ignore[call-overload]


@dataclass
class External:
    root: Path
    port: int
    bouncer_port: int | None

    def url(self, *, via_bouncer: bool, user: str = APP_ROLE, password: str = APP_PASSWORD) -> str:
        port = self.bouncer_port if via_bouncer else self.port
        return f"postgresql://{user}:{password}@127.0.0.1:{port}/{DATABASE}"

    def admin(self, database: str = DATABASE) -> psycopg.Connection:
        return psycopg.connect(f"postgresql://postgres@/{database}?host={self.root}&port={self.port}", autocommit=True)


def _start_postgres(root: Path, bin_dir: Path) -> int:
    port = _free_port()
    data = root / "data"
    _as_postgres(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{root}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
        )
    _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start"])
    return port


def _create_roles(external: External) -> None:
    with external.admin("postgres") as admin:
        admin.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}' NOSUPERUSER NOCREATEDB NOCREATEROLE")
        # An admin creates the reporter; the app role, lacking CREATEROLE, only grants it the views.
        admin.execute(f"CREATE ROLE hq_reporter LOGIN PASSWORD '{REPORTER_PASSWORD}' NOINHERIT")
        admin.execute(f"CREATE DATABASE {DATABASE}")  # owned by the admin, as on a managed service
    with external.admin() as admin:
        # PostgreSQL 15+'s default for new databases, stated: nobody but the owner creates in public.
        admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        # docs/postgresql.md, "Own schema and managed PostgreSQL": a schema of hq's own, found by every session of
        # the role (a transaction pooler cannot carry a SET search_path).
        admin.execute(f"CREATE SCHEMA {SCHEMA} AUTHORIZATION {APP_ROLE}")
        admin.execute(f"ALTER ROLE {APP_ROLE} IN DATABASE {DATABASE} SET search_path = {SCHEMA}")


def _start_bouncer(external: External) -> None:
    port = _free_port()
    with external.admin() as admin:
        secrets = admin.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN (%s, 'hq_reporter')", (APP_ROLE,)
        ).fetchall()
    (external.root / "userlist.txt").write_text("".join(f'"{name}" "{secret}"\n' for name, secret in secrets))
    (external.root / "pgbouncer.ini").write_text(f"""[databases]
{DATABASE} = host=127.0.0.1 port={external.port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {external.root}/userlist.txt
pool_mode = transaction
max_client_conn = 400
default_pool_size = 40
logfile = {external.root}/pgbouncer.log
pidfile = {external.root}/pgbouncer.pid
""")
    shutil.chown(external.root / "userlist.txt", RUN_AS)
    _as_postgres(["pgbouncer", "-d", str(external.root / "pgbouncer.ini")])
    external.bouncer_port = port
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(external.url(via_bouncer=True), prepare_threshold=None, connect_timeout=2):
                return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise RuntimeError(f"pgbouncer did not start; see {external.root / 'pgbouncer.log'}")


@pytest.fixture(scope="session", name="external")
def external_server() -> Iterator[External]:
    bin_dir = _server_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server package (apt-get install postgresql; `make test-deps` does it)")
    if shutil.which("pgbouncer") is None:
        pytest.skip("no pgbouncer (apt-get install pgbouncer; `make test-deps` does it)")
    root = Path(tempfile.mkdtemp(prefix="hq-external-pg-"))
    root.chmod(0o755)
    shutil.chown(root, RUN_AS)
    port = _start_postgres(root, bin_dir)
    external = External(root, port, None)
    try:
        _create_roles(external)
        _start_bouncer(external)
        yield external
    finally:
        pid = root / "pgbouncer.pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], check=False)
        subprocess.run(
            [
                "runuser",
                "-u",
                RUN_AS,
                "--",
                str(bin_dir / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-m",
                "immediate",
                "stop",
            ]
            if os.geteuid() == 0
            else [str(bin_dir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
