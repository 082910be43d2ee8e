-- Frozen: db/sql/rollups.sql exactly as migration 0005 (and 0008) applied it at release (31e726c); later changes are new migrations.

-- Report summaries, maintained as the data changes, so every report reads a
-- few thousand summary rows instead of millions of facts.
--
--   usage_daily          model calls per UTC day, tier, provider and model, with a latency histogram
--   usage_agent_monthly  model calls per agent and month
--   issue_flow_daily     issues created and done per UTC day, with a cycle-time histogram
--   board_counts         issues per status and assignee, with the one waiting longest
--   issues.subtree_cost_usd  an issue's own cost plus all its sub-issues' (kept up the parent chain)
--   agents.heartbeats/claims/failed_beats/productive_beats  running totals per agent
--
-- Cost rows are summarised per statement (transition tables): one upsert per
-- summary row however many cost rows a statement writes. Issue summaries are
-- kept by row triggers that fire only when an issue is created or changes
-- status or assignee. hq_rebuild_rollups() recomputes everything from the
-- facts, for a migration over existing data or after a bulk load that bypassed
-- triggers (session_replication_role = replica).
--
-- Histograms are fixed buckets: bucket k counts values from bounds[k-1] up to
-- (not including) bounds[k]; the last one counts everything from the highest
-- bound up. A percentile reads as the upper bound of the bucket it falls in
-- ("p95 < 1000 ms"), like Prometheus histograms: cheap to keep, exact enough.

CREATE OR REPLACE FUNCTION hq_latency_bounds() RETURNS numeric[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000]::numeric[]  -- ms
$$;

CREATE OR REPLACE FUNCTION hq_cycle_bounds() RETURNS numeric[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 604800,
                 1209600]::numeric[]  -- seconds
$$;

-- Which bucket a value falls in, 1 to cardinality(bounds) + 1 (NULL for NULL).
CREATE OR REPLACE FUNCTION hq_bucket(value numeric, bounds numeric[]) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT width_bucket(value, bounds) + 1
$$;

-- A histogram of ``size`` buckets holding ``n`` in ``bucket`` (all zeros when bucket is NULL), for summing.
CREATE OR REPLACE FUNCTION hq_one_hot(bucket integer, size integer, n bigint DEFAULT 1) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_agg(CASE WHEN i = bucket THEN n ELSE 0 END::bigint ORDER BY i) FROM generate_series(1, size) i
$$;

CREATE OR REPLACE FUNCTION hq_add_buckets(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a
                ELSE (SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY n)
                        FROM unnest(a, b) WITH ORDINALITY AS t(x, y, n)) END
$$;

CREATE OR REPLACE AGGREGATE hq_sum_buckets(bigint[]) (SFUNC = hq_add_buckets, STYPE = bigint[]);

-- The upper bound of the bucket holding the ``fraction`` percentile (NULL: no data; the
-- highest bound when it falls in the last bucket).
CREATE OR REPLACE FUNCTION hq_bucket_percentile(buckets bigint[], bounds numeric[], fraction float8) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    WITH counts AS (
        SELECT n, sum(c) OVER (ORDER BY n) AS running, sum(c) OVER () AS total
          FROM unnest(buckets) WITH ORDINALITY AS t(c, n)
    )
    SELECT CASE WHEN min(n) IS NOT NULL THEN bounds[least(min(n), cardinality(bounds))] END
      FROM counts WHERE total > 0 AND running >= fraction * total
$$;

CREATE TABLE IF NOT EXISTS usage_daily (
    day             date NOT NULL,
    tier            text NOT NULL,
    provider        text NOT NULL DEFAULT '',
    model           text NOT NULL DEFAULT '',
    calls           bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    fallbacks       bigint NOT NULL DEFAULT 0,
    refused         bigint NOT NULL DEFAULT 0,
    abandoned       bigint NOT NULL DEFAULT 0,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    cost_usd        numeric(18, 8) NOT NULL DEFAULT 0,
    latency_buckets bigint[] NOT NULL,
    PRIMARY KEY (day, tier, provider, model)
);

CREATE TABLE IF NOT EXISTS usage_agent_monthly (
    month         date NOT NULL,
    agent_id      integer NOT NULL,
    calls         bigint NOT NULL DEFAULT 0,
    failed_calls  bigint NOT NULL DEFAULT 0,
    input_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost_usd      numeric(18, 8) NOT NULL DEFAULT 0,
    PRIMARY KEY (month, agent_id)
);

