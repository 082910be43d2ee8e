"""What the store runs its statements on: a workflow's Session or the CLI's plain Connection."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, Union

from sqlalchemy import Connection

if TYPE_CHECKING:  # the CLI's decisions run on a Connection without loading the ORM
    from sqlalchemy.orm import Session

Executor: TypeAlias = Union["Session", Connection]
