"""Migrations are frozen once released, and every path to head ends at the same schema.

* A database migrated to any earlier revision, then to head, has exactly the
  schema of a fresh install (``pg_dump --schema-only``, normalised).
* Databases built by the code of earlier commits (from git history) upgrade to
  that same schema, and the company works on one holding data.
* Released migrations apply only frozen SQL, and the frozen files are the SQL
  that was released.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine

from db.migrate import head_revision, upgrade
from db.sqlfiles import SQL_DIR
from tests.support import ROOT
from tests.support.cli import run_hq
from tests.support.migrations import RELEASES, REVISIONS
from tests.support.postgres import PgServer
from tests.support.rows import one

# Databases built at these commits (each with the head revision it had) must upgrade to head's schema.
OLD_COMMITS = {
    "64f485e": "0001",  # the company at work: the schema as every later commit has it
    "43efde1": "0002",  # reporting views, before rollups existed
    "9489bb6": "0004",  # 0004 as first written
    "eb52f80": "0004",  # 0004 before it was edited to add hq_act_as()
    **dict(RELEASES),  # every release
}


# --- databases and their schema -------------------------------------------------------------------


@pytest.fixture()
def new_database(pg_server: PgServer) -> Iterator[Callable[[str], str]]:
    """Creates empty databases (dropped afterwards); returns each one's SQLAlchemy URL."""
    created: list[str] = []

    def make(name: str) -> str:
        name = f"hq_mig_{os.getpid()}_{name}"
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return pg_server.url(name)

    yield make
    from db.engine import dispose_engines

    dispose_engines()
    with pg_server.admin() as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str, revision: str = "head") -> None:
    engine = create_engine(url)
    try:
        upgrade(engine, revision)
    finally:
        engine.dispose()


