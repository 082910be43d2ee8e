"""What the benchmarks share: a fresh embedded PostgreSQL, migrated, quiet logs, and a uniform report line.

A benchmark's output is its measurements. Logs (every ``claim.taken``, the embedded server
starting, the migration) stay below warning in the benchmark's process, in the worker
processes it spawns and in the `hq` processes it runs: ``HQ_LOG_LEVEL`` is set to warning
for all of them unless it is already set, and ``quiet_logging()`` applies it in-process.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Inherited by every process a benchmark starts (workers, `hq run`, `hq approve`); HQ_LOG_LEVEL=info asks for logs.
os.environ.setdefault("HQ_LOG_LEVEL", "warning")


def quiet_logging() -> str:
    """Log only warnings and errors (or ``HQ_LOG_LEVEL``) in this process; returns the level used.

    structlog logs at info until something configures it, and only `hq` configures it from the
    environment: a benchmark (or a worker process it spawns) must call this before its first log.
    """
    from config.log import LEVELS, configure_logging, requiet

    level = os.environ.get("HQ_LOG_LEVEL", "warning").lower()
    if level not in LEVELS:
        level = "warning"
    fmt = os.environ.get("HQ_LOG_FORMAT", "auto")
    configure_logging(level, fmt if fmt in ("auto", "json", "console") else "auto", force=True)
    requiet()  # LiteLLM resets its loggers' levels when it is imported
    return level


@dataclass(frozen=True)
class Database:
    url: str  # SQLAlchemy form
    libpq: str  # psql / pgbench form
    root: Path


@contextmanager
def fresh_database(name: str = "hq_bench") -> Iterator[Database]:
    """A throwaway embedded server with one migrated database; stopped and deleted afterwards."""
    quiet_logging()  # before the server's and the migration's first log lines
    from sqlalchemy import create_engine

    from config.urls import libpq_url
    from db.embedded import ensure_server, stop_server
    from db.migrate import upgrade

    root = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    try:
        server = ensure_server(root)
        import psycopg

        with psycopg.connect(libpq_url(server.url("postgres")), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = server.url(name)
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        os.environ["DATABASE_URL"] = url
        os.environ["HQ_DATA_DIR"] = str(root / "data")
        from config.settings import reset_settings

        reset_settings()
        yield Database(url=url, libpq=libpq_url(url), root=root)
    finally:
        from db.engine import dispose_engines

        dispose_engines()
        stop_server(root)
        shutil.rmtree(root, ignore_errors=True)


_Row = TypeVar("_Row")


def one(row: _Row | None) -> _Row:
    """The row a query always returns (``fetchone()`` types it as optional)."""
    if row is None:
        raise RuntimeError("the query returned no row")
    return row


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(name: str, ratio: float, target: str, ok: bool) -> str:
    """The last line every benchmark prints."""
    return f"{name}: ratio {ratio:.2f} (target {target}) {'PASS' if ok else 'FAIL'}"
