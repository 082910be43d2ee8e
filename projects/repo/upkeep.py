"""One git project's upkeep on this host: nothing a finished or dead run made is left behind.

In one pass, each step on its own (one failing does not stop the others):

1. the remote's ``hq/issue-<id>`` branches of issues that are done or cancelled are deleted, each a
   compare-and-set on the head just fetched (the project's ``keep_branches`` keeps them). Deploy deletes
   a shipped issue's branch itself; this catches the rest: cancelled issues (the CLI cancels, a worker
   deletes), a deletion that failed, branches from before. Only names exactly ``hq/issue-<id>`` whose
   issue belongs to this project and is terminal are touched;
2. worktrees no live run holds are removed (the flock rule of projects/repo/repository.py: a tree's
   lease is held exactly while a live process uses it, so a ``kill -9``'d run's trees go, and a live
   run's never do, however long it takes);
3. the clone is garbage-collected, never while a run of this host uses it (skipped, not waited for);
4. environments beyond the newest few, and half-built ones, are removed, never one in use.

A project with no clone on this host has nothing here to tidy but its environments: upkeep never
clones a repository just to look at it. One log line per thing removed; nothing when there is nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from config.log import get_logger
from config.settings import Settings
from db.store.records import ProjectRecord
from projects.repo import environment
from projects.repo.repository import Collected, Repository, RepositoryError, issue_branch

log = get_logger(__name__)

Finished = Callable[[list[int]], set[int]]
"""Which of these issue ids are this project's and done or cancelled (a read of the database)."""


@dataclass
class Tidied:
    """What one pass removed from one project on this host."""

    branches: list[int] = field(default_factory=list)  # issues whose remote branch was deleted
    collected: Collected | None = None
    environments: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def tidy(settings: Settings, project: ProjectRecord, finished: Finished) -> Tidied:
    """One upkeep pass over ``project`` on this host (see the module's docstring)."""
    done = Tidied()
    repository = Repository(settings, project)
    if (repository.git_dir / "HEAD").is_file():
        try:
            repository.sync()  # fetches the branches as they are now, and sweeps dead runs' worktrees
        except (RepositoryError, OSError) as error:
            _problem(done, project, "fetch", error)
            _step(done, project, "sweep", repository.sweep)
        else:
            if not project.keep_branches:
                _step(done, project, "branches", lambda: _delete_branches(repository, finished, done))
        _step(done, project, "gc", lambda: _collect(repository, done))
    _step(done, project, "environments", lambda: done.environments.extend(environment.prune(settings, project.id)))
    return done


def _delete_branches(repository: Repository, finished: Finished, done: Tidied) -> None:
    branches = repository.issue_branches()
    for issue_id in sorted(finished(sorted(branches))):
        head = branches[issue_id]
        if repository.delete_issue_branch(issue_id, head):
            log.info(
                "branch.deleted", project=repository.project.name, issue_id=issue_id, branch=issue_branch(issue_id)
            )
            done.branches.append(issue_id)


def _collect(repository: Repository, done: Tidied) -> None:
    done.collected = repository.collect_garbage()
    if done.collected is not None:
        log.info(
            "repository.collected",
            project=repository.project.name,
            bytes_before=done.collected.before,
            bytes_after=done.collected.after,
        )


def _step(done: Tidied, project: ProjectRecord, step: str, action: Callable[[], object]) -> None:
    """Run one step; git or the disk failing is logged and left for the next pass, not raised over the others."""
    try:
        action()
    except (RepositoryError, OSError) as error:
        _problem(done, project, step, error)


def _problem(done: Tidied, project: ProjectRecord, step: str, error: Exception) -> None:
    message = error.message if isinstance(error, RepositoryError) else str(error)
    log.warning("upkeep.failed", project=project.name, step=step, error=message)
    done.problems.append(f"{step}: {message}")
