-- Frozen: db/sql/state_machine.sql exactly as released (git show 6ece9b8:db/sql/state_machine.sql); applied by migrations 0001, 0003 and 0004.
-- Never edit: later changes are new migrations.

-- The issue state machine, enforced where nothing can bypass it: in the database.
--
-- * issue_statuses / issue_transitions hold the legal moves (seeded here).
-- * hq_issue_guard rejects any other move, even a raw UPDATE from psql, with an
--   error that names both statuses.
-- * hq_issue_audit appends one issue_events row per status change, with the actor
--   and workflow the application set via SET LOCAL hq.actor / hq.workflow
--   ('sql:<role>' when a person typed the SQL), and sends a small pg_notify so the
--   next actor wakes within a second.
-- * Dependency triggers keep issues.unmet_deps exact, so "claimable" is a plain
--   column predicate that a partial index can serve.
--
-- Every object here is created with CREATE OR REPLACE / ON CONFLICT so a later
-- migration can re-apply this file after changing it.

INSERT INTO issue_statuses (name, is_terminal, is_initial, position) VALUES
    ('backlog',          false, true,  1),
    ('todo',             false, true,  2),
    ('in_progress',      false, false, 3),
    ('in_review',        false, false, 4),
    ('pending_approval', false, false, 5),
    ('approved',         false, false, 6),
    ('deploying',        false, false, 7),
    ('done',             true,  false, 8),
    ('blocked',          false, false, 9),
    ('rejected',         true,  false, 10),
    ('cancelled',        true,  false, 11)
ON CONFLICT (name) DO UPDATE SET is_terminal = EXCLUDED.is_terminal, is_initial = EXCLUDED.is_initial,
                                 position = EXCLUDED.position;

INSERT INTO issue_transitions (from_status, to_status, description) VALUES
    ('backlog',          'todo',             'assigned to someone who will do it'),
    ('backlog',          'cancelled',        'dropped before work started'),
    ('todo',             'in_progress',      'claimed by its assignee'),
    ('todo',             'blocked',          'cannot start'),
    ('todo',             'backlog',          'deprioritised'),
    ('todo',             'cancelled',        'dropped'),
    ('in_progress',      'in_review',        'work submitted for review'),
    ('in_progress',      'blocked',          'stuck while working'),
    ('in_progress',      'todo',             'released: waiting on research or lease lost'),
    ('in_progress',      'cancelled',        'dropped while in progress'),
    ('in_review',        'pending_approval', 'review passed; a human must approve'),
    ('in_review',        'approved',         'review passed'),
    ('in_review',        'todo',             'review failed: rework'),
    ('in_review',        'blocked',          'too many failed reviews, or review cannot proceed'),
    ('in_review',        'cancelled',        'dropped during review'),
    ('pending_approval', 'approved',         'a human approved'),
    ('pending_approval', 'rejected',         'a human rejected'),
    ('pending_approval', 'todo',             'a human asked for a revision'),
    ('pending_approval', 'cancelled',        'dropped while waiting for approval'),
    ('approved',         'deploying',        'claimed by a deployer'),
    ('approved',         'cancelled',        'dropped before deploy'),
    ('deploying',        'done',             'deployed and verified'),
    ('deploying',        'todo',             'verification failed: rework'),
    ('deploying',        'blocked',          'deploy cannot proceed'),
    ('blocked',          'todo',             'unblocked'),
    ('blocked',          'backlog',          'unblocked and deprioritised'),
    ('blocked',          'cancelled',        'dropped while blocked')
ON CONFLICT (from_status, to_status) DO UPDATE SET description = EXCLUDED.description;

-- Who is acting: the application's SET LOCAL hq.actor, or the SQL role for raw SQL.
CREATE OR REPLACE FUNCTION hq_actor() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('hq.actor', true), ''), 'sql:' || session_user)
$$;

