-- Moving an issue a run holds. Every statement is a compare-and-set on the lease
-- (lease_owner = the claim's run id) and on the status the claim saw: zero rows
-- means the run lost the issue (its lease expired and another run took it, or a
-- human cancelled it) and must discard its result. Each clears the lease, except
-- mark_ready, which keeps it for the move that follows in the same transaction.
-- The status trigger (db/sql/state_machine.sql) checks legality, records the
-- event and wakes whoever acts next.

-- name: submit
-- Finished work goes to review; attempts count consecutive failures only, so a finished run resets them.
UPDATE issues SET status = 'in_review', reviewer_id = :reviewer_id, attempts = 0,
       lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = 'in_progress' AND lease_owner = :run_id
RETURNING *;

-- name: finish_deploy
-- Deployed and verified: done, with the merge commit a project issue became.
UPDATE issues SET status = 'done', lease_owner = NULL, lease_until = NULL,
       merged_sha = coalesce(CAST(:merged_sha AS text), merged_sha)
 WHERE id = :issue_id AND status = 'deploying' AND lease_owner = :run_id
RETURNING *;

-- name: return_to_todo
-- Back to its owner's queue: waiting on research, or a failed deploy to rework.
UPDATE issues SET status = 'todo', lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = :from_status AND lease_owner = :run_id
RETURNING *;

-- name: record_review
-- A verdict: pending_approval or approved when it passed, todo for rework. Attempts count one
-- stage's consecutive failures, so the next stage starts with all of them. :reviewed_sha is the
-- branch head a passing review saw (NULL otherwise): deploy ships exactly that commit.
UPDATE issues SET status = :to_status, quality_score = :score, review_rounds = :rounds, attempts = 0,
       reviewed_sha = CAST(:reviewed_sha AS text), lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = 'in_review' AND lease_owner = :run_id
RETURNING *;

-- name: route
-- A manager hands the issue to a report: `todo` for one who does the work, unchanged for one who routes.
-- The new owner starts with every attempt (routing's own failures were routing's).
UPDATE issues SET assignee_id = :assignee_id, status = :to_status, attempts = 0,
       lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = :from_status AND lease_owner = :run_id
RETURNING *;

-- name: resume
-- A manager unblocks an escalated issue (optionally for another report): a fresh start.
UPDATE issues SET status = 'todo', attempts = 0, review_rounds = 0,
       assignee_id = coalesce(CAST(:assignee_id AS integer), assignee_id),
       lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = 'blocked' AND lease_owner = :run_id
RETURNING *;

-- name: mark_ready
-- backlog -> todo, keeping the lease: the state machine reaches `blocked` from todo only.
UPDATE issues SET status = 'todo'
 WHERE id = :issue_id AND status = 'backlog' AND lease_owner = :run_id
RETURNING *;

-- name: wait_on_parts
-- Decomposed or split: the parent waits on its sub-issues and comes back to :assignee_id to assemble.
UPDATE issues SET status = 'blocked', blocked_reason = 'waiting', escalated_to_id = NULL,
       assignee_id = :assignee_id, playbook = :playbook, attempts = 0, review_rounds = 0,
       lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = :from_status AND lease_owner = :run_id
RETURNING *;

-- name: block
-- Held by :run_id, or (for the sweeper, which holds no lease: :run_id NULL) abandoned by a dead worker.
-- NULL escalation columns keep what the row has.
UPDATE issues SET status = 'blocked', blocked_reason = :reason, escalated_to_id = :escalated_to_id,
       escalation_chain = coalesce(CAST(:escalation_chain AS text[]), escalation_chain),
       quality_score = coalesce(CAST(:quality_score AS numeric), quality_score),
       review_rounds = coalesce(CAST(:review_rounds AS integer), review_rounds),
       lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = :from_status
   AND (lease_owner = CAST(:run_id AS uuid) OR (CAST(:run_id AS uuid) IS NULL AND lease_until < now()))
RETURNING *;

-- name: escalate_further
-- Still blocked, one step up the chain of command (or to a human: escalated_to_id NULL).
UPDATE issues SET escalated_to_id = :escalated_to_id, escalation_chain = CAST(:escalation_chain AS text[]),
       blocked_reason = coalesce(CAST(:blocked_reason AS text), blocked_reason),
       lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = 'blocked' AND lease_owner = :run_id
RETURNING *;

-- name: requeue_expired
-- For the sweeper: work whose worker stopped renewing goes back to its owner's queue.
UPDATE issues SET status = 'todo', lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND status = 'in_progress' AND lease_until < now()
RETURNING *;

-- name: parent_ready
-- For the sweeper: every sub-issue has finished, so the parent goes back to its owner to assemble.
UPDATE issues SET status = 'todo', attempts = 0
 WHERE id = :issue_id AND status = 'blocked' AND blocked_reason = 'waiting' AND unmet_deps = 0
RETURNING *;
