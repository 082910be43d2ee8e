"""`hq project add|list|show|set|check|env|remove`: the git repositories the company works on.

A project is a remote (a path or a URL) and its base branch; what HQ may run there
is the base branch's ``.hq/project.yaml``. `add` fetches the remote before it writes
anything, and refuses one it cannot fetch or that lacks the branch (exit 2); a
missing or invalid project file is only a warning then, since the repository may
get one later (its issues block with reason ``project_config`` until it does).
`check` exits 1 when any of its checks fails, like `hq config check`. `--team`
names the manager whose reports take the project's issues (workflows/lib/routing.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.common import ActorOption, JsonOption, human
from config.errors import UsageError

if TYPE_CHECKING:  # git, the sandbox and the store load when a command runs, not when the CLI starts
    from config.settings import Settings
    from db.store.records import ProjectRecord
    from projects.repo.project_file import ProjectFile
    from projects.repo.repository import Repository

project_app = typer.Typer(help="Git repositories the company works on (.hq/project.yaml).", no_args_is_help=True)

ALLOWED_SCHEMES = ("file", "http", "https", "git")  # what projects/git.py lets a fetch or a push use
# ``<transport>::<address>`` runs git-remote-<transport>: ext:: runs any command, fd:: reads a descriptor.
_HELPER = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP = re.compile(r"^(?:[^@/:]+@)?[^/:]+:")  # git's ssh shorthand, [user@]host:path: no slash before the colon
_NOT_BARE = re.compile(r"^\s*bare\s*=\s*false\s*$", re.IGNORECASE | re.MULTILINE)
LOG_LIMIT = 10
SHIPPED_LIMIT = 10

BranchOption = Annotated[str, typer.Option("--branch", help="The base branch work merges into.")]
RepoOption = Annotated[
    str,
    typer.Option(
        "--repo", metavar="PATH_OR_URL", help="A local path (made absolute) or a file://, http(s):// or git:// URL."
    ),
]

TeamOption = Annotated[
    str | None,
    typer.Option(
        "--team",
        metavar="SLUG",
        help="The manager whose team (its engineers, at any depth below it) takes the project's issues.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(project_app, name="project")


# --- the remote ------------------------------------------------------------------------------


def normalise_repo(repo: str) -> tuple[str, Path | None]:
    """The remote as it will be stored, and its local path when it is one; UsageError for what HQ cannot use."""
    if not repo.strip():
        raise UsageError("--repo must not be empty")
    if repo.startswith("-"):
        raise UsageError(f"--repo: {repo!r} must not start with '-'")
    if any(char in repo for char in "\x00\r\n"):
        raise UsageError("--repo must be one line")
    helper = _HELPER.match(repo)
    if helper:
        raise UsageError(
            f"--repo: {helper.group(1)}:: remotes run programs (git remote helpers) and are refused; "
            "use a path or a file://, http(s):// or git:// URL"
        )
    path = Path(repo).expanduser()
    if path.exists():
        resolved = path.resolve()
        return str(resolved), resolved
    scheme = _SCHEME.match(repo)
    if scheme:
        name = scheme.group(1).lower()
        if name not in ALLOWED_SCHEMES:
            raise UsageError(
                f"--repo: {name}:// remotes are not supported (HQ reads no SSH keys or credential helpers); "
                "use a path or a file://, http(s):// or git:// URL"
            )
        if "@" in repo.split("://", 1)[1].split("/", 1)[0]:
            # Never echoed: the part before '@' is a token or a password, and HQ keeps none in rows or argv.
            raise UsageError(
                "--repo: credentials in the URL are refused (they would sit in the database and in git's argv); "
                "use a URL without them"
            )
        if name == "file":
            from urllib.parse import unquote, urlsplit

            local = Path(unquote(urlsplit(repo).path))
            if not local.exists():
                raise UsageError(f"--repo: {repo}: no such repository on this host")
            return repo, local
        return repo, None
    if _SCP.match(repo):
        raise UsageError(
            "--repo: that is an ssh remote ([user@]host:path), which HQ does not support (it reads no SSH keys); "
            "use an https:// or git:// URL, or a path"
        )
    raise UsageError(f"--repo: {repo!r} is neither an existing path nor a file://, http(s):// or git:// URL")


def checked_out_branch(path: Path) -> str | None:
    """The branch a non-bare repository at ``path`` has checked out; None when it is bare (or not a repository).

    Read from the files, without running git in a repository HQ does not own.
    """
    try:
        dot_git = path / ".git"
        if dot_git.is_dir():
            head = dot_git / "HEAD"
        elif dot_git.is_file():  # a linked worktree or a submodule: "gitdir: <path>"
            pointer = re.match(r"gitdir:\s*(.+)", dot_git.read_text(errors="replace").strip())
            if pointer is None:
                return None
            head = (path / pointer.group(1).strip()) / "HEAD"
        elif (path / "HEAD").is_file() and _NOT_BARE.search((path / "config").read_text(errors="replace")):
            head = path / "HEAD"  # the .git directory of a non-bare repository
        else:
            return None
        ref = re.fullmatch(r"ref:\s*refs/heads/(\S+)", head.read_text(errors="replace").strip())
    except OSError:
        return None
    return ref.group(1) if ref else None


def _remote_branches(repository: Repository) -> list[str]:
    from projects.git import GitError, run_git

    try:
        listed = run_git(
            None, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/remotes/origin", git_dir=repository.git_dir
        )
    except GitError:
        return []
    return [name for name in listed.split() if name != "HEAD"]


def _commands(project_file: ProjectFile, settings: Settings) -> dict[str, dict[str, Any]]:
    from projects.repo.checks import timeout_of

    return {
        name: {
            "run": list(command.run),
            "timeout_seconds": timeout_of(settings, project_file, name),
            "timeout_from": "project file" if command.timeout_seconds else "HQ_COMMAND_TIMEOUT_SECONDS",
        }
        for name, command in project_file.commands.items()
    }


def _limits(settings: Settings) -> dict[str, Any]:
    """How long work on the project's issues may take, as HQ will apply it (docs/architecture.md, long runs)."""
    from projects.repo.project_file import MAX_TIMEOUT_SECONDS
    from workflows.lib.leases import renewal_interval

    return {
        "command_max_seconds": MAX_TIMEOUT_SECONDS,
        "tool_loop_max_seconds": settings.tool_loop_max_seconds,
        "claude_code_max_seconds": settings.claude_code_max_seconds,
        "lease_ttl_seconds": settings.lease_ttl_seconds,
        "lease_renewed_every_seconds": round(renewal_interval(settings), 1),
    }


