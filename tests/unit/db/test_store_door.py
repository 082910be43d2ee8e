"""The issue store is the only door: no module outside db/store/ writes issues, leases or approvals
(nor the Telegram poller's lease, offset, audit and prompts).

The scan reads the source, not the running code, so a write path nobody has
exercised yet is caught too. It looks for four ways to write those rows:
ORM statements (``update(Issue)``, ``Issue.__table__.update()``, ``Issue(...)``),
assignment to their columns where the ORM models are imported, SQL text that writes the tables,
and the named statements in db/sql/queries/ that write them, which only the
store may run. Money columns move only inside the ledger's SQL functions
(db/sql/budget.sql), the ledger's own door, which no Python writes around.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from db.models import Approval, Issue
from tests.support import ROOT

PACKAGES = ("config", "db", "agents", "models", "runtimes", "projects", "channels", "workflows", "scheduler", "cli")
STORE = ROOT / "db" / "store"
MIGRATIONS = ROOT / "db" / "migrations"
QUERIES = ROOT / "db" / "sql" / "queries"

GUARDED_MODELS = {"Issue", "Approval", "IssueDependency"}
# Every column of the guarded tables; assignments are looked for only where their ORM models are imported.
GUARDED_COLUMNS = {c.name for model in (Issue, Approval) for c in model.__table__.columns} | {
    # issues
    "assignee_id",
    "reviewer_id",
    "lease_owner",
    "lease_until",
    "blocked_reason",
    "escalated_to_id",
    "escalation_chain",
    "attempts",
    "max_attempts",
    "review_rounds",
    "quality_score",
    "budget_usd",
    "playbook",
    # approvals
    "deadline",
    "reminded_at",
    "escalations",
    "decided_by",
    "decided_at",
    "decision_note",
}
WRITES = re.compile(
    r"\b(?:UPDATE|INSERT\s+INTO|DELETE\s+FROM|MERGE\s+INTO|COPY|TRUNCATE(?:\s+TABLE)?)\s+(?:ONLY\s+)?"
    r"(?:\"?\w+\"?\.)?\"?(issues|approvals|issue_dependencies|telegram_poller|telegram_updates|telegram_prompts)\b",
    re.IGNORECASE,
)
AGENT_LEASE = re.compile(r"\bUPDATE\s+agents\b[^;]*\blease_(?:owner|until)\s*=", re.IGNORECASE | re.DOTALL)
NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def writing_statements() -> set[tuple[str, str]]:
    """(file, name) of every named statement that writes issues, approvals, dependencies or an agent's lease."""
    found = set()
    for path in sorted(QUERIES.glob("*.sql")):
        source = path.read_text(encoding="utf-8")
        marks = list(NAME.finditer(source))
        for index, mark in enumerate(marks):
            end = marks[index + 1].start() if index + 1 < len(marks) else len(source)
            body = "\n".join(line.split("--", 1)[0] for line in source[mark.end() : end].splitlines())
            if _writes(body):
                found.add((path.stem, mark.group(1)))
    return found


def _writes(sql: str) -> str | None:
    """The guarded table this SQL writes, if it does."""
    match = WRITES.search(sql)
    return match.group(1) if match else "an agent lease" if AGENT_LEASE.search(sql) else None


