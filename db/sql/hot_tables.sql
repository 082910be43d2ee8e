-- Storage settings for the tables every heartbeat touches, and session limits.
--
-- fillfactor: updates that change no indexed column can be HOT (heap-only
-- tuple) updates, which need free space on the same page. Budget columns on
-- issues, leases on agents and the budget accounts are rewritten constantly;
-- leaving room keeps those updates from touching any index.
--
-- autovacuum: the default triggers at 20% of a table's rows. A 1M-row issues
-- table would accumulate 200k dead rows first, and tiny, hot tables (agents,
-- budget_accounts) would bloat to many times their size between runs. These
-- tables vacuum on a fixed number of changes instead; append-only tables are
-- vacuumed on inserts so index-only scans (reports, claims) stay index-only.

ALTER TABLE issues SET (fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE agents SET (fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200,
    autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE budget_accounts SET (fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 200);
ALTER TABLE budget_reservations SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 500);
ALTER TABLE notifications SET (fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE approvals SET (fillfactor = 80);
ALTER TABLE issue_events SET (autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE llm_calls SET (autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.05);
ALTER TABLE tool_calls SET (autovacuum_vacuum_insert_scale_factor = 0.1);
ALTER TABLE heartbeat_runs SET (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05);

-- (hq's own sessions carry their idle-in-transaction and statement limits: db/engine.py
-- session_settings. The database-wide default that migration 0003 once set reached every
-- other client of the database too; migration 0007 removes it.)

-- Reports run by people and BI tools: bounded, so one bad query cannot hold the database.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter') THEN
        ALTER ROLE hq_reporter SET statement_timeout = '60s';
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'cannot set a statement_timeout for hq_reporter';
END
$$;