def _print_limits(limits: dict[str, Any]) -> None:
    from cli.output import console

    console.print("\n[bold]limits[/bold]")
    console.print(f"  a gate, deploy or verify command: its own timeout (at most {limits['command_max_seconds']} s)")
    console.print(
        f"  an agent's run: HQ's tool loop {limits['tool_loop_max_seconds']} s (HQ_TOOL_LOOP_MAX_SECONDS), "
        f"a Claude Code session {limits['claude_code_max_seconds']} s (HQ_CLAUDE_CODE_MAX_SECONDS); "
        "the commands it runs end with it"
    )
    console.print(
        f"  the issue's lease: {limits['lease_ttl_seconds']} s, renewed every "
        f"{limits['lease_renewed_every_seconds']} s while the run works (a killed worker's issue comes back after it)"
    )


def _print_commands(commands: dict[str, dict[str, Any]], gate: list[str], indent: str = "  ") -> None:
    import shlex

    from cli.output import console, safe

    for name, command in commands.items():
        timeout = f"timeout {command['timeout_seconds']} s, from {command['timeout_from']}"
        console.print(f"{indent}{name}: {safe(shlex.join(command['run']))} ({timeout})")
    console.print(f"{indent}gate: {', '.join(gate)}")


def _project_row(project: ProjectRecord, open_issues: int, teams: dict[int, str]) -> dict[str, Any]:
    from config.secrets import redact

    return {
        "id": project.id,
        "name": project.name,
        "repo": redact(project.repo),
        "base_branch": project.base_branch,
        "team": teams.get(project.team_id) if project.team_id is not None else None,
        "open_issues": open_issues,
        "keep_branches": project.keep_branches,
        "created_by": project.created_by,
        "created_at": project.created_at,
    }


