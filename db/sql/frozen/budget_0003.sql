-- Frozen: the budget functions exactly as migration 0003 created them (0005 replaces them; its downgrade restores these).

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
-- CREATE OR REPLACE throughout: a later migration re-applies this file.

-- Reserve on one monthly account (its limit kept current); false when it cannot cover the amount.
CREATE OR REPLACE FUNCTION hq_reserve_account(p_scope text, p_period date, p_limit numeric, p_amount numeric)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..2 LOOP
        UPDATE budget_accounts SET reserved_usd = reserved_usd + p_amount, limit_usd = p_limit
         WHERE scope = p_scope AND period = p_period AND spent_usd + reserved_usd + p_amount <= p_limit;
        IF FOUND THEN
            RETURN true;
        END IF;
        IF EXISTS (SELECT 1 FROM budget_accounts WHERE scope = p_scope AND period = p_period) THEN
            RETURN false;  -- the account exists and cannot cover it
        END IF;
        -- The month's first reservation for this scope; a concurrent first one loses the insert and retries.
        INSERT INTO budget_accounts (scope, period, limit_usd, reserved_usd)
        SELECT p_scope, p_period, p_limit, p_amount WHERE p_amount <= p_limit
        ON CONFLICT (scope, period) DO NOTHING;
        IF FOUND THEN
            RETURN true;
        END IF;
        IF p_amount > p_limit THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- Returns NULL when reserved, else the scope that refused: 'issue', 'agent' or 'company'.
CREATE OR REPLACE FUNCTION hq_reserve(
    p_reservation uuid, p_run_id uuid, p_issue_id bigint, p_agent_scope text, p_agent_limit numeric,
    p_company_limit numeric, p_amount numeric, p_ttl_seconds integer
) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_period date := date_trunc('month', now())::date;
BEGIN
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
-- This commit does not wait for the WAL flush (synchronous_commit off): if the
-- database crashes before it reaches disk, the reservation, which was committed
-- durably, is still there, and the sweeper charges it in full as an
-- 'abandoned' row (hq_abandon_reservations). The ledger can then only
-- over-count a call, never lose one.
CREATE OR REPLACE FUNCTION hq_record_call(
    p_run_id uuid, p_seq integer, p_issue_id bigint, p_agent_id integer, p_workflow text, p_tier text,
    p_provider text, p_model text, p_deployment text, p_input_tokens integer, p_output_tokens integer,
    p_cost numeric, p_reserved numeric, p_latency_ms integer, p_outcome text, p_error text, p_reservation uuid,
    p_agent_scope text
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_taken record;
    v_release numeric := 0;
    v_charge numeric := p_cost;
    v_abandoned numeric;
    v_period date := date_trunc('month', now())::date;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO llm_calls (run_id, call_seq, issue_id, agent_id, workflow, tier, provider, model, deployment,
                           input_tokens, output_tokens, cost_usd, reserved_usd, latency_ms, outcome, error,
                           reservation_id)
    VALUES (p_run_id, p_seq, p_issue_id, p_agent_id, p_workflow, p_tier, p_provider, p_model, p_deployment,
            p_input_tokens, p_output_tokens, p_cost, p_reserved, p_latency_ms, p_outcome, p_error, p_reservation)
    ON CONFLICT (run_id, call_seq) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF p_reservation IS NULL THEN
        RETURN true;
    END IF;
    -- Exactly once: whoever deletes the reservation releases it.
    DELETE FROM budget_reservations WHERE id = p_reservation RETURNING * INTO v_taken;
    IF FOUND THEN
        v_release := v_taken.amount_usd;
        v_period := v_taken.period;
    ELSE
        -- The sweeper got there first and charged the reservation in full: charge only the difference.
        -- (Neither found: the reservation was never there, so the call is charged in full.)
        DELETE FROM llm_calls WHERE reservation_id = p_reservation AND outcome = 'abandoned'
        RETURNING cost_usd INTO v_abandoned;
        v_charge := p_cost - coalesce(v_abandoned, 0);
    END IF;
    IF p_issue_id IS NOT NULL THEN
        UPDATE issues SET reserved_usd = greatest(reserved_usd - v_release, 0),
                          spent_usd = greatest(spent_usd + v_charge, 0)
         WHERE id = p_issue_id;
    END IF;
    UPDATE budget_accounts
       SET reserved_usd = greatest(reserved_usd - v_release, 0), spent_usd = greatest(spent_usd + v_charge, 0)
     WHERE period = v_period AND scope IN ('company', coalesce(v_taken.agent_scope, p_agent_scope, '(none)'));
    RETURN true;
END
$$;

-- For the sweeper: reservations whose call never settled (the process died, or
-- the settlement was lost in a database crash). Each is charged in full — the
-- worst case it was reserved for — as an 'abandoned' cost row, so no call that
-- may have happened goes unaccounted. Returns how many were charged.
CREATE OR REPLACE FUNCTION hq_abandon_reservations() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer := 0;
    v_row record;
BEGIN
    FOR v_row IN
        DELETE FROM budget_reservations
         WHERE id IN (SELECT id FROM budget_reservations WHERE expires_at < now() LIMIT 1000 FOR UPDATE SKIP LOCKED)
        RETURNING *
    LOOP
        INSERT INTO llm_calls (run_id, call_seq, issue_id, tier, cost_usd, reserved_usd, outcome, error,
                               reservation_id)
        VALUES (v_row.run_id, -1 - v_count, v_row.issue_id, 'unknown', v_row.amount_usd, v_row.amount_usd,
                'abandoned', 'the call never settled; charged the reserved worst case', v_row.id)
        ON CONFLICT (run_id, call_seq) DO NOTHING;
        IF v_row.issue_id IS NOT NULL THEN
            UPDATE issues SET reserved_usd = greatest(reserved_usd - v_row.amount_usd, 0),
                              spent_usd = spent_usd + v_row.amount_usd
             WHERE id = v_row.issue_id;
        END IF;
        UPDATE budget_accounts
           SET reserved_usd = greatest(reserved_usd - v_row.amount_usd, 0), spent_usd = spent_usd + v_row.amount_usd
         WHERE period = v_row.period AND scope IN ('company', coalesce(v_row.agent_scope, '(none)'));
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
