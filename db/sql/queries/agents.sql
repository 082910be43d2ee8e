-- Reads of the chain of command, for workflow code (db/store/agents.py).
-- Agents are written by the roster sync (agents/sync.py) and the heartbeat lease (claims.sql) only.

-- name: all_agents
SELECT * FROM agents ORDER BY id;

-- name: agent_by_id
SELECT * FROM agents WHERE id = :agent_id;

-- name: agent_by_slug
SELECT * FROM agents WHERE slug = :slug;

-- name: active_reports
SELECT * FROM agents WHERE manager_id = :agent_id AND status = 'active' ORDER BY slug;

-- name: active_chain
-- The agent's managers that are active, nearest first: paused ones are skipped, not stops.
-- The depth bound ends the walk should a cycle ever be written (the roster refuses them).
WITH RECURSIVE up AS (
    SELECT a.manager_id AS id, 1 AS depth FROM agents a WHERE a.id = :agent_id
    UNION
    SELECT m.manager_id, up.depth + 1 FROM up JOIN agents m ON m.id = up.id WHERE up.depth < 64
)
SELECT a.* FROM up JOIN agents a ON a.id = up.id WHERE a.status = 'active' ORDER BY up.depth;
