"""config/vocabulary.py and workflows/registry.py say what the database and the code say, exactly.

Each vocabulary is compared with the migrated database's own definition (CHECK
constraints via pg_get_constraintdef, the state-machine tables), so a migration
that widens a CHECK without the Python constant — or the reverse — fails here.
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

import psycopg
import pytest

from config import vocabulary as v
from config.settings import get_settings
from config.urls import libpq_url
from scheduler.listener import targets
from tests.support.rows import new_issue


def check_values(raw: psycopg.Connection, table: str, column: str) -> set[str]:
    """The values the one single-column CHECK on ``table.column`` allows, read back from the database."""
    rows = raw.execute(
        """
        SELECT pg_get_constraintdef(c.oid)
          FROM pg_constraint c
          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ALL (c.conkey)
         WHERE c.contype = 'c' AND c.conrelid = %s::regclass AND a.attname = %s AND cardinality(c.conkey) = 1
        """,
        (table, column),
    ).fetchall()
    assert len(rows) == 1, f"expected one CHECK on {table}.{column}, found {rows}"
    definition = rows[0][0]
    values = re.findall(r"'((?:[^']|'')*)'::text", definition)
    assert values, f"{table}.{column}: no list of values in {definition}"
    return {value.replace("''", "'") for value in values}


@pytest.mark.parametrize(
    ("table", "column", "constant"),
    [
        ("issues", "blocked_reason", v.BLOCKED_REASONS),  # fails until the provider_auth migration lands
        ("approvals", "kind", v.APPROVAL_KINDS),
        ("approvals", "status", v.APPROVAL_STATUSES),
        ("comments", "kind", v.COMMENT_KINDS),
        ("agents", "tier", v.TIERS),
        ("agents", "status", v.AGENT_STATUSES),
        ("llm_calls", "outcome", v.LLM_CALL_OUTCOMES),
    ],
)
def test_check_constraints_allow_exactly_the_python_values(
    raw: psycopg.Connection, table: str, column: str, constant: tuple[str, ...]
) -> None:
    assert len(set(constant)) == len(constant), f"{table}.{column}: the constant repeats a value"
    assert check_values(raw, table, column) == set(constant)


def test_statuses_are_the_state_machine_rows_in_order(raw: psycopg.Connection) -> None:
    rows = raw.execute("SELECT name, is_terminal, is_initial FROM issue_statuses ORDER BY position").fetchall()
    assert tuple(name for name, _terminal, _initial in rows) == v.STATUSES
    assert {name for name, terminal, _initial in rows if terminal} == v.TERMINAL_STATUSES
    assert {name for name, _terminal, initial in rows if initial} == v.INITIAL_STATUSES
    assert tuple(name for name, terminal, _initial in rows if not terminal) == v.OPEN_STATUSES


def test_transitions_are_the_state_machine_rows(raw: psycopg.Connection) -> None:
    rows = raw.execute("SELECT from_status, to_status FROM issue_transitions").fetchall()
    assert {(f, t) for f, t in rows} == v.TRANSITIONS
    assert not any(f in v.TERMINAL_STATUSES for f, _t in v.TRANSITIONS)  # terminal means no way out


# --- the sweeper: the wake target the SQL names is the scheduler's job ----------------------


def test_a_waiting_parent_wakes_the_sweeper_job(db_url: str, raw: psycopg.Connection) -> None:
    parent = new_issue(raw, "Parent", status="todo")
    with psycopg.connect(libpq_url(db_url), autocommit=True) as listener:
        listener.execute("LISTEN hq_wake")
        raw.execute("UPDATE issues SET status = 'blocked', blocked_reason = 'waiting' WHERE id = %s", (parent,))
        payloads = [n.payload for n in listener.notifies(timeout=1.0, stop_after=1)]
    assert len(payloads) == 1
    assert json.loads(payloads[0])["wake"] == [v.SWEEP_JOB]
    assert targets(payloads[0]) == [v.SWEEP_JOB]  # the listener passes it on


def test_the_sweeper_job_id_is_the_wake_target(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import scheduler.company as company_module

    background = importlib.import_module("apscheduler.schedulers.background")  # untyped: keep mypy out of it

    class NoListener:
        def __init__(self, *args: Any) -> None:
            pass

        def start(self) -> None:
            pass

        def join(self, timeout: float | None = None) -> None:
            pass

    start = background.BackgroundScheduler.start
    monkeypatch.setattr(background.BackgroundScheduler, "start", lambda self, *a, **k: start(self, paused=True))
    monkeypatch.setattr(company_module, "WakeListener", NoListener)
    company = company_module.Company(get_settings(), threads=1)
    company.start()
    try:
        job = company.scheduler.get_job(v.SWEEP_JOB)
        assert job is not None and job.func == company.sweep
        assert v.SWEEP_JOB not in company.roster.roles  # no agent's job can take the sweeper's id
    finally:
        company.shutdown(wait=False)
