"""The document kind of project: an issue's deliverable is files in its own workspace, kept in the database.

A run works in this host's workspace of the issue (``workspaces/issue-N`` under the data dir), brought up
to date first from the latest snapshot another host recorded; what it leaves is committed there and
recorded whole as the issue's artifacts. Review reads those rows, and deploy publishes them on whichever
host deploys (projects/document/commands.py), so no host needs another's disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from config.settings import Settings
from projects.document.commands import deploy_submission
from projects.document.snapshots import latest_snapshot, record_snapshot, restore_workspace
from projects.kinds import NotKept, ProjectUnusable, Run, Shipped
from projects.workspace import MAX_FILE_BYTES, Workspace, WorkspaceError

INSTRUCTIONS = (
    "Do the work this issue asks for, as your role would. Write the deliverable to the workspace file named in "
    "deliverable_path with write_file, addressing every checklist item. If you cannot finish, call mark_blocked "
    "with what is missing; if a fact must be researched first, call ask_research. End with a one-sentence "
    "summary of what you did."
)
ASSEMBLY_INSTRUCTIONS = (
    "Every sub-issue of this issue is finished. Assemble their results (children) into one deliverable at "
    "deliverable_path with write_file, check it against your checklist, and end with a one-sentence summary."
)
# Every file the workspace allows is stored whole: deploy publishes from the database, never a local folder.
MAX_ARTIFACT_BYTES = MAX_FILE_BYTES
EXCERPT_LIMIT = 1200
ARTIFACT_LIMIT = 12_000  # what a reviewer reads of each file


def workspace_path(settings: Settings, issue_id: int) -> Path:
    """This host's workspace of a document issue."""
    return settings.data_path / "workspaces" / f"issue-{issue_id}"


def latest_artifacts(session: Session, issue_id: int, *, content_limit: int = EXCERPT_LIMIT) -> list[dict[str, Any]]:
    """The files of the issue's newest recorded run: exactly what a review passes and a deploy ships."""
    snapshot = latest_snapshot(session, issue_id)
    return [
        {"path": f.path, "sha256": f.sha256, "excerpt": (f.content or "")[:content_limit]}
        for f in (snapshot.files if snapshot else ())
    ]


@dataclass(frozen=True)
class DocumentProject:
    """Issues without a repository, and the assembly of a decomposed issue's parts (``assembly``)."""

    settings: Settings
    engine: Engine
    run: Run
    assembly: bool = False

    def prepare(self) -> DocumentWork:
        """The issue's workspace, with earlier work done on another host restored before the agent starts."""
        run = self.run
        try:
            workspace = Workspace(workspace_path(self.settings, run.issue_id)).ensure()
            with run.tx() as session:
                if restore_workspace(session, run.issue_id, workspace):
                    workspace.commit(
                        agent=run.agent,
                        run_id=run.held.run_id,
                        issue_id=run.issue_id,
                        workflow=run.workflow,
                        summary="Restore the latest snapshot the database holds",
                    )
        except WorkspaceError as error:
            raise ProjectUnusable(f"The workspace is unusable: {error.message}") from error
        return DocumentWork(workspace, ASSEMBLY_INSTRUCTIONS if self.assembly else INSTRUCTIONS)

    def evidence(self) -> DocumentEvidence:
        return DocumentEvidence(self.run.issue_id)

    def ship(self) -> Shipped:
        """Deploy, then verify, the last submission as the database holds it (a fresh staging copy)."""
        deployed, verified = deploy_submission(self.engine, self.settings, self.run.issue_id)
        if verified is not None and verified.ok:
            return Shipped(True, f"{deployed.output.strip()}\n{verified.output.strip()}")
        failed = verified or deployed
        return Shipped(False, f"{failed.kind} failed (exit {failed.returncode}):\n{failed.output.strip()}")


@dataclass(frozen=True)
class DocumentWork:
    files: Workspace
    instructions: str

    def brief(self, context: dict[str, Any]) -> dict[str, Any]:
        return context  # the issue's own context names the deliverable's path

    def keep(self, run: Run, written: Sequence[str], summary: str) -> DocumentKept:
        try:
            self.files.commit(
                agent=run.agent, run_id=run.held.run_id, issue_id=run.issue_id, workflow=run.workflow, summary=summary
            )
        except WorkspaceError as error:
            raise NotKept(f"Could not commit the workspace: {error.message}") from error
        return DocumentKept(self.files, run, tuple(sorted(set(written))))

    def release(self) -> None:
        """The workspace stays: a later run on this host continues from it."""


@dataclass(frozen=True)
class DocumentKept:
    workspace: Workspace
    run: Run
    written: tuple[str, ...]
    commit: str | None = None

    @property
    def nothing(self) -> str | None:
        return None if self.written else "produced no deliverable"

    @property
    def summary(self) -> str:
        return f"Submitted {', '.join(self.written)}."

    def record(self, session: Session) -> str:
        """Every file, content included: deploy, on whichever host, ships the last submission from these rows."""
        run = self.run
        record_snapshot(
            session, issue_id=run.issue_id, run_id=run.held.run_id, agent_id=run.agent_id, workspace=self.workspace
        )
        return ""


@dataclass(frozen=True)
class DocumentEvidence:
    """A document has no commands to run: the reviewer reads the files of the latest submission."""

    issue_id: int
    passed: bool = True
    report: str = ""
    commit: str | None = None
    changes_what_runs: bool = False
    no_progress: bool = False

    def for_reviewer(self, session: Session) -> dict[str, Any]:
        return {"artifacts": latest_artifacts(session, self.issue_id, content_limit=ARTIFACT_LIMIT)}
