"""What tests share: helpers, fixtures' building blocks and the processes they start (tests/conftest.py holds
the fixtures themselves). Each module is named after what it helps test; none is collected as tests."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository's root: the folder holding pyproject.toml, the packages, docs/ and tests/."""
