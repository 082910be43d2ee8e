-- Reporting: SQL views people query from psql, a BI tool or `hq report`.
--
-- The read-only role hq_reporter may select these views and nothing else
-- (db/sql/reporter.sql). Aggregate views read the summaries that
-- db/sql/rollups.sql keeps up to date, so they cost the same at a million
-- issues as at ten; views that list single issues return them in their own
-- order (most urgent or costliest first) from an index, so reading the first
-- page is cheap too.
--
-- Time-windowed views honour an optional session setting, so one definition
-- serves "all time" and "since Monday":
--     SET hq.report_since = '2026-11-01';   -- then SELECT * FROM report_cost_by_tier;
-- Windows are whole UTC days (whole months for report_cost_by_agent): the
-- summaries are kept per day. `hq report NAME --since DATE` sets it for you.
--
-- Views are replaced by dropping them (drop_report_views.sql) and re-applying
-- this file, so a column can change without a migration per view.

CREATE OR REPLACE FUNCTION hq_report_since() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('hq.report_since', true), '')::timestamptz, '-infinity'::timestamptz)
$$;

-- The first UTC day a windowed view includes.
CREATE OR REPLACE FUNCTION hq_report_since_day() RETURNS date
LANGUAGE sql STABLE AS $$
    SELECT (hq_report_since() AT TIME ZONE 'UTC')::date
$$;

CREATE OR REPLACE VIEW report_issue_board WITH (security_barrier) AS
SELECT b.status,
       coalesce(a.slug, '(unassigned)') AS assignee,
       b.issues,
       b.oldest_since,
       b.oldest_issue_id,
       now() - b.oldest_since AS oldest_age
  FROM board_counts b
  LEFT JOIN agents a ON a.id = b.assignee_id
 WHERE b.issues > 0
 ORDER BY b.status, b.assignee_id;
COMMENT ON VIEW report_issue_board IS
    'Issues by status and assignee, with the one that has waited longest in that status.';

CREATE OR REPLACE VIEW report_cost_by_agent WITH (security_barrier) AS
SELECT m.month,
       a.slug AS agent,
       a.title,
       m.calls,
       m.failed_calls,
       m.input_tokens,
       m.output_tokens,
       m.cost_usd,
       a.monthly_budget_usd,
       round(100 * m.cost_usd / nullif(a.monthly_budget_usd, 0), 1) AS budget_used_pct
  FROM usage_agent_monthly m
  JOIN agents a ON a.id = m.agent_id
 WHERE m.calls > 0 AND m.month >= date_trunc('month', hq_report_since_day())::date
 ORDER BY m.month DESC, m.cost_usd DESC, a.slug;
COMMENT ON VIEW report_cost_by_agent IS
    'Model calls, tokens and cost per agent and month, against its monthly budget (honours hq.report_since, by month).';

CREATE OR REPLACE VIEW report_cost_by_tier WITH (security_barrier) AS
SELECT u.tier,
       sum(u.calls)::bigint AS calls,
       sum(u.fallbacks)::bigint AS fallbacks,
       sum(u.input_tokens)::bigint AS input_tokens,
       sum(u.output_tokens)::bigint AS output_tokens,
       sum(u.cost_usd) AS cost_usd,
       round(100 * sum(u.cost_usd) / nullif(sum(sum(u.cost_usd)) OVER (), 0), 2) AS cost_share_pct
  FROM usage_daily u
 WHERE u.day >= hq_report_since_day()
 GROUP BY u.tier
HAVING sum(u.calls) > 0
 ORDER BY cost_usd DESC, u.tier;
COMMENT ON VIEW report_cost_by_tier IS
    'Model calls and cost per tier (reasoning, execution, utility) and each tier''s share of the total (honours hq.report_since).';

CREATE OR REPLACE VIEW report_cost_by_issue WITH (security_barrier) AS
SELECT i.id AS issue_id,
       i.title,
       i.status,
       i.parent_id,
       (SELECT count(*) FROM llm_calls l WHERE l.issue_id = i.id) AS own_calls,
       i.spent_usd AS own_cost_usd,
       i.subtree_cost_usd - i.spent_usd AS sub_issue_cost_usd,
       i.subtree_cost_usd AS total_cost_usd,
       i.budget_usd
  FROM issues i
 WHERE i.subtree_cost_usd > 0
 ORDER BY i.subtree_cost_usd DESC, i.id;
COMMENT ON VIEW report_cost_by_issue IS
    'Issues by model cost, costliest first: their own calls, their sub-issues'' (all levels) rolled up, and the total (all time).';

CREATE OR REPLACE VIEW report_cost_daily WITH (security_barrier) AS
SELECT u.day,
       u.tier,
       sum(u.calls)::bigint AS calls,
       sum(u.input_tokens + u.output_tokens)::bigint AS tokens,
       sum(u.cost_usd) AS cost_usd
  FROM usage_daily u
 WHERE u.day >= hq_report_since_day()
 GROUP BY u.day, u.tier
HAVING sum(u.calls) > 0
 ORDER BY u.day DESC, u.tier;
