"""A benchmark's output is its measurements: no `claim.taken` (or any other) log line in it.

The state machine benchmark used to print one log line per claim from its worker processes,
and every benchmark the embedded server's and the migration's: structlog logs at info until
configured, and only `hq` configured it from HQ_LOG_LEVEL. This runs it small, as a person
would (`python -m bench.transitions`), with HQ_LOG_LEVEL unset.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ROOT


def test_transitions_benchmark_prints_measurements_only() -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("HQ_LOG_LEVEL", "DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "bench.transitions", "--issues", "60", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "claim.taken" not in output, output[-2000:]
    logs = [line for line in output.splitlines() if line.lstrip().startswith("{") or '"event"' in line]
    assert logs == [], logs[:5]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("issues per side: 60, concurrency: 2")
    assert lines[-1].startswith("state machine throughput: ratio ")
    assert "double claims in issue_events: 0; issues not finished: 0" in result.stdout
