"""Staging a submission treats every stored row as hostile: paths that escape or name git, links raced in,
content that does not match its checksum.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from projects.document.snapshots import (
    Snapshot,
    StoredFile,
    SubmissionError,
    stage,
)

# --- staging treats every row as hostile ---------------------------------------------------------------------


def stored(path: str, content: str | None = "x\n") -> StoredFile:
    data = (content or "").encode()
    return StoredFile(path, hashlib.sha256(data).hexdigest(), len(data), content)


@pytest.mark.parametrize(
    "path",
    [
        "../escape.md",
        "/tmp/escape.md",
        "docs/../../escape.md",
        ".git/config",
        "docs/.GIT/hooks/pre-commit",
        ".gitattributes",
        "docs/",
        "a\x00b",
        "",
    ],
)
def test_staging_refuses_hostile_paths(tmp_path: Path, path: str) -> None:
    target = tmp_path / "stage"
    target.mkdir()
    with pytest.raises(SubmissionError) as refused:
        stage(Snapshot(uuid.uuid4(), "0" * 40, (stored("ok.md"), stored(path))), target, 7)
    assert "1 of 2 submitted file(s) cannot be published" in refused.value.message
    assert list(target.iterdir()) == [] and not (tmp_path / "escape.md").exists()


def test_staging_never_follows_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "stage"
    target.mkdir()
    (target / "docs").symlink_to(outside)  # as if something raced a link in
    with pytest.raises(SubmissionError, match=r"docs/guide\.md"):
        stage(Snapshot(uuid.uuid4(), "0" * 40, (stored("docs/guide.md"),)), target, 7)
    assert list(outside.iterdir()) == []


def test_staging_refuses_content_that_does_not_match_its_checksum(tmp_path: Path) -> None:
    target = tmp_path / "stage"
    target.mkdir()
    tampered = StoredFile("guide.md", hashlib.sha256(b"original").hexdigest(), 8, "tampered")
    with pytest.raises(SubmissionError, match=r"guide\.md: the stored content does not match"):
        stage(Snapshot(uuid.uuid4(), "0" * 40, (tampered,)), target, 7)
