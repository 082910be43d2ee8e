"""Wake-ups: a human's decision reaches the next agent in about a second, not at its next heartbeat."""

from __future__ import annotations

import time

import psycopg

from config.settings import get_settings
from scheduler.company import Company
from scheduler.listener import targets
from tests.conftest import run_hq
from tests.helpers import force_status, new_issue, status_of


def test_payload_never_wakes_the_agent_that_acted() -> None:
    assert targets('{"issue": 1, "actor": "agent:editor", "wake": ["editor", "content-writer"]}') == ["content-writer"]
    assert targets('{"issue": 1, "actor": "human:alice", "wake": ["release-manager"]}') == ["release-manager"]
    assert targets("not json") == []


def test_approve_reaches_done_within_seconds_with_hour_long_heartbeats(db_url: str, raw: psycopg.Connection) -> None:
    company = Company(get_settings(), threads=4)
    raw.execute("UPDATE agents SET heartbeat_seconds = 3600, jitter_seconds = 0")
    company.start()
    try:
        time.sleep(3.0)  # every agent's first beat is over; the next ones are an hour away
        assert company.listener is not None and company.listener.connected.wait(5)
        writer = raw.execute("SELECT id FROM agents WHERE slug = 'content-writer'").fetchone()[0]
        issue = new_issue(raw, "Ship the newsletter", status="todo", assignee_id=writer, needs_approval=True)
        workspace = get_settings().data_path / "workspaces" / f"issue-{issue}"
        workspace.mkdir(parents=True)
        (workspace / "newsletter.md").write_text("# Newsletter\n")
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
