"""The roster: every role is a folder with an AGENTS.md (YAML front matter + instructions).

Loading validates each file on its own (pydantic) and then the organisation as a
whole (one root, no cycles, every reference resolves). All problems are
collected and reported together, each naming its file and field, so a broken
roster is fixed in one pass rather than one error at a time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import ConfigError, validation_problems
from config.vocabulary import WORKFLOW_NAMES, Tier

WORKFLOWS = WORKFLOW_NAMES  # the heartbeat workflows (config/vocabulary.py; workflows/registry.py runs them)
TOOLSETS = ("issues", "workspace", "code", "delegate", "dashboards", "release", "publish")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SLUG = r"^[a-z][a-z0-9-]{0,62}$"


def parse_duration(value: str | int | float) -> float:
    """'8h', '30m', '90s', '1.5h' (or a number of seconds) to seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30m or 8h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration like 30s, 15m, 8h or 1d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


class Skill(BaseModel):
    """A focused skill with the words that route matching work to this role."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=60)]
    description: Annotated[str, Field(min_length=1, max_length=300)]
    keywords: Annotated[list[Annotated[str, Field(min_length=2, max_length=40)]], Field(min_length=1, max_length=30)]

    @field_validator("keywords")
    @classmethod
    def _lower(cls, keywords: list[str]) -> list[str]:
        return [k.strip().lower() for k in keywords]


RUNTIMES = ("builtin", "claude-code")
CLI_EXTRA_TOOLS = ("NotebookEdit", "TodoWrite")
"""Claude Code tools a role may add to those its toolsets give; no web tool is among them, ever."""


class RuntimeOptions(BaseModel):
    """How the ``claude-code`` runtime runs the CLI for this role (runtimes/claude_code.py)."""

    model_config = ConfigDict(extra="forbid")

    max_turns: Annotated[int, Field(ge=1, le=200)] = 40
    tier: Tier | None = None  # the main model's tier; the role's own tier when not set
    fast_tier: Tier = "utility"  # the CLI's small, fast model (titles, summaries, quick checks)
    allowed_tools: list[Literal[CLI_EXTRA_TOOLS]] = Field(default_factory=list)  # type: ignore[valid-type]


class RoleSpec(BaseModel):
    """The front matter of one AGENTS.md."""

    model_config = ConfigDict(extra="forbid")

    slug: Annotated[str, Field(pattern=_SLUG)]
    title: Annotated[str, Field(min_length=1, max_length=100)]
    reports_to: Annotated[str, Field(pattern=_SLUG)] | None = None
    tier: Tier = "execution"
    heartbeat: str | int
    jitter: str | int = "0s"
    workflows: Annotated[list[Literal[WORKFLOWS]], Field(min_length=1)]  # type: ignore[valid-type]
    toolsets: list[Literal[TOOLSETS]] = Field(default_factory=list)  # type: ignore[valid-type]
    skills: Annotated[list[Skill], Field(min_length=2, max_length=3)]
    reviewer: Annotated[str, Field(pattern=_SLUG)] | None = None
    checklist: Annotated[list[Annotated[str, Field(min_length=3, max_length=300)]], Field(min_length=1, max_length=20)]
    monthly_budget_usd: Annotated[float, Field(ge=0, le=1_000_000)]
    runtime: Literal[RUNTIMES] = "builtin"  # type: ignore[valid-type]
    runtime_options: RuntimeOptions | None = None

    @model_validator(mode="after")
    def _runtime(self) -> RoleSpec:
        if self.runtime_options is not None and self.runtime != "claude-code":
            raise ValueError("runtime_options: only for runtime: claude-code")
        if self.runtime == "claude-code" and ("execute" not in self.workflows or "code" not in self.toolsets):
            raise ValueError(
                "runtime: claude-code works repositories: the role needs the execute workflow and the code toolset"
            )
        return self

    @property
    def runtime_settings(self) -> RuntimeOptions:
        return self.runtime_options or RuntimeOptions()

    @field_validator("heartbeat")
    @classmethod
    def _heartbeat(cls, value: str | int) -> str | int:
        if parse_duration(value) < 1:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("jitter")
    @classmethod
    def _jitter(cls, value: str | int) -> str | int:
        parse_duration(value)
        return value

    @field_validator("workflows", "toolsets")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("must not repeat an entry")
        return values

    @property
    def heartbeat_seconds(self) -> float:
        return parse_duration(self.heartbeat)

    @property
    def jitter_seconds(self) -> float:
        return parse_duration(self.jitter)


@dataclass(frozen=True)
class Role:
    spec: RoleSpec
    instructions: str
    path: Path
    sha256: str

    @property
    def slug(self) -> str:
        return self.spec.slug


@dataclass
class Roster:
    """A validated organisation: roles by slug, with the chain of command precomputed."""

    roles: dict[str, Role]
    root: Path

    @cached_property
    def ceo(self) -> Role:
        return next(r for r in self.roles.values() if r.spec.reports_to is None)

    def manager_of(self, slug: str) -> str | None:
        return self.roles[slug].spec.reports_to

    def reviewer_of(self, slug: str) -> str | None:
        spec = self.roles[slug].spec
        return spec.reviewer or spec.reports_to

    def reports_of(self, slug: str) -> list[str]:
        return sorted(s for s, r in self.roles.items() if r.spec.reports_to == slug)

    def chain_of_command(self, slug: str) -> list[str]:
        """The slug's managers, nearest first, up to the root."""
        chain = []
        current = self.manager_of(slug)
        while current is not None:
            chain.append(current)
            current = self.manager_of(current)
        return chain

    def subtree(self, slug: str) -> list[str]:
        """The slug and everyone below it, depth first."""
        result = [slug]
        for report in self.reports_of(slug):
            result.extend(self.subtree(report))
        return result

    def walk(self) -> Iterator[tuple[int, Role]]:
        """Depth-first from the root, with depth: chain-of-command order."""

        def visit(slug: str, depth: int) -> Iterator[tuple[int, Role]]:
            yield depth, self.roles[slug]
            for report in self.reports_of(slug):
                yield from visit(report, depth + 1)

        yield from visit(self.ceo.slug, 0)