def _agent_slugs(conn: Any) -> dict[int, str]:
    from db.store import all_agents

    return {agent.id: agent.slug for agent in all_agents(conn).values()}


def team_of(conn: Any, slug: str) -> tuple[int, list[str]]:
    """The id of the manager ``slug`` and the engineers (active, `code` toolset) below it; UsageError otherwise."""
    from db.store import all_agents
    from workflows.lib.routing import active_subtree, can_code

    agents = all_agents(conn)
    team = next((a for a in agents.values() if a.slug == slug), None)
    if team is None:
        raise UsageError(f"--team: no agent named {slug!r} (hq agents lists them; hq agents sync loads the roster)")
    if not any(a.manager_id == team.id for a in agents.values()):
        raise UsageError(f"--team: {slug!r} has no reports; name a manager (hq agents tree shows who has reports)")
    return team.id, [a.slug for a in active_subtree(agents, team) if can_code(a)]


def _lookup(name: str) -> tuple[ProjectRecord, int, list[dict[str, Any]]]:
    """The live project, its open issue count and its recently shipped issues (NotFoundError: exit 2)."""
    from db.board import project_open_issues, project_shipped
    from db.engine import reading
    from db.store import project_by_name

    with reading() as conn:
        project = project_by_name(conn, name)
        return project, project_open_issues(conn, project.id), project_shipped(conn, project.id, limit=SHIPPED_LIMIT)


def _team_slug(project: ProjectRecord) -> dict[int, str]:
    """The project's team as _project_row wants it (one read, only when it has one)."""
    if project.team_id is None:
        return {}
    from db.engine import reading
    from db.store import get_agent

    with reading() as conn:
        agent = get_agent(conn, project.team_id)
    return {agent.id: agent.slug} if agent is not None else {}


# --- commands --------------------------------------------------------------------------------


