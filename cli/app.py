"""`hq`: the command line. Every command is one transaction, and every failure is one line.

Commands import what they need inside their own function bodies, so `hq issues`
never pays for the model router, the scheduler or Telegram.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import agents_cmd, config_cmd, db_cmd, decisions_cmd, demo_cmd, goals_cmd, issues_cmd, models_cmd, notifications_cmd, playbooks_cmd, report_cmd, run_cmd
from config.errors import HQError

app = typer.Typer(
    name="hq",
    help="Heartbeat HQ: an agent company whose only state is rows in PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    roles_dir: Annotated[
        Path | None, typer.Option("--roles-dir", help="Run another roster of roles (also HQ_ROLES_DIR).")
    ] = None,
) -> None:
    """Validate the settings before any command does any work."""
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
    configure_logging(settings.log_level, settings.log_format)


issues_cmd.register(app)
agents_cmd.register(app)
models_cmd.register(app)
goals_cmd.register(app)
run_cmd.register(app)
report_cmd.register(app)
notifications_cmd.register(app)
playbooks_cmd.register(app)
decisions_cmd.register(app)
db_cmd.register(app)
config_cmd.register(app)
demo_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps every expected failure to a one-line message and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = typer.main.get_command(app)
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
    except Exception as error:  # noqa: BLE001 - the one place that turns errors into exit codes
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
            fail(redact(f"internal error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                        + ("" if debug else " (run with --debug for the traceback)")))
            return 1
        error = translated
    fail(redact(error.message))
    return error.exit_code  # type: ignore[attr-defined]


if __name__ == "__main__":  # pragma: no cover
    main()
