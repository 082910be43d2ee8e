"""`hq issues` and `hq approve` stay fast: they never load the model, Anthropic or Telegram stacks."""

from __future__ import annotations

import psycopg

from tests.support.cli import probe
from tests.support.rows import force_status, new_issue


def test_issues_and_approve_do_not_import_heavy_stacks(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo")
    force_status(raw, issue, "pending_approval")
    listed = probe("issues")
    assert listed == {"code": 0, "heavy": []}
    approved = probe("approve", str(issue))
    assert approved == {"code": 0, "heavy": []}
    assert raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone() == ("approved",)