@project_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Lower case: a-z, 0-9, '-' and '_'.")],
    repo: RepoOption,
    branch: BranchOption = "main",
    keep_branches: Annotated[
        bool,
        typer.Option(
            "--keep-branches", help="Keep done and cancelled issues' hq/issue-N branches on the remote (else deleted)."
        ),
    ] = False,
    team: TeamOption = None,
    actor: ActorOption = None,
) -> None:
    """Add a project: fetch the remote, check the branch, then record it.

    ``--team SLUG`` names the manager whose engineers take its issues (exit 2 when SLUG has no reports).

    Refused (exit 2, nothing written) when the remote cannot be fetched, lacks the
    branch, or is a local non-bare repository with that branch checked out (git
    refuses pushes to it: use a bare clone). A missing or invalid .hq/project.yaml
    is a warning: the project's issues wait for it.
    """
    import datetime as dt
    import os
    import tempfile

    from cli.output import console, safe, warn
    from config.errors import NotFoundError, StateError
    from config.secrets import redact
    from config.settings import get_settings
    from db.engine import reading, transaction
    from db.store import add_project, project_by_name
    from db.store.projects import validate_branch, validate_name
    from db.store.records import ProjectRecord
    from projects.repo.project_file import ProjectConfigError
    from projects.repo.repository import Repository, RepositoryError

    who = human(actor)
    validate_name(name)
    validate_branch(branch)
    stored, local = normalise_repo(repo)
    if local is not None and checked_out_branch(local) == branch:
        raise UsageError(
            f"--repo: {local} has {branch!r} checked out, and git refuses pushes to a checked-out branch; "
            f"use a bare repository (git clone --bare {local} {local.name}.git)"
        )
    with reading() as conn:
        try:
            project_by_name(conn, name)
        except NotFoundError:
            pass
        else:
            raise StateError(f"project {name!r} already exists")
        team_id, engineers = team_of(conn, team) if team is not None else (None, [])

    settings = get_settings()
    projects_dir = settings.data_path / "projects"
    projects_dir.mkdir(parents=True, exist_ok=True)
    # The remote is fetched into a scratch clone before any row is written, so no transaction waits on the
    # network (idle_in_transaction_session_timeout would end it); the clone becomes this host's once added.
    with tempfile.TemporaryDirectory(prefix=".adding-", dir=projects_dir) as scratch:
        draft = ProjectRecord(
            id=0,
            name=name,
            repo=stored,
            base_branch=branch,
            created_by=who,
            created_at=dt.datetime.now(dt.UTC),
            removed_at=None,
        )
        repository = Repository(settings, draft, home=Path(scratch))
        try:
            repository.sync()
        except RepositoryError as error:
            raise UsageError(f"cannot add project {name!r}: {redact(error.message)}") from None
        head = repository.head(branch)
        if head is None:
            branches = _remote_branches(repository)
            has = f"it has: {', '.join(branches[:10])}" if branches else "it has no branches"
            raise UsageError(f"cannot add project {name!r}: {redact(stored)} has no branch {branch!r} ({has})")
        problem = None
        try:
            project_file = repository.project_file()
        except ProjectConfigError as error:
            problem = error.message
        with transaction(who, workflow="cli:project-add") as session:
            project = add_project(
                session,
                name=name,
                repo=stored,
                base_branch=branch,
                actor=who,
                keep_branches=keep_branches,
                team_id=team_id,
            )
        home = Repository(settings, project).git_dir
        if not home.exists():
            try:
                home.parent.mkdir(parents=True, exist_ok=True)
                os.rename(repository.git_dir, home)
            except OSError:
                pass  # the first run that needs the clone fetches its own
    console.print(f"project {safe(name)} added: {safe(redact(stored))}, branch {safe(branch)} at {head[:12]}")
    if team is not None:
        _say_team(name, team, engineers)
    if problem is None:
        _print_commands(_commands(project_file, settings), list(project_file.gate))
    else:
        warn(f"project {name}: {problem}; its issues wait (blocked: project_config) until the base branch has it")


def _say_team(name: str, team: str, engineers: list[str]) -> None:
    from cli.output import console, safe, warn

    if engineers:
        console.print(f"  team: {safe(team)} ({safe(', '.join(engineers))})")
    else:
        warn(f"project {name}: team {team} has no active engineer (code toolset): its issues go to the nearest one")


@project_app.command("set")
def set_(
    name: Annotated[str, typer.Argument()],
    team: TeamOption = None,
    no_team: Annotated[bool, typer.Option("--no-team", help="Any engineer takes its issues.")] = False,
    actor: ActorOption = None,
) -> None:
    """Change a project's team: ``--team SLUG`` (a manager) or ``--no-team``; routed issues keep their owner."""
    from cli.output import console, safe
    from db.engine import transaction
    from db.store import set_project_team

    if (team is None) == (not no_team):
        raise UsageError("give exactly one of --team SLUG or --no-team")
    who = human(actor)
    with transaction(who, workflow="cli:project-set") as session:
        team_id, engineers = team_of(session, team) if team is not None else (None, [])
        set_project_team(session, name, team_id)
    if team is None:
        console.print(f"project {safe(name)}: no team (any engineer takes its issues)")
    else:
        console.print(f"project {safe(name)}: team set")
        _say_team(name, team, engineers)


