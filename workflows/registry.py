"""The heartbeat workflows, registered in one place: name, module, and the claim queries it runs.

REGISTRY order is the canonical one (the pipeline's order: plan, escalate, assign,
review, execute, deploy); a beat runs an agent's workflows in the order its
AGENTS.md lists them. The roster accepts exactly these names (agents/roster.py),
the heartbeat looks each one's ``run`` up here (scheduler/heartbeat.py), and
tests/unit/config/test_vocabulary.py checks every claim named here exists in
db/sql/queries/claims.sql.

Adding a workflow: write ``workflows/<name>.py`` with ``run(ctx: WorkflowContext) -> None``,
then add one ``Workflow(...)`` line to REGISTRY, at its place in the pipeline.

Nothing here imports a workflow module: validating a roster (``hq config check``)
must not load the model stack. A module is imported the first time its ``run`` is
looked up, and ``run`` is read from the module on every lookup, so a replaced or
monkeypatched ``run`` is the one called.

The sweeper (workflows/sweep.py) is not here: it runs on a timer, not in a beat.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from config.vocabulary import WORKFLOW_NAMES

if TYPE_CHECKING:
    from workflows.lib.context import WorkflowContext

Run = Callable[["WorkflowContext"], None]


@dataclass(frozen=True)
class Workflow:
    name: str
    module: str  # dotted path of the module defining run(ctx)
    claims: tuple[str, ...] = ()  # the claim queries it runs (names in db/sql/queries/claims.sql)

    @property
    def run(self) -> Run:
        """The module's ``run``, importing the module on first use."""
        run: Run = importlib.import_module(self.module).run
        return run


REGISTRY: tuple[Workflow, ...] = (
    Workflow("plan", "workflows.plan"),
    Workflow("escalate", "workflows.escalate", ("claim_escalation",)),
    Workflow("assign", "workflows.assign", ("claim_routing", "claim_unowned")),
    Workflow("review_gate", "workflows.review_gate", ("claim_review",)),
    Workflow("execute", "workflows.execute", ("reclaim_expired_work", "claim_stitch", "claim_todo")),
    Workflow("deploy_verify", "workflows.deploy_verify", ("reclaim_expired_deploy", "claim_deploy")),
)

if tuple(w.name for w in REGISTRY) != WORKFLOW_NAMES:  # the names live with the vocabularies, below every floor
    raise RuntimeError("workflows/registry.py: REGISTRY and config.vocabulary.WORKFLOW_NAMES differ")

_BY_NAME = {w.name: w for w in REGISTRY}
if len(_BY_NAME) != len(REGISTRY):
    raise RuntimeError("workflows/registry.py: a workflow name is registered twice")


def get(name: str) -> Workflow:
    """The registered workflow ``name``; KeyError naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no workflow {name!r} (registered: {', '.join(WORKFLOW_NAMES)})") from None


class Runners(Mapping[str, Run]):
    """name → run, resolved (and its module imported) only when looked up."""

    def __getitem__(self, name: str) -> Run:
        return get(name).run

    def __iter__(self) -> Iterator[str]:
        return iter(WORKFLOW_NAMES)

    def __len__(self) -> int:
        return len(REGISTRY)


def runners() -> Mapping[str, Run]:
    return Runners()
