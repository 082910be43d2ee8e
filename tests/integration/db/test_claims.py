"""Every claim uses its partial index: EXPLAIN shows the index and never a sequential scan of issues."""

from __future__ import annotations

import json
import re
import uuid

import psycopg
import pytest

from db.sqlfiles import _named_queries
from tests.support.cli import run_hq
from tests.support.rows import one

EXPECTED = {
    "claim_todo": "issues_claim_todo_idx",
    "claim_stitch": "issues_claim_stitch_idx",
    "reclaim_expired_work": "issues_claim_expired_work_idx",
    "claim_review": "issues_claim_review_idx",
    "claim_deploy": "issues_claim_deploy_idx",
    "reclaim_expired_deploy": "issues_claim_expired_deploy_idx",
    "claim_escalation": "issues_claim_escalation_idx",
    "claim_routing": "issues_claim_routing_idx",
    "claim_unowned": "issues_claim_unowned_idx",
}


def nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(nodes(child))
    return found


@pytest.fixture()
def populated(db_url: str, raw: psycopg.Connection) -> psycopg.Connection:
    """Enough issues in every status that a sequential scan would be the lazy plan."""
    assert run_hq("agents", "sync").exit_code == 0
    raw.execute("SET session_replication_role = replica")  # bulk setup, no triggers
    raw.execute("""
        INSERT INTO issues (title, status, created_by, assignee_id, reviewer_id, escalated_to_id, priority,
                            playbook, lease_until, unmet_deps)
        SELECT 'issue ' || g,
               (ARRAY['backlog','todo','in_progress','in_review','approved','deploying','blocked','done',
                      'done','done'])[1 + g % 10],
               'seed', 1 + g % 33, 1 + (g * 7) % 33, 1 + (g * 11) % 33, g % 10,
               CASE WHEN g % 50 = 0 THEN 'feature-delivery' END,
               CASE WHEN g % 3 = 0 THEN now() - interval '1 hour' ELSE now() + interval '1 hour' END,
               CASE WHEN g % 7 = 0 THEN 1 ELSE 0 END
          FROM generate_series(1, 20000) g
    """)
    raw.execute("SET session_replication_role = origin")
    raw.execute("ANALYZE issues")
    return raw


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_claim_query_uses_its_partial_index(populated: psycopg.Connection, name: str) -> None:
    sql = _named_queries("claims")[name]
    run_id = uuid.uuid4()
    params = {"agent_id": 5, "run_id": run_id, "run_text": str(run_id), "ttl": 60, "actor": "test", "workflow": "plan"}
    statement = re.sub(r"(?<![:\w]):([a-z_]+)", r"%(\1)s", sql)  # :name -> psycopg's %(name)s
    plan = one(populated.execute("EXPLAIN (FORMAT JSON) " + statement, params).fetchone())[0][0]["Plan"]
    scans = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in nodes(plan)]
    assert not any(kind == "Seq Scan" and relation == "issues" for kind, relation, _ in scans), scans
    assert any(index == EXPECTED[name] for _, _, index in scans), (name, json.dumps(scans))
