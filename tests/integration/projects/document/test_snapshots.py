"""Deploy publishes what the database holds: any host can deploy any issue, whatever its own disk has seen.

The built-in project stages the issue's last submission (its `artifacts` rows) into a fresh directory under
the data dir and publishes from there; the local workspace is never read. What "last submission" means is
pinned down here: a rework that went back to an earlier version ships that version, a deleted file does not
ship, work done on another host is carried over, and a file the database cannot supply is a clear failure.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from config.settings import Settings, get_settings, load_settings, reset_settings
from db.engine import get_engine, read_only, transaction
from projects.document.commands import deploy_submission
from projects.document.publish import MANIFEST
from projects.document.snapshots import (
    SubmissionError,
    latest_snapshot,
    submitted_snapshot,
)
from projects.workspace import MAX_FILE_BYTES, Workspace
from scheduler.company import Company
from tests.support.cli import run_hq
from tests.support.rows import execute_run, force_status, new_issue, one, status_of


@pytest.fixture()
def agent(db_url: str, raw: psycopg.Connection) -> SimpleNamespace:
    assert run_hq("agents", "sync").exit_code == 0
    row = one(raw.execute("SELECT id, slug FROM agents WHERE slug = 'technical-writer'").fetchone())
    return SimpleNamespace(id=row[0], slug=row[1])


def run_execute(
    issue: int, agent: SimpleNamespace, workspace: Workspace, writes: dict[str, str], *, submit: bool = True
) -> uuid.UUID:
    return execute_run(issue, agent.id, agent.slug, workspace, writes, submit=submit)


def submitted(issue: int) -> dict[str, str | None]:
    with read_only() as session:
        return {f.path: f.content for f in submitted_snapshot(session, issue).files}


def in_progress_issue(raw: psycopg.Connection, agent: SimpleNamespace) -> int:
    issue = new_issue(raw, "Write the operator guide", assignee_id=agent.id)
    force_status(raw, issue, "in_progress")
    return issue


def host(tmp_path: Path, name: str) -> Settings:
    return load_settings(data_dir=tmp_path / f"host-{name}")


def workspace_on(settings: Settings, issue: int) -> Workspace:
    return Workspace(settings.data_path / "workspaces" / f"issue-{issue}")


def published_files(settings: Settings, issue: int) -> dict[str, str]:
    root = settings.data_path / "published" / f"issue-{issue}"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


# --- the headline: a host that never saw the workspace deploys it ---------------------------------------------


def test_a_host_without_the_workspace_deploys_the_issue(
    db_url: str, raw: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed and reviewed on host A; approved, deployed and verified on host B, whose disk never saw it."""
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "host-a"))
    reset_settings()
    first = Company(get_settings(), threads=1)
    created = run_hq("issue", "create", "Write the upgrade guide", "--needs-approval")
    assert created.exit_code == 0, created.stderr
    issue = int(created.stdout)
    for _ in range(15):
        first.run_once()
        if status_of(raw, issue) == "pending_approval":
            break
    assert status_of(raw, issue) == "pending_approval"
    assert (tmp_path / "host-a" / "workspaces" / f"issue-{issue}").is_dir()

    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "host-b"))
    reset_settings()
    second = Company(get_settings(), threads=1)
    assert run_hq("approve", str(issue)).exit_code == 0
    for _ in range(5):
        second.run_once()
        if status_of(raw, issue) == "done":
            break
    failures = raw.execute("SELECT body FROM comments WHERE issue_id = %s AND kind = 'failure'", (issue,)).fetchall()
    assert failures == [] and status_of(raw, issue) == "done"
    b = tmp_path / "host-b"
    assert not (b / "workspaces" / f"issue-{issue}").exists()  # host B never had, nor made, a workspace for it
    stored: dict[str, str] = dict(
        raw.execute(
            "SELECT path, content FROM artifacts WHERE issue_id = %s AND commit_sha IS NOT NULL", (issue,)
        ).fetchall()
    )
    shipped = published_files(second.settings, issue)
    manifest = json.loads(shipped.pop(MANIFEST))
    assert shipped == stored and stored
    assert manifest == {path: hashlib.sha256(text.encode()).hexdigest() for path, text in stored.items()}
    assert list((b / "staging").iterdir()) == []  # the staging copy is gone


