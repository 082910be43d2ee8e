"""What an issue submitted, as the database holds it: so any host can publish it, or carry on working on it.

Every execute run that still holds its lease records a **snapshot** of the issue's workspace in `artifacts`:
one row per regular file, content included (the workspace never holds a file larger than the column keeps).
A row is keyed by (issue, path, sha256), so content a run shares with an earlier one (a file left as it was,
or a rework that went back to an earlier version) is the same row, re-stamped: `run_id`, `agent_id`,
`commit_sha` and `created_at` say which run *last* recorded that content, and the rows stamped with a run are
exactly that run's files. A path the workspace no longer holds is simply not stamped again.

* The **latest snapshot** is the newest run's rows (`commit_sha` set: the publish tool's rows have none).
* The **last submission** is the run of the issue's newest move to `in_review` (an append-only
  `issue_events` row); deploy ships its snapshot, and only while it is still the latest one.

A workspace on one host knows nothing of work done on another. Before a run's snapshot is taken, a workspace
that does not descend from the latest snapshot's commit (the issue was last worked on elsewhere, or never
here) gets that snapshot's files back, except those the run itself wrote: what this run changed wins, the
rest is what the database says the issue holds. Staging a snapshot for deploy (``stage``) writes into a fresh
directory, validating every path again as hostile and never following a link.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from config.log import get_logger
from db.engine import read_only
from db.models import Artifact, IssueEvent
from projects.git import GitError, is_git_name, run_git
from projects.workspace import MAX_FILE_BYTES, Workspace, WorkspaceError

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_READ_CHUNK = 1 << 16
MAX_PROBLEMS_SHOWN = 20

log = get_logger(__name__)


@dataclass(frozen=True)
class StoredFile:
    path: str
    sha256: str
    size_bytes: int
    content: str | None  # None: a row written before every file's content was kept, or a file no column can hold


@dataclass(frozen=True)
class Snapshot:
    run_id: uuid.UUID
    commit_sha: str
    files: tuple[StoredFile, ...]


class SubmissionError(Exception):
    """What stops a submission from being published; the message says which files and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- reading ---------------------------------------------------------------------------------------------------


def latest_snapshot(session: Session, issue_id: int) -> Snapshot | None:
    """The files the newest recording run found in the issue's workspace, or None if none was recorded."""
    newest = session.execute(
        select(Artifact.run_id, Artifact.commit_sha)
        .where(Artifact.issue_id == issue_id, Artifact.run_id.is_not(None), Artifact.commit_sha.is_not(None))
        .order_by(Artifact.created_at.desc(), Artifact.id.desc())
        .limit(1)
    ).first()
    if newest is None:
        return None
    run_id, commit_sha = newest
    assert run_id is not None and commit_sha is not None  # the query selects only rows that have both
    rows = session.execute(
        select(Artifact.path, Artifact.sha256, Artifact.size_bytes, Artifact.content)
        .where(Artifact.issue_id == issue_id, Artifact.run_id == run_id, Artifact.commit_sha.is_not(None))
        .order_by(Artifact.path, Artifact.id)
    ).all()
    return Snapshot(run_id, commit_sha, tuple(StoredFile(*row) for row in rows))


def last_submission_run(session: Session, issue_id: int) -> uuid.UUID | None:
    """The run whose work the issue's newest move to `in_review` submitted (None: never submitted)."""
    return session.scalar(
        select(IssueEvent.run_id)
        .where(IssueEvent.issue_id == issue_id, IssueEvent.to_status == "in_review")
        .order_by(IssueEvent.id.desc())
        .limit(1)
    )


def submitted_snapshot(session: Session, issue_id: int) -> Snapshot:
    """What the issue's last submission contained; SubmissionError when the database cannot say."""
    run_id = last_submission_run(session, issue_id)
    if run_id is None:
        raise SubmissionError(
            f"issue #{issue_id} has no submission on record (no execute run moved it to in_review); nothing to publish"
        )
    latest = latest_snapshot(session, issue_id)
    if latest is None:
        raise SubmissionError(
            f"issue #{issue_id}: its last submission (run {run_id}) recorded no files in the "
            "database; nothing to publish"
        )
    if latest.run_id != run_id:
        raise SubmissionError(
            f"issue #{issue_id}: the files on record (run {latest.run_id}) are not those of its "
            f"last submission (run {run_id}); refusing to publish a set nobody reviewed"
        )
    return latest


# --- recording (execute) -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalFile:
    path: str
    sha256: str
    size_bytes: int
    content: str | None
    problem: str | None = None


