-- The sweeper's side of budgets (reservations and settlement are functions in db/sql/budget.sql).

-- name: abandon_expired_reservations
-- Reservations whose call never settled are charged in full as 'abandoned' cost rows.
SELECT hq_abandon_reservations();
