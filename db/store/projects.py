"""Projects and their check runs: the one door to the ``projects`` and ``check_runs`` rows.

Check runs are append-only evidence: a result is recorded against the exact
commit it ran on, and readers ask for one commit's evidence, never "the latest
pass", so a green run on an older commit can never vouch for a newer one.
"""

from __future__ import annotations

import re
import uuid

from config.errors import NotFoundError, StateError, UsageError
from db.sqlfiles import query
from db.store.executor import Executor
from db.store.records import CheckRunRecord, ProjectRecord

PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
MAX_OUTPUT_TAIL = 8000


def validate_name(name: str) -> str:
    if not PROJECT_NAME.fullmatch(name):
        raise UsageError(
            f"invalid project name {name!r}: use 1-63 of a-z, 0-9, '-' and '_', starting with a letter or digit"
        )
    return name


def validate_branch(branch: str) -> str:
    """A branch name git accepts and no option parser mistakes for a flag (git check-ref-format's rules, kept short)."""
    bad = (
        not BRANCH_NAME.fullmatch(branch)
        or ".." in branch
        or "//" in branch
        or "/." in branch
        or branch.endswith((".", "/", ".lock"))
        or branch.startswith("hq/")
    )
    if bad:
        raise UsageError(f"invalid branch name {branch!r} (and hq/… branches are HQ's own)")
    return branch


def add_project(
    db: Executor,
    *,
    name: str,
    repo: str,
    base_branch: str,
    actor: str,
    keep_branches: bool = False,
    team_id: int | None = None,
) -> ProjectRecord:
    """``keep_branches``: a done or cancelled issue's branch stays on the remote (else HQ deletes it);
    ``team_id``: the manager whose reports take its issues."""
    row = db.execute(
        query("projects", "add_project"),
        {
            "name": validate_name(name),
            "repo": repo,
            "base_branch": validate_branch(base_branch),
            "created_by": actor,
            "keep_branches": keep_branches,
            "team_id": team_id,
        },
    ).first()
    if row is None:
        raise StateError(f"project {name!r} already exists")
    return ProjectRecord.of(row)


def set_project_team(db: Executor, name: str, team_id: int | None) -> ProjectRecord:
    """Name the team (a manager's id) that owns the project's issues, or none."""
    row = db.execute(query("projects", "set_project_team"), {"name": name, "team_id": team_id}).first()
    if row is None:
        raise NotFoundError(f"no project named {name!r} (hq project list)")
    return ProjectRecord.of(row)


def get_project(db: Executor, project_id: int) -> ProjectRecord:
    return ProjectRecord.of(db.execute(query("projects", "project_by_id"), {"project_id": project_id}).one())


def project_by_name(db: Executor, name: str, *, for_new_issue: bool = False) -> ProjectRecord:
    """The live project of that name; ``for_new_issue`` holds it against removal until the transaction ends."""
    statement = "project_by_name_shared" if for_new_issue else "project_by_name"
    row = db.execute(query("projects", statement), {"name": name}).first()
    if row is None:
        raise NotFoundError(f"no project named {name!r} (hq project list)")
    return ProjectRecord.of(row)


def all_projects(db: Executor) -> list[tuple[ProjectRecord, int]]:
    """Every live project with its count of open issues."""
    return [(ProjectRecord.of(row), int(row.open_issues)) for row in db.execute(query("projects", "all_projects"))]


def finished_issues(db: Executor, project_id: int, issue_ids: list[int]) -> set[int]:
    """Which of ``issue_ids`` are the project's issues and done or cancelled (their branches may go)."""
    if not issue_ids:
        return set()
    rows = db.execute(query("projects", "finished_issues"), {"project_id": project_id, "ids": issue_ids})
    return {int(row.id) for row in rows}


def remove_project(db: Executor, name: str) -> ProjectRecord:
    """Remove a project no open issue uses; StateError naming (some of) the open issues otherwise."""
    row = db.execute(query("projects", "lock_project"), {"name": name}).first()
    if row is None:
        raise NotFoundError(f"no project named {name!r} (hq project list)")
    project = ProjectRecord.of(row)
    open_ids = [r.id for r in db.execute(query("projects", "open_issue_ids"), {"project_id": project.id})]
    if open_ids:
        shown = ", ".join(f"#{i}" for i in open_ids)
        raise StateError(f"project {name!r} still has open issues ({shown}): finish or cancel them first")
    return ProjectRecord.of(db.execute(query("projects", "remove_project"), {"project_id": project.id}).one())


def record_check(
    db: Executor,
    *,
    issue_id: int,
    project_id: int,
    commit_sha: str,
    stage: str,
    command: str,
    exit_code: int,
    duration_ms: int,
    output_tail: str,
    sandbox: str,
    run_id: uuid.UUID | None,
    agent_id: int | None,
    tree_sha: str | None = None,
    env_key: str | None = None,
) -> CheckRunRecord:
    row = db.execute(
        query("projects", "record_check"),
        {
            "issue_id": issue_id,
            "project_id": project_id,
            "commit_sha": commit_sha,
            "stage": stage,
            "command": command,
            "exit_code": exit_code,
            "duration_ms": max(duration_ms, 0),
            "output_tail": output_tail[-MAX_OUTPUT_TAIL:].replace("\x00", ""),
            "sandbox": sandbox,
            "run_id": run_id,
            "agent_id": agent_id,
            "tree_sha": tree_sha,
            "env_key": env_key,
        },
    ).one()
    return CheckRunRecord.of(row)


def passed_on_tree(
    db: Executor, *, project_id: int, tree_sha: str, env_key: str | None, command: str
) -> CheckRunRecord | None:
    """The newest passing run of ``command`` on exactly this tree and environment (evidence by tree)."""
    params = {"project_id": project_id, "tree_sha": tree_sha, "env_key": env_key, "command": command}
    row = db.execute(query("projects", "passed_on_tree"), params).first()
    return CheckRunRecord.of(row) if row else None


def gated_red_on_tree(db: Executor, *, project_id: int, tree_sha: str, env_key: str | None) -> CheckRunRecord | None:
    """A gate that already failed on exactly this tree and environment, if any."""
    params = {"project_id": project_id, "tree_sha": tree_sha, "env_key": env_key}
    row = db.execute(query("projects", "gated_red_on_tree"), params).first()
    return CheckRunRecord.of(row) if row else None


def checks_at(db: Executor, issue_id: int, commit_sha: str) -> list[CheckRunRecord]:
    rows = db.execute(query("projects", "checks_at"), {"issue_id": issue_id, "commit_sha": commit_sha})
    return [CheckRunRecord.of(row) for row in rows]


def latest_checks(db: Executor, issue_id: int) -> list[CheckRunRecord]:
    return [CheckRunRecord.of(row) for row in db.execute(query("projects", "latest_checks"), {"issue_id": issue_id})]
