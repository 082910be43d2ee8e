"""The built-in project's deploy publishes workspace files, and never what a link points at."""

from __future__ import annotations

import json
import os
from pathlib import Path

from projects.document.publish import MANIFEST, deploy, verify


def test_deploy_never_follows_symlinks(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("root:x:0:0")
    secret_dir = tmp_path / "host-dir"
    secret_dir.mkdir()
    (secret_dir / "key").write_text("private")
    workspace = tmp_path / "workspace"
    (workspace / "docs").mkdir(parents=True)
    (workspace / "docs" / "guide.md").write_text("# Guide\n")
    os.symlink(secret, workspace / "hostname.md")
    os.symlink(secret_dir, workspace / "docs" / "linked")
    os.symlink("/etc/hostname", workspace / "etc-hostname")
    (workspace / ".GIT").mkdir()
    (workspace / ".GIT" / "config").write_text("[core]\n")
    published = tmp_path / "published"
    assert deploy(workspace, published) == 0
    manifest = json.loads((published / MANIFEST).read_text())
    assert sorted(manifest) == ["docs/guide.md"]
    every = sorted(p.relative_to(published).as_posix() for p in published.rglob("*"))
    assert every == [MANIFEST, "docs", "docs/guide.md"]
    assert not any(p.is_symlink() for p in published.rglob("*"))
    assert verify(published) == 0
