-- Scheduled materialized views: catalog, the refresh of one view, and the monitoring view.

CREATE TABLE beacon.materialized_view (
    project       text NOT NULL REFERENCES beacon.project (name) ON DELETE CASCADE,
    name          text NOT NULL,
    query         text NOT NULL,
    refresh_every interval NOT NULL CHECK (refresh_every >= interval '1 second'),
    -- the output columns that are unique (GROUP BY keys): refreshes run CONCURRENTLY
    unique_key    text[],
    next_refresh  timestamptz NOT NULL,
    last_refresh  timestamptz,
    last_duration interval,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);
SELECT pg_catalog.pg_extension_config_dump('beacon.materialized_view', '');
REVOKE ALL ON beacon.materialized_view FROM PUBLIC;

CREATE VIEW beacon.materialized_views WITH (security_barrier) AS
SELECT m.project, m.name, m.refresh_every, m.unique_key IS NOT NULL AS concurrent,
       m.last_refresh, m.last_duration, m.next_refresh, m.last_error, m.query, m.created_at
  FROM beacon.materialized_view m
 WHERE has_schema_privilege(m.project, 'USAGE');
GRANT SELECT ON beacon.materialized_views TO PUBLIC;
COMMENT ON VIEW beacon.materialized_views IS
  'Materialized views visible to the current role: schedule, last refresh time and duration, last error.';

-- Refreshes one view. A transaction advisory lock per view means two refreshes of one view
-- never run at once: a caller waits for it, the scheduler (wait = false) skips the view.
-- With record_errors a failure is stored in last_error instead of raised, so one failing
-- view does not stop the scheduler's other views. Returns false when skipped.
CREATE FUNCTION beacon._refresh_materialized_view(project text, name text, wait boolean, record_errors boolean)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
DECLARE
    v beacon.materialized_view;
    lock_key bigint := hashtextextended(format('beacon.mv %s.%s', project, name), 0);
    started timestamptz;
BEGIN
    IF wait THEN
        PERFORM pg_advisory_xact_lock(lock_key);
    ELSIF NOT pg_try_advisory_xact_lock(lock_key) THEN
        RETURN false;
    END IF;
    SELECT * INTO v FROM beacon.materialized_view m
     WHERE m.project = _refresh_materialized_view.project AND m.name = _refresh_materialized_view.name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    started := clock_timestamp();
    BEGIN
        EXECUTE format('REFRESH MATERIALIZED VIEW %s %I.%I',
                       CASE WHEN v.unique_key IS NOT NULL THEN 'CONCURRENTLY' ELSE '' END,
                       v.project, v.name);
        UPDATE beacon.materialized_view m
           SET last_refresh = started, last_duration = clock_timestamp() - started,
               next_refresh = started + m.refresh_every, last_error = NULL
         WHERE m.project = v.project AND m.name = v.name;
    EXCEPTION WHEN OTHERS THEN
        IF NOT record_errors THEN
            RAISE;
        END IF;
        UPDATE beacon.materialized_view m
           SET last_error = SQLERRM, next_refresh = started + m.refresh_every
         WHERE m.project = v.project AND m.name = v.name;
    END;
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION beacon._refresh_materialized_view(text, text, boolean, boolean) FROM PUBLIC;

-- The views whose refresh is due, oldest first: the scheduler refreshes each in its own
-- transaction.
CREATE FUNCTION beacon._due_materialized_views(OUT project text, OUT name text) RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    SELECT m.project, m.name FROM beacon.materialized_view m
     WHERE m.next_refresh <= now() ORDER BY m.next_refresh
$$;
REVOKE ALL ON FUNCTION beacon._due_materialized_views() FROM PUBLIC;
