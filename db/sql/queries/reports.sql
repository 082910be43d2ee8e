-- The report views, found by name, with the description each carries as a comment.

-- name: list_reports
SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS description
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'v' AND n.nspname = current_schema() AND c.relname LIKE 'report\_%'
 ORDER BY c.relname;

-- name: digest_figures
-- The daily digest's numbers for one UTC day, from the summaries (cheap at any size).
SELECT coalesce((SELECT created FROM issue_flow_daily WHERE day = :day), 0) AS created,
       coalesce((SELECT done FROM issue_flow_daily WHERE day = :day), 0) AS done,
       (SELECT coalesce(sum(cost_usd), 0) FROM usage_daily WHERE day = :day) AS cost_usd,
       (SELECT count(*) FROM issues WHERE status = 'blocked') AS blocked_now,
       (SELECT count(*) FROM approvals WHERE status = 'pending') AS approvals_pending,
       (SELECT count(*) FROM approvals WHERE status = 'pending' AND deadline < now()) AS approvals_overdue;
