"""How long work may run and who may stop it: HQ's own limits, and the lease keeper's stop signal.

A project command is bounded by its own ``timeout_seconds`` (its project's word); a model's tool loop and a
Claude Code session by settings of their own (``Limit``). Nothing is bounded by the issue lease any more:
the lease keeper (workflows/lib/leases.py) renews it while the work goes on, and when a renewal finds the
lease gone it sets ``Watch.stopped``, which kills the running command and keeps the run from writing
anything. ``Watch.doing`` is what the keeper writes on the issue's row, so `hq issues` can tell a long run
from a stuck one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limit:
    """One of HQ's limits on a run (not the project's): when it ends, and the setting that says so."""

    deadline: float  # time.monotonic()
    setting: str  # e.g. "HQ_TOOL_LOOP_MAX_SECONDS=1800": named in every message about it

    @classmethod
    def of(cls, seconds: float, setting: str) -> Limit:
        return cls(time.monotonic() + seconds, f"{setting}={seconds:g}")

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _ignore(what: str) -> None:
    """Work nobody watches (the CLI's own checks, tests) says what it does to no one."""


@dataclass(frozen=True)
class Watch:
    """What long work reports to and is stopped by; ``Watch()`` is work that no lease holds."""

    stopped: threading.Event = field(default_factory=threading.Event)
    report: Callable[[str], None] = _ignore

    def doing(self, what: str) -> None:
        self.report(what)
