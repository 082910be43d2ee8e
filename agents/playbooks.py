"""Playbooks: decomposition patterns kept as data (agents/playbooks/*.yaml).

A playbook lists the modules a large request breaks into — who does each, on
which tier, after which others, and what it must produce — plus the quality
checklist the assembled result is held to. Validation is the same whether the
modules come from a file or from a model adapting one: unique ids, known
dependencies, no cycles, and every role a real agent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.roster import Problems
from config.errors import ConfigError, validation_problems
from config.vocabulary import Tier

_ID = r"^[a-z][a-z0-9_-]{0,40}$"


class Module(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=_ID)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    role: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
    tier: Tier = "execution"
    depends_on: list[str] = Field(default_factory=list)
    output: Annotated[str, Field(min_length=1, max_length=2000)]


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=_ID)]
    description: Annotated[str, Field(min_length=1, max_length=1000)]
    classification_keywords: Annotated[
        list[Annotated[str, Field(min_length=2, max_length=40)]], Field(min_length=1, max_length=40)
    ]
    modules: Annotated[list[Module], Field(min_length=2, max_length=12)]
    quality_checklist: Annotated[list[Annotated[str, Field(min_length=3, max_length=300)]], Field(min_length=1)]

    def waves(self) -> list[list[str]]:
        return waves(self.modules)


def module_problems(modules: Iterable[Module], roles: set[str] | None) -> list[str]:
    """Every reason these modules cannot be run as a dependency graph (empty: they can)."""
    modules = list(modules)
    problems: list[str] = []
    ids = [m.id for m in modules]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"module {duplicate}: id used more than once")
    known = set(ids)
    for module in modules:
        for dependency in module.depends_on:
            if dependency not in known:
                problems.append(f"module {module.id}: depends_on names unknown module {dependency!r}")
            elif dependency == module.id:
                problems.append(f"module {module.id}: depends on itself")
        if roles is not None and module.role not in roles:
            problems.append(f"module {module.id}: role {module.role!r} is not in the roster")
    cycle = _cycle(modules)
    if cycle:
        problems.append(f"module {cycle[0]}: dependency cycle " + " -> ".join([*cycle, cycle[0]]))
    return problems


def _cycle(modules: list[Module]) -> list[str] | None:
    edges = {m.id: [d for d in m.depends_on if d != m.id] for m in modules}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dependency in edges.get(node, []):
            if state.get(dependency) == 1:
                return stack[stack.index(dependency) :]
            if dependency in edges and state.get(dependency) is None:
                found = visit(dependency)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def within_roles(modules: Iterable[Module], roles: set[str]) -> list[Module]:
    """The modules whose role is available, a dropped module's dependents now waiting on what it waited on.

    So a playbook still runs, in the same order, when one of its roles is paused (or, for a git project, cannot
    work code): the parts that remain keep every ordering the dropped part gave them.
    """
    modules = list(modules)
    dropped = {m.id: m.depends_on for m in modules if m.role not in roles}

    def inherited(dependencies: list[str], seen: frozenset[str] = frozenset()) -> list[str]:
        result: list[str] = []
        for dependency in dependencies:
            if dependency in dropped and dependency not in seen:
                result.extend(inherited(dropped[dependency], seen | {dependency}))
            elif dependency not in dropped:
                result.append(dependency)
        return result

    return [
        m.model_copy(update={"depends_on": list(dict.fromkeys(inherited(m.depends_on)))})
        for m in modules
        if m.id not in dropped
    ]


def waves(modules: Iterable[Module]) -> list[list[str]]:
    """Modules grouped by when they can start: a wave needs only the waves before it."""
    remaining = {m.id: set(m.depends_on) for m in modules}
    done: set[str] = set()
    result = []
    while remaining:
        ready = sorted(i for i, deps in remaining.items() if deps <= done)
        if not ready:
            raise ValueError("dependency cycle")
        result.append(ready)
        done.update(ready)
        for module_id in ready:
            del remaining[module_id]
    return result


@dataclass(frozen=True)
class PlaybookSet:
    playbooks: dict[str, Playbook]

    def get(self, name: str | None) -> Playbook | None:
        return self.playbooks.get(name or "")

    def keyword_scores(self, text: str) -> dict[str, int]:
        words = set(re.findall(r"[a-z0-9][a-z0-9-]*", text.lower()))
        return {name: len(words & {k.lower() for k in p.classification_keywords}) for name, p in self.playbooks.items()}


def load_playbooks(root: Path, roles: set[str] | None = None) -> PlaybookSet:
    """Load and validate every *.yaml under ``root``; ConfigError lists every problem with file and module."""
    problems = Problems()
    if not root.is_dir():
        raise ConfigError(f"playbooks: {root} is not a directory")
    playbooks: dict[str, Playbook] = {}
    for path in sorted(root.glob("*.yaml")):
        shown = f"{root.name}/{path.name}"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            problems.add(shown, "not valid YAML")
            continue
        except OSError as error:
            problems.add(shown, f"unreadable ({error.strerror})")
            continue
        try:
            playbook = Playbook.model_validate(data)
        except ValidationError as error:
            for problem in validation_problems(error, "playbook"):
                problems.add(shown, problem)
            continue
        if playbook.name != path.stem:
            problems.add(shown, f"name: {playbook.name!r} must match the file name {path.stem!r}")
        for problem in module_problems(playbook.modules, roles):
            problems.add(shown, problem)
        playbooks[playbook.name] = playbook
    problems.raise_if_any("invalid playbooks")
    return PlaybookSet(playbooks)
