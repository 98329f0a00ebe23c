-- pg_beacon 0.2.0 → 0.2.1

-- new: which version generated each generated object (src/generated.rs, sql/generated.sql)
CREATE VIEW beacon.generated_objects WITH (security_barrier) AS
SELECT g.kind, g.project, g.name, g.version,
       g.version = (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_beacon') AS current,
       g.generated_at
  FROM beacon.generated_object g
 WHERE has_schema_privilege(g.project, 'USAGE');
GRANT SELECT ON beacon.generated_objects TO PUBLIC;
COMMENT ON VIEW beacon.generated_objects IS
  'Objects pg_beacon generated (capture and stream triggers, continuous-query views, materialized views) visible to the current role, with the version that generated each.';

-- security: catalog views apply their own filter before any of the caller's conditions
ALTER VIEW beacon.projects SET (security_barrier = true);
ALTER VIEW beacon.fields SET (security_barrier = true);
ALTER VIEW beacon.continuous_queries SET (security_barrier = true);
ALTER VIEW beacon.subscriptions SET (security_barrier = true);
ALTER VIEW beacon.materialized_views SET (security_barrier = true);

-- security: beacon.fields filters above its UNION ALL (see sql/bootstrap.sql)
CREATE OR REPLACE VIEW beacon.fields WITH (security_barrier) AS
-- the filter sits above the UNION ALL: PostgreSQL flattens a UNION ALL view into its
-- branches, and the caller's conditions would then run on every branch's rows before the
-- view's own filter, security_barrier or not
SELECT u.project, u.collection, u.property, u.column_name, u.type, u.system
  FROM (SELECT c.project, c.name AS collection, s.property, s.property AS column_name, s.type,
               true AS system
          FROM beacon.collection c
          JOIN (VALUES (false, '_id', 'bigint'),
                       (false, '_time', 'timestamptz'),
                       (false, '_user', 'text'),
                       (true, 'id', 'text'),
                       (true, 'created_at', 'timestamptz'),
                       (true, 'updated_at', 'timestamptz')) AS s (users, property, type)
            ON s.users = (c.name = '_users')
        UNION ALL
        SELECT f.project, f.collection, f.property, f.column_name, f.type, false
          FROM beacon.field f) AS u
 WHERE has_schema_privilege(u.project, 'USAGE');

-- security: SECURITY DEFINER functions read their SQL under pg_beacon's settings, not the
-- caller's (see OWNER_SETTINGS in src/security.rs)
ALTER FUNCTION beacon._record_error(text, text, text)
    SET standard_conforming_strings = on SET backslash_quote = safe_encoding SET transform_null_equals = off
    SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres SET default_tablespace = ''
    SET default_table_access_method = heap;
ALTER FUNCTION beacon._mailbox_channel(text, text)
    SET standard_conforming_strings = on SET backslash_quote = safe_encoding SET transform_null_equals = off
    SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres SET default_tablespace = ''
    SET default_table_access_method = heap;
ALTER FUNCTION beacon._refresh_materialized_view(text, text, boolean, boolean)
    SET standard_conforming_strings = on SET backslash_quote = safe_encoding SET transform_null_equals = off
    SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres SET default_tablespace = ''
    SET default_table_access_method = heap;
ALTER FUNCTION beacon._due_materialized_views()
    SET standard_conforming_strings = on SET backslash_quote = safe_encoding SET transform_null_equals = off
    SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres SET default_tablespace = ''
    SET default_table_access_method = heap;

-- security: _backlog answers only for catalogued async queries
CREATE OR REPLACE FUNCTION beacon._backlog(project text, name text, OUT pending bigint, OUT oldest timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
BEGIN
    -- Callable by everyone (a view's function calls run as the reader), so it answers
    -- only for async queries in the catalog, and only to sessions that may use their
    -- project's schema (current_user is the definer here). The catalog check comes
    -- first: it is what keeps the names out of the caller's hands (a temp schema, a view
    -- of the caller's own).
    IF NOT EXISTS (SELECT 1 FROM beacon.continuous_query q
                    WHERE q.project = _backlog.project AND q.name = _backlog.name AND q.mode = 'async')
       OR NOT has_schema_privilege(session_user, project, 'USAGE') THEN
        RETURN;
    END IF;
    -- the delta table pg_beacon made: a plain table of the project's owner role, without
    -- row security (whose policies would run here, as the definer), nothing else
    IF NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = _backlog.project AND c.relname = '_cq_' || _backlog.name || '_delta'
                      AND c.relkind = 'r' AND NOT c.relrowsecurity
                      AND c.relowner = (SELECT r.oid FROM pg_roles r WHERE r.rolname = 'beacon_' || _backlog.project || '_owner')
                      AND n.nspowner = c.relowner) THEN
        pending := 0;
        RETURN;
    END IF;
    EXECUTE format('SELECT count(*), min(_at) FROM %I.%I', project, '_cq_' || name || '_delta')
       INTO pending, oldest;
END $$;

-- security: internal functions that elevate are not for PUBLIC
REVOKE ALL ON FUNCTION beacon._stream_housekeeping() FROM PUBLIC;
REVOKE ALL ON FUNCTION beacon.regenerate() FROM PUBLIC;

-- streams: a filter that fails on an event no longer fails the insert
-- Events a subscription's filter failed on (an error evaluating it): they are not sent on
-- that subscription, and the writer's insert goes on (see src/stream/trigger.rs).
CREATE UNLOGGED TABLE beacon.subscription_failure (
    channel text NOT NULL,
    failed  bigint NOT NULL,
    error   text,
    at      timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON beacon.subscription_failure FROM PUBLIC;

CREATE OR REPLACE VIEW beacon.subscriptions WITH (security_barrier) AS
SELECT s.project, s.collection, s.filter, s.channel, s.temporary,
       s.owner_role, s.owner_pid AS owner_session,
       s.events_sent + coalesce((SELECT sum(x.sent) FROM beacon.subscription_sent x
                            WHERE x.channel = s.channel), 0)::bigint AS events_sent,
       s.created_at,
       coalesce((SELECT sum(f.failed) FROM beacon.subscription_failure f
                  WHERE f.channel = s.channel), 0)::bigint AS events_failed,
       (SELECT f.error FROM beacon.subscription_failure f
         WHERE f.channel = s.channel ORDER BY f.at DESC LIMIT 1) AS last_error
  FROM beacon.subscription s
 -- channel names are the secret that guards a stream: only readers see them
 WHERE pg_catalog.pg_has_role(format('beacon_%s_read', s.project), 'USAGE');
COMMENT ON VIEW beacon.subscriptions IS
  'Event stream subscriptions of the projects the current role may read: filter, channel, owning session, events sent, events its filter failed on and the last such error.';

-- PostgreSQL's own float8 transition state {N, Sx, Sxx} as a value: the partial of
-- var*/stddev* over real and double precision, merged with PostgreSQL's combine function
-- and finalized with its float8_var_samp and friends, so that a continuous query's
-- variance is computed exactly as the defining query's (src/cq/aggregates.rs).
CREATE AGGREGATE beacon._float8_state(double precision) (
    SFUNC = pg_catalog.float8_accum, STYPE = double precision[], INITCOND = '{0,0,0}',
    COMBINEFUNC = pg_catalog.float8_combine, PARALLEL = SAFE
);
CREATE AGGREGATE beacon._float8_merge(double precision[]) (
    SFUNC = pg_catalog.float8_combine, STYPE = double precision[], INITCOND = '{0,0,0}',
    COMBINEFUNC = pg_catalog.float8_combine, PARALLEL = SAFE
);
COMMENT ON AGGREGATE beacon._float8_state(double precision) IS
  'Internal: the float8 variance transition state of its rows (partial of continuous queries).';
COMMENT ON AGGREGATE beacon._float8_merge(double precision[]) IS
  'Internal: merges float8 variance transition states.';

-- continuous queries: long text keys and distinct values
-- The digest a continuous query's unique indexes hold for a text key or distinct value,
-- whose size btree limits to about 2.7 kB. Under a deterministic collation text equality
-- is byte equality, which the digest of the bytes keeps exact. convert_to the database's
-- own encoding is the bytes as stored, which never change in a database: IMMUTABLE holds
-- (textsend would be stable: it converts to the client's encoding).
CREATE FUNCTION beacon._text_digest(value text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.sha256(pg_catalog.convert_to(value, pg_catalog.getdatabaseencoding())) $$;

-- continuous queries: compaction no longer reads the backlog of every query before it
-- locks a query's source (it deadlocked with drop_continuous_query)
-- Async queries for beacon.compact, without their backlog: counting a delta locks it, and
-- compaction must lock each query's source before any of the query's tables (see
-- lock_source in src/cq/mod.rs), or it deadlocks with drop_continuous_query.
CREATE FUNCTION beacon._async_queries() RETURNS TABLE (project text, name text)
LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    SELECT q.project, q.name FROM beacon.continuous_query q
     WHERE q.mode = 'async' AND has_schema_privilege(session_user, q.project, 'USAGE')
$$;
GRANT EXECUTE ON FUNCTION beacon._async_queries() TO PUBLIC;

-- Compacts every async query (or one project's, or one), each in its own subtransaction
-- so that one failing query is recorded in last_error and does not stop the others.
CREATE OR REPLACE FUNCTION beacon.compact(project text DEFAULT NULL, name text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    q record;
    applied bigint := 0;
BEGIN
    FOR q IN SELECT c.project, c.name FROM beacon._async_queries() c
              WHERE has_schema_privilege(c.project, 'USAGE')
                AND (compact.project IS NULL OR c.project = compact.project)
                AND (compact.name IS NULL OR c.name = compact.name)
              ORDER BY 1, 2
    LOOP
        BEGIN
            applied := applied + beacon._compact_one(q.project, q.name);
        EXCEPTION WHEN OTHERS THEN
            PERFORM beacon._record_error(q.project, q.name, SQLERRM);
        END;
    END LOOP;
    RETURN applied;
END $$;

-- continuous queries: immediate mode merges at commit (src/cq/plan/merge.rs)
-- The deferred trigger of every immediate query's delta table: at commit, the first one
-- to fire merges every immediate query the transaction has pending deltas for (listed by
-- the capture in pg_beacon.pending_merges), ordered by project and name, each of which
-- locks its groups in key order. So merging transactions lock groups in one global order
-- and cannot deadlock each other; the later firings find the list empty.
-- security: each commit-time merge runs as its project's owner role (src/cq/commit_merge.rs)
CREATE FUNCTION beacon."_cq_merge_one"(
	"project" TEXT, /* &str */
	"name" TEXT /* &str */
) RETURNS void
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_cq_merge_one_wrapper';
REVOKE ALL ON FUNCTION beacon._cq_merge_one(text, text) FROM PUBLIC;

CREATE FUNCTION beacon._cq_merge() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
DECLARE
    pending text := current_setting('pg_beacon.pending_merges', true);
    q record;
BEGIN
    IF pending IS NULL OR pending = '' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('pg_beacon.pending_merges', '', true);
    -- only catalogued immediate queries, whatever the setting says; each merge runs as its
    -- project's owner role, never as the definer here (src/cq/commit_merge.rs)
    FOR q IN
        SELECT c.project, c.name
          FROM unnest(string_to_array(pending, ',')) AS e (entry)
          JOIN beacon.continuous_query c
            ON c.project = split_part(e.entry, '.', 1) AND c.name = split_part(e.entry, '.', 2)
           AND c.mode = 'immediate'
         ORDER BY c.project COLLATE "C", c.name COLLATE "C"
    LOOP
        PERFORM beacon._cq_merge_one(q.project, q.name);
    END LOOP;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION beacon._cq_merge() FROM PUBLIC;

-- lifecycle: collections can be dropped, and DDL run by hand on a project's objects is
-- followed by the catalog (src/lifecycle/)
CREATE FUNCTION beacon."drop_collection"(
	"project" TEXT, /* &str */
	"collection" TEXT, /* &str */
	"cascade" bool DEFAULT false /* bool */
) RETURNS void
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_collection_wrapper';
COMMENT ON FUNCTION beacon.drop_collection(text, text, boolean) IS
  'Drops a collection: its table and events, fields and generated triggers. Refused while continuous queries, subscriptions or materialized views use it, unless cascade, which drops them first. Requires admin on the project.';

-- DDL run by hand on a project's objects (DROP TABLE, DROP COLUMN … CASCADE, DROP OWNED,
-- ALTER TABLE … RENAME / ALTER COLUMN … TYPE) is followed by the catalog, so that no
-- capture or stream trigger is left failing every insert and no catalog entry points at
-- nothing (src/lifecycle/ddl.rs). Both functions return at once unless an object of a
-- pg_beacon project was involved; they execute no text from the event, only names looked
-- up in the catalog and quoted.
CREATE FUNCTION beacon._on_sql_drop() RETURNS event_trigger
LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS 'MODULE_PATHNAME', '_on_sql_drop_wrapper';
REVOKE ALL ON FUNCTION beacon._on_sql_drop() FROM PUBLIC;
COMMENT ON FUNCTION beacon._on_sql_drop() IS
  'Internal: after DDL dropped objects of a project by hand, removes what the catalog says about them.';
CREATE EVENT TRIGGER pg_beacon_sql_drop ON sql_drop EXECUTE FUNCTION beacon._on_sql_drop();

CREATE FUNCTION beacon._on_alter_table() RETURNS event_trigger
LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS 'MODULE_PATHNAME', '_on_alter_table_wrapper';
REVOKE ALL ON FUNCTION beacon._on_alter_table() FROM PUBLIC;
COMMENT ON FUNCTION beacon._on_alter_table() IS
  'Internal: after ALTER TABLE on a project''s table by hand, follows renamed and retyped columns, refuses renaming a collection.';
CREATE EVENT TRIGGER pg_beacon_alter_table ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION beacon._on_alter_table();

-- lifecycle: collections whose table was dropped by hand under 0.2.0 left their catalog
-- entries behind (collect then failed with 42P01 for good): forgotten, so that collecting
-- creates them anew; their fields and subscriptions go with them (foreign keys)
DELETE FROM beacon.collection c
 WHERE c.name <> '_users'
   AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.project, c.name)) IS NULL;

-- every upgrade ends here: rebuild what the previous version generated with this one's code
SELECT beacon.regenerate();
