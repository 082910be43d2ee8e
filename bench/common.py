"""What the benchmarks share: a fresh embedded PostgreSQL, migrated, and a uniform report line."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@dataclass(frozen=True)
class Database:
    url: str  # SQLAlchemy form
    libpq: str  # psql / pgbench form
    root: Path


@contextmanager
def fresh_database(name: str = "hq_bench") -> Iterator[Database]:
    """A throwaway embedded server with one migrated database; stopped and deleted afterwards."""
    from sqlalchemy import create_engine

    from db.embedded import ensure_server, stop_server
    from db.migrate import upgrade
    from db.urls import libpq_url

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
