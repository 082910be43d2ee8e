-- Frozen: db/sql/reporter.sql exactly as released (git show 6ece9b8:db/sql/reporter.sql); applied by migrations 0002 and 0004.
-- Never edit: later changes are new migrations.

-- hq_reporter: a login role that can read the report views and nothing else.
--
-- Views run with their owner's rights, so granting SELECT on a view does not
-- grant anything on the tables behind it. The role can neither read tables
-- directly nor write anywhere; its sessions are read-only by default as well.
-- Creating a role needs CREATEROLE: where the migrating user lacks it, the role
-- is skipped with a notice (create it by hand, then re-run `hq db upgrade`).

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
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM hq_reporter';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM hq_reporter';
    EXECUTE 'REVOKE CREATE ON SCHEMA public FROM hq_reporter';
    EXECUTE 'GRANT USAGE ON SCHEMA public TO hq_reporter';
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO hq_reporter', current_database());
    FOR report IN SELECT viewname FROM pg_views WHERE schemaname = 'public' AND viewname LIKE 'report\_%' LOOP
        EXECUTE format('GRANT SELECT ON %I TO hq_reporter', report.viewname);
    END LOOP;
END
$$;
