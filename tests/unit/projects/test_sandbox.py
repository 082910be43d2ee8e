"""The sandbox's limits: taken from the settings, and a limit of nothing is refused."""

from __future__ import annotations

import pytest

from config.settings import Settings
from projects.sandbox import (
    Limits,
    limits_for,
)


def test_limits_for() -> None:
    settings = Settings(sandbox_memory_mb=512, sandbox_cpu_seconds=30)
    assert limits_for(settings, 45.5) == Limits(timeout_seconds=45.5, cpu_seconds=30, memory_bytes=512 * 1024 * 1024)
    with pytest.raises(ValueError):
        Limits(timeout_seconds=0, cpu_seconds=1, memory_bytes=1)