@project_app.command("list")
def list_projects(as_json: JsonOption = False) -> None:
    """List the projects with their open issues."""
    from db.engine import reading
    from db.store import all_projects

    with reading() as conn:
        teams = _agent_slugs(conn)
        rows = [_project_row(project, count, teams) for project, count in all_projects(conn)]
    if as_json:
        from cli.output import print_json

        print_json(rows)
        return
    from rich.table import Table

    from cli.output import console, safe, when

    table = Table(header_style="bold")
    for column, justify in (
        ("name", "left"),
        ("repo", "left"),
        ("base branch", "left"),
        ("team", "left"),
        ("open issues", "right"),
        ("created", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            safe(row["name"]),
            safe(row["repo"], limit=60),
            safe(row["base_branch"]),
            safe(row["team"] or "-"),
            str(row["open_issues"]),
            when(row["created_at"]),
        )
    console.print(table)
    console.print(f"{len(rows)} project(s)")


@project_app.command("show")
def show(name: Annotated[str, typer.Argument()], as_json: JsonOption = False) -> None:
    """Show a project: its row, the base branch's head and last commits, its commands and gate, what shipped.

    Fetches the remote first; when that fails, says so in one line and shows what the database knows.
    """
    from config.secrets import redact
    from config.settings import get_settings
    from projects.repo.project_file import ProjectConfigError
    from projects.repo.repository import Repository, RepositoryError

    settings = get_settings()
    project, open_issues, shipped = _lookup(name)
    detail: dict[str, Any] = {
        "project": _project_row(project, open_issues, _team_slug(project)),
        "base_head": None,
        "log": [],
        "commands": None,
        "gate": None,
        "shipped": shipped,
        "limits": _limits(settings),
        "disk": _disk(settings, project),
        "notes": [],
    }
    try:
        repository = Repository(settings, project).sync()
        detail["base_head"] = repository.base_head()
        detail["log"] = repository.log(project.base_branch, LOG_LIMIT)
        project_file = repository.project_file()
        detail["commands"] = _commands(project_file, settings)
        detail["gate"] = list(project_file.gate)
    except RepositoryError as error:
        detail["notes"].append(f"remote unavailable: {redact(error.message)}")
    except ProjectConfigError as error:
        detail["notes"].append(f"project file: {error.message}")
    if as_json:
        from cli.output import print_json

        print_json(detail)
        return
    _print_show(detail)


def _disk(settings: Settings, project: ProjectRecord) -> dict[str, int]:
    """Bytes this host keeps for the project (read before the fetch): clone, worktrees, environments, total."""
    from projects.repo.environment import environments_dir
    from projects.repo.repository import Repository, disk_used

    used = Repository(settings, project).disk_used()
    used["environments"] = disk_used(environments_dir(settings, project.id))
    used["total"] = sum(used.values())
    return used


def _print_show(detail: dict[str, Any]) -> None:
    from rich.filesize import decimal

    from cli.output import console, safe, when

    row = detail["project"]
    disk = detail["disk"]
    console.print(f"[bold]project {safe(row['name'])}[/bold]")
    for label, value in (
        ("repo", row["repo"]),
        ("base branch", row["base_branch"]),
        ("base head", detail["base_head"] or "-"),
        ("team", row["team"] or "- (any engineer)"),
        ("open issues", row["open_issues"]),
        ("branches", "kept after done" if row["keep_branches"] else "deleted when done or cancelled"),
        (
            "disk used",
            f"{decimal(disk['total'])} (clone {decimal(disk['clone'])}, worktrees {decimal(disk['worktrees'])}, "
            f"environments {decimal(disk['environments'])})",
        ),
        ("created", f"{when(row['created_at'])} by {row['created_by']}"),
    ):
        console.print(f"  {label:>12}: {safe(value)}")
    for note in detail["notes"]:
        console.print(f"  note: {safe(note)}")
    if detail["log"]:
        console.print(f"\n[bold]last commits on {safe(row['base_branch'])}[/bold]")
        for line in detail["log"]:
            console.print(f"  {safe(line, limit=100)}")
    if detail["commands"] is not None:
        console.print("\n[bold]commands[/bold]")
        _print_commands(detail["commands"], detail["gate"])
    _print_limits(detail["limits"])
    if detail["shipped"]:
        console.print("\n[bold]shipped[/bold]")
        for item in detail["shipped"]:
            console.print(
                f"  #{item['id']} {item['merged_sha'][:12]} {when(item['done_at'])}  {safe(item['title'], limit=60)}"
            )


@project_app.command("check")
def check(name: Annotated[str, typer.Argument()], as_json: JsonOption = False) -> None:
    """Check a project: fetch, the base branch, .hq/project.yaml, the sandbox, its environment and its gate.

    The environment is built (or reused) and the gate run on the base branch's head, as review would. One
    line per check; exits 1 when a check fails (2 for an unknown project). A red gate on the base is
    reported, not a failure of this command: it may be exactly what an issue is about.
    """
    from config.errors import HQError
    from config.secrets import redact
    from config.settings import get_settings
    from projects.repo.project_file import ProjectConfigError
    from projects.repo.repository import Repository, RepositoryError
    from projects.sandbox import Unconfined, probe, sandbox_for

    settings = get_settings()
    project, _, _ = _lookup(name)
    results: list[dict[str, Any]] = []

    def record(check_name: str, ok: bool | None, detail: str, verdict: str | None = None) -> None:
        # ok None: not checked, or a warning; ``verdict`` says it in other words (a red gate is no failure here)
        results.append({"check": check_name, "ok": ok, "detail": detail, "verdict": verdict})

    project_file = None
    repository = head = None
    try:
        repository = Repository(settings, project).sync()
        record("fetch", True, redact(project.repo))
    except RepositoryError as error:
        record("fetch", False, redact(error.message))
        record(f"branch {project.base_branch}", None, "not checked: the fetch failed")
        record("project file", None, "not checked: the fetch failed")
    else:
        head = repository.head(project.base_branch)
        if head is None:
            branches = _remote_branches(repository)
            has = f"it has: {', '.join(branches[:10])}" if branches else "it has no branches"
            record(f"branch {project.base_branch}", False, f"the remote has no branch {project.base_branch!r} ({has})")
            record("project file", None, "not checked: no base branch")
        else:
            record(f"branch {project.base_branch}", True, f"at {head[:12]}")
            try:
                project_file = repository.project_file()
            except ProjectConfigError as error:
                record("project file", False, error.message)
            else:
                names = ", ".join(project_file.commands)
                record("project file", True, f"commands: {names}; gate: {', '.join(project_file.gate)}")
    try:
        # HQ_SANDBOX=none directly: sandbox_for would log the warning this check prints anyway
        works, line = probe(Unconfined() if settings.sandbox == "none" else sandbox_for(settings))
    except HQError as error:
        works, line = False, error.message
    if works and settings.sandbox == "none":
        record("sandbox", None, f"HQ_SANDBOX=none: {line}")
    else:
        record("sandbox", works, f"HQ_SANDBOX={settings.sandbox}: {line}")
    if project_file is not None and repository is not None and head is not None and works:
        _check_environment_and_gate(settings, repository, project_file, head, record)
    problems = [f"{r['check']}: {r['detail'].splitlines()[0]}" for r in results if r["ok"] is False]
    if as_json:
        from cli.output import print_json

        commands = _commands(project_file, settings) if project_file is not None else None
        gate = list(project_file.gate) if project_file is not None else None
        print_json({"project": project.name, "ok": not problems, "checks": results, "commands": commands, "gate": gate})
    else:
        from cli.output import console, safe

        for r in results:
            verdict = (
                r["verdict"]
                or {
                    True: "ok",
                    False: "FAILED",
                    None: "warning" if r["check"] == "sandbox" else "skipped",
                }[r["ok"]]
            )
            first, *rest = r["detail"].splitlines() or [""]
            console.print(f"{safe(r['check'])}: {verdict}: {safe(first)}")
            for more in rest:
                console.print(f"    {safe(more)}", highlight=False)
            if r["check"] == "project file" and project_file is not None:
                _print_commands(_commands(project_file, settings), list(project_file.gate))
    if problems:
        raise HQError(f"project check failed: {'; '.join(problems)}")


def _check_environment_and_gate(
    settings: Settings,
    repository: Repository,
    project_file: ProjectFile,
    head: str,
    record: Callable[..., None],
) -> None:
    """Build (or reuse) the environment and run the gate on the base branch's head, as review would."""

    from projects.kinds import EnvironmentFailed
    from projects.repo import checks, environment
    from projects.sandbox import sandbox_for

    sandbox = sandbox_for(settings)
    built = None
    if project_file.environment is None:
        record("environment", True, "none declared: commands use the system's tools")
    else:
        try:
            built = environment.ensure(settings, sandbox, repository, project_file.environment, head)
        except EnvironmentFailed as error:
            record("environment", False, error.message)
            record("gate", None, "not run: the environment could not be built")
            return
        how = f"built in {built.seconds:.1f}s" if built.built else f"reused (built in {built.seconds:.1f}s)"
        record("environment", True, f"{how}, key {built.key[:12]}")
    tree = repository.scratch_worktree(0, head)
    try:
        ran = checks.run_all(settings, sandbox, project_file, project_file.gate, tree, issue_id=0, environment=built)
    finally:
        repository.drop(tree)
    for check in ran:
        summary = f"exit {check.result.exit_code} in {check.result.seconds:.1f}s"
        tail = "" if check.ok else "\n" + "\n".join(check.result.output.strip().splitlines()[-15:])
        record(f"gate {check.name}", True if check.ok else None, summary + tail, "passed" if check.ok else "red")


@project_app.command("env")
def env(
    name: Annotated[str, typer.Argument()],
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build it afresh even when this host has it.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the project's environment for its base branch's head on this host, building it if needed.

    Exits 1 when its setup fails (with the tail of its output), 2 for an unknown project.
    """
    from config.errors import HQError
    from config.settings import get_settings
    from projects.kinds import EnvironmentFailed
    from projects.repo import environment
    from projects.repo.repository import Repository, RepositoryError
    from projects.sandbox import sandbox_for

    settings = get_settings()
    project, _, _ = _lookup(name)
    try:
        repository = Repository(settings, project).sync()
        project_file = repository.project_file()
        spec = project_file.environment
        if spec is None:
            raise HQError(
                f"project {name} declares no environment in .hq/project.yaml: commands use the system's tools"
            )
        head = repository.base_head()
        built = environment.ensure(settings, sandbox_for(settings), repository, spec, head, rebuild=rebuild)
    except (RepositoryError, EnvironmentFailed) as error:
        raise HQError(error.message) from None
    detail = {
        "project": project.name,
        "commit": head,
        "key": built.key,
        "path": str(built.path),
        "built_now": built.built,
        "setup_seconds": round(built.seconds, 3),
        "setup": list(spec.setup.run),
        "inputs": list(spec.inputs),
    }
    hosted = environment.on_host(settings, project.id)
    detail["on_this_host"] = hosted
    if as_json:
        from cli.output import print_json

        print_json(detail)
        return
    from cli.output import console, safe

    how = "built now" if built.built else "reused"
    console.print(
        f"environment {built.key[:12]} of {safe(project.name)} at {head[:12]}: {how} (setup {built.seconds:.1f}s)"
    )
    console.print(f"  setup: {safe(' '.join(spec.setup.run))}", highlight=False)
    console.print(f"  inputs: {safe(', '.join(spec.inputs) or '(none)')}", highlight=False)
    console.print(f"  path: {safe(str(built.path))}", highlight=False)
    kept = environment.KEEP_PER_PROJECT
    console.print(f"  on this host: {len(hosted)} built (the newest {kept} are kept)")


@project_app.command("remove")
def remove(name: Annotated[str, typer.Argument()], actor: ActorOption = None) -> None:
    """Remove a project no open issue uses (finish or cancel them first); its closed issues keep their history."""
    from cli.output import console, safe
    from db.engine import transaction
    from db.store import remove_project

    who = human(actor)
    with transaction(who, workflow="cli:project-remove") as session:
        remove_project(session, name)
    console.print(f"project {safe(name)} removed")