def _names_guarded_model(node: ast.AST) -> bool:
    """``Issue`` or ``Issue.__table__``."""
    if isinstance(node, ast.Attribute) and node.attr == "__table__":
        node = node.value
    return _name(node) in GUARDED_MODELS


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def violations(source: str, where: str, statements: set[tuple[str, str]]) -> list[str]:
    """Every write to the guarded rows in ``source``, as 'file:line: what'."""
    found = []
    tree = ast.parse(source)
    # Assigning a column changes a row only on an ORM object, so only where the ORM models are in reach.
    orm_in_reach = any(
        (isinstance(node, ast.ImportFrom) and any(alias.name in GUARDED_MODELS for alias in node.names))
        or (isinstance(node, ast.Import) and any(alias.name == "db.models" for alias in node.names))
        for node in ast.walk(tree)
    )
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            called = _name(node.func)
            first = node.args[0] if node.args else None
            if called in {"update", "insert", "delete"} and first is not None and _names_guarded_model(first):
                found.append(f"{line}: {called}({ast.unparse(first)})")
            if (
                called in {"update", "insert", "delete"}
                and isinstance(node.func, ast.Attribute)
                and _name(node.func.value) == "__table__"
            ):
                found.append(f"{line}: __table__.{called}()")
            if called in GUARDED_MODELS and isinstance(node.func, ast.Name):
                found.append(f"{line}: {called}(...) builds a row outside the store")
            if orm_in_reach and called in {"delete", "merge"} and isinstance(node.func, ast.Attribute):
                found.append(f"{line}: session.{called}() of an ORM row")
            if (
                orm_in_reach
                and called == "setattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in GUARDED_COLUMNS
            ):
                found.append(f"{line}: setattr(..., {node.args[1].value!r})")
            if called == "query" and node.args and not all(isinstance(a, ast.Constant) for a in node.args[:2]):
                found.append(f"{line}: a named statement chosen at run time, which only the store may do")
            if (
                called == "query"
                and len(node.args) >= 2
                and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args[:2])
            ):
                file, name = (a.value for a in node.args[:2])  # type: ignore[attr-defined]
                if (file, name) in statements:
                    found.append(f"{line}: runs the writing statement {file}.{name}")
        elif orm_in_reach and isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(element, ast.Attribute) and element.attr in GUARDED_COLUMNS:
                        found.append(f"{line}: assigns .{element.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _writes(node.value):
            found.append(f"{line}: SQL text writes {_writes(node.value)}")
    return found


def package_files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if STORE not in path.parents and MIGRATIONS not in path.parents
    ]


def test_no_module_outside_the_store_writes_issues_leases_or_approvals() -> None:
    statements = writing_statements()
    found = [
        problem
        for path in package_files()
        for problem in violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), statements)
    ]
    assert found == []


@pytest.mark.parametrize(
    "planted",
    [
        "session.execute(update(Issue).where(Issue.id == 1).values(status='todo'))",
        "session.execute(Issue.__table__.update().values(assignee_id=2))",
        "session.add(Issue(title='x', created_by='me'))",
        "from db.models import Issue\nissue.lease_owner = None",
        "from db.models import Approval\napproval.decided_by, approval.decided_at = 'me', now",
        "from db.models import Issue\nissue.attempts += 1",
        "from db.models import Issue\nissue.status = 'done'",
        "import db.models as m\nrow.priority = 1",
        "from db.models import Issue\nsetattr(issue, 'lease_owner', None)",
        "from db.models import Issue\nsession.delete(issue)",
        "session.execute(update(Issue.__table__).values(status='x'))",
        "conn.execute('UPDATE \"issues\" SET status = 1')",
        "conn.execute('MERGE INTO issues USING x ON true WHEN MATCHED THEN DELETE')",
        "session.execute(query('moves', name), {})",
        "conn.execute(text('UPDATE issues SET status = 1'))",
        "conn.execute('insert into hq.approvals (issue_id) values (1)')",
        "conn.execute('UPDATE agents SET lease_owner = NULL WHERE id = 1')",
        "session.execute(query('moves', 'submit'), {})",
        "session.execute(query('decisions', 'approve'), {})",
    ],
)
def test_the_scan_finds_a_planted_write(planted: str) -> None:
    assert violations(planted, "planted.py", writing_statements()) != []


def test_the_scan_leaves_reads_and_other_tables_alone() -> None:
    reads = (
        "session.execute(query('issues', 'issue'), {})\n"
        "conn.execute('SELECT * FROM issues WHERE id = 1')\n"
        "row.attempts += 1  # a notification row\n"
        "session.execute(update(Notification).values(status='sent'))\n"
    )
    assert violations(reads, "reads.py", writing_statements()) == []