-- Who is acting, for the rest of this transaction: the audit trigger and wake-ups read it back.
CREATE OR REPLACE FUNCTION hq_act_as(actor text, workflow text, run_id text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('hq.actor', actor, true), set_config('hq.workflow', workflow, true),
           set_config('hq.run_id', run_id, true);
$$;

CREATE OR REPLACE FUNCTION hq_setting(name text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting(name, true), '')
$$;

-- BEFORE INSERT/UPDATE: legality and the columns that must follow a status change.
CREATE OR REPLACE FUNCTION hq_issue_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    allowed text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT 1 FROM issue_statuses WHERE name = NEW.status AND is_initial) THEN
            RAISE EXCEPTION 'illegal initial status: issues start in backlog or todo, not %', NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        NEW.status_changed_at := now();
        RETURN NEW;
    END IF;

    NEW.updated_at := now();
    IF NEW.status IS DISTINCT FROM OLD.status THEN  -- always, by the trigger's WHEN; kept for clarity
        IF NOT EXISTS (SELECT 1 FROM issue_transitions
                       WHERE from_status = OLD.status AND to_status = NEW.status) THEN
            SELECT string_agg(to_status, ', ' ORDER BY s.position) INTO allowed
              FROM issue_transitions t JOIN issue_statuses s ON s.name = t.to_status
             WHERE t.from_status = OLD.status;
            RAISE EXCEPTION 'illegal status transition for issue %: % -> %', OLD.id, OLD.status, NEW.status
                USING ERRCODE = 'check_violation',
                      HINT = CASE WHEN allowed IS NULL THEN OLD.status || ' is terminal'
                                  ELSE 'from ' || OLD.status || ' an issue may go to: ' || allowed END;
        END IF;
        NEW.status_changed_at := now();
        IF NEW.status = 'done' THEN
            NEW.done_at := now();
        END IF;
        IF NEW.status = 'blocked' THEN
            NEW.blocked_reason := coalesce(NEW.blocked_reason, 'agent');
        ELSE
            -- Leaving 'blocked' ends the escalation; a stale reason would mislead reports.
            NEW.blocked_reason := NULL;
            NEW.escalated_to_id := NULL;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

-- The agents that should act next on an issue, by slug, for the wake-up payload.
CREATE OR REPLACE FUNCTION hq_next_actors(i issues) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(DISTINCT a.slug), '{}')
      FROM agents a
     WHERE a.status = 'active'
       AND CASE i.status
               WHEN 'backlog'     THEN a.id = i.assignee_id OR (i.assignee_id IS NULL AND a.manager_id IS NULL)
               WHEN 'todo'        THEN a.id = i.assignee_id
               WHEN 'in_progress' THEN a.id = i.assignee_id
               WHEN 'in_review'   THEN a.id = i.reviewer_id
               WHEN 'approved'    THEN 'deploy_verify' = ANY (a.workflows)
               WHEN 'deploying'   THEN 'deploy_verify' = ANY (a.workflows)
               WHEN 'blocked'     THEN a.id = i.escalated_to_id
               ELSE false
           END
$$;

