-- Projects (git repositories the company works on) and the check runs HQ records against their commits.

-- name: add_project
-- The partial unique index on live names turns a duplicate into no row.
INSERT INTO projects (name, repo, base_branch, created_by, keep_branches, team_id)
VALUES (:name, :repo, :base_branch, :created_by, :keep_branches, :team_id)
ON CONFLICT (name) WHERE removed_at IS NULL DO NOTHING
RETURNING *;

-- name: set_project_team
-- The manager whose reports take the project's issues from now on (NULL: the company's engineers).
UPDATE projects SET team_id = :team_id WHERE name = :name AND removed_at IS NULL
RETURNING *;

-- name: project_by_name
SELECT * FROM projects WHERE name = :name AND removed_at IS NULL;

-- name: project_by_name_shared
-- Held until the transaction ends, so the project cannot be removed under an issue being created on it.
SELECT * FROM projects WHERE name = :name AND removed_at IS NULL FOR SHARE;

-- name: project_by_id
SELECT * FROM projects WHERE id = :project_id;

-- name: all_projects
SELECT p.*,
       (SELECT count(*) FROM issues i JOIN issue_statuses s ON s.name = i.status
         WHERE i.project_id = p.id AND NOT s.is_terminal) AS open_issues
  FROM projects p
 WHERE p.removed_at IS NULL
 ORDER BY p.name;

-- name: finished_issues
-- Which of these issues of the project are done or cancelled: the upkeep deletes their branches (never another's).
SELECT i.id FROM issues i
 WHERE i.project_id = :project_id AND i.id = ANY(CAST(:ids AS bigint[])) AND i.status IN ('done', 'cancelled')
 ORDER BY i.id;

-- name: lock_project
SELECT * FROM projects WHERE name = :name AND removed_at IS NULL FOR UPDATE;

-- name: open_issue_ids
SELECT i.id FROM issues i JOIN issue_statuses s ON s.name = i.status
 WHERE i.project_id = :project_id AND NOT s.is_terminal
 ORDER BY i.id
 LIMIT 20;

-- name: remove_project
-- Closed issues keep pointing at it (their merged commits stay reportable); the name becomes free again.
UPDATE projects SET removed_at = now() WHERE id = :project_id AND removed_at IS NULL
RETURNING *;

-- name: record_check
INSERT INTO check_runs (issue_id, project_id, commit_sha, stage, command, exit_code, duration_ms, output_tail,
                        sandbox, run_id, agent_id, tree_sha, env_key)
VALUES (:issue_id, :project_id, :commit_sha, :stage, :command, :exit_code, :duration_ms, :output_tail,
        :sandbox, :run_id, :agent_id, :tree_sha, :env_key)
RETURNING *;

-- name: passed_on_tree
-- Evidence by tree: the newest passing run of one command on exactly these files (git's tree id) in exactly
-- this environment, from any run of the project (an engineer's own, a review's, a merge's). A gate reuses
-- it instead of running the command again; deploy and verify always run.
SELECT * FROM check_runs
 WHERE project_id = :project_id AND tree_sha = :tree_sha AND command = :command AND exit_code = 0
   AND env_key IS NOT DISTINCT FROM CAST(:env_key AS text) AND stage IN ('work', 'review', 'merge')
 ORDER BY id DESC
 LIMIT 1;

-- name: gated_red_on_tree
-- A gate that already failed on exactly these files in this environment: gating them again pays for the
-- same red evidence twice (the issue blocks no_progress instead).
SELECT * FROM check_runs
 WHERE project_id = :project_id AND tree_sha = :tree_sha AND exit_code <> 0
   AND env_key IS NOT DISTINCT FROM CAST(:env_key AS text) AND stage IN ('review', 'merge')
 ORDER BY id DESC
 LIMIT 1;

-- name: checks_at
-- The evidence for one exact commit, oldest first: nothing recorded for another commit counts.
SELECT * FROM check_runs WHERE issue_id = :issue_id AND commit_sha = :commit_sha ORDER BY id;

-- name: latest_checks
-- What people see: the checks of the most recent commit anything ran on.
SELECT c.* FROM check_runs c
 WHERE c.issue_id = :issue_id
   AND c.commit_sha = (SELECT l.commit_sha FROM check_runs l WHERE l.issue_id = :issue_id ORDER BY l.id DESC LIMIT 1)
 ORDER BY c.id;

-- name: open_issue_count
SELECT count(*) FROM issues i JOIN issue_statuses s ON s.name = i.status
 WHERE i.project_id = :project_id AND NOT s.is_terminal;

-- name: shipped_issues
-- What `hq project show` lists: the project's issues merged into its base branch, newest first.
SELECT i.id, i.title, i.merged_sha, i.done_at
  FROM issues i
 WHERE i.project_id = :project_id AND i.status = 'done' AND i.merged_sha IS NOT NULL
 ORDER BY i.done_at DESC NULLS LAST, i.id DESC
 LIMIT :limit;

-- name: latest_commit
-- The issue's branch head as execute last recorded it (artifact content: commit, branch, base, diff stat).
SELECT a.commit_sha, a.content, a.created_at
  FROM artifacts a
 WHERE a.issue_id = :issue_id AND a.content_type = 'text/x-git-commit'
 ORDER BY a.id DESC
 LIMIT 1;
