"""Review sees every side of a change to what HQ runs: a person approves any change that touches ``.hq/``.

Git's ``--name-only`` lists only a rename's new path, so moving ``.hq/project.yaml`` out of ``.hq/`` looked like
a change elsewhere, was approved by the review and merged, and left the base without a project file. These
tests push such changes to the issue's branch (as the engineer or anyone with the branch could) and run the
real review beat over them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from scheduler.heartbeat import BeatContext
from tests.support.projects import (
    ENGINEER,
    GOOD_MUL,
    LEAD,
    add_project,
    beat,
    fenced,
    git,
    make_remote,
    needs_bwrap,
    project_issue,
)

pytestmark = [pytest.mark.usefixtures("db_url"), needs_bwrap]


def _rename_on_branch(remote: Path, branch: str, source: str, target: str) -> None:
    clone = remote.parent / "outside-rename"
    git(remote.parent, "clone", "-q", "--branch", branch, str(remote), str(clone))
    (clone / target).parent.mkdir(parents=True, exist_ok=True)
    git(clone, "mv", source, target)
    git(clone, "commit", "-q", "-m", "Tidy the project layout")
    git(clone, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
    shutil.rmtree(clone)


@pytest.mark.parametrize("target", ["hq-project.yaml", "docs/project.yaml", ".hq.yaml"])
def test_moving_the_project_file_away_waits_for_a_person(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path, target: str
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", fenced("calc.py", GOOD_MUL))
    assert beat(runtime, raw, ENGINEER, issue) == "in_review"
    _rename_on_branch(remote, f"hq/issue-{issue}", ".hq/project.yaml", target)

    assert beat(runtime, raw, LEAD, issue) == "pending_approval"
    (reason,) = raw.execute("SELECT reason FROM approvals WHERE issue_id = %s", (issue,)).fetchone() or ("",)
    assert "edits .hq/" in reason


def test_moving_a_file_into_hq_waits_for_a_person(
    runtime: BeatContext, raw: psycopg.Connection, tmp_path: Path
) -> None:
    remote = make_remote(tmp_path)
    project = add_project(raw, remote)
    issue = project_issue(raw, project, "Add mul to calc", fenced("calc.py", GOOD_MUL))
    assert beat(runtime, raw, ENGINEER, issue) == "in_review"
    _rename_on_branch(remote, f"hq/issue-{issue}", "test_calc.py", ".hq/test_calc.py")

    assert beat(runtime, raw, LEAD, issue) == "pending_approval"
