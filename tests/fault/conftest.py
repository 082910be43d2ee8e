"""Fault tests run real processes: each test gets its own data dir (workspaces, published files)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQ_DATA_DIR", str(tmp_path / "var"))
