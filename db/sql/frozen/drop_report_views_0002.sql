-- Frozen: db/sql/drop_report_views.sql exactly as released (git show 6ece9b8:db/sql/drop_report_views.sql); applied by migrations 0002 and 0004.
-- Never edit: later changes are new migrations.

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
