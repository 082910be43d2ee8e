-- Sub-issues are funded by their parent, never minted (issue 23, item 12).
--
-- An agent's tool or workflow that opens a funded sub-issue (ask_research,
-- create_subissue, a playbook's decomposition, an escalation's split) carves
-- the child's budget out of the parent: one compare-and-set lowers the
-- parent's budget_usd by the carve, only if the parent's own spent + reserved
-- + carve still fits in it (queries/carves.sql, carve), and a budget_carves row
-- records it. So the parent can never be charged past its budget through its
-- children: what they hold is no longer the parent's to spend, and the
-- parent's own reservations (hq_reserve) are checked against what is left.
--
-- When a carved child is terminal (done, rejected, cancelled), what it left
-- unused, to the cent (budget - spent - reserved, truncated), moves back: the
-- child's budget goes down and the parent's up by the same amount, in the
-- same statement as the carve row's returned_usd, which can never pass the
-- carve's amount. A reservation still open when the child ends is returned
-- the same way when it settles (the trigger fires on any change of a terminal
-- child's money), and a parent that is itself a terminal carved child passes
-- what came back on to its own parent. Every cent therefore moves back once:
-- for every carve, child budget + returned = amount (plus whatever a person
-- added to the child, which is never handed to the parent).
--
-- Lock order: the child's row (being updated), its carve row, then the parent.
--
-- Applied by migration 0013.

CREATE OR REPLACE FUNCTION hq_return_carve() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_free numeric;
    v_carve record;
    v_back numeric;
BEGIN
    IF NOT coalesce((SELECT is_terminal FROM issue_statuses WHERE name = NEW.status), false) THEN
        RETURN NULL;
    END IF;
    v_free := trunc(NEW.budget_usd - NEW.spent_usd - NEW.reserved_usd, 2);
    IF v_free <= 0 THEN
        RETURN NULL;
    END IF;
    SELECT parent_id, amount_usd - returned_usd AS unreturned INTO v_carve
      FROM budget_carves WHERE child_id = NEW.id FOR UPDATE;
    IF NOT FOUND OR v_carve.unreturned <= 0 THEN
        RETURN NULL;  -- not carved (a person's sub-issue), or all of it is back already
    END IF;
    v_back := least(v_free, v_carve.unreturned);
    UPDATE budget_carves SET returned_usd = returned_usd + v_back, returned_at = now() WHERE child_id = NEW.id;
    UPDATE issues SET budget_usd = budget_usd - v_back WHERE id = NEW.id;
    UPDATE issues SET budget_usd = budget_usd + v_back WHERE id = v_carve.parent_id;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS issues_return_carve ON issues;
CREATE TRIGGER issues_return_carve AFTER UPDATE ON issues
    FOR EACH ROW WHEN (NEW.parent_id IS NOT NULL
                       AND (OLD.status IS DISTINCT FROM NEW.status
                            OR OLD.budget_usd IS DISTINCT FROM NEW.budget_usd
                            OR OLD.spent_usd IS DISTINCT FROM NEW.spent_usd
                            OR OLD.reserved_usd IS DISTINCT FROM NEW.reserved_usd))
    EXECUTE FUNCTION hq_return_carve();
