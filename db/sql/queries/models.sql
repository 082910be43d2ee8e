-- Per-deployment health for `hq models`, from the cost rows every call writes.

-- name: deployment_health
SELECT deployment,
       count(*) AS calls,
       count(*) FILTER (WHERE outcome = 'error') AS errors,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms))::int AS p50_ms,
       (array_agg(error ORDER BY id DESC) FILTER (WHERE outcome = 'error'))[1] AS last_error
  FROM llm_calls
 WHERE deployment IS NOT NULL
   AND created_at > now() - make_interval(hours => :hours)
 GROUP BY deployment;
