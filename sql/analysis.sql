-- Continuous funnels and retention: catalog, refresh entry point and monitoring view.

CREATE TABLE beacon.continuous_analysis (
    project         text NOT NULL REFERENCES beacon.project (name) ON DELETE CASCADE,
    name            text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('funnel', 'retention')),
    -- the arguments as given
    definition      jsonb NOT NULL,
    -- what creation resolved: collections with their rendered conditions, breakdown
    -- column, window or period, zone
    layout          jsonb NOT NULL,
    collections     text[] NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('async', 'immediate')),
    entries_applied bigint NOT NULL DEFAULT 0,
    last_refresh    timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);
SELECT pg_catalog.pg_extension_config_dump('beacon.continuous_analysis', '');
REVOKE ALL ON beacon.continuous_analysis FROM PUBLIC;

-- Async analyses for beacon.refresh_continuous_analysis, visible to the session.
CREATE FUNCTION beacon._async_continuous_analyses() RETURNS TABLE (project text, name text)
LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    SELECT a.project, a.name FROM beacon.continuous_analysis a
     WHERE a.mode = 'async' AND has_schema_privilege(session_user, a.project, 'USAGE')
$$;
GRANT EXECUTE ON FUNCTION beacon._async_continuous_analyses() TO PUBLIC;

CREATE FUNCTION beacon._continuous_analysis_error(project text, name text, message text) RETURNS void
LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    UPDATE beacon.continuous_analysis SET last_error = message
     WHERE continuous_analysis.project = _continuous_analysis_error.project
       AND continuous_analysis.name = _continuous_analysis_error.name
$$;
REVOKE ALL ON FUNCTION beacon._continuous_analysis_error(text, text, text) FROM PUBLIC;

-- Rebuilds the pending users of async continuous analyses (all, one project's, or one),
-- each in its own subtransaction so that one failing analysis is recorded in last_error
-- and does not stop the others. Returns how many pending entries were applied.
CREATE FUNCTION beacon.refresh_continuous_analysis(project text DEFAULT NULL, name text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    a record;
    applied bigint := 0;
BEGIN
    FOR a IN SELECT d.project, d.name FROM beacon._async_continuous_analyses() d
              WHERE has_schema_privilege(d.project, 'USAGE')
                AND (refresh_continuous_analysis.project IS NULL OR d.project = refresh_continuous_analysis.project)
                AND (refresh_continuous_analysis.name IS NULL OR d.name = refresh_continuous_analysis.name)
              ORDER BY 1, 2
    LOOP
        BEGIN
            applied := applied + beacon._refresh_continuous_analysis_one(a.project, a.name);
        EXCEPTION WHEN OTHERS THEN
            PERFORM beacon._continuous_analysis_error(a.project, a.name, SQLERRM);
        END;
    END LOOP;
    RETURN applied;
END $$;
COMMENT ON FUNCTION beacon.refresh_continuous_analysis(text, text) IS
  'Rebuilds the state of the users with pending changes of async continuous funnels and retention now; returns how many pending entries were applied.';

-- Users, entering events and pending entries of one analysis, for the monitoring view:
-- answers only for analyses in the catalog, to sessions that may use their project's
-- schema, and only about the hidden tables pg_beacon made.
CREATE FUNCTION beacon._continuous_analysis_status(project text, name text,
    OUT users bigint, OUT entries bigint, OUT pending bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
DECLARE
    t text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM beacon.continuous_analysis a
                    WHERE a.project = _continuous_analysis_status.project AND a.name = _continuous_analysis_status.name)
       OR NOT has_schema_privilege(session_user, project, 'USAGE') THEN
        RETURN;
    END IF;
    FOREACH t IN ARRAY ARRAY['_ca_' || name, '_ca_' || name || '_pending', '_ca_' || name || '_users'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = _continuous_analysis_status.project AND c.relname = t
                          AND c.relkind = 'r' AND NOT c.relrowsecurity
                          AND c.relowner = (SELECT r.oid FROM pg_roles r
                                             WHERE r.rolname = 'beacon_' || _continuous_analysis_status.project || '_owner')
                          AND n.nspowner = c.relowner) THEN
            RETURN;
        END IF;
    END LOOP;
    EXECUTE format('SELECT count(DISTINCT u), count(*) FROM %I.%I', project, '_ca_' || name) INTO users, entries;
    EXECUTE format('SELECT count(*), min(_at) FROM %I.%I', project, '_ca_' || name || '_pending')
       INTO pending, oldest;
END $$;
GRANT EXECUTE ON FUNCTION beacon._continuous_analysis_status(text, text) TO PUBLIC;

CREATE VIEW beacon.continuous_analyses WITH (security_barrier) AS
SELECT a.project, a.name, a.kind, a.mode, a.collections,
       coalesce(s.users, 0) AS users,
       coalesce(s.entries, 0) AS entries,
       coalesce(s.pending, 0) AS pending,
       coalesce(now() - s.oldest, interval '0') AS lag,
       a.entries_applied, a.last_refresh, a.last_error, a.definition, a.created_at
  FROM beacon.continuous_analysis a
  CROSS JOIN LATERAL beacon._continuous_analysis_status(a.project, a.name) s
 WHERE has_schema_privilege(a.project, 'USAGE');
GRANT SELECT ON beacon.continuous_analyses TO PUBLIC;
COMMENT ON VIEW beacon.continuous_analyses IS
  'Continuous funnels and retention visible to the current role: kind, mode, collections, users and entering events kept, pending changes, lag, last refresh and error, definition.';

COMMENT ON FUNCTION beacon.create_continuous_funnel(text, text, jsonb, interval, text, text, text) IS
  'Creates a continuous funnel: beacon.funnel''s answer for any range, kept up to date per user as events arrive, change or go (async: by the worker; immediate: in the writing statement). Requires admin.';
COMMENT ON FUNCTION beacon.create_continuous_retention(text, text, jsonb, jsonb, text, text, text, text) IS
  'Creates a continuous retention analysis: beacon.retention''s answer for any range, kept up to date per user as events arrive, change or go. Requires admin.';
COMMENT ON FUNCTION beacon.drop_continuous_analysis(text, text) IS
  'Drops a continuous funnel or retention analysis, its hidden tables, functions and triggers. Requires admin.';
COMMENT ON FUNCTION beacon.continuous_funnel(text, text, timestamptz, timestamptz) IS
  'The rows of beacon.funnel for [from, to) with the continuous funnel''s steps, window, breakdown and time zone, read from its per-user state. Requires read.';
COMMENT ON FUNCTION beacon.continuous_retention(text, text, timestamptz, timestamptz) IS
  'The rows of beacon.retention for [from, to) with the continuous analysis''s actions, period, breakdown and time zone, read from its per-user state. Requires read.';
