-- The issue list behind `hq issues`.

-- name: list_issues
SELECT i.id, i.status, i.priority, i.title, a.slug AS assignee, i.budget_usd, i.spent_usd, i.blocked_reason,
       i.updated_at, w.doing, w.doing_since, w.worker
  FROM issues i
  LEFT JOIN LATERAL (SELECT i.doing, i.doing_since, i.lease_worker AS worker
                      WHERE i.lease_owner IS NOT NULL AND i.lease_until > now() AND i.doing IS NOT NULL) w ON true
  LEFT JOIN agents a ON a.id = i.assignee_id
 WHERE (CAST(:status AS text) IS NULL OR i.status = :status)
   AND (CAST(:assignee AS text) IS NULL OR a.slug = :assignee)
 ORDER BY i.id DESC
 LIMIT :limit;

-- name: working
-- What the run holding the issue is doing now (workflows/lib/leases.py writes it as it renews the lease):
-- only while that lease is live; what a finished or dead run left on the row means nothing.
SELECT doing, doing_since AS since, lease_worker AS worker, lease_until
  FROM issues
 WHERE id = :issue_id AND lease_owner IS NOT NULL AND lease_until > now() AND doing IS NOT NULL;