def test_deploy_submission_never_reads_the_local_workspace(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    a, b = host(tmp_path, "a"), host(tmp_path, "b")
    issue = in_progress_issue(raw, agent)
    run_execute(issue, agent, workspace_on(a, issue), {"guide.md": "# Guide\n", "docs/setup.md": "Install it.\n"})
    # Host B has a stale local workspace of its own: it must not leak into what ships.
    workspace_on(b, issue).write("guide.md", "# Stale guide from host B\n")
    workspace_on(b, issue).write("scratch.md", "never submitted\n")
    deployed, verified = deploy_submission(get_engine(), b, issue)
    assert deployed.ok and verified is not None and verified.ok, (deployed.output, verified)
    assert "published 2 file(s)" in deployed.output
    shipped = published_files(b, issue)
    shipped.pop(MANIFEST)
    assert shipped == {"docs/setup.md": "Install it.\n", "guide.md": "# Guide\n"}
    assert list((b.data_path / "staging").iterdir()) == []


# --- what "the last submission" is --------------------------------------------------------------------------


def test_a_rework_back_to_an_earlier_version_ships_that_version(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Content is keyed by (issue, path, sha256): going back to v1 reuses v1's row, and v1 is what ships."""
    workspace = workspace_on(host(tmp_path, "a"), issue := in_progress_issue(raw, agent))
    run_execute(issue, agent, workspace, {"notes.md": "v1\n"})
    force_status(raw, issue, "in_progress")
    run_execute(issue, agent, workspace, {"notes.md": "v2\n"})
    force_status(raw, issue, "in_progress")
    last = run_execute(issue, agent, workspace, {"notes.md": "v1\n"})
    assert submitted(issue) == {"notes.md": "v1\n"}
    rows = raw.execute("SELECT content, run_id FROM artifacts WHERE issue_id = %s ORDER BY id", (issue,)).fetchall()
    assert rows == [("v1\n", last), ("v2\n", rows[1][1])]  # two rows; v1's now says the last run recorded it
    newest_row = raw.execute(
        "SELECT content FROM artifacts WHERE issue_id = %s ORDER BY id DESC LIMIT 1", (issue,)
    ).fetchone()
    assert newest_row == ("v2\n",)  # why "the newest row per path" would have shipped the wrong version


def test_a_file_deleted_before_the_last_submission_does_not_ship(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    a = host(tmp_path, "a")
    workspace = workspace_on(a, issue := in_progress_issue(raw, agent))
    run_execute(issue, agent, workspace, {"guide.md": "# Guide\n", "draft-notes.md": "todo\n"})
    force_status(raw, issue, "in_progress")
    workspace.resolve("draft-notes.md").unlink()
    run_execute(issue, agent, workspace, {"guide.md": "# Guide, revised\n"})
    assert submitted(issue) == {"guide.md": "# Guide, revised\n"}
    deployed, _ = deploy_submission(get_engine(), host(tmp_path, "b"), issue)
    assert deployed.ok and "published 1 file(s)" in deployed.output


def test_a_rework_on_another_host_carries_the_other_files_over(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Host B never saw A's workspace, and A's copy goes stale: each run starts from what the database holds."""
    a, b = host(tmp_path, "a"), host(tmp_path, "b")
    issue = in_progress_issue(raw, agent)
    run_execute(issue, agent, workspace_on(a, issue), {"guide.md": "# Guide\n", "faq.md": "Q1\n"})
    force_status(raw, issue, "in_progress")
    run_execute(issue, agent, workspace_on(b, issue), {"faq.md": "Q1\nQ2\n"})  # B wrote only the FAQ
    assert submitted(issue) == {"guide.md": "# Guide\n", "faq.md": "Q1\nQ2\n"}
    assert workspace_on(b, issue).read("guide.md") == "# Guide\n"  # B's workspace has it now, committed
    force_status(raw, issue, "in_progress")
    run_execute(issue, agent, workspace_on(a, issue), {"changelog.md": "1.0\n"})  # A's faq.md is stale
    assert submitted(issue) == {"guide.md": "# Guide\n", "faq.md": "Q1\nQ2\n", "changelog.md": "1.0\n"}
    assert workspace_on(a, issue).read("faq.md") == "Q1\nQ2\n"


def test_files_recorded_after_the_last_submission_are_refused(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    workspace = workspace_on(host(tmp_path, "a"), issue := in_progress_issue(raw, agent))
    run_execute(issue, agent, workspace, {"guide.md": "# Guide\n"})
    force_status(raw, issue, "in_progress")
    run_execute(issue, agent, workspace, {"guide.md": "# Half-done rewrite\n"}, submit=False)
    with read_only() as session, pytest.raises(SubmissionError, match="refusing to publish a set nobody reviewed"):
        submitted_snapshot(session, issue)


def test_never_submitted_is_a_clear_failure(agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path) -> None:
    issue = new_issue(raw, "Nothing yet")
    force_status(raw, issue, "approved")
    deployed, verified = deploy_submission(get_engine(), host(tmp_path, "b"), issue)
    assert not deployed.ok and verified is None
    assert "no submission on record" in deployed.output and deployed.argv == []


# --- content the database must hold ------------------------------------------------------------------------------


def test_every_file_the_workspace_allows_is_stored_whole(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    from projects.document.project import MAX_ARTIFACT_BYTES

    assert MAX_ARTIFACT_BYTES == MAX_FILE_BYTES
    big = "é" * (MAX_FILE_BYTES // 2)  # exactly the workspace's limit, in bytes
    workspace = workspace_on(host(tmp_path, "a"), issue := in_progress_issue(raw, agent))
    run_execute(issue, agent, workspace, {"data/big.md": big})
    assert submitted(issue) == {"data/big.md": big}
    deployed, verified = deploy_submission(get_engine(), host(tmp_path, "b"), issue)
    assert deployed.ok and verified is not None and verified.ok


def test_a_file_the_database_cannot_hold_fails_the_deploy_by_name(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    """Not UTF-8, a NUL, over the limit: no tool writes such files, but one that appears is never shipped short."""
    workspace = workspace_on(host(tmp_path, "a"), issue := in_progress_issue(raw, agent))
    workspace.write("guide.md", "# Guide\n")
    workspace.resolve("logo.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    workspace.resolve("nul.txt").write_bytes(b"a\x00b")
    workspace.resolve("huge.md").write_bytes(b"x" * (MAX_FILE_BYTES + 1))
    run_execute(issue, agent, workspace, {})
    rows: dict[str, bool] = dict(
        raw.execute("SELECT path, content IS NULL FROM artifacts WHERE issue_id = %s", (issue,)).fetchall()
    )
    assert rows == {"guide.md": False, "logo.bin": True, "nul.txt": True, "huge.md": True}
    deployed, verified = deploy_submission(get_engine(), host(tmp_path, "b"), issue)
    assert not deployed.ok and verified is None
    assert "3 of 4 submitted file(s) cannot be published from the database" in deployed.output
    for name in ("logo.bin", "nul.txt", f"huge.md: the database holds no content for it ({MAX_FILE_BYTES + 1} bytes)"):
        assert name in deployed.output
    assert not (host(tmp_path, "b").data_path / "published" / f"issue-{issue}").exists()


def test_a_run_that_lost_its_lease_records_nothing(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    from projects.document.project import DocumentKept
    from projects.kinds import Run
    from projects.watch import Watch
    from workflows.execute import _record

    workspace = workspace_on(host(tmp_path, "a"), issue := in_progress_issue(raw, agent))
    workspace.write("guide.md", "# Guide\n")
    workspace.commit(agent=agent.slug, run_id=uuid.uuid4(), issue_id=issue, workflow="execute")
    raw.execute("UPDATE issues SET lease_owner = %s WHERE id = %s", (uuid.uuid4(), issue))  # someone else's now
    zombie = SimpleNamespace(id=issue, run_id=uuid.uuid4())
    run = Run(zombie, agent.id, agent.slug, "execute", watch=Watch(), tx=read_only)  # type: ignore[arg-type]
    kept = DocumentKept(workspace, run, ("guide.md",))
    with transaction("agent:technical-writer", workflow="execute", run_id=zombie.run_id) as session:
        _record(session, zombie, kept)  # type: ignore[arg-type]
    assert raw.execute("SELECT count(*) FROM artifacts WHERE issue_id = %s", (issue,)).fetchone() == (0,)
    raw.execute("UPDATE issues SET lease_owner = %s WHERE id = %s", (zombie.run_id, issue))
    with transaction("agent:technical-writer", workflow="execute", run_id=zombie.run_id) as session:
        _record(session, zombie, kept)  # type: ignore[arg-type]
        assert [f.path for f in latest_snapshot(session, issue).files] == ["guide.md"]  # type: ignore[union-attr]


def test_a_custom_deploy_command_gets_the_staging_copy_as_its_workspace(
    agent: SimpleNamespace, raw: psycopg.Connection, tmp_path: Path
) -> None:
    issue = in_progress_issue(raw, agent)
    run_execute(issue, agent, workspace_on(host(tmp_path, "a"), issue), {"site/index.md": "# Home\n"})
    show = (
        "import os, sys; w = sys.argv[1]; print(sorted(os.listdir(os.path.join(w, 'site'))), "
        "os.getcwd() == w, open(os.path.join(w, 'site', 'index.md')).read().strip())"
    )
    b = load_settings(
        data_dir=tmp_path / "host-b",
        deploy_command=[sys.executable, "-c", show, "{workspace}"],
        verify_command=[sys.executable, "-c", "import os, sys; print(os.path.isdir(sys.argv[1]))", "{workspace}"],
    )
    deployed, verified = deploy_submission(get_engine(), b, issue)
    assert deployed.ok and verified is not None and verified.ok, deployed.output
    assert deployed.output.strip() == "['index.md'] True # Home"
    assert verified.output.strip() == "True"  # verify sees the same staging copy
    staging = Path(deployed.argv[-1])
    assert staging.parent == b.data_path / "staging" and not staging.exists()
