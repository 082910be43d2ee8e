-- Read queries about issues that are more than a simple SELECT.

-- name: issue_tree
-- An issue and all its sub-issues, depth first, with each node's own model cost.
WITH RECURSIVE tree AS (
    SELECT i.id, i.parent_id, i.title, i.status, 0 AS depth, ARRAY[i.id] AS path
      FROM issues i
     WHERE i.id = :root_id
    UNION ALL
    SELECT c.id, c.parent_id, c.title, c.status, t.depth + 1, t.path || c.id
      FROM issues c
      JOIN tree t ON c.parent_id = t.id
)
SELECT t.id, t.parent_id, t.title, t.status, t.depth,
       coalesce((SELECT sum(cost_usd) FROM llm_calls l WHERE l.issue_id = t.id), 0) AS cost_usd
  FROM tree t
 ORDER BY t.path;