CREATE TABLE IF NOT EXISTS issue_flow_daily (
    day           date PRIMARY KEY,
    created       bigint NOT NULL DEFAULT 0,
    done          bigint NOT NULL DEFAULT 0,
    cycle_buckets bigint[] NOT NULL
);

CREATE TABLE IF NOT EXISTS board_counts (
    status          text NOT NULL,
    assignee_id     integer NOT NULL,   -- 0: unassigned
    issues          bigint NOT NULL DEFAULT 0,
    oldest_since    timestamptz,
    oldest_issue_id bigint,
    PRIMARY KEY (status, assignee_id)
);

ALTER TABLE issues ADD COLUMN IF NOT EXISTS subtree_cost_usd numeric(14, 6) NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS heartbeats bigint NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS claims bigint NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS failed_beats bigint NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS productive_beats bigint NOT NULL DEFAULT 0;

-- The board's groups, oldest first: finds the next oldest when the oldest leaves a group.
CREATE INDEX IF NOT EXISTS issues_board_idx ON issues (status, assignee_id, status_changed_at, id);
-- The report views that list single issues read them in their own order, so a page is a short index scan.
CREATE INDEX IF NOT EXISTS issues_costliest_idx ON issues (subtree_cost_usd DESC, id) WHERE subtree_cost_usd > 0;
CREATE INDEX IF NOT EXISTS issues_blocked_idx ON issues (status_changed_at, id) WHERE status = 'blocked';

-- --- cost rows -------------------------------------------------------------------------------

-- One trigger function for both statement triggers on llm_calls: the INSERT trigger names its
-- new rows "changed", the DELETE trigger its old rows; the sign says which way they count.
-- (Cost rows are append-only since migration 0005, which drops the DELETE trigger.) A
-- 'correction' row is money, not a call: it counts in cost only.
CREATE OR REPLACE FUNCTION hq_usage_rollup() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    rows_sign integer := CASE WHEN TG_OP = 'DELETE' THEN -1 ELSE 1 END;
BEGIN
    INSERT INTO usage_daily AS u (day, tier, provider, model, calls, errors, fallbacks, refused, abandoned,
                                  input_tokens, output_tokens, cost_usd, latency_buckets)
    SELECT day, tier, provider, model, sum(calls), sum(errors), sum(fallbacks), sum(refused), sum(abandoned),
           sum(input_tokens), sum(output_tokens), sum(cost_usd), hq_sum_buckets(hq_one_hot(bucket, 13, timed))
      FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, tier, coalesce(provider, '') AS provider,
                   coalesce(model, '') AS model, hq_bucket(latency_ms, hq_latency_bounds()) AS bucket,
                   rows_sign * count(*) FILTER (WHERE outcome <> 'correction') AS calls, rows_sign * count(*) FILTER (WHERE outcome = 'error') AS errors,
                   rows_sign * count(*) FILTER (WHERE outcome = 'fallback') AS fallbacks,
                   rows_sign * count(*) FILTER (WHERE outcome = 'budget_refused') AS refused,
                   rows_sign * count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
                   rows_sign * sum(input_tokens) AS input_tokens, rows_sign * sum(output_tokens) AS output_tokens,
                   rows_sign * sum(cost_usd) AS cost_usd, rows_sign * count(latency_ms) AS timed
              FROM changed GROUP BY 1, 2, 3, 4, 5) per_bucket
     GROUP BY day, tier, provider, model
     ORDER BY day, tier, provider, model  -- a fixed lock order: concurrent statements never deadlock here
    ON CONFLICT (day, tier, provider, model) DO UPDATE SET
        calls = u.calls + EXCLUDED.calls, errors = u.errors + EXCLUDED.errors,
        fallbacks = u.fallbacks + EXCLUDED.fallbacks, refused = u.refused + EXCLUDED.refused,
        abandoned = u.abandoned + EXCLUDED.abandoned, input_tokens = u.input_tokens + EXCLUDED.input_tokens,
        output_tokens = u.output_tokens + EXCLUDED.output_tokens, cost_usd = u.cost_usd + EXCLUDED.cost_usd,
        latency_buckets = hq_add_buckets(u.latency_buckets, EXCLUDED.latency_buckets);
    INSERT INTO usage_agent_monthly AS m (month, agent_id, calls, failed_calls, input_tokens, output_tokens, cost_usd)
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, agent_id,
           rows_sign * count(*) FILTER (WHERE outcome <> 'correction'),
           rows_sign * count(*) FILTER (WHERE outcome IN ('error', 'budget_refused')),
           rows_sign * sum(input_tokens), rows_sign * sum(output_tokens), rows_sign * sum(cost_usd)
      FROM changed WHERE agent_id IS NOT NULL
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (month, agent_id) DO UPDATE SET
        calls = m.calls + EXCLUDED.calls, failed_calls = m.failed_calls + EXCLUDED.failed_calls,
        input_tokens = m.input_tokens + EXCLUDED.input_tokens, output_tokens = m.output_tokens + EXCLUDED.output_tokens,
        cost_usd = m.cost_usd + EXCLUDED.cost_usd;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS llm_calls_rollup_insert ON llm_calls;
