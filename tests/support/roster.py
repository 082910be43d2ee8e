"""The bundled roster for tests that edit a copy of it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from config.settings import PACKAGE_ROOT

ROLES = PACKAGE_ROOT / "agents" / "roles"


def copy_roster(tmp_path: Path) -> Path:
    target = tmp_path / "roles"
    shutil.copytree(ROLES, target)
    return target


def edit(roles: Path, slug: str, pattern: str, replacement: str) -> None:
    path = roles / slug / "AGENTS.md"
    text = path.read_text()
    changed = re.sub(pattern, replacement, text, count=1, flags=re.MULTILINE)
    assert changed != text, f"{pattern} not found in {slug}"
    path.write_text(changed)
