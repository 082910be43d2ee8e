"""A project's commands, run by name in the sandbox, and the evidence they leave.

A command is only ever a name from the base branch's ``.hq/project.yaml``; its
argument list comes from that file and runs in the sandbox (projects/sandbox.py),
in a worktree HQ built. What each gate, deploy or verify run returned is
recorded in ``check_runs`` against the exact commit it ran on, the files it ran
on (git's tree id) and the environment it ran against.

Each tree is tested once: a gate command that already passed on exactly those
files in that environment (an engineer's own run, the review's) is reused, not
run again (``run_gate``); deploy and verify always run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Protocol

from config.settings import Settings
from db import store
from db.store import CheckRunRecord, Executor
from projects.repo.environment import Built
from projects.repo.project_file import ProjectFile
from projects.repo.repository import Worktree
from projects.sandbox import Sandbox, SandboxResult, limits_for
from projects.watch import Limit, Watch

# Bytecode caches would otherwise land in the worktree and in the commit that follows.
COMMAND_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}
SHOWN_TAIL = 3000
COMMAND_VARIABLES = ("HQ_ISSUE_ID", "HQ_ENV")
"""What HQ itself tells a project command in its environment (the issue; the project's environment, if any)."""


@dataclass(frozen=True)
class Check:
    name: str
    result: SandboxResult
    reused_from: int | None = None  # the check_runs row whose result this is: the command did not run again
    cut_by: str | None = None  # the HQ limit that ended it before its own timeout ("HQ_TOOL_LOOP_MAX_SECONDS=…")

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def verdict(self) -> bool:
        """Whether the result says anything about the code: not when HQ stopped the command (its run lost the
        issue, or one of HQ's own limits ran out first); a timeout of the project's own is a verdict."""
        return not self.result.cancelled and self.cut_by is None

    def line(self) -> str:
        if self.ok:
            verdict = "passed"
        elif self.result.cancelled:
            verdict = "stopped (the run no longer holds the issue)"
        elif self.cut_by is not None:
            verdict = f"stopped by HQ's limit {self.cut_by} (not the project's timeout)"
        elif self.result.timed_out:
            verdict = "timed out (its timeout_seconds)"
        else:
            verdict = f"failed (exit {self.result.exit_code})"
        reused = f" (reused from check {self.reused_from})" if self.reused_from is not None else ""
        return f"{self.name}: {verdict} in {self.result.seconds:.1f}s [{self.result.sandbox}]{reused}"

    @classmethod
    def reusing(cls, row: CheckRunRecord) -> Check:
        seconds = row.duration_ms / 1000
        result = SandboxResult((row.command,), row.exit_code, seconds, row.output_tail, False, row.sandbox)
        return cls(row.command, result, reused_from=row.id)


class CheckBook(Protocol):
    """Where a run's evidence is kept and looked up (projects/repo/project.py keeps it in ``check_runs``)."""

    def passed(self, tree: str, env_key: str | None, command: str) -> CheckRunRecord | None:
        """A passing run of ``command`` on exactly these files in this environment, if one is recorded."""
        ...

    def record(
        self, checks: Sequence[Check], *, commit: str, tree: str | None, env_key: str | None, stage: str
    ) -> None:
        """Record the checks that ran (a reused one is recorded already)."""
        ...


def run_named(
    settings: Settings,
    sandbox: Sandbox,
    project_file: ProjectFile,
    name: str,
    tree: Worktree,
    *,
    issue_id: int,
    watch: Watch | None = None,
    limit: Limit | None = None,
    environment: Built | None = None,
) -> Check:
    """Run one command the project file defines (the caller has checked the name) in ``tree``.

    Its timeout is its own (``timeout_seconds``, else HQ_COMMAND_TIMEOUT_SECONDS): the lease keeper renews
    the issue's lease for as long as it runs. ``limit``: one of HQ's limits on the run around it (a model's
    tool loop), which may end it first; the check then says which (``cut_by``) and is no verdict.
    ``watch``: the run's lease keeper (projects/watch.py), told what runs and able to stop it.
    ``environment``: the project's built environment (projects/repo/environment.py), read-only at /env.
    """
    command = project_file.commands[name]
    watch = watch or Watch()
    timeout: float = timeout_of(settings, project_file, name)
    cut_by = None
    if limit is not None and limit.left() < timeout:
        timeout, cut_by = limit.left(), limit.setting
        if timeout < 1:
            why = f"{name} did not start: {limit.setting} leaves this run no time"
            return Check(name, SandboxResult(command.run, 124, 0.0, why, True, sandbox.name), cut_by=cut_by)
    env = COMMAND_ENV | {"HQ_ISSUE_ID": str(issue_id)}
    mounts = []
    if environment is not None:
        env |= environment.variables(sandbox)
        mounts = environment.mounts(sandbox)
    watch.doing(f"command {name}")
    limits = limits_for(settings, timeout, cancel=watch.stopped)
    result = sandbox.run(command.run, workdir=tree.root, limits=limits, env=env, mounts=mounts)
    return Check(name, result, cut_by=cut_by if result.timed_out else None)


def timeout_of(settings: Settings, project_file: ProjectFile, name: str) -> int:
    """A command's own timeout: its ``timeout_seconds`` in the project file, else HQ_COMMAND_TIMEOUT_SECONDS."""
    return project_file.commands[name].timeout_seconds or settings.command_timeout_seconds


def run_all(
    settings: Settings,
    sandbox: Sandbox,
    project_file: ProjectFile,
    names: Sequence[str],
    tree: Worktree,
    *,
    issue_id: int,
    watch: Watch | None = None,
    environment: Built | None = None,
) -> list[Check]:
    """The commands in order, stopping at the first that fails: all must pass, and a red one decides."""
    checks: list[Check] = []
    for name in names:
        checks.append(
            run_named(
                settings, sandbox, project_file, name, tree, issue_id=issue_id, watch=watch, environment=environment
            )
        )
        if not checks[-1].ok:
            break
    return checks


def run_gate(
    settings: Settings,
    sandbox: Sandbox,
    project_file: ProjectFile,
    checkout: Callable[[], AbstractContextManager[Worktree]],
    files: str,
    book: CheckBook,
    *,
    commit: str,
    stage: str,
    issue_id: int,
    watch: Watch | None = None,
    env: Built | None = None,
) -> list[Check]:
    """The gate on the files of the git tree ``files``, each command reused where it already passed on exactly
    those files in this environment, else run in the tree ``checkout`` gives (made only if something must
    run); stops at the first red one. What ran is recorded in ``book`` under ``stage``."""
    env_key = env.key if env is not None else None
    checks: list[Check] = []
    ran: list[Check] = []
    with ExitStack() as stack:
        tree: Worktree | None = None
        for name in project_file.gate:
            earlier = book.passed(files, env_key, name)
            if earlier is not None:
                checks.append(Check.reusing(earlier))
                continue
            tree = tree or stack.enter_context(checkout())
            check = run_named(
                settings, sandbox, project_file, name, tree, issue_id=issue_id, watch=watch, environment=env
            )
            checks.append(check)
            ran.append(check)
            if not check.ok:
                break
    book.record(ran, commit=commit, tree=files, env_key=env_key, stage=stage)
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
    tree: str | None = None,
    env_key: str | None = None,
) -> None:
    for check in checks:
        if check.reused_from is not None or not check.verdict:  # reused: recorded already; stopped: no evidence
            continue
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
            tree_sha=tree,
            env_key=env_key,
        )


