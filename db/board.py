"""Listings for people: named SQL on a Core connection, so `hq issues` and `hq project` never load the ORM."""

from __future__ import annotations

from typing import Any

from db.sqlfiles import query


def issue_rows(db: Any, *, status: str | None, assignee: str | None, limit: int) -> list[dict[str, Any]]:
    """Issues, newest first, optionally one status or one assignee's."""
    rows = db.execute(query("board", "list_issues"), {"status": status, "assignee": assignee, "limit": limit})
    return [dict(row._mapping) for row in rows]


def project_open_issues(db: Any, project_id: int) -> int:
    """How many issues of the project have not finished."""
    return int(db.execute(query("projects", "open_issue_count"), {"project_id": project_id}).scalar_one())


def project_shipped(db: Any, project_id: int, *, limit: int = 10) -> list[dict[str, Any]]:
    """The project's issues merged into its base branch (id, title, merged_sha, done_at), newest first."""
    rows = db.execute(query("projects", "shipped_issues"), {"project_id": project_id, "limit": limit})
    return [dict(row._mapping) for row in rows]
