"""The unit tier's rule, enforced: no PostgreSQL and no subprocess, so all of it runs in seconds anywhere.

A test under tests/unit/ that asks for a database fixture (``pg_server``, ``db_url``, ``raw``, the external
server, or any fixture built on them) fails at setup, before the server starts. One that starts a process
(``subprocess``, ``os.fork``/``posix_spawn``/``system``, asyncio's subprocesses, ``multiprocessing``) or
opens a psycopg connection fails where it tries. Either message says the test belongs in tests/integration/.
The rule holds in setup, the test and teardown alike (but for the session's last teardown, which also
stops the servers other tiers started); it covers only the tests under this folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.util
import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from typing import Any, NoReturn

import psycopg
import pytest

# Every fixture that reaches a PostgreSQL server is built on one of these (tests/conftest.py, tests/support/).
DATABASE_FIXTURES = ("pg_server", "db_url", "raw", "external")
MOVE = "a unit test runs no PostgreSQL and no subprocess: move it to tests/integration/"


def _refuse(what: str) -> Callable[..., NoReturn]:
    def refused(*args: Any, **kwargs: Any) -> NoReturn:
        pytest.fail(f"{what} in a unit test: {MOVE}", pytrace=True)

    return refused


@contextlib.contextmanager
def _no_processes_or_connections() -> Iterator[None]:
    """Every door to another process or to PostgreSQL, closed for the length of one phase of one test."""
    with pytest.MonkeyPatch.context() as patch:
        # Popen is what subprocess.run/check_output, os.popen and asyncio's subprocess transports all use.
        patch.setattr(subprocess.Popen, "_execute_child", _refuse("subprocess.Popen"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            patch.setattr(os, name, _refuse(f"os.{name}"))
        patch.setattr(asyncio, "create_subprocess_exec", _refuse("asyncio.create_subprocess_exec"))
        patch.setattr(asyncio, "create_subprocess_shell", _refuse("asyncio.create_subprocess_shell"))
        patch.setattr(multiprocessing.util, "spawnv_passfds", _refuse("multiprocessing (spawn)"))
        # psycopg.connect is bound at import; SQLAlchemy's dialect calls it, psql-like tests the class method.
        patch.setattr(psycopg, "connect", _refuse("a PostgreSQL connection"))
        patch.setattr(psycopg.Connection, "connect", _refuse("a PostgreSQL connection"))
        patch.setattr(psycopg.AsyncConnection, "connect", _refuse("a PostgreSQL connection"))
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    wanted = [name for name in DATABASE_FIXTURES if name in getattr(item, "fixturenames", ())]
    if wanted:
        pytest.fail(f"{item.nodeid} asks for {', '.join(wanted)}: {MOVE}", pytrace=False)
    with _no_processes_or_connections():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    with _no_processes_or_connections():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    if nextitem is None:
        # The last test of the session: its teardown also stops what other tiers' tests started for the session
        # (the embedded server, the external one), with the processes that takes.
        return (yield)
    with _no_processes_or_connections():
        return (yield)