def schema(pg_server: PgServer, url: str) -> list[str]:
    """The database's schema as sorted pg_dump entries, without comments, SET lines or blank lines.

    pg_dump orders entries by type and name, then by dependencies, and breaks
    the remaining ties by OID, which follows the order objects were created in:
    entries (each whole, so column order still counts) are compared as a sorted
    list. ``\\restrict`` lines carry a random key per dump. Owners and ACLs stay:
    every path runs as the same role, so they must match too.
    """
    from db.embedded import bin_path

    database = url.split("@/", 1)[1].split("?", 1)[0]
    dump = subprocess.run(
        [str(bin_path("pg_dump")), "--schema-only", "--dbname", pg_server.libpq(database)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    entries: list[str] = []
    current: list[str] = []
    for line in dump.splitlines():
        if line.startswith("-- Name: ") or line.startswith("-- Data for Name: "):
            entries.append("\n".join(current))
            current = []
        if (
            line.startswith("--")
            or not line.strip()
            or line.startswith("SET ")
            or line.startswith("SELECT pg_catalog.set_config(")
            or line.startswith("\\restrict")
            or line.startswith("\\unrestrict")
        ):
            continue
        current.append(line.rstrip())
    entries.append("\n".join(current))
    return sorted(entry for entry in entries if entry)


def assert_same_schema(actual: list[str], expected: list[str]) -> None:
    if actual != expected:
        diff = "\n".join(
            difflib.unified_diff(
                "\n\n".join(expected).splitlines(),
                "\n\n".join(actual).splitlines(),
                "fresh install",
                "upgraded",
                lineterm="",
                n=2,
            )
        )
        pytest.fail(f"upgraded schema differs from a fresh install:\n{diff[:6000]}")


@pytest.fixture(scope="module")
def fresh_schema(pg_server: PgServer) -> list[str]:
    name = f"hq_mig_{os.getpid()}_fresh"
    with pg_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate(pg_server.url(name))
        return schema(pg_server, pg_server.url(name))
    finally:
        with pg_server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("revision", REVISIONS[:-1])
def test_upgrade_from_every_revision_gives_the_fresh_schema(
    revision: str, pg_server: PgServer, new_database: Callable[[str], str], fresh_schema: list[str]
) -> None:
    url = new_database(f"from_{revision}")
    migrate(url, revision)
    migrate(url)
    assert_same_schema(schema(pg_server, url), fresh_schema)


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, timeout=60)


def _require_commit(commit: str) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone (shallow?): fetch the full history of main")


def test_frozen_sql_is_what_was_released() -> None:
    """Each frozen file is its release's db/sql file byte for byte, after its own leading '--' header."""
    frozen = sorted((SQL_DIR / "frozen").glob("*.sql"))
    assert frozen
    for path in frozen:
        match = re.fullmatch(r"(.+)_(\d{4})\.sql", path.name)
        assert match is not None, f"frozen files are named <file>_<revision>.sql, not {path.name}"
        source, revision = match.groups()
        commit = next((commit for commit, head in RELEASES if head >= revision), None)
        assert commit is not None, f"{path.name}: revision {revision} is not released; add its release to RELEASES"
        _require_commit(commit)
        released = _git("show", f"{commit}:db/sql/{source}.sql")
        assert released.returncode == 0, released.stderr.decode()
        text = path.read_text(encoding="utf-8")
        header = re.match(r"(--[^\n]*\n)+\n", text)
        assert header is not None and "Frozen" in header.group(0), f"{path.name} needs a '-- Frozen: ...' header"
        assert text[header.end() :] == released.stdout.decode(), (
            f"{path.name} differs from {commit}:db/sql/{source}.sql"
        )


# --- databases built by earlier commits -------------------------------------------------------------


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The source tree of a commit, from `git archive`: unlike a worktree it registers nothing in the
    repository, so a test killed midway leaves nothing behind and parallel runs cannot collide."""
    trees: dict[str, Path] = {}

    def extract(commit: str) -> Path:
        _require_commit(commit)
        if commit not in trees:
            archive = _git("archive", "--format=tar", commit)
            assert archive.returncode == 0, archive.stderr.decode()
            tree = tmp_path_factory.mktemp(f"hq-{commit}")
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                # The archive is this repository's own history; the filter (Python 3.11.4+) is belt and braces.
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(tree, filter="data")
                else:
                    tar.extractall(tree)
            trees[commit] = tree
        return trees[commit]

    return extract


def run_old(tree: Path, code: str, url: str, data_dir: Path) -> str:
    """Python code run by an earlier commit's modules (asserted), with this venv's interpreter."""
    prelude = f"import db, sys\nassert db.__file__.startswith({str(tree)!r}), db.__file__\n"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HQ_", "DATABASE_URL"))}
    env.update(
        PYTHONPATH=str(tree),
        DATABASE_URL=url,
        HQ_DATA_DIR=str(data_dir),
        PYTHONDONTWRITEBYTECODE="1",
        HQ_LOG_FORMAT="json",
    )
    done = subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"old code failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


_OLD_UPGRADE = """
from sqlalchemy import create_engine
from db.migrate import upgrade
import os
engine = create_engine(os.environ["DATABASE_URL"])
print(upgrade(engine)[1])
engine.dispose()
"""


@pytest.mark.parametrize("commit", list(OLD_COMMITS))
def test_database_from_an_earlier_commit_upgrades_to_the_fresh_schema(
    commit: str,
    pg_server: PgServer,
    new_database: Callable[[str], str],
    fresh_schema: list[str],
    old_tree: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    tree = old_tree(commit)
    url = new_database(f"at_{commit}")
    assert run_old(tree, _OLD_UPGRADE, url, tmp_path).splitlines()[-1] == OLD_COMMITS[commit]
    migrate(url)
    assert_same_schema(schema(pg_server, url), fresh_schema)


def test_the_company_works_on_a_database_built_at_eb52f80(
    pg_server: PgServer,
    new_database: Callable[[str], str],
    old_tree: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """eb52f80's 0004 had no hq_act_as(); that database said 0004 and every write at head failed."""
    from config.settings import get_settings, reset_settings
    from db.engine import dispose_engines
    from scheduler.company import Company

    tree = old_tree("eb52f80")
    url = new_database("company_at_eb52f80")
    old_data = tmp_path / "old"
    run_old(
        tree,
        _OLD_UPGRADE
        + """
from cli.app import main
for argv in (["agents", "sync"], ["issue", "create", "Add a health endpoint to the API", "--body", "GET /healthz"]):
    try:
        main(argv)
    except SystemExit as exit_:
        assert not exit_.code, (argv, exit_.code)
""",
        url,
        old_data,
    )
    with psycopg.connect(pg_server.libpq(url.split("@/", 1)[1].split("?", 1)[0]), autocommit=True) as raw:
        assert raw.execute("SELECT version_num FROM alembic_version").fetchone() == ("0004",)
        (old_issue,) = one(raw.execute("SELECT id FROM issues").fetchone())

        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "var"))
        reset_settings()
        try:
            upgraded = run_hq("db", "upgrade")
            assert upgraded.exit_code == 0, upgraded.stderr
            assert upgraded.stdout.strip() == f"database at revision {head_revision()} (was 0004)"
            assert run_hq("agents", "sync").exit_code == 0
            created = run_hq("issue", "create", "Write the launch blog post")
            assert created.exit_code == 0, created.stderr
            new_issue = int(created.stdout)

            company = Company(get_settings(), threads=1)
            for _ in range(3):
                company.run_once()
            moved: dict[int, int] = dict(
                raw.execute("SELECT issue_id, count(*) FROM issue_events WHERE actor LIKE 'agent:%%' GROUP BY issue_id")
            )
            assert moved.get(old_issue, 0) >= 2 and moved.get(new_issue, 0) >= 2, moved
            statuses: dict[int, str] = dict(
                raw.execute("SELECT id, status FROM issues WHERE id IN (%s, %s)", (old_issue, new_issue))
            )
            assert statuses[old_issue] not in ("backlog", "todo") and statuses[new_issue] not in ("backlog", "todo")
        finally:
            dispose_engines()
            reset_settings()
