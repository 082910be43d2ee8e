-- Budgets are enforced before a model call, not discovered after.
--
-- hq_reserve sets aside a call's worst-case cost against the issue, the agent's
-- month and the company's month, or refuses. hq_record_call writes one cost row
-- and, for the call's final row, swaps the reservation for the actual cost.
-- Each is a single statement, so a call pays two round trips for its
-- accounting. Row locks serialise concurrent reservations on the same issue or
-- account and the guarded UPDATEs refuse any that would overspend. Lock order
-- is always issue, then agent account, then company account.
--
-- The ledger is exact: every llm_calls row's cost_usd is charged exactly once,
-- to the issue and to the month accounts named by its budget_month, so at any
-- instant spent_usd equals the sum of the rows (tests/integration/models/test_budget.py
-- proves it under random interleavings). Cost rows are never changed (migration 0005, frozen/ledger_0005.sql):
-- a late settlement of a reservation the sweeper already charged in full adds
-- a 'correction' row that cancels the abandoned charge, then its own row.
--
-- Months are UTC months (hq_month), whatever the session's time zone, so every
-- host agrees which account a call belongs to.
--
-- Applied by migration 0012, which added the cache token counts to hq_record_call (0005's version is
-- frozen in frozen/budget_0005.sql, 0003's in frozen/budget_0003.sql), and again by 0014, which closed the
-- race of a month's first reservations in hq_reserve_account.

CREATE OR REPLACE FUNCTION hq_month(p_at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc('month', p_at AT TIME ZONE 'UTC')::date
$$;

-- Release p_release from reserved and add p_charge to spent, on the issue and on the month's accounts.
CREATE OR REPLACE FUNCTION hq_move_money(p_issue_id bigint, p_agent_scope text, p_period date, p_release numeric,
                                         p_charge numeric) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_issue_id IS NOT NULL THEN
        UPDATE issues SET reserved_usd = greatest(reserved_usd - p_release, 0), spent_usd = spent_usd + p_charge
         WHERE id = p_issue_id;
    END IF;
    UPDATE budget_accounts
       SET reserved_usd = greatest(reserved_usd - p_release, 0), spent_usd = spent_usd + p_charge
     WHERE period = p_period AND scope IN ('company', coalesce(p_agent_scope, '(none)'));
END
$$;

-- Reserve on one monthly account (its limit kept current); false when it cannot cover the amount.
--
-- The month's first reservations may arrive together. A statement sees only rows committed before it began, so
-- an account that "does not exist" may be committed by a concurrent first caller a moment later: the INSERT waits
-- out such a caller (ON CONFLICT), and the second UPDATE, a new statement, then sees its row. Never conclude
-- "cannot cover" from a row a previous statement did not see (migration 0014 fixed exactly that).
CREATE OR REPLACE FUNCTION hq_reserve_account(p_scope text, p_period date, p_limit numeric, p_amount numeric)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE budget_accounts SET reserved_usd = reserved_usd + p_amount, limit_usd = p_limit
     WHERE scope = p_scope AND period = p_period AND spent_usd + reserved_usd + p_amount <= p_limit;
    IF FOUND THEN
        RETURN true;
    END IF;
    INSERT INTO budget_accounts (scope, period, limit_usd)
    SELECT p_scope, p_period, p_limit WHERE p_amount <= p_limit
    ON CONFLICT (scope, period) DO NOTHING;
    UPDATE budget_accounts SET reserved_usd = reserved_usd + p_amount, limit_usd = p_limit
     WHERE scope = p_scope AND period = p_period AND spent_usd + reserved_usd + p_amount <= p_limit;
    RETURN FOUND;
END
$$;

-- Returns NULL when reserved, else the scope that refused: 'issue', 'agent' or 'company'.
CREATE OR REPLACE FUNCTION hq_reserve(
    p_reservation uuid, p_run_id uuid, p_issue_id bigint, p_agent_scope text, p_agent_limit numeric,
    p_company_limit numeric, p_amount numeric, p_ttl_seconds integer
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_period date := hq_month(now());
BEGIN
    p_amount := ceil(p_amount * 1000000) / 1000000;  -- whole micro-dollars, as every money column holds them
    IF p_issue_id IS NOT NULL THEN
        UPDATE issues SET reserved_usd = reserved_usd + p_amount
         WHERE id = p_issue_id AND spent_usd + reserved_usd + p_amount <= budget_usd;
        IF NOT FOUND THEN
            RETURN 'issue';
        END IF;
    END IF;
    IF p_agent_scope IS NOT NULL AND NOT hq_reserve_account(p_agent_scope, v_period, p_agent_limit, p_amount) THEN
        -- Undo in the same transaction (cheaper than a savepoint on every call).
        UPDATE issues SET reserved_usd = reserved_usd - p_amount WHERE id = p_issue_id;
        RETURN 'agent';
    END IF;
    IF NOT hq_reserve_account('company', v_period, p_company_limit, p_amount) THEN
        UPDATE issues SET reserved_usd = reserved_usd - p_amount WHERE id = p_issue_id;
        UPDATE budget_accounts SET reserved_usd = reserved_usd - p_amount
         WHERE scope = p_agent_scope AND period = v_period;
        RETURN 'company';
    END IF;
    INSERT INTO budget_reservations (id, run_id, issue_id, agent_scope, period, amount_usd, expires_at)
    VALUES (p_reservation, p_run_id, p_issue_id, p_agent_scope, v_period, p_amount,
            now() + make_interval(secs => p_ttl_seconds));
    RETURN NULL;
END
$$;

-- One cost row. With p_reservation (a call's final row) the reservation is
-- settled to p_cost in the same statement, and only if the row is new: a
-- retried write can neither add a second row nor count the cost twice.
-- Returns whether the row was written.
--
-- The reservation is locked first (the sweeper skips locked reservations), so
-- the row, its month and the money move together. If the sweeper got there
-- first and charged the reservation in full, the call settles late: a
-- 'correction' row cancels the abandoned charge and this row charges the real
-- cost, both in the month the abandoned charge went to.
--
-- This commit does not wait for the WAL flush (synchronous_commit off): if the
-- database crashes before it reaches disk, the reservation, which was committed
-- durably, is still there, and the sweeper charges it in full as an
-- 'abandoned' row (hq_abandon_reservations). The ledger can then only
-- over-count a call, never lose one.
CREATE OR REPLACE FUNCTION hq_record_call(
    p_run_id uuid, p_seq integer, p_issue_id bigint, p_agent_id integer, p_workflow text, p_tier text,
    p_provider text, p_model text, p_deployment text, p_input_tokens integer, p_output_tokens integer,
    p_cache_write_tokens integer, p_cache_read_tokens integer, p_cost numeric, p_reserved numeric, p_latency_ms integer, p_outcome text, p_error text, p_reservation uuid,
    p_agent_scope text
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_taken record;
    v_abandoned record;
    v_cost numeric := round(p_cost, 6);  -- whole micro-dollars: what spent_usd can hold, so sums stay exact
    v_release numeric := 0;
    v_charge numeric := v_cost;
    v_period date := hq_month(now());
    v_scope text := p_agent_scope;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_reservation IS NULL AND v_cost <> 0 THEN
        RAISE EXCEPTION 'a cost row that costs money must settle a reservation' USING ERRCODE = 'check_violation';
    END IF;
    IF p_reservation IS NOT NULL THEN
        SELECT * INTO v_taken FROM budget_reservations WHERE id = p_reservation FOR UPDATE;
        IF FOUND THEN
            v_release := v_taken.amount_usd;
            v_period := v_taken.period;
            v_scope := v_taken.agent_scope;
        ELSE
            SELECT cost_usd, budget_month, issue_id, agent_id INTO v_abandoned FROM llm_calls
             WHERE reservation_id = p_reservation AND outcome = 'abandoned';
            IF FOUND THEN
                v_period := v_abandoned.budget_month;
            END IF;
            -- (Neither found: the reservation was never there, so the call is charged in full this month.)
        END IF;
    END IF;
    INSERT INTO llm_calls (run_id, call_seq, issue_id, agent_id, workflow, tier, provider, model, deployment,
                           input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, cost_usd,
                           reserved_usd, latency_ms, outcome, error, reservation_id, budget_month)
    VALUES (p_run_id, p_seq, p_issue_id, p_agent_id, p_workflow, p_tier, p_provider, p_model, p_deployment,
            p_input_tokens, p_output_tokens, p_cache_write_tokens, p_cache_read_tokens, v_cost, p_reserved, p_latency_ms, p_outcome, p_error, p_reservation,
            CASE WHEN p_reservation IS NOT NULL THEN v_period END)
    ON CONFLICT (run_id, call_seq) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;  -- written before: the reservation was settled then, and nothing moves now
    END IF;
    IF p_reservation IS NULL THEN
        RETURN true;
    END IF;
    IF v_taken.id IS NOT NULL THEN
        DELETE FROM budget_reservations WHERE id = p_reservation;
    ELSIF v_abandoned.budget_month IS NOT NULL THEN
        INSERT INTO llm_calls (run_id, call_seq, issue_id, agent_id, workflow, tier, cost_usd, outcome, error,
                               reservation_id, budget_month)
        VALUES (p_run_id, NULL, v_abandoned.issue_id, v_abandoned.agent_id, p_workflow, p_tier,
                -v_abandoned.cost_usd, 'correction', 'the call settled late: cancels its abandoned worst-case charge',
                p_reservation, v_period)
        ON CONFLICT (reservation_id) WHERE outcome = 'correction' DO NOTHING;
        IF FOUND THEN
            v_charge := v_cost - v_abandoned.cost_usd;
        END IF;
    END IF;
    PERFORM hq_move_money(p_issue_id, v_scope, v_period, v_release, v_charge);
    RETURN true;
END
$$;

-- For the sweeper: reservations whose call never settled (the process died, or
-- the settlement was lost in a database crash). Each is charged in full — the
-- worst case it was reserved for — as an 'abandoned' cost row keyed by the
-- reservation itself (unique, never reused), so no call that may have happened
-- goes unaccounted and none is charged twice. Returns how many were charged.
--
-- Locks follow hq_reserve's and hq_record_call's order, so a sweep never
-- deadlocks with them: the reservations (skipping any a settlement holds) and
-- every cost row first, then the issues by id, then the month accounts by scope
-- ('agent:…' before 'company') and period.
CREATE OR REPLACE FUNCTION hq_abandon_reservations() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_row record;
    v_issues bigint[] := '{}';
    v_scopes text[] := '{}';
    v_periods date[] := '{}';
    v_amounts numeric[] := '{}';
BEGIN
    FOR v_row IN
        DELETE FROM budget_reservations
         WHERE id IN (SELECT id FROM budget_reservations WHERE expires_at < now() LIMIT 1000 FOR UPDATE SKIP LOCKED)
        RETURNING *
    LOOP
        INSERT INTO llm_calls (run_id, call_seq, issue_id, agent_id, tier, cost_usd, reserved_usd, outcome, error,
                               reservation_id, budget_month)
        VALUES (v_row.run_id, NULL, v_row.issue_id,
                (SELECT id FROM agents WHERE 'agent:' || slug = v_row.agent_scope), 'unknown', v_row.amount_usd,
                v_row.amount_usd, 'abandoned', 'the call never settled; charged the reserved worst case', v_row.id,
                v_row.period)
        ON CONFLICT (reservation_id) WHERE outcome = 'abandoned' DO NOTHING;
        IF FOUND THEN
            v_issues := v_issues || v_row.issue_id;
            v_scopes := v_scopes || v_row.agent_scope;
            v_periods := v_periods || v_row.period;
            v_amounts := v_amounts || v_row.amount_usd;
        END IF;
    END LOOP;
    FOR v_row IN
        SELECT issue_id, sum(amount) AS amount FROM unnest(v_issues, v_amounts) AS u(issue_id, amount)
         WHERE issue_id IS NOT NULL GROUP BY issue_id ORDER BY issue_id
    LOOP
        UPDATE issues SET reserved_usd = greatest(reserved_usd - v_row.amount, 0), spent_usd = spent_usd + v_row.amount
         WHERE id = v_row.issue_id;
    END LOOP;
    FOR v_row IN
        SELECT scope, period, sum(amount) AS amount
          FROM (SELECT scope, period, amount FROM unnest(v_scopes, v_periods, v_amounts) AS u(scope, period, amount)
                 WHERE scope IS NOT NULL
                UNION ALL
                SELECT 'company', period, amount FROM unnest(v_periods, v_amounts) AS u(period, amount)) charged
         GROUP BY scope, period ORDER BY scope, period
    LOOP
        UPDATE budget_accounts
           SET reserved_usd = greatest(reserved_usd - v_row.amount, 0), spent_usd = spent_usd + v_row.amount
         WHERE scope = v_row.scope AND period = v_row.period;
    END LOOP;
    RETURN cardinality(v_amounts);
END
$$;
