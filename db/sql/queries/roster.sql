-- Re-targeting open work after the chain of command changed (db/store/roster.py, called by
-- agents/sync.py when the roster is synced or an agent is paused).
--
-- The reads are plain: no row is locked, so a sync never stalls a claim, and each filters in
-- SQL down to the few issues that may need a change, however many issues are open. Each
-- write is a compare-and-set on the values the decision was made from: zero rows back means
-- the issue moved on meanwhile (routed, claimed, finished), and it is left as it now is.
-- The status trigger (db/sql/state_machine.sql) checks legality and records the event.

-- name: unstarted_work_of_removed
-- Backlog and todo work still assigned to a role that was removed from the roster.
SELECT i.*
  FROM issues i
  JOIN agents owner ON owner.id = i.assignee_id
 WHERE owner.paused_reason = 'removed' AND i.status IN ('backlog', 'todo')
 ORDER BY i.id;

-- name: reviews_to_check
-- Open issues whose reviewer may not be the owner's current, active reviewer: the owner's
-- reviewer is someone else, or is paused (then the nearest active manager stands in).
SELECT i.*
  FROM issues i
  JOIN agents owner ON owner.id = i.assignee_id
  JOIN agents wanted ON wanted.id = owner.reviewer_id
 WHERE i.reviewer_id IS NOT NULL AND i.status = ANY (:open)
   AND (wanted.id <> i.reviewer_id OR wanted.status <> 'active')
 ORDER BY i.id;

-- name: escalations_off_chain
-- Blocked issues escalated to someone who is not an active manager in the owner's chain of
-- command. The chain is walked once for every agent (a few dozen rows), not once per issue;
-- the depth bound ends the walk should a cycle ever be written (the roster refuses them).
WITH RECURSIVE up AS (
    SELECT a.id AS agent_id, a.manager_id AS id, 1 AS depth FROM agents a WHERE a.manager_id IS NOT NULL
    UNION
    SELECT up.agent_id, m.manager_id, up.depth + 1
      FROM up JOIN agents m ON m.id = up.id
     WHERE m.manager_id IS NOT NULL AND up.depth < 64
)
SELECT i.*
  FROM issues i
 WHERE i.status = 'blocked' AND i.escalated_to_id IS NOT NULL AND i.assignee_id IS NOT NULL
   AND NOT EXISTS (
       SELECT 1 FROM up JOIN agents m ON m.id = up.id
        WHERE up.agent_id = i.assignee_id AND up.id = i.escalated_to_id AND m.status = 'active'
   )
 ORDER BY i.id;

-- name: retarget_assignee
-- Unstarted work of a removed role goes to its nearest active manager; todo becomes backlog
-- when the new owner does not execute, so that it is routed again.
-- A run of the removed role that still holds it has lost it: the lease goes too.
UPDATE issues SET assignee_id = :to_id, status = :to_status, lease_owner = NULL, lease_until = NULL
 WHERE id = :issue_id AND assignee_id = :from_id AND status = :from_status
RETURNING *;

-- name: retarget_reviewer
-- The review waits on the owner's current reviewer; checked against the owner the choice was made for.
UPDATE issues SET reviewer_id = :to_id
 WHERE id = :issue_id AND reviewer_id = :from_id AND assignee_id = :owner_id AND status = ANY (:open)
RETURNING *;

-- name: retarget_escalation
-- The escalation moves to the nearest manager of the new chain it has not already climbed through.
UPDATE issues SET escalated_to_id = :to_id
 WHERE id = :issue_id AND status = 'blocked' AND escalated_to_id = :from_id AND assignee_id = :owner_id
   AND escalation_chain = CAST(:climbed AS text[])
RETURNING *;

-- name: lock_roster
-- One roster change at a time across processes (two `hq run` starting after a reorganisation):
-- held to the end of the transaction, on no row, so claims and heartbeat leases never wait on it.
-- The key spells 'hqrs' (the migration lock, db/migrate.py, is 'hqmi').
SELECT pg_advisory_xact_lock(1752265331);
