-- Document views: catalog, subscriptions, refresh entry point and monitoring view.

CREATE TABLE beacon.document_view (
    project         text NOT NULL REFERENCES beacon.project (name) ON DELETE CASCADE,
    name            text NOT NULL,
    -- as given to create_document_view
    spec            jsonb NOT NULL,
    -- what creation resolved: the fields of each table, lock hashes, the root's rendered
    -- condition and the key types (the view stays what it was when tables gain columns)
    layout          jsonb NOT NULL,
    root            text NOT NULL,
    tables          text[] NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('async', 'immediate')),
    entries_applied bigint NOT NULL DEFAULT 0,
    last_refresh    timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);
SELECT pg_catalog.pg_extension_config_dump('beacon.document_view', '');
REVOKE ALL ON beacon.document_view FROM PUBLIC;

CREATE TABLE beacon.document_subscription (
    channel       text PRIMARY KEY,
    project       text NOT NULL,
    view          text NOT NULL,
    filter        text,
    condition     text,
    temporary     boolean NOT NULL,
    owner_role    text NOT NULL,
    owner_pid     integer,
    owner_started timestamptz,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (project, view) REFERENCES beacon.document_view (project, name) ON DELETE CASCADE
);
SELECT pg_catalog.pg_extension_config_dump('beacon.document_subscription', 'WHERE NOT temporary');
REVOKE ALL ON beacon.document_subscription FROM PUBLIC;

-- Async views for beacon.refresh_document_view, visible to the session.
CREATE FUNCTION beacon._async_document_views() RETURNS TABLE (project text, name text)
LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    SELECT v.project, v.name FROM beacon.document_view v
     WHERE v.mode = 'async' AND has_schema_privilege(session_user, v.project, 'USAGE')
$$;
GRANT EXECUTE ON FUNCTION beacon._async_document_views() TO PUBLIC;

CREATE FUNCTION beacon._document_view_error(project text, name text, message text) RETURNS void
LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    UPDATE beacon.document_view SET last_error = message
     WHERE document_view.project = _document_view_error.project AND document_view.name = _document_view_error.name
$$;
REVOKE ALL ON FUNCTION beacon._document_view_error(text, text, text) FROM PUBLIC;

-- Applies the pending changes of async document views (all, one project's, or one), each
-- in its own subtransaction so that one failing view is recorded in last_error and does
-- not stop the others. Returns how many pending entries were applied.
CREATE FUNCTION beacon.refresh_document_view(project text DEFAULT NULL, name text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v record;
    applied bigint := 0;
BEGIN
    FOR v IN SELECT d.project, d.name FROM beacon._async_document_views() d
              WHERE has_schema_privilege(d.project, 'USAGE')
                AND (refresh_document_view.project IS NULL OR d.project = refresh_document_view.project)
                AND (refresh_document_view.name IS NULL OR d.name = refresh_document_view.name)
              ORDER BY 1, 2
    LOOP
        BEGIN
            applied := applied + beacon._refresh_document_view_one(v.project, v.name);
        EXCEPTION WHEN OTHERS THEN
            PERFORM beacon._document_view_error(v.project, v.name, SQLERRM);
        END;
    END LOOP;
    RETURN applied;
END $$;
COMMENT ON FUNCTION beacon.refresh_document_view(text, text) IS
  'Rebuilds the documents of pending changes of async document views now; returns how many pending entries were applied.';

-- Documents and pending entries of one view, for the monitoring view: answers only for
-- views in the catalog, to sessions that may use their project's schema, and only about
-- the hidden tables pg_beacon made (a plain table of the project's owner role).
CREATE FUNCTION beacon._document_view_status(project text, name text,
    OUT documents bigint, OUT pending bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
DECLARE
    t text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM beacon.document_view v
                    WHERE v.project = _document_view_status.project AND v.name = _document_view_status.name)
       OR NOT has_schema_privilege(session_user, project, 'USAGE') THEN
        RETURN;
    END IF;
    documents := 0;
    pending := 0;
    FOREACH t IN ARRAY ARRAY['_dv_' || name, '_dv_' || name || '_pending'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = _document_view_status.project AND c.relname = t
                          AND c.relkind = 'r' AND NOT c.relrowsecurity
                          AND c.relowner = (SELECT r.oid FROM pg_roles r
                                             WHERE r.rolname = 'beacon_' || _document_view_status.project || '_owner')
                          AND n.nspowner = c.relowner) THEN
            RETURN;
        END IF;
    END LOOP;
    EXECUTE format('SELECT count(*) FROM %I.%I', project, '_dv_' || name) INTO documents;
    EXECUTE format('SELECT count(*), min(_at) FROM %I.%I', project, '_dv_' || name || '_pending')
       INTO pending, oldest;
END $$;
GRANT EXECUTE ON FUNCTION beacon._document_view_status(text, text) TO PUBLIC;

CREATE VIEW beacon.document_views WITH (security_barrier) AS
SELECT v.project, v.name, v.mode, v.root, v.tables,
       coalesce(s.documents, 0) AS documents,
       coalesce(s.pending, 0) AS pending,
       coalesce(now() - s.oldest, interval '0') AS lag,
       v.entries_applied, v.last_refresh, v.last_error, v.spec, v.created_at,
       (SELECT count(*) FROM beacon.document_subscription d
         WHERE d.project = v.project AND d.view = v.name) AS subscriptions
  FROM beacon.document_view v
  CROSS JOIN LATERAL beacon._document_view_status(v.project, v.name) s
 WHERE has_schema_privilege(v.project, 'USAGE');
GRANT SELECT ON beacon.document_views TO PUBLIC;
COMMENT ON VIEW beacon.document_views IS
  'Document views visible to the current role: mode, tables, documents, pending changes, lag, last refresh and error, subscriptions.';
