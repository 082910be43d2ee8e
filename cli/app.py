"""`hq`: the command line. Every command is one transaction, and every failure is one line.

Commands import what they need inside their own function bodies, so `hq issues`
never pays for the model router, the scheduler or Telegram, and `hq --help` or a
usage error never pays for the database: `import cli.app` takes 0.09 s, SQLAlchemy
with the ORM another 0.35 s, structlog 0.1 s, LiteLLM seconds (python -X importtime).
That is the one place in the tree where imports sit in function bodies as a rule;
elsewhere each one says why.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from config.errors import HQError, describe

if TYPE_CHECKING:
    from config.settings import Settings

# The module that provides each top-level command. Only the one invoked is imported
# and registered: building all of typer's commands costs more than most commands run.
COMMANDS = {
    "issue": "issues_cmd",
    "issues": "issues_cmd",
    "agents": "agents_cmd",
    "models": "models_cmd",
    "goal": "goals_cmd",
    "goals": "goals_cmd",
    "run": "run_cmd",
    "report": "report_cmd",
    "notifications": "notifications_cmd",
    "telegram": "notifications_cmd",
    "playbooks": "playbooks_cmd",
    "project": "project_cmd",
    "approve": "decisions_cmd",
    "reject": "decisions_cmd",
    "revise": "decisions_cmd",
    "unblock": "decisions_cmd",
    "cancel": "decisions_cmd",
    "budget": "decisions_cmd",
    "approvals": "decisions_cmd",
    "db": "db_cmd",
    "config": "config_cmd",
    "demo": "demo_cmd",
}
ROOT_OPTIONS_WITH_VALUES = ("--roles-dir",)


def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    roles_dir: Annotated[
        Path | None, typer.Option("--roles-dir", help="Run another roster of roles (also HQ_ROLES_DIR).")
    ] = None,
) -> None:
    """Heartbeat HQ: an agent company whose only state is rows in PostgreSQL.

    Settings are validated here, before any command does any work.
    """
    from config.log import configure_logging
    from config.secrets import register_secrets
    from config.settings import load_settings, use_settings

    overrides: dict[str, object] = {}
    if roles_dir is not None:
        overrides["roles_dir"] = roles_dir
    if debug:
        overrides["log_level"] = "debug"
    settings = use_settings(load_settings(**overrides))
    register_secrets(*settings.secret_values())
    # A command's output is its answer; its logs stay quiet unless asked for (`hq run` logs at info).
    explicit = debug or "log_level" in settings.model_fields_set
    configure_logging(settings.log_level if explicit else "warning", settings.log_format)
    _announce_a_new_data_dir(settings)


def _announce_a_new_data_dir(settings: Settings) -> None:
    """One line on stderr (never stdout: --json stays clean) when this command creates the data dir."""
    from config.datadir import on_creation

    location = settings.data_location
    if location.path.exists():
        on_creation(location.path, None)
        return

    def announce(path: Path) -> None:
        from cli.output import visible

        what = "for this host's files" if settings.database_url else "a new company, with its own embedded PostgreSQL"
        sys.stderr.write(visible(f"hq: new data dir {path}: {what} ({location.how()})") + "\n")
        sys.stderr.flush()

    on_creation(location.path, announce)


def invoked_command(args: list[str]) -> str | None:
    """The top-level command named in ``args`` (skipping the root options), if any."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ROOT_OPTIONS_WITH_VALUES:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_app(command: str | None = None) -> typer.Typer:
    """The `hq` app with ``command``'s module registered, or every module when it is unknown (help)."""
    app = typer.Typer(
        name="hq", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None
    )
    app.callback()(_root)
    modules = [COMMANDS[command]] if command in COMMANDS else sorted(set(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f"cli.{module}").register(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps every expected failure to a one-line message and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = typer.main.get_command(build_app(invoked_command(args)))
    try:
        result = command.main(args=args, prog_name="hq", standalone_mode=False)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.TyperException as error:  # usage errors: bad option, missing argument, bad value
        from cli.output import fail

        context = getattr(error, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        fail(error.format_message() + hint)
        sys.exit(error.exit_code)
    except typer.Abort:
        sys.stderr.write("hq: aborted\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.stderr.write("hq: interrupted\n")
        sys.exit(130)
    except Exception as error:
        sys.exit(_report(error, debug))
    sys.exit(result if isinstance(result, int) else 0)


def _report(error: Exception, debug: bool) -> int:
    from cli.output import fail
    from config.secrets import redact

    if debug:
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(error))))
    if not isinstance(error, HQError):
        from sqlalchemy.exc import SQLAlchemyError

        translated = None
        if isinstance(error, SQLAlchemyError) or type(error).__module__.startswith("psycopg"):
            from db.errors import translate_db_error

            translated = translate_db_error(error)
        if translated is None:
            fail(
                redact(
                    f"internal error: {describe(error)}" + ("" if debug else " (run with --debug for the traceback)")
                )
            )
            return 1
        error = translated
    fail(redact(error.message))
    return error.exit_code


def run() -> None:
    """The `hq` console script: `main`, then exit without tearing the interpreter down.

    By the time a command returns, its transaction is committed and its output
    written; what is left is garbage-collecting ~100 modules, which costs a CLI
    invocation about a fifth of its wall time. Flush, then leave.
    """
    import os

    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said anyway
            code = code or 1
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