CREATE TRIGGER llm_calls_rollup_insert AFTER INSERT ON llm_calls
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION hq_usage_rollup();
DROP TRIGGER IF EXISTS llm_calls_rollup_delete ON llm_calls;
CREATE TRIGGER llm_calls_rollup_delete AFTER DELETE ON llm_calls
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION hq_usage_rollup();

-- --- issues ---------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION hq_board_enter(p_status text, p_assignee integer, p_issue bigint, p_since timestamptz)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO board_counts AS b (status, assignee_id, issues, oldest_since, oldest_issue_id)
    VALUES (p_status, p_assignee, 1, p_since, p_issue)
    ON CONFLICT (status, assignee_id) DO UPDATE SET
        issues = b.issues + 1,
        oldest_since = CASE WHEN b.issues <= 0 OR (p_since, p_issue) < (b.oldest_since, b.oldest_issue_id)
                            THEN p_since ELSE b.oldest_since END,
        oldest_issue_id = CASE WHEN b.issues <= 0 OR (p_since, p_issue) < (b.oldest_since, b.oldest_issue_id)
                               THEN p_issue ELSE b.oldest_issue_id END
$$;

CREATE OR REPLACE FUNCTION hq_board_leave(p_status text, p_assignee integer, p_issue bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    was_oldest boolean;
    next_oldest record;
BEGIN
    UPDATE board_counts SET issues = issues - 1
     WHERE status = p_status AND assignee_id = p_assignee
    RETURNING oldest_issue_id = p_issue INTO was_oldest;
    IF NOT coalesce(was_oldest, false) THEN
        RETURN;
    END IF;
    -- The oldest one left: the next oldest is the first entry of the group in issues_board_idx.
    IF p_assignee = 0 THEN
        SELECT id, status_changed_at INTO next_oldest FROM issues
         WHERE status = p_status AND assignee_id IS NULL AND id <> p_issue
         ORDER BY status_changed_at, id LIMIT 1;
    ELSE
        SELECT id, status_changed_at INTO next_oldest FROM issues
         WHERE status = p_status AND assignee_id = p_assignee AND id <> p_issue
         ORDER BY status_changed_at, id LIMIT 1;
    END IF;
    UPDATE board_counts SET oldest_since = next_oldest.status_changed_at, oldest_issue_id = next_oldest.id
     WHERE status = p_status AND assignee_id = p_assignee;
END
$$;

CREATE OR REPLACE FUNCTION hq_flow_add(p_day date, p_created bigint, p_done bigint, p_cycle_seconds numeric)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO issue_flow_daily AS f (day, created, done, cycle_buckets)
    VALUES (p_day, p_created, p_done, hq_one_hot(hq_bucket(p_cycle_seconds, hq_cycle_bounds()), 14))
    ON CONFLICT (day) DO UPDATE SET created = f.created + EXCLUDED.created, done = f.done + EXCLUDED.done,
                                    cycle_buckets = hq_add_buckets(f.cycle_buckets, EXCLUDED.cycle_buckets)
$$;

-- A new issue, or one that changed status or assignee.
CREATE OR REPLACE FUNCTION hq_issue_rollups() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    new_row issues := NEW;
    old_row issues := CASE WHEN TG_OP = 'UPDATE' THEN OLD END;
    new_key text := new_row.status || '/' || lpad(coalesce(new_row.assignee_id, 0)::text, 12, '0');
    old_key text := old_row.status || '/' || lpad(coalesce(old_row.assignee_id, 0)::text, 12, '0');
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM hq_board_enter(new_row.status, coalesce(new_row.assignee_id, 0), new_row.id,
                               new_row.status_changed_at);
        PERFORM hq_flow_add((new_row.created_at AT TIME ZONE 'UTC')::date, 1, 0, NULL);
        RETURN NULL;
    END IF;
    IF new_key IS DISTINCT FROM old_key THEN
        IF old_key < new_key THEN  -- board rows in key order: concurrent moves never deadlock
            PERFORM hq_board_leave(old_row.status, coalesce(old_row.assignee_id, 0), old_row.id);
            PERFORM hq_board_enter(new_row.status, coalesce(new_row.assignee_id, 0), new_row.id,
                                   new_row.status_changed_at);
        ELSE
            PERFORM hq_board_enter(new_row.status, coalesce(new_row.assignee_id, 0), new_row.id,
                                   new_row.status_changed_at);
            PERFORM hq_board_leave(old_row.status, coalesce(old_row.assignee_id, 0), old_row.id);
        END IF;
    END IF;
    IF new_row.status = 'done' AND old_row.status IS DISTINCT FROM 'done' THEN
        PERFORM hq_flow_add((new_row.done_at AT TIME ZONE 'UTC')::date, 0, 1,
                            extract(epoch FROM new_row.done_at - new_row.created_at));
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS issues_rollup_insert ON issues;
CREATE TRIGGER issues_rollup_insert AFTER INSERT ON issues
    FOR EACH ROW EXECUTE FUNCTION hq_issue_rollups();
DROP TRIGGER IF EXISTS issues_rollup_update ON issues;
CREATE TRIGGER issues_rollup_update AFTER UPDATE ON issues
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.assignee_id IS DISTINCT FROM NEW.assignee_id)
    EXECUTE FUNCTION hq_issue_rollups();

