"""Running `hq` in tests: in-process (fast) or as the installed command in a real process; which heavy stacks
a command loads; and a title too long for any terminal, for what the output keeps whole."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


def run_hq(*args: str, stdin: str | None = None) -> Result:
    """Run the CLI in-process (fast), capturing output and the exit code."""
    from cli.app import main
    from config.settings import reset_settings

    reset_settings()
    out, err = io.StringIO(), io.StringIO()
    code = 0
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.stdin = old_stdin
    return Result(code, out.getvalue(), err.getvalue())


def run_hq_process(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `hq` in a real process (exit codes, imports, signals)."""
    return subprocess.run(
        [str(BIN / "hq"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


PROBE = """
import json, sys
from cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exit_:
    code = exit_.code
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'litellm', 'anthropic', 'telegram', 'openai', 'apscheduler'})
sys.__stdout__.write('\\n' + json.dumps({'code': code, 'heavy': heavy}) + '\\n')
"""


def probe(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


LONG_TITLE = (
    "Migrate the billing service from the legacy invoice scheduler to the new event pipeline, "
    "keeping every customer's invoice dates and the audit trail intact, with a rollback plan marker-7731"
)