def workspace_files(workspace: Workspace) -> list[LocalFile]:
    """Every regular file in the workspace (git's own files aside), found and read without following a link."""
    root = workspace.root
    if not root.is_dir():
        return []
    found = []
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        here = Path(directory)
        subdirectories[:] = sorted(d for d in subdirectories if not is_git_name(d))
        for name in sorted(files):
            path = here / name
            relative = path.relative_to(root).as_posix()
            try:
                workspace.resolve(relative)  # the workspace's own rules: a name it refuses is no deliverable
                if is_git_name(name) or not stat.S_ISREG(path.lstat().st_mode):
                    continue
                found.append(_read_local(path, relative))
            except (WorkspaceError, OSError) as error:
                log.warning(
                    "submission.file_skipped",
                    path=relative.encode("utf-8", "replace").decode(),
                    error=getattr(error, "message", None) or str(error),
                )
    return found


def _read_local(path: Path, relative: str) -> LocalFile:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    digest, size, kept = hashlib.sha256(), 0, bytearray()
    with os.fdopen(descriptor, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if size <= MAX_FILE_BYTES:
                kept += chunk
    content, problem = None, None
    if size > MAX_FILE_BYTES:
        problem = f"larger than {MAX_FILE_BYTES} bytes"
    else:
        try:
            content = bytes(kept).decode("utf-8")
        except UnicodeDecodeError:
            problem = "not UTF-8 text"
        else:
            if "\x00" in content:
                content, problem = None, "contains NUL characters"
    return LocalFile(relative, digest.hexdigest(), size, content, problem)


def head_commit(workspace: Workspace) -> str | None:
    if not (workspace.root / ".git").is_dir():
        return None
    try:
        head = run_git(workspace.root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}").strip()
    except GitError:
        return None  # no commit yet
    return head if _COMMIT.fullmatch(head) else None


def descends_from(workspace: Workspace, commit_sha: str | None) -> bool:
    """Whether this workspace's history holds ``commit_sha``: it evolved here from the snapshot taken there."""
    if commit_sha is None or not _COMMIT.fullmatch(commit_sha) or head_commit(workspace) is None:
        return False
    try:
        run_git(workspace.root, "merge-base", "--is-ancestor", commit_sha, "HEAD")
    except GitError:
        return False
    return True


def restore_workspace(session: Session, issue_id: int, workspace: Workspace) -> list[str]:
    """Bring back the latest snapshot's files into a workspace that was not where they were recorded.

    Returns the paths written; a file that cannot be written here (a directory in its way) is logged and
    left out, so it is not recorded either.
    """
    latest = latest_snapshot(session, issue_id)
    if latest is None or descends_from(workspace, latest.commit_sha):
        return []
    restored = []
    for stored in latest.files:
        if stored.content is None or hashlib.sha256(stored.content.encode("utf-8")).hexdigest() != stored.sha256:
            log.warning(
                "submission.restore_skipped",
                issue_id=issue_id,
                path=stored.path,
                reason="no stored content" if stored.content is None else "checksum mismatch",
            )
            continue
        try:
            current = workspace.resolve(stored.path)
            if current.is_file() and not current.is_symlink() and _sha256_of(current) == stored.sha256:
                continue
            workspace.write(stored.path, stored.content)
        except (WorkspaceError, OSError) as error:
            log.warning(
                "submission.restore_skipped",
                issue_id=issue_id,
                path=stored.path,
                reason=getattr(error, "message", None) or str(error),
            )
            continue
        restored.append(stored.path)
    return restored


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_snapshot(
    session: Session, *, issue_id: int, run_id: uuid.UUID, agent_id: int, workspace: Workspace
) -> list[LocalFile]:
    """Record the workspace as this run leaves it: one row per file.

    The run restored what another host did before it started (``restore_workspace``, in execute), so the
    workspace holds the whole submission. The caller must hold the issue's lease (and lock its row), so no
    run that lost the issue records anything.
    """
    files = workspace_files(workspace)
    commit_sha = head_commit(workspace)
    if not files:
        return []
    if commit_sha is None:
        log.warning("submission.not_recorded", issue_id=issue_id, reason="the workspace has no commit")
        return []
    for unstorable in (f for f in files if f.problem):
        log.warning("submission.content_not_stored", issue_id=issue_id, path=unstorable.path, reason=unstorable.problem)
    rows = [
        {
            "issue_id": issue_id,
            "path": f.path,
            "sha256": f.sha256,
            "size_bytes": f.size_bytes,
            "content": f.content,
            "agent_id": agent_id,
            "run_id": run_id,
            "commit_sha": commit_sha,
        }
        for f in files
    ]
    statement = insert(Artifact)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[Artifact.issue_id, Artifact.path, Artifact.sha256],
            set_={
                "run_id": statement.excluded.run_id,
                "agent_id": statement.excluded.agent_id,
                "commit_sha": statement.excluded.commit_sha,
                "created_at": func.now(),
                # Same sha256, same text: keep what is stored (no rewrite of a large value), fill in what is not.
                "content": func.coalesce(Artifact.content, statement.excluded.content),
            },
        ),
        rows,
    )
    return files


