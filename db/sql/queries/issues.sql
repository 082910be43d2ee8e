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

-- Everything below is the issue store's (db/store/): the only statements that write issues.

-- name: issue
SELECT * FROM issues WHERE id = :issue_id;

-- name: issue_for_update
-- FOR NO KEY UPDATE: we change columns, never the key, so rows referencing the issue
-- (events, comments, cost rows) can still be inserted meanwhile.
SELECT * FROM issues WHERE id = :issue_id FOR NO KEY UPDATE;

-- name: children
SELECT * FROM issues WHERE parent_id = :issue_id ORDER BY id;

-- name: dependencies
SELECT i.* FROM issues i JOIN issue_dependencies d ON d.depends_on_id = i.id
 WHERE d.issue_id = :issue_id
 ORDER BY i.id;

-- name: research_question
-- The question a research issue was opened with (agents/tools/issues.py ask_research).
SELECT body FROM comments WHERE issue_id = :issue_id AND kind = 'research' ORDER BY id LIMIT 1;

-- name: issue_by_key
SELECT * FROM issues WHERE idempotency_key = :key;

-- name: existing_ids
SELECT id FROM issues WHERE id = ANY (:ids);

-- name: create_issue
-- ON CONFLICT: a replay with the same idempotency key creates nothing and returns nothing.
-- A sub-issue works on its parent's project unless it names one; a research question is a document, never code.
INSERT INTO issues (title, body, priority, status, assignee_id, budget_usd, needs_approval, max_attempts, labels,
                    parent_id, goal_id, playbook, module_key, created_by, idempotency_key, project_id)
VALUES (:title, :body, :priority, :status, :assignee_id, :budget_usd, :needs_approval, :max_attempts,
        CAST(:labels AS text[]), :parent_id, :goal_id, :playbook, :module_key, :created_by, :idempotency_key,
        coalesce(CAST(:project_id AS integer),
                 CASE WHEN NOT 'research' = ANY (CAST(:labels AS text[]))
                      THEN (SELECT p.project_id FROM issues p WHERE p.id = :parent_id) END))
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING *;

-- name: add_dependencies
-- The dependency triggers keep unmet_deps exact (db/sql/state_machine.sql).
INSERT INTO issue_dependencies (issue_id, depends_on_id)
SELECT :issue_id, d FROM unnest(CAST(:depends_on AS bigint[])) AS d ORDER BY d
ON CONFLICT DO NOTHING;

-- name: add_comment
-- With an idempotency key a replay writes nothing and returns nothing.
INSERT INTO comments (issue_id, body, author, kind, run_id, idempotency_key)
VALUES (:issue_id, :body, :author, :kind, :run_id, :idempotency_key)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id;

-- name: comment_exists
-- A marker a workflow left once (by its idempotency key), such as a request's playbook classification.
SELECT EXISTS (SELECT 1 FROM comments WHERE idempotency_key = :key);

-- name: reprioritise
-- The planner re-orders open issues of the goals it plans; anything else it names is left alone.
UPDATE issues SET priority = :priority
 WHERE id = :issue_id AND goal_id = ANY (:goal_ids) AND status <> ALL (:terminal)
RETURNING id;

-- name: reassign_owned
-- An owner hands unstarted work it is not working on to a report: no lease involved, so the
-- compare-and-set is on the owner and the status it was seen in.
UPDATE issues SET assignee_id = :assignee_id, status = :to_status
 WHERE id = :issue_id AND assignee_id = :owner_id AND status = :from_status
RETURNING *;

-- name: cost_so_far
SELECT coalesce(sum(cost_usd), 0) FROM llm_calls WHERE issue_id = :issue_id;
