-- The issue list behind `hq issues`.

-- name: list_issues
SELECT i.id, i.status, i.priority, i.title, a.slug AS assignee, i.budget_usd, i.spent_usd, i.blocked_reason,
       i.updated_at
  FROM issues i
  LEFT JOIN agents a ON a.id = i.assignee_id
 WHERE (CAST(:status AS text) IS NULL OR i.status = :status)
   AND (CAST(:assignee AS text) IS NULL OR a.slug = :assignee)
 ORDER BY i.id DESC
 LIMIT :limit;
