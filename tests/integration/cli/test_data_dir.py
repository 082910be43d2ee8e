"""One company per data dir, found the same way from anywhere: the real `hq`, its embedded PostgreSQL, two directories.

The `hq` under test runs from a copy of this checkout in a temporary directory (PYTHONPATH points at the
copy, as an editable install points at its checkout), so its data dir, ``<copy>/var``, is a throwaway and
the real checkout's var/ is never touched. HQ_DATA_DIR and DATABASE_URL are unset, as for a new user.
Before, the data dir was ``./var`` of the current directory: `hq issues` from another directory started a
second, empty company and listed nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.cli import run_hq_process

PACKAGES = ("config", "db", "agents", "models", "runtimes", "projects", "channels", "workflows", "scheduler", "cli")


@pytest.fixture()
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A copy of the checkout `hq` runs from. Every embedded server the test may have started is stopped after
    it: the checkout's, and the second company's that a cwd-relative data dir would start in ``elsewhere``."""
    from db.embedded import stop_server

    root = tmp_path / "checkout"
    root.mkdir()
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    (tmp_path / "elsewhere").mkdir()
    try:
        yield root
    finally:
        for data in (root / "var", tmp_path / "elsewhere" / "var"):
            stop_server(data)


def hq(checkout: Path, cwd: Path, *args: str) -> tuple[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("HQ_DATA_DIR", "DATABASE_URL", "XDG_DATA_HOME")}
    # HOME too: were the checkout not found, the data dir would land in this test's directory, not the user's.
    environment |= {"PYTHONPATH": str(checkout), "HOME": str(cwd.parent / "home")}
    result = run_hq_process(*args, cwd=cwd, env=environment, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout, result.stderr


def test_hq_from_another_directory_finds_the_company_of_the_checkout(checkout: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    data = checkout / "var"

    # The first command creates the company: one line on stderr names it and the rule; --json stays JSON.
    listed, said = hq(checkout, checkout, "issues", "--json")
    assert json.loads(listed) == []
    assert said.splitlines() == [
        f"hq: new data dir {data}: a new company, with its own embedded PostgreSQL "
        f"(the var/ of the checkout hq runs from, {checkout}; HQ_DATA_DIR unset)"
    ]
    created, said = hq(checkout, checkout, "issue", "create", "Found from anywhere")
    assert said == ""

    # From another directory: the same company, nothing new created, nothing said.
    listed, said = hq(checkout, elsewhere, "issues", "--json")
    assert [(row["id"], row["title"]) for row in json.loads(listed)] == [(int(created), "Found from anywhere")]
    assert said == "" and list(elsewhere.iterdir()) == [] and not (tmp_path / "home").exists()

    status, _ = hq(checkout, elsewhere, "db", "status")
    assert status.splitlines()[0].startswith(f"embedded PostgreSQL in {data / 'pgdata'}: running (pid ")
    assert (
        status.splitlines()[1]
        == f"data dir: {data} (the var/ of the checkout hq runs from, {checkout}; HQ_DATA_DIR unset)"
    )
    shown, _ = hq(checkout, elsewhere, "config", "show")
    assert f"data_dir = {data} (the var/ of the checkout hq runs from" in shown

    stopped, _ = hq(checkout, elsewhere, "db", "stop")
    assert stopped.splitlines()[0] == f"stopped the embedded PostgreSQL in {data / 'pgdata'}"
    status, _ = hq(checkout, elsewhere, "db", "status")
    assert status.splitlines()[0] == f"embedded PostgreSQL in {data / 'pgdata'}: not running"
