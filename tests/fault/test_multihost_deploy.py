"""Two hosts, two data dirs, one database: whichever host claims a deploy publishes what the issue submitted.

Each `hq run` gets its own HQ_DATA_DIR, as two machines would: an issue executed on one host is often deployed
by the other, whose disk has never seen its workspace. The built-in project publishes from the `artifacts` rows,
so every deploy succeeds and nothing approved comes back for a second round.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import run_hq
from tests.support.processes import (
    DONE_SO_FAR,
    EXECUTORS,
    assert_legal_paths,
    assert_no_overlaps,
    start,
    stop,
    wait_for_progress,
)
from tests.support.rows import one

pytestmark = pytest.mark.timeout(900)  # a backstop against a hang only: the wait fails on a stall

COUNT = 36
DEPLOY_FAILURES = """
    SELECT issue_id, body FROM comments
     WHERE kind = 'failure' AND (body ILIKE '%%deploy%%' OR body ILIKE '%%verify%%' OR body ILIKE '%%publish%%')
"""


def test_every_deploy_succeeds_whichever_host_claims_it(db_url: str, raw: psycopg.Connection, tmp_path: Path) -> None:
    assert run_hq("agents", "sync").exit_code == 0
    issues = []
    for index in range(COUNT):
        # Some go round a failed review first, so a rework (often on the other host) rewrites the deliverable.
        title = f"Document routine task {index}" + (" [offline:fail-review]" if index % 6 == 0 else "")
        created = run_hq(
            "issue", "create", title, "--assign", EXECUTORS[index % len(EXECUTORS)], "--priority", str(index % 10)
        )
        assert created.exit_code == 0, created.stderr
        issues.append(int(created.stdout))
    hosts = {name: tmp_path / f"host-{name}" for name in ("a", "b")}
    workers = [start(tmp_path, name, HQ_DATA_DIR=str(data)) for name, data in hosts.items()]
    try:
        settled = wait_for_progress(
            lambda: one(raw.execute(DONE_SO_FAR).fetchone()), lambda value: value[0] == COUNT, step=1
        )
    finally:
        for worker in workers:
            stop(worker)
    statuses: dict[str, int] = dict(raw.execute("SELECT status, count(*) FROM issues GROUP BY 1").fetchall())
    failures = raw.execute(DEPLOY_FAILURES).fetchall()
    assert failures == [], f"{len(failures)} deploy failure(s), e.g. {failures[:3]}; statuses {statuses}"
    assert settled, f"{settled}; statuses {statuses}"
    assert_legal_paths(raw)
    assert_no_overlaps(raw)
    # Approved work went straight out: no issue was deployed twice.
    assert raw.execute("SELECT count(*) FROM issue_events WHERE to_status = 'deploying'").fetchone() == (COUNT,)
    assert raw.execute("SELECT count(DISTINCT worker) FROM heartbeat_runs WHERE claims > 0").fetchone() == (2,)

    cross_host = 0
    for issue in issues:
        executed = [name for name, data in hosts.items() if (data / "workspaces" / f"issue-{issue}").is_dir()]
        # Deployed where the manifest is (a writer's publish tool may also have put a file on its own host).
        published = [
            name for name, data in hosts.items() if (data / "published" / f"issue-{issue}" / "MANIFEST.json").is_file()
        ]
        assert len(published) == 1, (issue, published)
        cross_host += published[0] not in executed
        # What shipped is exactly what the last submission stored, byte for byte (the rework's version).
        root = hosts[published[0]] / "published" / f"issue-{issue}"
        manifest = json.loads((root / "MANIFEST.json").read_text())
        stored: dict[str, str] = dict(
            raw.execute(
                "SELECT path, sha256 FROM artifacts WHERE issue_id = %s AND run_id = (SELECT run_id FROM issue_events "
                "WHERE issue_id = %s AND to_status = 'in_review' ORDER BY id DESC LIMIT 1) AND commit_sha IS NOT NULL",
                (issue, issue),
            ).fetchall()
        )
        assert manifest == stored, issue
    for data in hosts.values():  # every staging copy was removed after its deploy
        assert not any((data / "staging").glob("*")), list((data / "staging").glob("*"))
    assert cross_host > 0, "no deploy ran on the other host: this run proved nothing"
