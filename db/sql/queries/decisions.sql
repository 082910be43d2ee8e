-- Human decisions from the CLI. Each runs inside one transaction that first
-- locks the issue (issue_for_update), checks its status, then moves it with a
-- guarded UPDATE; the status trigger records the event and wakes the next actor.

-- name: issue_for_update
-- FOR NO KEY UPDATE: rows that reference the issue (events, comments) can still be inserted.
SELECT id, status, blocked_reason, budget_usd FROM issues WHERE id = :issue_id FOR NO KEY UPDATE;

-- name: approve
UPDATE issues SET status = 'approved' WHERE id = :issue_id AND status = 'pending_approval' RETURNING id;

-- name: reject
UPDATE issues SET status = 'rejected' WHERE id = :issue_id AND status = 'pending_approval' RETURNING id;

-- name: revise
UPDATE issues SET status = 'todo', lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = 'pending_approval'
RETURNING id;

-- name: unblock
-- A fresh start: attempt and review counters reset, optionally a new owner. Work nobody owns
-- goes back to the backlog, where the root of the chain of command routes it (todo needs an owner).
UPDATE issues
   SET status = CASE WHEN coalesce(CAST(:assignee_id AS integer), assignee_id) IS NULL THEN 'backlog'
                     ELSE 'todo' END,
       attempts = 0, review_rounds = 0, lease_owner = NULL, lease_until = NULL,
       assignee_id = coalesce(CAST(:assignee_id AS integer), assignee_id)
 WHERE id = :issue_id AND status = 'blocked'
RETURNING id, status;

-- name: cancel
-- Clearing the lease makes a worker that is mid-flight lose its compare-and-set.
UPDATE issues SET status = 'cancelled', lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = :from_status
RETURNING id;

-- name: raise_budget
-- An issue blocked on money goes back to work; anything else keeps its status.
UPDATE issues
   SET budget_usd = budget_usd + :amount,
       status = CASE WHEN status = 'blocked' AND blocked_reason = 'budget' THEN 'todo' ELSE status END,
       attempts = CASE WHEN status = 'blocked' AND blocked_reason = 'budget' THEN 0 ELSE attempts END
 WHERE id = :issue_id
RETURNING status, budget_usd;

-- name: close_approvals
UPDATE approvals
   SET status = :status, decided_by = :actor, decided_at = now(), decision_note = :note
 WHERE issue_id = :issue_id AND kind = ANY (:kinds) AND status = 'pending'
RETURNING id;

-- name: open_approval
-- At most one pending approval per issue and kind: a second request returns nothing.
INSERT INTO approvals (issue_id, kind, requested_by, reason, deadline, amount_usd)
VALUES (:issue_id, :kind, :requested_by, :reason, :deadline, :amount_usd)
ON CONFLICT (issue_id, kind) WHERE status = 'pending' DO NOTHING
RETURNING *;

-- name: approval
SELECT * FROM approvals WHERE id = :id;

-- name: approval_for_update
-- Taken after the issue's lock, in the order every decision locks them.
SELECT * FROM approvals WHERE id = :id FOR UPDATE;

-- name: pending_approval
SELECT * FROM approvals WHERE issue_id = :issue_id AND kind = :kind AND status = 'pending';

-- name: expire_approval
UPDATE approvals
   SET status = 'expired', decided_by = :actor, decided_at = now(), decision_note = :note
 WHERE id = :id AND status = 'pending'
RETURNING *;

-- name: remind_approval
-- A passed deadline re-issues the approval: a new version, a new deadline, its reminders to send again.
UPDATE approvals SET escalations = escalations + 1, reminded_at = now(), deadline = :deadline, reminders_sent = 0
 WHERE id = :id AND status = 'pending'
RETURNING *;

-- name: mark_reminded
-- Compare-and-set: of two sweepers, one enqueues the reminder.
UPDATE approvals SET reminders_sent = :reminder
 WHERE id = :id AND status = 'pending' AND escalations = :version AND reminders_sent < :reminder
RETURNING *;
