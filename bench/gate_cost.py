"""The gate's cost per shipped issue: how often a project's suite runs, and what shipping an approved issue costs.

A project whose suite takes a few seconds (its tests sleep, so the measure does not depend on this
machine's CPU) gets one issue, worked by the offline model through execute (the engineer runs the
suite with ``run_command``), review and deploy, on a base that does not move. Measured in the same run:

1. the suite's runs per issue, from execute to done (``check_runs`` rows of gate commands: one per run);
2. the wall time from ``approved`` to ``done`` (deploy: fetch, merge, the gate held to the merge, push,
   verify), against one bare run of the same suite in the same sandbox on a plain checkout.

Each tree is tested once, so with the base unmoved the merge reuses the review's evidence (which reused
the engineer's own run) and deploy costs git's work, not the suite's: target at most 1.2x one bare run
(it was about 2x, plus the engineer's own run, when every stage ran the suite).

    python -m bench.gate_cost [--tests 12] [--seconds 0.25]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import fresh_database, one, verdict

RATIO_TARGET = 1.2
ENGINEER, LEAD, DEVOPS = "backend-engineer", "eng-lead-platform", "devops-engineer"
CALC = "def add(a, b):\n    return a + b\n"
MUL = CALC + "\n\ndef mul(a, b):\n    return a * b\n"
PROJECT_YAML = "commands:\n  test: [python3, -m, unittest, -q]\ngate: [test]\n"


def suite(tests: int, seconds: float) -> str:
    """``tests`` tests of ``seconds`` each: a slow suite, as real ones are."""
    body = "".join(
        f"    def test_{n}(self):\n        time.sleep({seconds})\n        self.assertEqual(add(2, {n}), {2 + n})\n\n"
        for n in range(tests)
    )
    return f"import time\nimport unittest\n\nfrom calc import add\n\n\nclass Slow(unittest.TestCase):\n{body}"


def git(cwd: Path, *args: str) -> None:
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, timeout=120)


def make_remote(root: Path, files: dict[str, str]) -> tuple[Path, Path]:
    """A bare remote whose main holds ``files``, and the plain checkout it was made from."""
    source = root / "source"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    for path, content in files.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(content)
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "The project")
    remote = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(source), str(remote))
    return remote, source


def bare_run(checkout: Path) -> float:
    """One run of the suite in the sandbox, on a plain checkout: the least a gate can cost."""
    from config.settings import get_settings
    from projects.sandbox import limits_for, sandbox_for

    settings = get_settings()
    started = time.monotonic()
    result = sandbox_for(settings).run(
        ["python3", "-m", "unittest", "-q"], workdir=checkout, limits=limits_for(settings, 600)
    )
    elapsed = time.monotonic() - started
    if not result.ok:
        raise RuntimeError(f"the suite failed on its own: {result.output[-500:]}")
    return elapsed


def main(tests: int = 12, seconds: float = 0.25) -> float:
    with fresh_database("hq_bench_gate") as database, tempfile.TemporaryDirectory(prefix="hq-bench-gate-") as scratch:
        import psycopg

        from config.settings import load_settings
        from scheduler.company import Company
        from scheduler.heartbeat import run_beat

        hq = Path(sys.executable).with_name("hq")
        subprocess.run([str(hq), "agents", "sync"], check=True, capture_output=True, timeout=300)
        remote, checkout = make_remote(
            Path(scratch), {".hq/project.yaml": PROJECT_YAML, "calc.py": CALC, "test_calc.py": suite(tests, seconds)}
        )
        runtime = Company(load_settings(), threads=1).runtime
        with psycopg.connect(database.libpq, autocommit=True) as raw:
            (project,) = one(
                raw.execute(
                    "INSERT INTO projects (name, repo, created_by) VALUES ('slow', %s, 'bench') RETURNING id",
                    (str(remote),),
                ).fetchone()
            )
            body = f"Add mul.\n\n```python file=calc.py\n{MUL}```\n"
            (issue,) = one(
                raw.execute(
                    "INSERT INTO issues (title, body, status, assignee_id, project_id, created_by) "
                    "SELECT 'Add mul', %s, 'todo', id, %s, 'bench' FROM agents WHERE slug = %s RETURNING id",
                    (body, project, ENGINEER),
                ).fetchone()
            )

            def status() -> str:
                return str(one(raw.execute("SELECT status FROM issues WHERE id = %s", (issue,)).fetchone())[0])

            run_beat(ENGINEER, runtime)
            run_beat(LEAD, runtime)
            if status() != "approved":
                raise RuntimeError(f"the issue is {status()}, not approved, after execute and review")
            started = time.monotonic()
            run_beat(DEVOPS, runtime)
            shipping = time.monotonic() - started
            if status() != "done":
                raise RuntimeError(f"the issue is {status()}, not done, after deploy")
            (runs,) = one(
                raw.execute(
                    "SELECT count(*) FROM check_runs WHERE issue_id = %s AND command = 'test'", (issue,)
                ).fetchone()
            )
        bare = bare_run(checkout)
    ratio = shipping / bare
    print(f"suite runs per shipped issue (execute to done, base unmoved): {runs}")
    print(f"one bare run of the suite in the sandbox: {bare:.2f} s")
    print(f"approved to done (deploy): {shipping:.2f} s")
    print(
        verdict(
            "gate cost: approved to done / one bare suite run",
            ratio,
            f"<= {RATIO_TARGET}",
            ratio <= RATIO_TARGET and runs == 1,
        )
    )
    return ratio


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=0.25)
    arguments = parser.parse_args()
    main(arguments.tests, arguments.seconds)
