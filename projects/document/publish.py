"""The built-in project: deploy publishes an issue's files, verify checks what was published.

Run as ``python -m projects.document.publish deploy|verify --issue N --workspace W --published P``.
``W`` is the directory to publish: for deploy_verify, a fresh staging copy of the
issue's last submission as the database holds it (projects/document/snapshots.py), so the
host that deploys needs no local workspace; for the release tools, the agent's
live workspace. Deploy copies every regular file in it (not git's, not hidden,
and never through a symlink) to the published folder with a MANIFEST.json of
SHA-256 checksums. Verify recomputes the checksums, and also
refuses deliverables that still contain unfilled template placeholders — the
most common way a generated document ships broken.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path

from projects.git import is_git_name

MANIFEST = "MANIFEST.json"
PLACEHOLDER = re.compile(r"\{\{[^{}\n]{1,80}\}\}")


def _files(root: Path) -> list[Path]:
    """Regular files only, found without following any link: a symlink's target is never published."""
    found = []
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        here = Path(directory)
        subdirectories[:] = [d for d in subdirectories if not d.startswith(".") and not is_git_name(d)]
        for name in files:
            path = here / name
            if not name.startswith(".") and stat.S_ISREG(path.lstat().st_mode):
                found.append(path)
    return sorted(found)


def _read_regular(path: Path) -> bytes:
    """The file's bytes, refusing (rather than following) a link swapped in since it was listed."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor, "rb") as handle:
        return handle.read()


def deploy(workspace: Path, published: Path) -> int:
    files = _files(workspace) if workspace.is_dir() else []
    if not files:
        sys.stdout.write(f"deploy: nothing to publish in {workspace}\n")
        return 1
    if published.exists():
        shutil.rmtree(published)
    published.mkdir(parents=True)
    manifest = {}
    for source in files:
        relative = source.relative_to(workspace).as_posix()
        target = published / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        data = _read_regular(source)
        target.write_bytes(data)
        manifest[relative] = hashlib.sha256(data).hexdigest()
    (published / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    sys.stdout.write(f"deploy: published {len(manifest)} file(s) to {published}\n")
    return 0


def verify(published: Path) -> int:
    try:
        manifest = json.loads((published / MANIFEST).read_text())
    except (OSError, ValueError):
        sys.stdout.write(f"verify: no readable {MANIFEST} in {published}\n")
        return 1
    problems = []
    for relative, expected in sorted(manifest.items()):
        path = published / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            problems.append(f"{relative}: checksum mismatch")
        for match in PLACEHOLDER.finditer(data.decode("utf-8", errors="replace")):
            problems.append(f"{relative}: unfilled placeholder {match.group()}")
    if problems:
        sys.stdout.write("verify: FAILED\n" + "\n".join(f"  - {p}" for p in problems) + "\n")
        return 1
    sys.stdout.write(f"verify: {len(manifest)} file(s) match their checksums\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m projects.document.publish")
    parser.add_argument("action", choices=["deploy", "verify"])
    parser.add_argument("--issue", required=True)
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--published", required=True, type=Path)
    args = parser.parse_args(argv)
    return deploy(args.workspace, args.published) if args.action == "deploy" else verify(args.published)


if __name__ == "__main__":
    sys.exit(main())
