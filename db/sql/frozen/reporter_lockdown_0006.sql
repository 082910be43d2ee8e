-- Frozen: db/sql/reporter_lockdown.sql exactly as migration 0006 applied it at release (31e726c); later changes are new migrations.

-- hq_reporter locked down: the report views, within bounds, and nothing else.
--
-- Applied by migration 0006, which first sets hq.reporter_connection_limit
-- (HQ_REPORTER_CONNECTION_LIMIT, default 10) for this transaction. Every step
-- does what the migrating role may and skips the rest with a NOTICE; each is
-- idempotent. "The app role" below is the migrating role (current_user): it is
-- the role hq runs as, so whatever PUBLIC loses it gets back explicitly.
--
-- What PostgreSQL does not let any role pin for another (documented in the
-- README, "Security model"): statement_timeout and
-- idle_in_transaction_session_timeout are per-role *defaults* that the reporter
-- may change in its own session (the connection limit bounds what that costs);
-- default_transaction_read_only likewise (the reporter has no write privilege
-- anywhere, so that only matters for TEMP, which is revoked); NOTIFY and
-- LISTEN need no privilege at all (wake-up payloads are hints, see
-- scheduler/listener.py); CONNECT to the cluster's other databases is theirs to
-- grant (restrict hq_reporter to hq's database in pg_hba.conf).

-- 1. Security barriers: a function in the reporter's WHERE clause sees only rows the view returns.
--    (views.sql creates them WITH (security_barrier) from now on; this covers views created before.)
DO $$
DECLARE
    report record;
BEGIN
    FOR report IN SELECT viewname FROM pg_views WHERE schemaname = current_schema() AND viewname LIKE 'report\_%' LOOP
        EXECUTE format('ALTER VIEW %I SET (security_barrier = true)', report.viewname);
    END LOOP;
END
$$;

-- 2. No TEMP for PUBLIC in hq's database (temporary tables are unbounded; pg_temp functions were the leak),
--    granted back to the app role. Needs the database's owner (or a superuser).
DO $$
BEGIN
    IF NOT pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE') THEN
        RAISE NOTICE 'not the database owner: PUBLIC keeps TEMP on database %; revoke it as the owner', current_database();
        RETURN;
    END IF;
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM hq_reporter', current_database());
    END IF;
END
$$;

-- 3. hq's advisory locks (the migration lock) and large objects (rows outside any table: a read-only
--    session can still create them and fill the disk) for the app role only. PostgreSQL has no privilege
--    for either; revoking EXECUTE on the functions needs their owner, the bootstrap superuser.
DO $$
DECLARE
    guarded regprocedure;
BEGIN
    IF NOT pg_has_role(current_user, (SELECT proowner FROM pg_proc WHERE oid = 'pg_advisory_lock(bigint)'::regprocedure),
                       'USAGE') THEN
        RAISE NOTICE 'not a superuser: every role can still take advisory locks and create large objects in %',
            current_database();
        RETURN;
    END IF;
    FOR guarded IN SELECT oid::regprocedure FROM pg_proc
                    WHERE pronamespace = 'pg_catalog'::regnamespace
                      AND (proname ~ '^pg_(try_)?advisory_'
                           OR proname IN ('lo_creat', 'lo_create', 'lo_from_bytea', 'lo_import', 'lo_open', 'lo_put',
                                          'lowrite', 'lo_truncate', 'lo_truncate64', 'lo_unlink')) LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', guarded);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', guarded, current_user);
    END LOOP;
END
$$;

-- 3b. No CREATE on hq's schema for PUBLIC. PostgreSQL 15+ creates databases that way; a database made by
--     PostgreSQL 14 or older grants it, and then the reporter could define an overload of a function hq's
--     triggers call (hq_bucket(integer, ...)) and have it run as the app role. Needs the schema's owner.
DO $$
BEGIN
    IF NOT has_schema_privilege('public', current_schema(), 'CREATE') THEN
        RETURN;
    END IF;
    IF NOT pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = current_schema()), 'USAGE') THEN
        RAISE WARNING 'PUBLIC may CREATE in schema %, so any role can plant functions hq calls: '
                      'run REVOKE CREATE ON SCHEMA % FROM PUBLIC as its owner', current_schema(), current_schema();
        RETURN;
    END IF;
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    EXECUTE format('GRANT CREATE ON SCHEMA %I TO %I', current_schema(), current_user);
END
$$;

-- 4. The role itself (cluster-wide): default timeouts, a pinned temp_file_limit, a connection limit.
DO $$
DECLARE
    connection_limit integer := coalesce(nullif(current_setting('hq.reporter_connection_limit', true), '')::integer, 10);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hq_reporter') THEN
        RETURN;
    END IF;
    BEGIN
        ALTER ROLE hq_reporter SET statement_timeout = '60s';
        ALTER ROLE hq_reporter SET idle_in_transaction_session_timeout = '60s';
        EXECUTE format('ALTER ROLE hq_reporter CONNECTION LIMIT %s', connection_limit);
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot alter role hq_reporter (needs CREATEROLE and ADMIN on it): no timeouts or connection limit';
    END;
    -- temp_file_limit is superuser-only to set, so a superuser's role default is a pin the reporter cannot lift.
    BEGIN
        ALTER ROLE hq_reporter SET temp_file_limit = '1GB';
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'not a superuser: temp_file_limit for hq_reporter is not pinned';
    END;
END
$$;
