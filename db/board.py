"""The board behind `hq issues`: named SQL on a Core connection, so listing never loads the ORM."""

from __future__ import annotations

from typing import Any

from db.sqlfiles import query


def issue_rows(db: Any, *, status: str | None, assignee: str | None, limit: int) -> list[dict[str, Any]]:
    """Issues, newest first, optionally one status or one assignee's."""
    rows = db.execute(query("board", "list_issues"), {"status": status, "assignee": assignee, "limit": limit})
    return [dict(row._mapping) for row in rows]
