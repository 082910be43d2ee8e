"""The words the runtime and the database must agree on, each defined once.

The database is the authority (CHECK constraints in db/sql/schema.sql and the
migrations, the issue_statuses / issue_transitions rows in
db/sql/state_machine.sql); these constants are its Python spelling, and
tests/integration/config/test_vocabulary.py fails when the two drift apart. Everything
else imports from here rather than re-typing a set by hand.

Standard library only, so anything (the CLI, the ORM, pydantic models) can import
it for nothing.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- issues ---------------------------------------------------------------------------

STATUSES: tuple[str, ...] = (
    "backlog",
    "todo",
    "in_progress",
    "in_review",
    "pending_approval",
    "approved",
    "deploying",
    "done",
    "blocked",
    "rejected",
    "cancelled",
)
"""Every issue status, in issue_statuses.position order (how lists and hints sort them)."""

TERMINAL_STATUSES: frozenset[str] = frozenset({"done", "rejected", "cancelled"})
"""Statuses with no way out (issue_statuses.is_terminal): finished work, released dependencies."""

OPEN_STATUSES: tuple[str, ...] = tuple(s for s in STATUSES if s not in TERMINAL_STATUSES)
"""Every non-terminal status, in STATUSES order: the issues someone may still act on."""

INITIAL_STATUSES: frozenset[str] = frozenset({"backlog", "todo"})
"""Statuses an issue may be created in (issue_statuses.is_initial; the insert guard enforces it)."""

TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("backlog", "todo"),
        ("backlog", "cancelled"),
        ("todo", "in_progress"),
        ("todo", "blocked"),
        ("todo", "backlog"),
        ("todo", "cancelled"),
        ("in_progress", "in_review"),
        ("in_progress", "blocked"),
        ("in_progress", "todo"),
        ("in_progress", "cancelled"),
        ("in_review", "pending_approval"),
        ("in_review", "approved"),
        ("in_review", "todo"),
        ("in_review", "blocked"),
        ("in_review", "cancelled"),
        ("pending_approval", "approved"),
        ("pending_approval", "rejected"),
        ("pending_approval", "todo"),
        ("pending_approval", "cancelled"),
        ("approved", "deploying"),
        ("approved", "cancelled"),
        ("deploying", "done"),
        ("deploying", "todo"),
        ("deploying", "blocked"),
        ("blocked", "todo"),
        ("blocked", "backlog"),
        ("blocked", "cancelled"),
    }
)
"""The legal (from, to) status moves (issue_transitions); the database rejects every other one."""

BLOCKED_REASONS: tuple[str, ...] = (
    "agent",
    "budget",
    "max_attempts",
    "review_rounds",
    "circuit_breaker",
    "waiting",
    "verify",
    "human",
    "provider_auth",
    "project_config",
    "project_env",
    "no_progress",
)
"""Why an issue is blocked (issues.blocked_reason): decides who unblocks it and how reports group it."""

# --- tiers and agents -----------------------------------------------------------------

Tier = Literal["reasoning", "execution", "utility"]
"""A model tier: what a role or module asks for; the models file maps each to deployments."""

TIERS: tuple[Tier, ...] = get_args(Tier)
"""Every tier, in the order of the Literal (strongest first); agents.tier is checked against it."""

AGENT_STATUSES: tuple[str, ...] = ("active", "paused")
"""agents.status: only active agents beat and are woken."""

RESEARCH_ROLE = "researcher"
"""The slug of the role research questions go to first (the ask_research tool files them to it)."""

PERSON_ACTORS = ("human:", "telegram:")
"""Actor prefixes of people: at the CLI (``human:<name>``) and deciding from Telegram (``telegram:<user id>``)."""


def is_person(actor: object) -> bool:
    return isinstance(actor, str) and actor.startswith(PERSON_ACTORS)


SPLIT_PLAYBOOK = "split"
"""issues.playbook on a parent its manager split into sub-issues while escalating (no playbook file has
this name): the parent waits on its parts and is then stitched like any decomposed issue."""

# --- approvals, comments, model calls --------------------------------------------------

APPROVAL_KINDS: tuple[str, ...] = ("work", "budget", "escalation")
"""What a human is asked to approve (approvals.kind): at most one pending approval of each per issue."""

APPROVAL_STATUSES: tuple[str, ...] = ("pending", "approved", "rejected", "revised", "resolved", "expired")
"""An approval's life (approvals.status): pending until decided, then one of the others."""

COMMENT_KINDS: tuple[str, ...] = ("note", "review", "guidance", "revision", "research", "failure", "system")
"""comments.kind: what a comment is for, so prompts and reports can pick the ones they need."""

LLM_CALL_OUTCOMES: tuple[str, ...] = ("ok", "fallback", "error", "budget_refused", "abandoned", "correction")
"""llm_calls.outcome: how a model call attempt ended; abandoned and correction rows settle reservations."""

# --- scheduling ------------------------------------------------------------------------

SWEEP_JOB = "_sweep"
"""The sweeper's APScheduler job id, and the wake target the SQL (hq_wake) names for parents waiting
on sub-issues: a wake-up for it runs the sweeper now. Starts with '_' so no roster slug can equal it."""


# --- workflows ------------------------------------------------------------------------

WORKFLOW_NAMES: tuple[str, ...] = ("plan", "escalate", "assign", "review_gate", "execute", "deploy_verify")
"""Every heartbeat workflow, in pipeline order: the names an AGENTS.md may list. workflows/registry.py
registers one module for each and refuses to load when the two differ."""
