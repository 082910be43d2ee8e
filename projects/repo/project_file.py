"""`.hq/project.yaml`: the commands a project lets HQ run, versioned with its code.

HQ runs a project command only by its name in this file, as the argument list
written here, in the sandbox (projects/sandbox.py); a model names a command, it
never writes one. The file is read from the base branch as this host last
fetched it, never from the issue's branch: an agent that rewrites
``.hq/project.yaml`` (say, ``test: [true]``) changes what runs only once a
person-approved merge has put that change on the base branch.

    commands:                      # name -> argv list, or {run: argv, timeout_seconds: N}
      test: [python3, -m, unittest, -q]
      lint: {run: [python3, -m, pyflakes, .], timeout_seconds: 60}
      deploy: [./scripts/deploy.sh]
      verify: [./scripts/smoke.sh]
    gate: [test]                   # what the review gate runs, in order; all must pass
    environment:                   # optional: what every command above runs against
      setup: {run: [sh, .hq/setup.sh], timeout_seconds: 1200}   # builds it, the one command with network
      inputs: [pyproject.toml, "requirements*.txt"]              # what it depends on, besides the setup

The environment is built once per content (projects/repo/environment.py) into an empty
directory at ``/env`` (``HQ_ENV``); every later command gets it read-only with ``/env/bin``
first on ``PATH``, and no network.
"""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import HQError, validation_problems
from projects.workspace import WorkspaceError, glob_regex

PROJECT_FILE = ".hq/project.yaml"
MAX_FILE_BYTES = 64 * 1024
COMMAND_NAME = r"^[a-z][a-z0-9_-]{0,31}$"
MAX_TIMEOUT_SECONDS = 3 * 3600  # a slow suite takes 20 minutes; a command that needs hours is a job, not a check
DEFAULT_SETUP_TIMEOUT_SECONDS = 1200
INPUT_GLOB = r"^[A-Za-z0-9_.*?+@=,/-][A-Za-z0-9_.*?+@=,/ -]{0,199}$"

Argument = Annotated[str, Field(min_length=1, max_length=4096)]


class ProjectConfigError(HQError):
    """The project file is missing or invalid: the issue is blocked with reason ``project_config``."""


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: Annotated[tuple[Argument, ...], Field(min_length=1, max_length=64)]
    timeout_seconds: Annotated[int, Field(ge=1, le=MAX_TIMEOUT_SECONDS)] | None = None

    @field_validator("run")
    @classmethod
    def _no_surprises(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        if any("\x00" in part for part in argv):
            raise ValueError("arguments must not contain NUL")
        if argv[0].startswith("-"):
            raise ValueError(f"the program must not start with '-': {argv[0]!r}")
        return argv


class Environment(BaseModel):
    """What a project's commands run against: built by ``setup`` from the worktree and the ``inputs`` files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    setup: Command
    inputs: Annotated[tuple[Annotated[str, Field(pattern=INPUT_GLOB)], ...], Field(max_length=32)] = ()

    @field_validator("setup", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"run": value} if isinstance(value, list) else value

    @field_validator("inputs")
    @classmethod
    def _inside_the_tree(cls, globs: tuple[str, ...]) -> tuple[str, ...]:
        for glob in globs:
            if glob.startswith("/") or ".." in glob.split("/"):
                raise ValueError(f"inputs are paths in the repository: {glob!r}")
            try:
                glob_regex(glob)
            except WorkspaceError as error:
                raise ValueError(error.message) from None
        return globs

    @property
    def setup_timeout_seconds(self) -> int:
        return self.setup.timeout_seconds or DEFAULT_SETUP_TIMEOUT_SECONDS


class ProjectFile(BaseModel):
    """The validated file: named commands and the gate (at least one command; every name defined)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    commands: Annotated[dict[Annotated[str, Field(pattern=COMMAND_NAME)], Command], Field(min_length=1, max_length=32)]
    gate: Annotated[tuple[Annotated[str, Field(pattern=COMMAND_NAME)], ...], Field(min_length=1, max_length=16)]
    environment: Environment | None = None

    @field_validator("commands", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        """``name: [argv]`` is short for ``name: {run: [argv]}``."""
        if isinstance(value, dict):
            return {name: {"run": spec} if isinstance(spec, list) else spec for name, spec in value.items()}
        return value

    @model_validator(mode="after")
    def _gate_is_defined(self) -> ProjectFile:
        unknown = [name for name in self.gate if name not in self.commands]
        if unknown:
            raise ValueError(f"gate names commands that are not defined: {', '.join(unknown)}")
        if len(set(self.gate)) != len(self.gate):
            raise ValueError("gate lists a command twice")
        return self

    def command(self, name: str) -> Command | None:
        return self.commands.get(name)

    @property
    def deploy(self) -> Command | None:
        return self.commands.get("deploy")

    @property
    def verify(self) -> Command | None:
        return self.commands.get("verify")


def parse_project_file(data: bytes | None) -> ProjectFile:
    """The file's bytes (None: absent) as a ProjectFile, or ProjectConfigError naming every problem in one line."""
    if data is None:
        raise ProjectConfigError(f"{PROJECT_FILE} is missing on the base branch: add it to say how to test the project")
    if len(data) > MAX_FILE_BYTES:
        raise ProjectConfigError(f"{PROJECT_FILE} is larger than {MAX_FILE_BYTES} bytes")
    try:
        loaded = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProjectConfigError(f"{PROJECT_FILE} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ProjectConfigError(f"{PROJECT_FILE} is not valid YAML{line}") from None
    if not isinstance(loaded, dict):
        raise ProjectConfigError(f"{PROJECT_FILE} must be a mapping with `commands` and `gate`")
    try:
        return ProjectFile.model_validate(loaded)
    except ValidationError as error:
        problems = "; ".join(validation_problems(error, PROJECT_FILE))
        raise ProjectConfigError(f"{PROJECT_FILE} is invalid: {problems}") from None
