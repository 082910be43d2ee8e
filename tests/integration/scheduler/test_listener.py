"""Wake-ups: a human's decision reaches the next agent in about a second, not at its next heartbeat."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from agents.tools.context import workspace_path
from config.settings import get_settings
from projects.workspace import Workspace
from scheduler.company import Company
from tests.support.cli import run_hq
from tests.support.listener import MALFORMED
from tests.support.rows import execute_run, force_status, new_issue, one, status_of


def test_approve_reaches_done_within_seconds_with_hour_long_heartbeats(db_url: str, raw: psycopg.Connection) -> None:
    company = Company(get_settings(), threads=4)
    raw.execute("UPDATE agents SET heartbeat_seconds = 3600, jitter_seconds = 0")
    company.start()
    try:
        time.sleep(3.0)  # every agent's first beat is over; the next ones are an hour away
        assert company.listener is not None and company.listener.connected.wait(5)
        writer = one(raw.execute("SELECT id FROM agents WHERE slug = 'content-writer'").fetchone())[0]
        issue = new_issue(raw, "Ship the newsletter", status="todo", assignee_id=writer, needs_approval=True)
        force_status(raw, issue, "in_progress")
        execute_run(
            issue,
            writer,
            "content-writer",
            Workspace(workspace_path(get_settings(), issue)),
            {"newsletter.md": "# Newsletter\n"},
        )  # a real submission: deploy ships what it recorded
        force_status(raw, issue, "pending_approval")
        started = time.monotonic()
        assert run_hq("approve", str(issue)).exit_code == 0
        while status_of(raw, issue) != "done" and time.monotonic() - started < 15:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert status_of(raw, issue) == "done", elapsed
        assert elapsed < 5, f"took {elapsed:.2f}s"
    finally:
        company.shutdown()


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def _record(self, level: str) -> Callable[..., None]:
        return lambda event, **fields: self.events.append((level, event, fields))

    def __getattr__(self, level: str) -> Callable[..., None]:
        return self._record(level)


def _reporter(db_url: str) -> psycopg.Connection:
    from config.urls import libpq_url

    return psycopg.connect(libpq_url(db_url).replace("postgres@", "hq_reporter@", 1), autocommit=True)


def test_the_reporter_cannot_crash_the_listener(
    db_url: str, raw: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Malformed NOTIFYs are ignored and logged once per kind of problem; the LISTEN connection stays up."""
    import threading

    from config.urls import libpq_url
    from scheduler import listener as listener_module
    from scheduler.listener import WakeListener

    recorder = _Recorder()
    monkeypatch.setattr(listener_module, "log", recorder)
    woken: list[str] = []
    stop = threading.Event()
    listener = WakeListener(libpq_url(db_url), woken.append, stop)
    listener.start()
    try:
        assert listener.connected.wait(10)

        def backend() -> list[tuple[Any, ...]]:
            return raw.execute(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = "
                "'hq-listener' AND datname = current_database()"
            ).fetchall()

        before = backend()
        assert len(before) == 1
        with _reporter(db_url) as reporter:
            reporter.execute("NOTIFY hq_wake, '[1,2]'")  # verbatim from the red-team report
            for _ in range(3):
                for payload in MALFORMED:
                    reporter.execute("SELECT pg_notify('hq_wake', %s)", (payload,))
            reporter.execute('NOTIFY hq_wake, \'{"issue": 1, "actor": "sql:hq_reporter", "wake": ["qa-lead"]}\'')
        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert woken == ["qa-lead"]  # delivered in order: every bad one before it was ignored
        assert listener.connected.is_set() and backend() == before  # same connection throughout
        problems = [fields["problem"] for level, event, fields in recorder.events if event == "listener.bad_payload"]
        assert problems and len(problems) == len(set(problems)) < len(MALFORMED), problems  # once per kind
        assert not [e for e in recorder.events if e[0] in ("exception", "error") or "reconnect" in e[1]]
    finally:
        stop.set()
        listener.join(5)


def test_a_forged_wake_is_only_a_hint(db_url: str, raw: psycopg.Connection) -> None:
    """A well-formed forged wake runs the named agents' beats early; with nothing claimable they change nothing."""
    company = Company(get_settings(), threads=4)
    raw.execute("UPDATE agents SET heartbeat_seconds = 3600, jitter_seconds = 0")
    agent: dict[str, int] = dict(raw.execute("SELECT slug, id FROM agents").fetchall())
    waiting = new_issue(raw, "Waits for a human", status="todo", assignee_id=agent["backend-engineer"])
    force_status(raw, waiting, "pending_approval")
    stuck = new_issue(raw, "Stuck on a human", status="todo", assignee_id=agent["backend-engineer"])
    force_status(raw, stuck, "blocked", blocked_reason="human")

    def state() -> tuple:
        return (
            raw.execute("SELECT id, status, assignee_id, attempts, lease_until FROM issues ORDER BY id").fetchall(),
            raw.execute("SELECT count(*) FROM issue_events").fetchone(),
            raw.execute("SELECT count(*) FROM llm_calls").fetchone(),
            raw.execute("SELECT count(*) FROM comments").fetchone(),
            raw.execute("SELECT count(*) FROM approvals").fetchone(),
        )

    def beats(slug: str) -> int:
        return one(
            raw.execute(
                "SELECT count(*) FROM heartbeat_runs WHERE agent_id = %s AND finished_at IS NOT NULL", (agent[slug],)
            ).fetchone()
        )[0]

    company.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            beats("backend-engineer") < 1
            or beats("qa-lead") < 1
            or one(raw.execute("SELECT count(*) FROM heartbeat_runs WHERE finished_at IS NULL").fetchone())[0]
        ):
            time.sleep(0.1)
        assert company.listener is not None and company.listener.connected.wait(5)
        before, beaten = state(), (beats("backend-engineer"), beats("qa-lead"))
        forged = json.dumps(
            {
                "issue": waiting,
                "status": "todo",
                "event": "status",
                "actor": "human:boss",
                "wake": ["backend-engineer", "qa-lead"],
            }
        )
        with _reporter(db_url) as reporter:
            reporter.execute("SELECT pg_notify('hq_wake', %s)", (forged,))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            beats("backend-engineer") > beaten[0] and beats("qa-lead") > beaten[1]
        ):
            time.sleep(0.05)
        assert beats("backend-engineer") > beaten[0] and beats("qa-lead") > beaten[1]  # the hint was taken
        outcomes = raw.execute(
            "SELECT DISTINCT outcome FROM heartbeat_runs WHERE agent_id IN (%s, %s)",
            (agent["backend-engineer"], agent["qa-lead"]),
        ).fetchall()
        assert outcomes == [("idle",)]
        assert state() == before  # and found nothing to do: the rows decide
    finally:
        company.shutdown()
