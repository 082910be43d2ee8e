"""The review gate's evidence for a project issue: its gate commands at the pushed branch head.

Each command's result is for exactly the head's files: reused where it already
passed on that tree in that environment (projects/repo/checks.py), else run in
a fresh detached worktree of the head, in the sandbox, and stored in
``check_runs``. A tree the gate already failed on is not gated again
(``no_progress``). Deploy ships only the head a passing review saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from db import store
from db.store import Executor
from projects.repo import checks
from projects.repo.checks import Check
from projects.repo.project_file import PROJECT_FILE

DIFF_FOR_REVIEWER = 30_000


@dataclass(frozen=True)
class GateEvidence:
    """The git kind's Evidence (projects/kinds.py): the gate's results at the head, and the change itself."""

    commit: str
    checks: tuple[Check, ...]
    stat: str
    patch: str
    paths: tuple[str, ...]
    no_progress: bool = False  # these files were gated red already: ``checks`` is that red result, not run again

    @property
    def changes_what_runs(self) -> bool:
        """Whether the change touches HQ's own folder of the project (a path in it, or ``.hq`` itself made a
        file or a link): then a person must approve it. ``paths`` holds both sides of a rename."""
        return any(path in (PROJECT_FILE, ".hq") or path.startswith(".hq/") for path in self.paths)

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def report(self) -> str:
        report = checks.report(self.checks, commit=self.commit)
        if self.no_progress:
            return f"The work came back on files the gate already failed on; not gated again.\n{report}"
        return report

    def for_reviewer(self, session: Session) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "checks": [check.line() for check in self.checks],
            "diff_stat": self.stat,
            "diff": self.patch[:DIFF_FOR_REVIEWER],
        }


def passed_at(db: Executor, issue_id: int, commit: str, gate: Sequence[str]) -> bool:
    """Whether every gate command's latest review result for exactly ``commit`` passed (how issues approved
    before reviews recorded the head they saw, ``issues.reviewed_sha``, are judged)."""
    latest = {check.command: check.ok for check in store.checks_at(db, issue_id, commit) if check.stage == "review"}
    return all(latest.get(name, False) for name in gate)
