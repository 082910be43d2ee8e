-- Claiming work. Every claim is one statement under READ COMMITTED:
--   * the candidate is picked in a MATERIALIZED CTE with FOR UPDATE SKIP LOCKED,
--     so the planner cannot inline it and update more rows than the LIMIT, and
--     concurrent claimers skip each other's rows instead of waiting;
--   * the UPDATE sets the lease (lease_owner = the claim's run id,
--     lease_until = now() + ttl) and RETURNING hands the row back.
-- Each candidate predicate and ORDER BY matches a partial index exactly
-- (db/sql/schema.sql, "claim indexes"); tests check the plans with EXPLAIN.
-- Finishing is a compare-and-set on lease_owner (db/sql/queries/moves.sql).
--
-- A claim is sent alone, in autocommit: one round trip. The `actor` CTE sets
-- hq.actor / hq.workflow / hq.run_id for that statement's transaction, so the
-- audit trigger records who claimed; it is joined into the UPDATE, so it runs
-- before any row changes.

-- name: claim_todo
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'todo' AND assignee_id = :agent_id AND unmet_deps = 0
     ORDER BY priority, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET status = 'in_progress', lease_owner = :run_id,
       lease_until = now() + make_interval(secs => :ttl), attempts = i.attempts + 1
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: claim_stitch
-- Managers execute only the final assembly of issues they decomposed.
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'todo' AND assignee_id = :agent_id AND unmet_deps = 0 AND playbook IS NOT NULL
     ORDER BY priority, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET status = 'in_progress', lease_owner = :run_id,
       lease_until = now() + make_interval(secs => :ttl), attempts = i.attempts + 1
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: reclaim_expired_work
-- The agent's own in_progress issue whose worker died; past max_attempts the sweeper blocks it instead.
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'in_progress' AND assignee_id = :agent_id AND lease_until < now()
       AND attempts < max_attempts
     ORDER BY lease_until, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl), attempts = i.attempts + 1
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: claim_review
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'in_review' AND reviewer_id = :agent_id
       AND (lease_until IS NULL OR lease_until < now())
     ORDER BY priority, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl)
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: claim_deploy
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'approved'
     ORDER BY priority, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET status = 'deploying', lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl)
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: reclaim_expired_deploy
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'deploying' AND lease_until < now()
     ORDER BY lease_until, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl)
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: claim_escalation
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'blocked' AND escalated_to_id = :agent_id
       AND (lease_until IS NULL OR lease_until < now())
     ORDER BY priority, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl)
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: claim_routing
-- A manager's own unstarted issues (not the parents it assembles), to route to a report.
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status IN ('backlog', 'todo') AND assignee_id = :agent_id AND playbook IS NULL
       AND (lease_until IS NULL OR lease_until < now())
     ORDER BY priority, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl)
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: claim_unowned
-- Nobody owns it yet: the root of the chain of command routes it.
WITH actor AS MATERIALIZED (
    SELECT hq_act_as(:actor, :workflow, :run_text)
), candidate AS MATERIALIZED (
    SELECT id FROM issues
     WHERE status = 'backlog' AND assignee_id IS NULL
       AND (lease_until IS NULL OR lease_until < now())
     ORDER BY priority, id
     LIMIT 1
     FOR UPDATE SKIP LOCKED
)
UPDATE issues i
   SET lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl)
  FROM candidate, actor
 WHERE i.id = candidate.id
RETURNING i.*;

-- name: release
-- Give a claimed issue back without finishing it (a failure, shutdown, timeout).
-- Work in progress returns to todo, a deploy to approved. Whether the failure counts as an
-- attempt is :counts; :counted says whether the claim already counted one (claim_todo,
-- claim_stitch and reclaim_expired_work do), so a refund takes it back and a counted
-- failure of any other claim adds it.
UPDATE issues
   SET status = CASE WHEN status IN ('in_progress') THEN 'todo'
                     WHEN status = 'deploying' THEN 'approved'
                     ELSE status END,
       lease_owner = NULL, lease_until = NULL,
       attempts = CASE WHEN :counted AND NOT :counts AND attempts > 0 THEN attempts - 1
                       WHEN :counts AND NOT :counted THEN attempts + 1
                       ELSE attempts END
 WHERE id = :issue_id AND lease_owner = :run_id AND status = :from_status
RETURNING *;

-- name: claim_agent
-- The heartbeat lease: one beat per agent at a time, across every `hq run` process.
UPDATE agents
   SET lease_owner = :run_id, lease_until = now() + make_interval(secs => :ttl), last_beat_at = now()
 WHERE slug = :slug AND status = 'active' AND (lease_until IS NULL OR lease_until < now())
RETURNING id;

-- name: release_agent
UPDATE agents SET lease_owner = NULL, lease_until = NULL WHERE id = :agent_id AND lease_owner = :run_id;

-- name: expired_work
-- For the sweeper: work whose worker stopped renewing (crashed, killed, partitioned).
SELECT * FROM issues
 WHERE lease_until < now() AND status = 'in_progress'
 ORDER BY lease_until
 LIMIT :limit
 FOR UPDATE SKIP LOCKED;

