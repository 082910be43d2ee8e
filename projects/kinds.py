"""The Project interface: the few questions every workflow asks of where an issue's work lives.

Execute asks a project to ``prepare`` the run's work (its files, the agent's brief), then to ``keep``
what the run produced and to ``record`` it; review asks for ``evidence``; deploy asks it to ``ship``.
The document kind (projects/document/project.py) and the git kind (projects/repo/project.py) answer the
same questions in their own way, so the workflows read as one path and keep only the store moves:
which status an issue goes to is theirs, never a project's.

Every write a project makes (snapshots, commit artifacts, gate evidence) happens only while its run
still holds the issue (``Run.holds``), in the run's own transaction, so a run that lost its lease
records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from config.errors import HQError
from db import store
from db.store import Claim
from projects.watch import Watch
from projects.workspace import Workspace


class ProjectUnusable(HQError):
    """The project could not be used this time (a remote down, git failing, no sandbox, a broken workspace):
    the attempt counts, since the next beat may find it back. The message says what failed, for people."""


class EnvironmentFailed(HQError):
    """The project's environment could not be built (its setup failed or timed out): the issue blocks with
    ``project_env``; neither an attempt nor a review round is counted, and no model is asked."""


class NotKept(HQError):
    """What the run produced could not be kept (committed, pushed): the attempt counts, and says why."""


@dataclass(frozen=True)
class Run:
    """The run a project serves: its claim (the issue and the lease), who works it, what watches it."""

    held: Claim
    agent_id: int
    agent: str  # the agent's slug: commits are signed with it
    workflow: str
    watch: Watch  # the lease keeper's: told what the run is doing, and stops it once the issue is not its own
    tx: Callable[[], AbstractContextManager[Session]]  # a transaction as this run (its actor, workflow, run id)

    @property
    def issue_id(self) -> int:
        return self.held.id

    def holds(self, session: Session) -> bool:
        """Whether the run still holds its issue; its row stays locked until ``session`` ends."""
        return store.still_held(session, self.held, lock=True)


class Kept(Protocol):
    """What one run left, kept where its kind keeps work (a workspace commit, a pushed branch)."""

    @property
    def nothing(self) -> str | None:
        """Why the run produced nothing to submit ("produced no deliverable"), else None."""

    @property
    def summary(self) -> str:
        """The submission's summary when the agent gave none."""

    @property
    def commit(self) -> str | None:
        """The commit the work is at, for the log."""

    def record(self, session: Session) -> str:
        """Record the kept work as the issue's artifacts (the caller holds the issue); returns the details
        that follow the summary in the submission's comment."""
        ...


class Work(Protocol):
    """One run's hold on its issue's project, from ``Project.prepare`` until ``release``."""

    @property
    def files(self) -> Workspace:
        """The tree the agent's file tools work in."""

    @property
    def instructions(self) -> str:
        """What the agent is asked to do, in this kind's words."""

    def brief(self, context: dict[str, Any]) -> dict[str, Any]:
        """The work context the agent gets: the issue's, plus what this kind adds (a deliverable, a repository)."""
        ...

    def keep(self, run: Run, written: Sequence[str], summary: str) -> Kept:
        """Keep what the run produced (``written``: the files its tools wrote; ``summary``: the agent's own
        words, hostile, which its commit's subject is made of); raises NotKept."""
        ...

    def release(self) -> None:
        """The run is over: let go of what it held. Never raises over what ended the run."""
        ...


class Evidence(Protocol):
    """What a reviewer is shown, gathered before any model is asked: red evidence is the round's verdict."""

    @property
    def passed(self) -> bool: ...

    @property
    def report(self) -> str:
        """The review comment when it did not pass."""

    @property
    def commit(self) -> str | None:
        """The exact commit the evidence is for."""

    @property
    def changes_what_runs(self) -> bool:
        """Whether the change edits what HQ runs for the project: then a person must approve it."""

    @property
    def no_progress(self) -> bool:
        """The work came back exactly as it was when this same evidence failed: asking again pays twice."""

    def for_reviewer(self, session: Session) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Shipped:
    """What deploy did: shipped and verified, or why not (with the failing output)."""

    ok: bool
    summary: str  # for people: what happened, with the failing output
    merged: str | None = None  # the merge commit on the base branch, when it was pushed
    conflicts: tuple[str, ...] = ()
    reverted: str | None = None  # the revert commit pushed after verify failed
    revert_failed: bool = False  # verify failed and the base still holds the merge: a human must look
    unfinished: bool = False  # merged and pushed, verify not run yet: the issue stays deploying for a later run


class Project(Protocol):
    """Where an issue's work lives: the document kind or a git project (projects/choose.py picks)."""

    def prepare(self) -> Work:
        """Before any model call, so a broken project costs nothing; raises PROJECT_FAILURES."""
        ...

    def evidence(self) -> Evidence:
        """What review is held to; raises PROJECT_FAILURES."""
        ...

    def ship(self) -> Shipped:
        """Ship the reviewed work and verify it; raises PROJECT_FAILURES."""
        ...