@dataclass
class Problems:
    items: list[str] = field(default_factory=list)

    def add(self, where: Path | str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def raise_if_any(self, heading: str) -> None:
        if self.items:
            raise ConfigError(f"{heading}: " + "; ".join(self.items))


FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)(.*)\Z", re.DOTALL)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def parse_role_file(path: Path, problems: Problems, shown: str) -> Role | None:
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.add(shown, "not UTF-8 text")
        return None
    except OSError as error:
        problems.add(shown, f"unreadable ({error.strerror})")
        return None
    match = FRONT_MATTER.match(text)
    if not match:
        problems.add(shown, "missing YAML front matter (the file must start with a '---' block)")
        return None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problems.add(shown, f"front matter is not valid YAML{where}")
        return None
    if not isinstance(data, dict):
        problems.add(shown, "front matter must be a mapping of fields")
        return None
    try:
        spec = RoleSpec.model_validate(data)
    except ValidationError as error:
        for problem in validation_problems(error, "front matter"):
            problems.add(shown, problem)
        return None
    instructions = match.group(2).strip()
    if len(instructions) < 200:
        problems.add(shown, "instructions: the body under the front matter must describe the role (200+ characters)")
    return Role(spec=spec, instructions=instructions, path=path, sha256=hashlib.sha256(raw).hexdigest())