-- name: waiting_parents_ready
-- Parents blocked on their sub-issues, all of which have finished.
SELECT id FROM issues
 WHERE status = 'blocked' AND blocked_reason = 'waiting' AND unmet_deps = 0
 ORDER BY id
 LIMIT :limit
 FOR UPDATE SKIP LOCKED;

-- name: due_approvals
-- Pending approvals whose deadline has passed: the deadline policy applies.
SELECT * FROM approvals
 WHERE status = 'pending' AND deadline <= now()
 ORDER BY deadline
 LIMIT :limit
 FOR UPDATE SKIP LOCKED;

-- name: approvals_to_remind
-- Pending approvals past half (reminder 1) or 90 % (reminder 2) of the time they were given, counted
-- from when they were issued (opened, or re-issued by a passed deadline), not yet reminded of that
-- point. An approval first seen past 90 % gets the second reminder only.
SELECT a.*, CASE WHEN now() >= a.issued + (a.deadline - a.issued) * 0.9 THEN 2 ELSE 1 END AS reminder
  FROM (SELECT *, coalesce(reminded_at, created_at) AS issued FROM approvals
         WHERE status = 'pending' AND deadline > now()) a
 WHERE now() >= a.issued + (a.deadline - a.issued) * 0.5
   AND a.reminders_sent < CASE WHEN now() >= a.issued + (a.deadline - a.issued) * 0.9 THEN 2 ELSE 1 END
 ORDER BY a.deadline
 LIMIT :limit;

-- name: recent_touches
-- The circuit breaker: how often this agent's beats touched the issue in the last hour without moving it.
SELECT count(*) FROM heartbeat_runs
 WHERE agent_id = :agent_id AND started_at > now() - interval '1 hour'
   AND started_at >= :since AND :issue_id = ANY (issues_touched);

-- name: failing_agents
-- Agents whose last :failures heartbeats all ended in error.
SELECT a.slug, r.failures, r.first_run_id, r.last_error
  FROM agents a
  CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE outcome = 'error') AS failures,
               (array_agg(run_id ORDER BY started_at))[1]::text AS first_run_id,
               (array_agg(error ORDER BY started_at DESC))[1] AS last_error,
               count(*) AS beats
          FROM (SELECT * FROM heartbeat_runs h WHERE h.agent_id = a.id AND h.finished_at IS NOT NULL
                 ORDER BY h.started_at DESC LIMIT :failures) recent
  ) r
 WHERE a.status = 'active' AND r.beats = :failures AND r.failures = :failures;

-- name: close_lost_beats
-- For the sweeper: beats that never recorded their end (the process was killed, or the database was gone
-- when it finished) and whose agent lease has passed to another beat, or expired :grace seconds ago (a
-- live beat stuck in one long model call may renew late; a dead one never will). Closed as 'lost'; the
-- expired lease itself needs nothing, since claim_agent takes an expired lease.
WITH lost AS MATERIALIZED (
    SELECT h.id FROM heartbeat_runs h JOIN agents a ON a.id = h.agent_id
     WHERE h.finished_at IS NULL
       AND (a.lease_owner IS DISTINCT FROM h.run_id OR a.lease_until < now() - make_interval(secs => :grace))
     ORDER BY h.id
     LIMIT :limit
     FOR UPDATE OF h SKIP LOCKED
)
UPDATE heartbeat_runs h
   SET finished_at = clock_timestamp(), outcome = 'lost',
       error = 'the beat stopped before recording its end (process killed, or the database was unavailable)'
  FROM lost
 WHERE h.id = lost.id
RETURNING h.run_id;

-- name: renew_lease
-- The lease keeper of a working run (workflows/lib/leases.py): a compare-and-set on the lease the run holds.
-- No row back: the lease is gone (reclaimed after it expired, or the issue moved on), and the run must stop.
-- ``doing`` is what the run does now; ``doing_since`` moves when that changes, and at the run's first renewal
-- (``fresh``). Neither the status nor a hand-off column changes, so no trigger fires.
UPDATE issues
   SET lease_until = now() + make_interval(secs => :ttl),
       lease_worker = :worker,
       doing_since = CASE WHEN :fresh OR doing IS DISTINCT FROM :doing THEN now() ELSE doing_since END,
       doing = :doing
 WHERE id = :issue_id AND lease_owner = :run_id
RETURNING id;

-- name: renew_agent
-- Before each claim a beat extends its agent lease; if another process has it, the beat stops.
UPDATE agents SET lease_until = now() + make_interval(secs => :ttl)
 WHERE id = :agent_id AND lease_owner = :run_id
RETURNING id;

-- name: claim_notifications
-- The notify job's batch: due outbox rows (pending, or `sending` rows whose sender died), oldest first, marked
-- in flight until :inflight_seconds from now. SKIP LOCKED: two senders never take one row; the MATERIALIZED
-- CTE keeps the planner from updating more than the LIMIT. notifications_pending_idx matches the predicate.
WITH due AS MATERIALIZED (
    SELECT id
      FROM notifications
     WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
     ORDER BY id
     LIMIT :limit
       FOR UPDATE SKIP LOCKED
)
UPDATE notifications n
   SET status = 'sending',
       attempts = n.attempts + 1,
       next_attempt_at = now() + make_interval(secs => :inflight_seconds)
  FROM due
 WHERE n.id = due.id
RETURNING n.id, n.event, n.payload, n.attempts;
