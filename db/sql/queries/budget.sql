-- Budgets are enforced before a model call, not discovered after.
--
-- A call first reserves its worst-case cost against the issue, the agent's
-- month and the company's month, each with one guarded UPDATE: the row lock
-- serialises concurrent reservations and the WHERE clause refuses any that
-- would overspend. After the call, settlement swaps the reservation for the
-- actual cost. Lock order is always issue, then agent, then company.

-- name: ensure_account
INSERT INTO budget_accounts (scope, period, limit_usd)
VALUES (:scope, date_trunc('month', now())::date, :limit_usd)
ON CONFLICT (scope, period) DO UPDATE SET limit_usd = EXCLUDED.limit_usd
RETURNING period;

-- name: reserve_issue
UPDATE issues
   SET reserved_usd = reserved_usd + :amount
 WHERE id = :issue_id
   AND spent_usd + reserved_usd + :amount <= budget_usd
RETURNING id;

-- name: issue_headroom
SELECT budget_usd - spent_usd - reserved_usd AS available, status FROM issues WHERE id = :issue_id;

-- name: reserve_account
UPDATE budget_accounts
   SET reserved_usd = reserved_usd + :amount
 WHERE scope = :scope AND period = :period
   AND spent_usd + reserved_usd + :amount <= limit_usd
RETURNING scope;

-- name: record_reservation
INSERT INTO budget_reservations (id, run_id, issue_id, agent_scope, period, amount_usd, expires_at)
VALUES (:id, :run_id, :issue_id, :agent_scope, :period, :amount, now() + make_interval(secs => :ttl_seconds));

-- name: take_reservation
-- Exactly-once: whoever deletes the row releases its reserved amounts.
DELETE FROM budget_reservations WHERE id = :id RETURNING amount_usd;

-- name: settle_issue
UPDATE issues
   SET reserved_usd = greatest(reserved_usd - :reserved, 0),
       spent_usd = spent_usd + :actual
 WHERE id = :issue_id;

-- name: settle_account
UPDATE budget_accounts
   SET reserved_usd = greatest(reserved_usd - :reserved, 0),
       spent_usd = spent_usd + :actual
 WHERE scope = :scope AND period = :period;

-- name: release_expired_reservations
-- For the sweeper: reservations whose process died before settling.
WITH expired AS (
    DELETE FROM budget_reservations WHERE expires_at < now() RETURNING *
), issue_release AS (
    UPDATE issues i
       SET reserved_usd = greatest(i.reserved_usd - e.amount, 0)
      FROM (SELECT issue_id, sum(amount_usd) AS amount FROM expired WHERE issue_id IS NOT NULL GROUP BY issue_id) e
     WHERE i.id = e.issue_id
), account_release AS (
    UPDATE budget_accounts a
       SET reserved_usd = greatest(a.reserved_usd - e.amount, 0)
      FROM (SELECT scope, period, sum(amount_usd) AS amount
              FROM (SELECT agent_scope AS scope, period, amount_usd FROM expired WHERE agent_scope IS NOT NULL
                    UNION ALL
                    SELECT 'company', period, amount_usd FROM expired) s
             GROUP BY scope, period) e
     WHERE a.scope = e.scope AND a.period = e.period
)
SELECT count(*) AS released FROM expired;
