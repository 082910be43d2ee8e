"""A tool context for an agent's run, as dispatch() gets it from the tool loop or the MCP bridge."""

from __future__ import annotations

import uuid

import psycopg

from agents.tools.context import ToolContext
from config.settings import get_settings
from db.engine import get_engine
from tests.support.rows import agent_record


def context(raw: psycopg.Connection, slug: str, issue_id: int | None, run_id: uuid.UUID | None = None) -> ToolContext:
    agent = agent_record(slug)
    return ToolContext(
        agent=agent,
        issue_id=issue_id,
        run_id=run_id or uuid.uuid4(),
        workflow="execute",
        settings=get_settings(),
        engine=get_engine(),
    )