def load_roster(root: Path) -> Roster:
    """Load and validate every roles/<slug>/AGENTS.md under ``root``; raise ConfigError listing all problems."""
    problems = Problems()
    if not root.is_dir():
        raise ConfigError(f"roster: {root} is not a directory")
    roles: dict[str, Role] = {}
    files = sorted(root.glob("*/AGENTS.md"))
    if not files:
        raise ConfigError(f"roster: no */AGENTS.md files under {root}")
    for path in files:
        shown = _display(path, root)
        role = parse_role_file(path, problems, shown)
        if role is None:
            continue
        if role.slug != path.parent.name:
            problems.add(shown, f"slug: {role.slug!r} must match its folder name {path.parent.name!r}")
        if role.slug in roles:
            problems.add(shown, f"slug: {role.slug!r} is already defined in {_display(roles[role.slug].path, root)}")
            continue
        roles[role.slug] = role
    _check_organisation(roles, root, problems)
    problems.raise_if_any("invalid roster")
    return Roster(roles=roles, root=root)


def _check_organisation(roles: dict[str, Role], root: Path, problems: Problems) -> None:
    def shown(role: Role) -> str:
        return _display(role.path, root)

    roots = [r for r in roles.values() if r.spec.reports_to is None]
    if len(roots) != 1:
        names = ", ".join(sorted(r.slug for r in roots)) or "none"
        problems.add(root, f"reports_to: exactly one role must have no manager (found: {names})")
    for role in roles.values():
        spec = role.spec
        if spec.reports_to is not None and spec.reports_to not in roles:
            problems.add(shown(role), f"reports_to: no role named {spec.reports_to!r}")
        if spec.reports_to == spec.slug:
            problems.add(shown(role), "reports_to: a role cannot report to itself")
        if spec.reviewer is not None:
            if spec.reviewer not in roles:
                problems.add(shown(role), f"reviewer: no role named {spec.reviewer!r}")
            elif spec.reviewer == spec.slug:
                problems.add(shown(role), "reviewer: a role cannot review its own work")
            elif "review_gate" not in roles[spec.reviewer].spec.workflows:
                problems.add(shown(role), f"reviewer: {spec.reviewer!r} does not run the review_gate workflow")
        if spec.jitter_seconds >= spec.heartbeat_seconds:
            problems.add(shown(role), "jitter: must be shorter than the heartbeat")
        has_reports = any(r.spec.reports_to == spec.slug for r in roles.values())
        if "assign" in spec.workflows and not has_reports:
            problems.add(shown(role), "workflows: 'assign' needs at least one direct report")
        if "deploy_verify" in spec.workflows and "release" not in spec.toolsets:
            problems.add(shown(role), "toolsets: 'deploy_verify' needs the 'release' toolset")
        if "delegate" in spec.toolsets and not has_reports:
            problems.add(shown(role), "toolsets: 'delegate' needs at least one direct report")
    for cycle in _cycles(roles):
        first = roles[cycle[0]]
        problems.add(shown(first), "reports_to: chain of command has a cycle: " + " -> ".join([*cycle, cycle[0]]))
    if roles and not any("deploy_verify" in r.spec.workflows for r in roles.values()):
        problems.add(root, "workflows: no role runs deploy_verify, so approved work would never ship")
    if roles and not any("execute" in r.spec.workflows for r in roles.values()):
        problems.add(root, "workflows: no role runs execute, so no work would ever be done")
    executors = [r for r in roles.values() if "execute" in r.spec.workflows and r.spec.reports_to is not None]
    for role in executors:
        reviewer = role.spec.reviewer or role.spec.reports_to
        if reviewer in roles and "review_gate" not in roles[reviewer].spec.workflows:
            problems.add(shown(role), f"reviewer: its default reviewer {reviewer!r} does not run review_gate")


def _cycles(roles: dict[str, Role]) -> list[list[str]]:
    """Each distinct reports_to cycle once, as the list of slugs in it."""
    found: list[list[str]] = []
    seen_in_cycle: set[str] = set()
    for start in sorted(roles):
        path: list[str] = []
        current: str | None = start
        while current is not None and current in roles and current not in path:
            path.append(current)
            current = roles[current].spec.reports_to
        if current is not None and current in path and current not in seen_in_cycle:
            cycle = path[path.index(current) :]
            seen_in_cycle.update(cycle)
            found.append(cycle)
    return found