def report(checks: Sequence[Check], *, commit: str) -> str:
    """People's view of a run of checks: one line each, and the failing one's output tail."""
    lines = [f"Checks at {commit[:12]}:"] + [f"- {check.line()}" for check in checks]
    failed = next((check for check in checks if not check.ok), None)
    if failed is not None:
        lines += ["", f"Output of {failed.name}:", "```", explain(failed.result.output), "```"]
    return "\n".join(lines)


# A test runner's account of a failure: where its failures start, and its closing summary.
_FIRST_FAILURE = re.compile(r"^(?:=+ (?:FAILURES|ERRORS) =+|_{3,} .+ _{3,}|(?:FAIL|ERROR): .+)$", re.MULTILINE)
_SUMMARY = re.compile(r"^(?:=+ short test summary info =+|-{20,}\nRan \d+ tests?)", re.MULTILINE)


def explain(output: str, limit: int = SHOWN_TAIL) -> str:
    """The part of a failing command's output that explains it, within ``limit`` characters: the first
    failures and the runner's summary (pytest's, unittest's) when they can be found, else the last lines."""
    text = output.strip()
    if len(text) <= limit:
        return text
    first = _FIRST_FAILURE.search(text)
    if first is None:
        return "…\n" + text[-limit:]
    summaries = [match.start() for match in _SUMMARY.finditer(text) if match.start() > first.start()]
    if not summaries:
        return text[first.start() :][:limit]
    closing = text[summaries[-1] :][-(limit // 3) :]
    opening = text[first.start() : summaries[-1]][: limit - len(closing) - 3]
    return f"{opening}\n…\n{closing}"