COMMENT ON VIEW report_cost_daily IS
    'Model cost per UTC day and tier (honours hq.report_since).';

CREATE OR REPLACE VIEW report_blocked_chain WITH (security_barrier) AS
SELECT i.id AS issue_id,
       i.title,
       i.blocked_reason,
       owner.slug AS assignee,
       CASE WHEN i.escalated_to_id IS NOT NULL THEN handler.slug
            WHEN i.blocked_reason = 'human' THEN 'human'
            WHEN i.blocked_reason = 'budget' THEN 'human (budget)'
            WHEN i.blocked_reason = 'waiting' THEN '(sub-issues)'
       END AS waiting_on,
       array_to_string(
           CASE WHEN owner.slug IS NULL THEN i.escalation_chain ELSE owner.slug || i.escalation_chain END,
           ' -> ') AS chain,
       cardinality(i.escalation_chain) AS levels_climbed,
       i.status_changed_at AS blocked_since,
       now() - i.status_changed_at AS waiting_for
  FROM issues i
  LEFT JOIN agents owner ON owner.id = i.assignee_id
  LEFT JOIN agents handler ON handler.id = i.escalated_to_id
 WHERE i.status = 'blocked'
 ORDER BY i.status_changed_at, i.id;
COMMENT ON VIEW report_blocked_chain IS
    'Each blocked issue, longest waiting first: why, who holds it now, the chain of command it climbed, and for how long.';

CREATE OR REPLACE VIEW report_approval_queue WITH (security_barrier) AS
SELECT ap.id AS approval_id,
       ap.issue_id,
       (SELECT i.title FROM issues i WHERE i.id = ap.issue_id) AS title,
       ap.kind,
       ap.reason,
       ap.requested_by,
       ap.amount_usd,
       ap.created_at AS requested_at,
       ap.deadline,
       now() - ap.created_at AS age,
       ap.deadline < now() AS overdue,
       ap.escalations AS reminders
  FROM approvals ap
 WHERE ap.status = 'pending'
 ORDER BY ap.deadline, ap.id;
COMMENT ON VIEW report_approval_queue IS
    'Pending approvals (work, budget, escalation), nearest deadline first, with age and whether they are overdue.';

CREATE OR REPLACE VIEW report_throughput_daily WITH (security_barrier) AS
SELECT f.day,
       f.created,
       f.done,
       hq_bucket_percentile(f.cycle_buckets, hq_cycle_bounds(), 0.5) AS cycle_p50_seconds,
       hq_bucket_percentile(f.cycle_buckets, hq_cycle_bounds(), 0.9) AS cycle_p90_seconds
  FROM issue_flow_daily f
 WHERE f.day >= hq_report_since_day() AND (f.created > 0 OR f.done > 0)
 ORDER BY f.day DESC;
COMMENT ON VIEW report_throughput_daily IS
    'Issues created and done per UTC day, with cycle time (created to done) percentiles as histogram bucket bounds (honours hq.report_since).';

CREATE OR REPLACE VIEW report_agent_activity WITH (security_barrier) AS
SELECT a.slug AS agent,
       a.status,
       a.heartbeats,
       a.claims,
       a.failed_beats AS failures,
       a.productive_beats,
       a.last_beat_at AS last_seen
  FROM agents a
 ORDER BY a.slug;
COMMENT ON VIEW report_agent_activity IS
    'Heartbeats, claims and failed beats per agent since it was created, and when each was last seen.';

CREATE OR REPLACE VIEW report_provider_health WITH (security_barrier) AS
SELECT coalesce(nullif(u.provider, ''), '(none)') AS provider,
       coalesce(nullif(u.model, ''), '(refused before any model)') AS model,
       sum(u.calls)::bigint AS calls,
       sum(u.errors)::bigint AS errors,
       round(100.0 * sum(u.errors) / nullif(sum(u.calls), 0), 2) AS error_rate_pct,
       sum(u.fallbacks)::bigint AS fallbacks,
       hq_bucket_percentile(hq_sum_buckets(u.latency_buckets), hq_latency_bounds(), 0.5) AS p50_latency_ms,
       hq_bucket_percentile(hq_sum_buckets(u.latency_buckets), hq_latency_bounds(), 0.95) AS p95_latency_ms
  FROM usage_daily u
 WHERE u.day >= hq_report_since_day()
 GROUP BY u.provider, u.model
HAVING sum(u.calls) > 0
 ORDER BY 1, 2;
COMMENT ON VIEW report_provider_health IS
    'Calls, errors, error rate, fallbacks and p50/p95 latency (histogram bucket bounds) per provider and model (honours hq.report_since).';

CREATE OR REPLACE VIEW report_shipped WITH (security_barrier) AS
SELECT i.id AS issue_id,
       i.title,
       p.name AS project,
       p.base_branch,
       i.merged_sha,
       i.done_at
  FROM issues i
  JOIN projects p ON p.id = i.project_id
 WHERE i.status = 'done' AND i.merged_sha IS NOT NULL
 ORDER BY i.done_at DESC, i.id DESC;
COMMENT ON VIEW report_shipped IS
    'Project issues merged into their base branch: the merge commit each shipped, newest first.';
