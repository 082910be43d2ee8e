-- Reporting: SQL views people query from psql, a BI tool or `hq report`.
--
-- The read-only role hq_reporter may select these views and nothing else
-- (db/sql/reporter.sql). Time-windowed views honour an optional session
-- setting, so one definition serves "all time" and "since Monday":
--     SET hq.report_since = '2026-11-01';   -- then SELECT * FROM report_cost_by_agent;
-- `hq report NAME --since DATE` sets it for you.
--
-- Every object here is CREATE OR REPLACE: a later migration re-applies this file.

CREATE OR REPLACE FUNCTION hq_report_since() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('hq.report_since', true), '')::timestamptz, '-infinity'::timestamptz)
$$;

CREATE OR REPLACE VIEW report_issue_board AS
SELECT i.status,
       coalesce(a.slug, '(unassigned)') AS assignee,
       count(*) AS issues,
       min(i.status_changed_at) AS oldest_since,
       (array_agg(i.id ORDER BY i.status_changed_at, i.id))[1] AS oldest_issue_id,
       now() - min(i.status_changed_at) AS oldest_age
  FROM issues i
  LEFT JOIN agents a ON a.id = i.assignee_id
 GROUP BY i.status, a.slug;
COMMENT ON VIEW report_issue_board IS
    'Issues by status and assignee, with the one that has waited longest in that status.';

CREATE OR REPLACE VIEW report_cost_by_agent AS
SELECT a.slug AS agent,
       a.title,
       count(l.id) AS calls,
       count(l.id) FILTER (WHERE l.outcome IN ('error', 'budget_refused')) AS failed_calls,
       coalesce(sum(l.input_tokens), 0) AS input_tokens,
       coalesce(sum(l.output_tokens), 0) AS output_tokens,
       coalesce(sum(l.cost_usd), 0) AS cost_usd,
       a.monthly_budget_usd
  FROM agents a
  JOIN llm_calls l ON l.agent_id = a.id AND l.created_at >= hq_report_since()
 GROUP BY a.id, a.slug, a.title, a.monthly_budget_usd;
COMMENT ON VIEW report_cost_by_agent IS
    'Model calls, tokens and cost per agent (agents with no calls in the window are omitted; honours hq.report_since).';

CREATE OR REPLACE VIEW report_cost_by_tier AS
SELECT l.tier,
       count(*) AS calls,
       count(*) FILTER (WHERE l.outcome = 'fallback') AS fallbacks,
       sum(l.input_tokens) AS input_tokens,
       sum(l.output_tokens) AS output_tokens,
       sum(l.cost_usd) AS cost_usd,
       round(100 * sum(l.cost_usd) / nullif(sum(sum(l.cost_usd)) OVER (), 0), 2) AS cost_share_pct
  FROM llm_calls l
 WHERE l.created_at >= hq_report_since()
 GROUP BY l.tier;
COMMENT ON VIEW report_cost_by_tier IS
    'Model calls and cost per tier (reasoning, execution, utility) and each tier''s share of the total (honours hq.report_since).';

CREATE OR REPLACE VIEW report_cost_by_issue AS
WITH RECURSIVE own AS (
    SELECT issue_id, count(*) AS calls, sum(cost_usd) AS cost_usd
      FROM llm_calls
     WHERE issue_id IS NOT NULL AND created_at >= hq_report_since()
     GROUP BY issue_id
), lineage AS (
    -- every (ancestor, descendant) pair, the issue itself included
    SELECT id AS root_id, id AS issue_id FROM issues
    UNION ALL
    SELECT l.root_id, c.id FROM lineage l JOIN issues c ON c.parent_id = l.issue_id
)
SELECT i.id AS issue_id,
       i.title,
       i.status,
       i.parent_id,
       coalesce(max(o.calls) FILTER (WHERE l.issue_id = i.id), 0) AS own_calls,
       coalesce(max(o.cost_usd) FILTER (WHERE l.issue_id = i.id), 0) AS own_cost_usd,
       coalesce(sum(o.cost_usd) FILTER (WHERE l.issue_id <> i.id), 0) AS sub_issue_cost_usd,
       coalesce(sum(o.cost_usd), 0) AS total_cost_usd,
       i.budget_usd
  FROM issues i
  JOIN lineage l ON l.root_id = i.id
  LEFT JOIN own o ON o.issue_id = l.issue_id
 GROUP BY i.id, i.title, i.status, i.parent_id, i.budget_usd;
