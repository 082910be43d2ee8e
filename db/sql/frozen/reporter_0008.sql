-- Frozen: db/sql/reporter.sql exactly as migration 0008 applied it at release (31e726c); later changes are new migrations.

-- hq_reporter: a login role that can read the report views and nothing else.
--
-- Views run with their owner's rights, so granting SELECT on a view does not
-- grant anything on the tables behind it. The role can neither read tables
-- directly nor write anywhere; its sessions are read-only by default as well.
-- Creating a role needs CREATEROLE: where the migrating user lacks it, the role
-- is skipped with a notice (an admin creates it, then `hq db grant-reporter`
-- applies this file again; `hq db upgrade` prints the admin's SQL).
-- Its bounds (no TEMP, no advisory locks, timeouts, a connection limit) and the
-- views' security barrier are set by db/sql/reporter_lockdown.sql (migration 0006).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter') THEN
        BEGIN
            CREATE ROLE hq_reporter LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
            ALTER ROLE hq_reporter SET default_transaction_read_only = on;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot create role hq_reporter (no CREATEROLE); reporting access is not set up';
        END;
    END IF;
END
$$;

DO $$
DECLARE
    report record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter') THEN
        RETURN;
    END IF;
    -- hq's schema is whatever the migration runs in (HQ_DB_SCHEMA, default public).
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM hq_reporter', current_schema());
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM hq_reporter', current_schema());
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM hq_reporter', current_schema());
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hq_reporter', current_schema());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO hq_reporter', current_database());
    FOR report IN SELECT viewname FROM pg_views WHERE schemaname = current_schema() AND viewname LIKE 'report\_%' LOOP
        EXECUTE format('GRANT SELECT ON %I.%I TO hq_reporter', current_schema(), report.viewname);
    END LOOP;
    IF current_schema() <> 'public' THEN  -- so `SELECT * FROM report_issue_board` finds the views
        BEGIN
            EXECUTE format('ALTER ROLE hq_reporter IN DATABASE %I SET search_path = %I', current_database(),
                           current_schema());
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'cannot set hq_reporter''s search_path: it must name the views as %.report_…', current_schema();
        END;
    END IF;
END
$$;
