-- Frozen: db/sql/ledger.sql exactly as migration 0005 applied it at release (31e726c); later changes are new migrations.

-- The ledger's shape since migration 0005: abandoned charges keyed by their
-- reservation, late settlements as correction rows, and history that cannot be
-- rewritten.
--
-- * An 'abandoned' row (the sweeper charged a reservation in full) and a
--   'correction' row (a late settlement cancels that charge) belong to a
--   reservation, not to a call sequence: call_seq is NULL, and each is unique
--   per reservation, so no sweep can ever drop or repeat one.
-- * budget_month names the month account a row was charged to, so every
--   account's spent_usd is the sum of its rows, even for a call settled after
--   the month turned.
-- * llm_calls and issue_events are append-only: UPDATE, DELETE and TRUNCATE are
--   refused by trigger, for every role including the owner. Corrections are
--   new rows. (A superuser can still disable triggers; that is out of scope.)

ALTER TABLE llm_calls ADD COLUMN budget_month date;
ALTER TABLE llm_calls ALTER COLUMN call_seq DROP NOT NULL;
ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_outcome_check;
ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_outcome_check
    CHECK (outcome IN ('ok', 'fallback', 'error', 'budget_refused', 'abandoned', 'correction'));
ALTER TABLE llm_calls DROP CONSTRAINT llm_calls_cost_usd_check;
ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_cost_usd_check
    CHECK (CASE WHEN outcome = 'correction' THEN cost_usd <= 0 ELSE cost_usd >= 0 END);
ALTER TABLE llm_calls ADD CONSTRAINT llm_calls_keyed_check
    CHECK (CASE WHEN outcome IN ('abandoned', 'correction') THEN reservation_id IS NOT NULL
                ELSE call_seq IS NOT NULL END);
CREATE UNIQUE INDEX llm_calls_abandoned_key ON llm_calls (reservation_id) WHERE outcome = 'abandoned';
CREATE UNIQUE INDEX llm_calls_correction_key ON llm_calls (reservation_id) WHERE outcome = 'correction';

-- Rows written before 0005 were charged to their reservation's month, which was the month they were written in
-- (or, rarely, the one before: that is as close as the old rows allow).
UPDATE llm_calls SET budget_month = hq_month(created_at) WHERE reservation_id IS NOT NULL;

CREATE OR REPLACE FUNCTION hq_refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused); corrections are new rows', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER llm_calls_rollup_delete ON llm_calls;  -- nothing deletes cost rows any more
CREATE TRIGGER llm_calls_append_only BEFORE UPDATE OR DELETE ON llm_calls
    FOR EACH ROW EXECUTE FUNCTION hq_refuse_rewrite();
CREATE TRIGGER llm_calls_no_truncate BEFORE TRUNCATE ON llm_calls
    FOR EACH STATEMENT EXECUTE FUNCTION hq_refuse_rewrite();
CREATE TRIGGER issue_events_no_truncate BEFORE TRUNCATE ON issue_events
    FOR EACH STATEMENT EXECUTE FUNCTION hq_refuse_rewrite();