-- Cost up the parent chain: an issue's subtree cost is its own plus every sub-issue's.
CREATE OR REPLACE FUNCTION hq_subtree_own() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.subtree_cost_usd := NEW.subtree_cost_usd + (NEW.spent_usd - coalesce(OLD.spent_usd, 0));
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION hq_subtree_up() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('hq.rebuilding_rollups', true) = 'on' THEN
        RETURN NULL;  -- hq_rebuild_rollups() sets every total itself
    END IF;
    UPDATE issues SET subtree_cost_usd = subtree_cost_usd + (NEW.subtree_cost_usd - OLD.subtree_cost_usd)
     WHERE id = NEW.parent_id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS issues_subtree_own ON issues;
CREATE TRIGGER issues_subtree_own BEFORE UPDATE OF spent_usd ON issues
    FOR EACH ROW WHEN (OLD.spent_usd IS DISTINCT FROM NEW.spent_usd) EXECUTE FUNCTION hq_subtree_own();
DROP TRIGGER IF EXISTS issues_subtree_up ON issues;
CREATE TRIGGER issues_subtree_up AFTER UPDATE ON issues
    FOR EACH ROW WHEN (OLD.subtree_cost_usd IS DISTINCT FROM NEW.subtree_cost_usd AND NEW.parent_id IS NOT NULL)
    EXECUTE FUNCTION hq_subtree_up();

-- --- heartbeats -------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION hq_beat_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agents SET heartbeats = heartbeats + 1, claims = claims + NEW.claims,
                      failed_beats = failed_beats + (NEW.outcome = 'error')::integer,
                      productive_beats = productive_beats + (NEW.outcome = 'ok')::integer
     WHERE id = NEW.agent_id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS heartbeat_runs_finished_insert ON heartbeat_runs;
CREATE TRIGGER heartbeat_runs_finished_insert AFTER INSERT ON heartbeat_runs
    FOR EACH ROW WHEN (NEW.finished_at IS NOT NULL) EXECUTE FUNCTION hq_beat_finished();
DROP TRIGGER IF EXISTS heartbeat_runs_finished_update ON heartbeat_runs;
CREATE TRIGGER heartbeat_runs_finished_update AFTER UPDATE ON heartbeat_runs
    FOR EACH ROW WHEN (OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL) EXECUTE FUNCTION hq_beat_finished();

-- --- rebuild ----------------------------------------------------------------------------------

