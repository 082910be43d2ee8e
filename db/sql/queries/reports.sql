-- The report views, found by name, with the description each carries as a comment.

-- name: list_reports
SELECT c.relname AS name, obj_description(c.oid, 'pg_class') AS description
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'v' AND n.nspname = current_schema() AND c.relname LIKE 'report\_%'
 ORDER BY c.relname;
