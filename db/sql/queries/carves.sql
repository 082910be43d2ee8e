-- Funding a sub-issue out of its parent (db/sql/carves.sql says how the money comes back). The store's alone.

-- name: carve
-- One statement: lower the parent's budget by :amount only if its own spent + reserved + :amount fit in it,
-- and record the carve for the child. Nothing happens for a child carved before (a replay), and a concurrent
-- second carve for the same child fails on budget_carves' key, rolling its parent update back with it.
WITH before AS (
    SELECT 1 FROM budget_carves WHERE child_id = :child_id
), parent AS (
    UPDATE issues SET budget_usd = budget_usd - :amount
     WHERE id = :parent_id AND NOT EXISTS (SELECT 1 FROM before)
       AND spent_usd + reserved_usd + :amount <= budget_usd
    RETURNING id
), carved AS (
    INSERT INTO budget_carves (child_id, parent_id, amount_usd)
    SELECT :child_id, id, :amount FROM parent
    RETURNING child_id
)
SELECT EXISTS (SELECT 1 FROM before) AS replayed, EXISTS (SELECT 1 FROM carved) AS carved;
