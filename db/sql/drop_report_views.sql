-- Drop every report view, before views.sql re-creates them (or on downgrade).

DO $$
DECLARE
    report record;
BEGIN
    FOR report IN SELECT viewname FROM pg_views WHERE schemaname = current_schema() AND viewname LIKE 'report\_%' LOOP
        EXECUTE format('DROP VIEW %I', report.viewname);
    END LOOP;
END
$$;
