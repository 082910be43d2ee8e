"""The few error types every layer raises, each knowing the exit code a user should see."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class HQError(Exception):
    """An expected failure with a one-line, user-facing message."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(HQError):
    """Bad input: the user can fix it and try again. Nothing was written."""

    exit_code = 2


class ConfigError(UsageError):
    """Settings, roster, models file or playbooks are invalid; the program must not start."""


class NotFoundError(UsageError):
    """The row the user named does not exist."""


class StateError(UsageError):
    """The row exists but is not in a state that allows the requested action."""


class DatabaseUnavailable(HQError):
    """PostgreSQL cannot be reached or started."""


class ToolError(HQError):
    """The tool refused or failed; the message goes back to the model as the tool's result."""


class ToolRefused(ToolError):
    """The tool was asked for what the run may not have (a budget the issue cannot fund): outcome ``refused``."""


def describe(error: BaseException) -> str:
    """``Type: first line of the message``, for one-line logs and error columns (redact before storing)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def validation_problems(error: ValidationError, whole: str) -> list[str]:
    """``field.path: message`` for each pydantic error (``whole`` names an error about the entire input)."""
    return [
        f"{'.'.join(str(p) for p in item['loc']) or whole}: {item['msg'].removeprefix('Value error, ')}"
        for item in error.errors()
    ]
