"""Toolset `code`: working on a project's repository in the issue's own worktree.

``read_file``, ``write_file`` and ``list_files`` (toolset `workspace`) work in the
worktree too; these add what code needs: exact edits, search, the branch's diff
and the project's own commands. ``run_command`` takes a command's name from the
base branch's ``.hq/project.yaml``, never an argument list or a shell string,
and runs it in the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from agents.tools.context import ToolContext
from agents.tools.registry import tool
from config.errors import ToolError
from projects.git import GitError, git
from projects.repo.checks import record, run_named
from projects.repo.repository import RepositoryError
from projects.repo.work import RepoWork
from projects.workspace import MAX_FILE_BYTES

MAX_MATCHES = 200
# Deploying is for deploy_verify, after review and approval: never from inside the work.
NOT_FROM_WORK = frozenset({"deploy"})


class EditArgs(BaseModel):
    path: Annotated[str, Field(description="A path relative to the worktree, e.g. 'src/app.py'.")]
    old_text: Annotated[str, Field(min_length=1, max_length=MAX_FILE_BYTES, description="Exact text to replace.")]
    new_text: Annotated[str, Field(max_length=MAX_FILE_BYTES, description="What replaces it.")]


class SearchArgs(BaseModel):
    pattern: Annotated[str, Field(min_length=1, max_length=500, description="An extended regular expression.")]
    glob: Annotated[str | None, Field(max_length=200, description="Only paths matching this, e.g. '*.py'.")] = None


class NoArgs(BaseModel):
    pass


class CommandArgs(BaseModel):
    name: Annotated[str, Field(max_length=64, description="A command named in the project's .hq/project.yaml.")]


def _code(ctx: ToolContext) -> RepoWork:
    if not isinstance(ctx.work, RepoWork):
        raise ToolError("this issue has no project: there is no repository, diff or command to run")
    return ctx.work


@tool("code", EditArgs)
def edit_file(ctx: ToolContext, session: Session, args: EditArgs) -> dict[str, Any]:
    """Replace one exact, unique piece of text in a file of the worktree."""
    tree = _code(ctx).worktree
    text = tree.read(args.path)
    found = text.count(args.old_text)
    if found == 0:
        raise ToolError(f"old_text does not occur in {args.path}: read the file and copy the text exactly")
    if found > 1:
        raise ToolError(f"old_text occurs {found} times in {args.path}: include more surrounding text to pick one")
    written = tree.write(args.path, text.replace(args.old_text, args.new_text, 1))
    return {"path": written.path, "sha256": written.sha256, "size_bytes": written.size_bytes}


@tool("code", SearchArgs)
def search(ctx: ToolContext, session: Session, args: SearchArgs) -> dict[str, Any]:
    """Search the worktree's files (tracked and new) for a regular expression: path, line number, line."""
    tree = _code(ctx).worktree
    pathspec = ["--", f":(glob)**/{args.glob}" if "/" not in args.glob else f":(glob){args.glob}"] if args.glob else []
    try:
        result = git(
            tree.root,
            "grep",
            "-n",
            "-I",
            "-E",
            "--untracked",
            "--no-color",
            "-e",
            args.pattern,
            *pathspec,
            git_dir=tree.git_dir,
        )
    except GitError as error:
        raise ToolError(error.message) from None
    if result.returncode == 1:
        return {"matches": [], "truncated": False}
    if result.returncode != 0:
        raise ToolError(f"search failed: {result.stderr.strip()[:300]}")
    lines = result.stdout.splitlines()
    return {"matches": [line[:500] for line in lines[:MAX_MATCHES]], "truncated": len(lines) > MAX_MATCHES}


@tool("code", NoArgs)
def diff(ctx: ToolContext, session: Session, args: NoArgs) -> dict[str, Any]:
    """The issue branch against its base, including changes not committed yet: stat and patch."""
    work = _code(ctx)
    try:
        return {"stat": work.worktree.diff_stat(work.base), "patch": work.worktree.diff(work.base)}
    except RepositoryError as error:
        raise ToolError(error.message) from None


@tool("code", CommandArgs, slow=True)
def run_command(ctx: ToolContext, args: CommandArgs) -> tuple[dict[str, Any], Callable[[Session], None]]:
    """Run one of the project's commands (by name, e.g. 'test') in the sandbox; exit code, duration, output tail."""
    work = _code(ctx)
    known = sorted(name for name in work.project_file.commands if name not in NOT_FROM_WORK)
    if args.name not in known:
        raise ToolError(f"{args.name!r} is not a command this run may use; the project's are: {', '.join(known)}")
    assert ctx.issue_id is not None
    issue_id = ctx.issue_id
    try:  # the files the command runs on, as the commit that follows would hold them: evidence by tree
        files: str | None = work.worktree.files_tree()
    except RepositoryError:
        files = None  # an unfinished merge, say: the result is the engineer's, never reused
    check = run_named(
        ctx.settings,
        work.sandbox,
        work.project_file,
        args.name,
        work.worktree,
        issue_id=issue_id,
        watch=work.watch,
        limit=ctx.limit,
        environment=work.environment,
    )
    commit = work.worktree.head()
    env_key = work.environment.key if work.environment is not None else None

    def evidence(session: Session) -> None:
        record(
            session,
            [check],
            issue_id=issue_id,
            project_id=work.project.id,
            commit=commit,
            stage="work",
            run_id=ctx.run_id,
            agent_id=ctx.agent.id,
            tree=files,
            env_key=env_key,
        )

    result = {
        "name": args.name,
        "exit_code": check.result.exit_code,
        "seconds": round(check.result.seconds, 2),
        "timed_out": check.result.timed_out,
        "stopped_by": check.cut_by,  # an HQ limit, not the project's timeout: no verdict on the code
        "output_tail": check.result.output,
    }
    return result, evidence
