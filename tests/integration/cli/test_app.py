"""`hq issues` and `hq approve` stay fast: they never load the model, Anthropic or Telegram stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg

from tests.support.rows import force_status, new_issue

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


def test_issues_and_approve_do_not_import_heavy_stacks(raw: psycopg.Connection) -> None:
    issue = new_issue(raw, status="todo")
    force_status(raw, issue, "pending_approval")
    listed = probe("issues")
    assert listed == {"code": 0, "heavy": []}
    approved = probe("approve", str(issue))
    assert approved == {"code": 0, "heavy": []}
    assert raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone() == ("approved",)