-- Recompute every summary from the facts (after a bulk load that bypassed triggers, or when
-- the summaries are first introduced over existing data).
CREATE OR REPLACE FUNCTION hq_rebuild_rollups() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('hq.rebuilding_rollups', 'on', true);  -- subtree totals are set here, not carried up
    TRUNCATE usage_daily, usage_agent_monthly, issue_flow_daily, board_counts;
    INSERT INTO usage_daily (day, tier, provider, model, calls, errors, fallbacks, refused, abandoned,
                             input_tokens, output_tokens, cost_usd, latency_buckets)
    SELECT day, tier, provider, model, sum(calls), sum(errors), sum(fallbacks), sum(refused), sum(abandoned),
           sum(input_tokens), sum(output_tokens), sum(cost_usd), hq_sum_buckets(hq_one_hot(bucket, 13, timed))
      FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, tier, coalesce(provider, '') AS provider,
                   coalesce(model, '') AS model, hq_bucket(latency_ms, hq_latency_bounds()) AS bucket,
                   count(*) FILTER (WHERE outcome <> 'correction') AS calls,
                   count(*) FILTER (WHERE outcome = 'error') AS errors,
                   count(*) FILTER (WHERE outcome = 'fallback') AS fallbacks,
                   count(*) FILTER (WHERE outcome = 'budget_refused') AS refused,
                   count(*) FILTER (WHERE outcome = 'abandoned') AS abandoned,
                   sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                   sum(cost_usd) AS cost_usd, count(latency_ms) AS timed
              FROM llm_calls GROUP BY 1, 2, 3, 4, 5) per_bucket
     GROUP BY day, tier, provider, model;
    INSERT INTO usage_agent_monthly (month, agent_id, calls, failed_calls, input_tokens, output_tokens, cost_usd)
    SELECT date_trunc('month', created_at AT TIME ZONE 'UTC')::date, agent_id,
           count(*) FILTER (WHERE outcome <> 'correction'),
           count(*) FILTER (WHERE outcome IN ('error', 'budget_refused')), sum(input_tokens), sum(output_tokens),
           sum(cost_usd)
      FROM llm_calls WHERE agent_id IS NOT NULL GROUP BY 1, 2;
    INSERT INTO issue_flow_daily (day, created, done, cycle_buckets)
    SELECT day, sum(created), sum(done), hq_sum_buckets(hq_one_hot(bucket, 14, done))
      FROM (SELECT (created_at AT TIME ZONE 'UTC')::date AS day, NULL::integer AS bucket, count(*) AS created,
                   0 AS done
              FROM issues GROUP BY 1
            UNION ALL
            SELECT (done_at AT TIME ZONE 'UTC')::date, hq_bucket(extract(epoch FROM done_at - created_at),
                                                                 hq_cycle_bounds()), 0, count(*)
              FROM issues WHERE done_at IS NOT NULL GROUP BY 1, 2) per_bucket
     GROUP BY day;
    INSERT INTO board_counts (status, assignee_id, issues, oldest_since, oldest_issue_id)
    SELECT DISTINCT ON (status, coalesce(assignee_id, 0)) status, coalesce(assignee_id, 0),
           count(*) OVER (PARTITION BY status, coalesce(assignee_id, 0)), status_changed_at, id
      FROM issues ORDER BY status, coalesce(assignee_id, 0), status_changed_at, id;
    WITH RECURSIVE ancestry(issue_id, ancestor_id) AS (
        SELECT id, parent_id FROM issues WHERE parent_id IS NOT NULL
        UNION ALL
        SELECT a.issue_id, p.parent_id FROM ancestry a JOIN issues p ON p.id = a.ancestor_id
         WHERE p.parent_id IS NOT NULL
    ), below AS (
        SELECT a.ancestor_id AS id, sum(i.spent_usd) AS cost
          FROM ancestry a JOIN issues i ON i.id = a.issue_id GROUP BY a.ancestor_id
    ), totals AS (
        SELECT i.id, i.spent_usd + coalesce(b.cost, 0) AS total FROM issues i LEFT JOIN below b USING (id)
    )
    UPDATE issues SET subtree_cost_usd = totals.total
      FROM totals WHERE issues.id = totals.id AND issues.subtree_cost_usd IS DISTINCT FROM totals.total;
    UPDATE agents a SET heartbeats = coalesce(h.beats, 0), claims = coalesce(h.claims, 0),
                        failed_beats = coalesce(h.failed, 0), productive_beats = coalesce(h.productive, 0)
      FROM (SELECT agents.id, count(r.id) AS beats, sum(r.claims) AS claims,
                   count(r.id) FILTER (WHERE r.outcome = 'error') AS failed,
                   count(r.id) FILTER (WHERE r.outcome = 'ok') AS productive
              FROM agents LEFT JOIN heartbeat_runs r ON r.agent_id = agents.id AND r.finished_at IS NOT NULL
             GROUP BY agents.id) h
     WHERE a.id = h.id;
END
$$;
