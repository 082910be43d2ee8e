"""sweep: the system's janitor, run on a timer by every `hq run` (safe to run in several at once).

1. budget reservations whose call never settled are charged in full (worst case);
2. work whose worker died (expired lease) goes back to `todo`, or — past
   max_attempts — is blocked and escalated;
3. approval deadlines apply their policy: remind, then escalate or expire;
4. parents whose sub-issues are all finished go back to their owner to assemble;
5. agents whose recent heartbeats all failed are reported;
6. beats that died before recording their end are closed as ``lost``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from config.log import get_logger
from config.settings import Settings
from db import outbox, store
from db.engine import transaction
from db.models import Issue
from db.sqlfiles import query
from workflows.lib.escalation import block_and_escalate

NAME = "sweep"
ACTOR = "system:sweeper"
BATCH = 200
FAILING_BEATS = 3
REMINDERS = {1: "half", 2: "ninety"}  # approvals_to_remind's numbering: half, then 90 %, of the time given

# What a passed deadline does, the first time and every time after. "escalate" re-notifies
# with a rising count: the approval is already with the humans, so louder is all that is left.
DEADLINE_POLICY = {"work": ("remind", "remind"), "budget": ("remind", "expire"), "escalation": ("remind", "escalate")}

log = get_logger(__name__)


@dataclass
class SweepReport:
    reservations_abandoned: int = 0
    leases_expired: list[int] = field(default_factory=list)
    exhausted: list[int] = field(default_factory=list)
    approvals: dict[str, int] = field(default_factory=dict)
    parents_ready: list[int] = field(default_factory=list)
    failing_agents: list[str] = field(default_factory=list)
    beats_lost: int = 0
    digest: str | None = None


def run(settings: Settings, engine: Engine) -> SweepReport:
    report = SweepReport()
    run_id = uuid.uuid4()
    with transaction(ACTOR, workflow=NAME, run_id=run_id, engine=engine) as session:
        report.reservations_abandoned = session.scalar(query("budget", "abandon_expired_reservations")) or 0
    _expired_work(settings, engine, run_id, report)
    _deadlines(settings, engine, run_id, report)
    _waiting_parents(engine, run_id, report)
    _failing_agents(engine, run_id, report)
    with transaction(ACTOR, workflow=NAME, run_id=run_id, engine=engine) as session:
        report.beats_lost = len(
            session.execute(
                query("claims", "close_lost_beats"), {"limit": BATCH, "grace": settings.agent_lease_ttl_seconds}
            ).all()
        )
    _daily_digest(engine, run_id, report)
    if any(vars(report).values()):
        log.info("sweep.done", workflow=NAME, **{k: v for k, v in vars(report).items() if v})
    return report


def _expired_work(settings: Settings, engine: Engine, run_id: uuid.UUID, report: SweepReport) -> None:
    with transaction(ACTOR, workflow=NAME, run_id=run_id, engine=engine) as session:
        for issue in store.expired_work(session, BATCH):
            if issue.attempts >= issue.max_attempts:
                block_and_escalate(
                    session,
                    issue,
                    held=None,
                    reason="max_attempts",
                    actor=ACTOR,
                    note=f"the worker stopped {issue.attempts} times; giving up",
                    deadline_hours=settings.approval_deadline_hours,
                )
                report.exhausted.append(issue.id)
            elif store.requeue_expired(session, issue.id) is not None:
                report.leases_expired.append(issue.id)


def _deadlines(settings: Settings, engine: Engine, run_id: uuid.UUID, report: SweepReport) -> None:
    """Remind at half and at 90 % of an approval's time (once each), then apply the policy once it passes."""
    period = dt.timedelta(hours=settings.approval_deadline_hours)
    now = dt.datetime.now(dt.UTC)
    with transaction(ACTOR, workflow=NAME, run_id=run_id, engine=engine) as session:
        for approval, reminder in store.approvals_to_remind(session, limit=BATCH):
            reminded = store.mark_reminded(session, approval, reminder)
            if reminded is not None:
                outbox.approval_deadline(
                    session, reminded, store.get_issue(session, reminded.issue_id), REMINDERS[reminder]
                )
                report.approvals["reminded"] = report.approvals.get("reminded", 0) + 1
        for approval in store.due_approvals(session, limit=BATCH):
            issue = store.get_issue(session, approval.issue_id)
            first, later = DEADLINE_POLICY[approval.kind]
            action = first if approval.reminded_at is None else later
            if action == "expire":
                changed = store.expire_approval(session, approval, actor=ACTOR, note="deadline passed twice")
                store.add_comment(
                    session, issue.id, f"The {approval.kind} approval expired unanswered.", author=ACTOR, kind="system"
                )
            else:
                changed = store.remind_approval(session, approval, next_deadline=now + period)
            assert changed is not None  # locked by due_approvals, so still pending
            outbox.approval_deadline(session, changed, issue, action if action != "remind" else "passed")
            report.approvals[action] = report.approvals.get(action, 0) + 1


def _waiting_parents(engine: Engine, run_id: uuid.UUID, report: SweepReport) -> None:
    with transaction(ACTOR, workflow=NAME, run_id=run_id, engine=engine) as session:
        for issue_id in store.waiting_parents_ready(session, BATCH):
            if store.parent_ready(session, issue_id) is not None:
                store.add_comment(
                    session,
                    issue_id,
                    "Every sub-issue has finished: back to its owner to assemble.",
                    author=ACTOR,
                    kind="system",
                )
                report.parents_ready.append(issue_id)


def _failing_agents(engine: Engine, run_id: uuid.UUID, report: SweepReport) -> None:
    with transaction(ACTOR, workflow=NAME, run_id=run_id, engine=engine) as session:
        for row in session.execute(query("claims", "failing_agents"), {"failures": FAILING_BEATS}):
            outbox.heartbeat_failing(session, row.slug, row.failures, row.first_run_id, row.last_error or "")
            report.failing_agents.append(row.slug)


def _daily_digest(engine: Engine, run_id: uuid.UUID, report: SweepReport) -> None:
    """Yesterday's digest, once, as soon as a sweep runs on a new UTC day (if the company existed then)."""
    today = dt.datetime.now(dt.UTC).date()
    with transaction(ACTOR, workflow=NAME, run_id=run_id, engine=engine) as session:
        first = session.scalar(select(func.min(Issue.created_at)))
        if first is None or first.date() >= today:
            return
        yesterday = today - dt.timedelta(days=1)
        if outbox.digest(session, yesterday):
            report.digest = yesterday.isoformat()