# --- staging (deploy) --------------------------------------------------------------------------------------------


def stage(snapshot: Snapshot, target: Path, issue_id: int) -> int:
    """Write the snapshot's files under ``target`` (an empty directory); SubmissionError names every bad file.

    Paths came from an agent: each is checked again by the workspace's rules, and every directory and file is
    created relative to its parent's descriptor with ``O_NOFOLLOW`` and ``O_EXCL``, so nothing can lead out.
    A file whose content the database does not hold, or holds with another checksum, fails the whole staging:
    publishing part of a submission would be a silent pass.
    """
    problems, planned = [], []
    checker = Workspace(target)
    for stored in snapshot.files:
        try:
            checker.resolve(stored.path)
        except WorkspaceError as error:
            problems.append(f"{stored.path!r}: {error.message}")
            continue
        if stored.content is None:
            problems.append(
                f"{stored.path}: the database holds no content for it ({stored.size_bytes} bytes); "
                "it must be submitted again"
            )
            continue
        data = stored.content.encode("utf-8")
        if len(data) != stored.size_bytes or hashlib.sha256(data).hexdigest() != stored.sha256:
            problems.append(f"{stored.path}: the stored content does not match its recorded size and checksum")
            continue
        planned.append((stored.path, PurePosixPath(stored.path.replace("\\", "/")).parts, data))
    if not problems:
        top = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for path, parts, data in planned:
                try:
                    _write_below(top, parts, data)
                except OSError as error:
                    problems.append(f"{path}: cannot be staged ({error.strerror or error})")
        finally:
            os.close(top)
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_PROBLEMS_SHOWN])
        more = f"\n  … and {len(problems) - MAX_PROBLEMS_SHOWN} more" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        raise SubmissionError(
            f"issue #{issue_id}: {len(problems)} of {len(snapshot.files)} submitted file(s) "
            f"cannot be published from the database:\n{shown}{more}"
        )
    return len(planned)


def _write_below(top: int, parts: tuple[str, ...], data: bytes) -> None:
    directory = os.dup(top)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):  # made for an earlier file; opened below, no link followed
                os.mkdir(part, 0o755, dir_fd=directory)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = child
        handle = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=directory)
        with os.fdopen(handle, "wb") as output:
            output.write(data)
    finally:
        os.close(directory)


def staging_parent(data_path: Path) -> Path:
    return data_path / "staging"


@contextmanager
def staged_submission(
    engine: Engine, data_path: Path, issue_id: int, *, leftover_seconds: float = 3600
) -> Iterator[Path]:
    """A fresh directory under the data dir holding the issue's last submission, removed afterwards.

    SubmissionError (before anything runs) when the database cannot supply every file of it. The rows are
    read in a short read-only transaction: none stays open while a command runs.
    """
    with read_only(engine) as session:
        snapshot = submitted_snapshot(session, issue_id)
    parent = staging_parent(data_path)
    parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(parent, issue_id, leftover_seconds)
    target = Path(tempfile.mkdtemp(prefix=f"issue-{issue_id}-", dir=parent))
    try:
        stage(snapshot, target, issue_id)
        yield target
    finally:
        _remove(target)


def _remove_leftovers(parent: Path, issue_id: int, older_than_seconds: float) -> None:
    """Staging copies a killed process left behind for this issue (old enough that no command still uses them)."""
    cutoff = time.time() - older_than_seconds
    for leftover in parent.glob(f"issue-{issue_id}-*"):
        try:
            if leftover.lstat().st_mtime < cutoff:
                _remove(leftover)
        except OSError:
            continue


def _remove(path: Path) -> None:
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path)  # never follows a link inside (it unlinks the link)
    except OSError as error:
        log.warning("submission.staging_not_removed", path=str(path), error=str(error))