COMMENT ON VIEW report_cost_by_issue IS
    'Model cost per issue: its own calls, its sub-issues'' (all levels) rolled up, and the total (honours hq.report_since).';

CREATE OR REPLACE VIEW report_cost_daily AS
SELECT (l.created_at AT TIME ZONE 'UTC')::date AS day,
       l.tier,
       count(*) AS calls,
       sum(l.input_tokens + l.output_tokens) AS tokens,
       sum(l.cost_usd) AS cost_usd
  FROM llm_calls l
 WHERE l.created_at >= hq_report_since()
 GROUP BY 1, 2;
COMMENT ON VIEW report_cost_daily IS
    'Model cost per UTC day and tier (honours hq.report_since).';

CREATE OR REPLACE VIEW report_blocked_chain AS
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
 WHERE i.status = 'blocked';
COMMENT ON VIEW report_blocked_chain IS
    'Each blocked issue: why, who holds it now, the chain of command it climbed, and how long it has waited.';

CREATE OR REPLACE VIEW report_approval_queue AS
SELECT ap.id AS approval_id,
       ap.issue_id,
       i.title,
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
  JOIN issues i ON i.id = ap.issue_id
 WHERE ap.status = 'pending';
COMMENT ON VIEW report_approval_queue IS
    'Pending approvals (work, budget, escalation) with deadline, age and whether they are overdue.';

CREATE OR REPLACE VIEW report_throughput_daily AS
WITH created AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS created
      FROM issues WHERE created_at >= hq_report_since() GROUP BY 1
), finished AS (
    SELECT (done_at AT TIME ZONE 'UTC')::date AS day,
           count(*) AS done,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - created_at)) AS cycle_p50_s,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM done_at - created_at)) AS cycle_p90_s
      FROM issues WHERE done_at IS NOT NULL AND done_at >= hq_report_since() GROUP BY 1
)
SELECT coalesce(c.day, f.day) AS day,
       coalesce(c.created, 0) AS created,
       coalesce(f.done, 0) AS done,
       round(f.cycle_p50_s::numeric, 1) AS cycle_p50_seconds,
       round(f.cycle_p90_s::numeric, 1) AS cycle_p90_seconds
  FROM created c
  FULL JOIN finished f ON f.day = c.day;
COMMENT ON VIEW report_throughput_daily IS
    'Issues created and done per UTC day, with cycle time (created to done) percentiles (honours hq.report_since).';

CREATE OR REPLACE VIEW report_agent_activity AS
SELECT a.slug AS agent,
       a.status,
       count(h.id) AS heartbeats,
       coalesce(sum(h.claims), 0) AS claims,
       count(h.id) FILTER (WHERE h.outcome = 'error') AS failures,
       count(h.id) FILTER (WHERE h.outcome = 'ok') AS productive_beats,
       max(h.started_at) AS last_seen
  FROM agents a
  LEFT JOIN heartbeat_runs h ON h.agent_id = a.id AND h.started_at >= hq_report_since()
 GROUP BY a.id, a.slug, a.status;
COMMENT ON VIEW report_agent_activity IS
    'Heartbeats, claims and failed beats per agent, and when each was last seen (honours hq.report_since).';

CREATE OR REPLACE VIEW report_provider_health AS
SELECT coalesce(l.provider, '(none)') AS provider,
       coalesce(l.model, '(refused before any model)') AS model,
       count(*) AS calls,
       count(*) FILTER (WHERE l.outcome = 'error') AS errors,
       round(100.0 * count(*) FILTER (WHERE l.outcome = 'error') / count(*), 2) AS error_rate_pct,
       count(*) FILTER (WHERE l.outcome = 'fallback') AS fallbacks,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY l.latency_ms))::numeric, 1) AS p50_latency_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY l.latency_ms))::numeric, 1) AS p95_latency_ms
  FROM llm_calls l
 WHERE l.created_at >= hq_report_since()
 GROUP BY 1, 2;
COMMENT ON VIEW report_provider_health IS
    'Calls, errors, error rate, fallbacks and p50/p95 latency per provider and model (honours hq.report_since).';
