"""A project's commands, run by name in the sandbox, and the evidence they leave.

A command is only ever a name from the base branch's ``.hq/project.yaml``; its
argument list comes from that file and runs in the sandbox (projects/sandbox.py),
in a worktree HQ built. What each gate, deploy or verify run returned is
recorded in ``check_runs`` against the exact commit it ran on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import Settings
from db import store
from db.store import Executor
from projects.repo.environment import Built
from projects.repo.project_file import ProjectFile
from projects.repo.repository import Worktree
from projects.sandbox import Sandbox, SandboxResult, limits_for

# Bytecode caches would otherwise land in the worktree and in the commit that follows.
COMMAND_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
SHOWN_TAIL = 3000
COMMAND_VARIABLES = ("HQ_ISSUE_ID", "HQ_ENV")
"""What HQ itself tells a project command in its environment (the issue; the project's environment, if any)."""


@dataclass(frozen=True)
class Check:
    name: str
    result: SandboxResult

    @property
    def ok(self) -> bool:
        return self.result.ok

    def line(self) -> str:
        verdict = (
            "passed"
            if self.ok
            else ("timed out" if self.result.timed_out else f"failed (exit {self.result.exit_code})")
        )
        return f"{self.name}: {verdict} in {self.result.seconds:.1f}s [{self.result.sandbox}]"


def run_named(
    settings: Settings,
    sandbox: Sandbox,
    project_file: ProjectFile,
    name: str,
    tree: Worktree,
    *,
    issue_id: int,
    deadline: float,
    environment: Built | None = None,
) -> Check:
    """Run one command the project file defines (the caller has checked the name) in ``tree``.

    ``deadline`` (time.monotonic) is the end of the run that holds the issue: no command outlives the
    run's lease, so its timeout is the shorter of the project's and the time the run has left.
    ``environment``: the project's built environment (projects/repo/environment.py), read-only at /env.
    """
    command = project_file.commands[name]
    left = deadline - time.monotonic()
    if left < 1:
        why = f"{name} did not start: this run has no time left (HQ_WORKFLOW_MAX_SECONDS)"
        return Check(name, SandboxResult(command.run, 124, 0.0, why, True, sandbox.name))
    limits = limits_for(settings, min(command.timeout_seconds or settings.command_timeout_seconds, left))
    env = COMMAND_ENV | {"HQ_ISSUE_ID": str(issue_id)}
    mounts = []
    if environment is not None:
        env |= environment.variables(sandbox)
        mounts = environment.mounts(sandbox)
    return Check(name, sandbox.run(command.run, workdir=tree.root, limits=limits, env=env, mounts=mounts))


def not_started(check: Check) -> bool:
    """A command refused for want of time (run_named): not a verdict on the code."""
    return check.result.timed_out and check.result.seconds == 0.0


def run_all(
    settings: Settings,
    sandbox: Sandbox,
    project_file: ProjectFile,
    names: Sequence[str],
    tree: Worktree,
    *,
    issue_id: int,
    deadline: float,
    environment: Built | None = None,
) -> list[Check]:
    """The commands in order, stopping at the first that fails: all must pass, and a red one decides."""
    checks: list[Check] = []
    for name in names:
        ran = run_named(
            settings, sandbox, project_file, name, tree, issue_id=issue_id, deadline=deadline, environment=environment
        )
        checks.append(ran)
        if not checks[-1].ok:
            break
    return checks


def record(
    db: Executor,
    checks: Sequence[Check],
    *,
    issue_id: int,
    project_id: int,
    commit: str,
    stage: str,
    run_id: uuid.UUID,
    agent_id: int | None,
) -> None:
    for check in checks:
        store.record_check(
            db,
            issue_id=issue_id,
            project_id=project_id,
            commit_sha=commit,
            stage=stage,
            command=check.name,
            exit_code=check.result.exit_code,
            duration_ms=round(check.result.seconds * 1000),
            output_tail=check.result.output,
            sandbox=check.result.sandbox,
            run_id=run_id,
            agent_id=agent_id,
        )


def report(checks: Sequence[Check], *, commit: str) -> str:
    """People's view of a run of checks: one line each, and the failing one's output tail."""
    lines = [f"Checks at {commit[:12]}:"] + [f"- {check.line()}" for check in checks]
    failed = next((check for check in checks if not check.ok), None)
    if failed is not None:
        tail = failed.result.output.strip()[-SHOWN_TAIL:]
        lines += ["", f"Output of {failed.name} (tail):", "```", tail, "```"]
    return "\n".join(lines)