CREATE OR REPLACE FUNCTION hq_wake(i issues, event text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    -- A parent waiting on its sub-issues is moved on by the sweeper ('_sweep'), not by an agent.
    targets text[] := CASE WHEN i.status = 'blocked' AND i.blocked_reason = 'waiting' THEN ARRAY['_sweep']
                           ELSE hq_next_actors(i) END;
BEGIN
    -- Small payload, well under NOTIFY's 8000-byte limit; listeners look nothing up.
    PERFORM pg_notify('hq_wake', json_build_object(
        'issue', i.id, 'status', i.status, 'event', event,
        'actor', hq_actor(), 'wake', targets)::text);
END
$$;

-- AFTER INSERT/UPDATE: the audit row and the wake-up.
CREATE OR REPLACE FUNCTION hq_issue_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    dependent issues;
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO issue_events (issue_id, from_status, to_status, actor, workflow, run_id, reason)
        VALUES (NEW.id,
                CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
                NEW.status,
                hq_actor(),
                hq_setting('hq.workflow'),
                hq_setting('hq.run_id')::uuid,
                CASE WHEN NEW.status = 'blocked' THEN NEW.blocked_reason END);
        PERFORM hq_wake(NEW, 'status');
    ELSIF NEW.assignee_id IS DISTINCT FROM OLD.assignee_id
       OR NEW.reviewer_id IS DISTINCT FROM OLD.reviewer_id
       OR NEW.escalated_to_id IS DISTINCT FROM OLD.escalated_to_id THEN
        -- A hand-off without a status change still has a new next actor.
        PERFORM hq_wake(NEW, 'handoff');
    END IF;

    -- A finished issue releases the issues that depend on it; the ones now free to start wake up.
    IF TG_OP = 'UPDATE' AND NEW.status IS DISTINCT FROM OLD.status
       AND (SELECT is_terminal FROM issue_statuses WHERE name = NEW.status)
       AND NOT (SELECT is_terminal FROM issue_statuses WHERE name = OLD.status) THEN
        FOR dependent IN
            UPDATE issues SET unmet_deps = unmet_deps - 1
             WHERE id IN (SELECT issue_id FROM issue_dependencies WHERE depends_on_id = NEW.id)
            RETURNING *
        LOOP
            IF dependent.unmet_deps = 0 THEN
                PERFORM hq_wake(dependent, 'ready');
            END IF;
        END LOOP;
    END IF;
    RETURN NULL;
END
$$;

-- The triggers fire only when something they care about changes: budget,
-- lease and counter updates (most updates) pay nothing for them.
DROP TRIGGER IF EXISTS issues_guard ON issues;
DROP TRIGGER IF EXISTS issues_guard_insert ON issues;
CREATE TRIGGER issues_guard_insert BEFORE INSERT ON issues
    FOR EACH ROW EXECUTE FUNCTION hq_issue_guard();
DROP TRIGGER IF EXISTS issues_guard_update ON issues;
CREATE TRIGGER issues_guard_update BEFORE UPDATE ON issues
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION hq_issue_guard();

DROP TRIGGER IF EXISTS issues_audit ON issues;
DROP TRIGGER IF EXISTS issues_audit_insert ON issues;
CREATE TRIGGER issues_audit_insert AFTER INSERT ON issues
    FOR EACH ROW EXECUTE FUNCTION hq_issue_audit();
DROP TRIGGER IF EXISTS issues_audit_update ON issues;
CREATE TRIGGER issues_audit_update AFTER UPDATE ON issues
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.assignee_id IS DISTINCT FROM NEW.assignee_id
                       OR OLD.reviewer_id IS DISTINCT FROM NEW.reviewer_id
                       OR OLD.escalated_to_id IS DISTINCT FROM NEW.escalated_to_id)
    EXECUTE FUNCTION hq_issue_audit();

-- Dependencies: no cycles, and unmet_deps counts the ones not yet finished.
CREATE OR REPLACE FUNCTION hq_dependency_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        WITH RECURSIVE reach(id) AS (
            SELECT NEW.depends_on_id
            UNION
            SELECT d.depends_on_id FROM issue_dependencies d JOIN reach r ON d.issue_id = r.id
        )
        SELECT 1 FROM reach WHERE id = NEW.issue_id
    ) THEN
        RAISE EXCEPTION 'dependency cycle: issue % already depends on issue %', NEW.depends_on_id, NEW.issue_id
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE issues SET unmet_deps = unmet_deps + 1
     WHERE id = NEW.issue_id
       AND NOT (SELECT s.is_terminal FROM issues d JOIN issue_statuses s ON s.name = d.status
                 WHERE d.id = NEW.depends_on_id);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION hq_dependency_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE issues SET unmet_deps = unmet_deps - 1
     WHERE id = OLD.issue_id
       AND NOT (SELECT s.is_terminal FROM issues d JOIN issue_statuses s ON s.name = d.status
                 WHERE d.id = OLD.depends_on_id);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS issue_dependencies_added ON issue_dependencies;
CREATE TRIGGER issue_dependencies_added AFTER INSERT ON issue_dependencies
    FOR EACH ROW EXECUTE FUNCTION hq_dependency_added();

DROP TRIGGER IF EXISTS issue_dependencies_removed ON issue_dependencies;
CREATE TRIGGER issue_dependencies_removed AFTER DELETE ON issue_dependencies
    FOR EACH ROW EXECUTE FUNCTION hq_dependency_removed();

-- The audit log is append-only: history that can be edited is not history.
CREATE OR REPLACE FUNCTION hq_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'issue_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER IF EXISTS issue_events_append_only ON issue_events;
CREATE TRIGGER issue_events_append_only BEFORE UPDATE OR DELETE ON issue_events
    FOR EACH ROW EXECUTE FUNCTION hq_events_append_only();
