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

-- operations: rows_applied counts immediate queries' merges too
CREATE UNLOGGED TABLE beacon.cq_applied (
    project  text NOT NULL,
    name     text NOT NULL,
    slot     integer NOT NULL,
    partials bigint NOT NULL,
    PRIMARY KEY (project, name, slot),
    FOREIGN KEY (project, name) REFERENCES beacon.continuous_query (project, name) ON DELETE CASCADE
);
REVOKE ALL ON beacon.cq_applied FROM PUBLIC;
CREATE OR REPLACE VIEW beacon.continuous_queries WITH (security_barrier) AS
SELECT q.project, q.name, q.mode, q.source, q.time_zone,
       q.rows_applied + coalesce((SELECT sum(a.partials) FROM beacon.cq_applied a
                                   WHERE a.project = q.project AND a.name = q.name), 0)::bigint AS rows_applied,
       coalesce(b.pending, 0) AS pending_deltas,
       coalesce(now() - b.oldest, interval '0') AS lag,
       q.last_compaction, q.last_error, q.query, q.created_at
  FROM beacon.continuous_query q
  CROSS JOIN LATERAL beacon._backlog(q.project, q.name) b
 WHERE has_schema_privilege(q.project, 'USAGE');

-- operations: the workers' board, beacon.workers and beacon.status()
CREATE FUNCTION beacon."_workers"() RETURNS TABLE (
	"database" oid,
	"extension" TEXT,
	"pid" INT,
	"started" timestamp with time zone,
	"rounds" bigint,
	"last_round" timestamp with time zone,
	"waiting_since" timestamp with time zone
)
VOLATILE PARALLEL SAFE STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_workers_wrapper';
CREATE FUNCTION beacon."_preloaded"() RETURNS bool
STABLE PARALLEL SAFE STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_preloaded_wrapper';
CREATE FUNCTION beacon."_announce"() RETURNS void
VOLATILE STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_announce_wrapper';
REVOKE ALL ON FUNCTION beacon._announce() FROM PUBLIC;

-- From the workers' board in shared memory (src/worker/board.rs): the whole cluster, since
-- databases take turns when worker slots are short. Pids and database names are what
-- pg_stat_activity shows everyone as well.
CREATE VIEW beacon.workers WITH (security_barrier) AS
SELECT d.datname::text AS database,
       CASE WHEN NOT beacon._preloaded() THEN 'not preloaded'
            WHEN w.pid IS NOT NULL THEN 'running'
            WHEN w.waiting_since IS NOT NULL THEN 'waiting for a worker slot'
            WHEN w.extension = 'absent' THEN 'no pg_beacon'
            ELSE 'starting' END AS state,
       w.pid, w.started, w.rounds, w.last_round AS last_maintained, w.waiting_since,
       d.datname = pg_catalog.current_database() AS current
  FROM pg_catalog.pg_database d
  LEFT JOIN beacon._workers() w ON w.database = d.oid
 WHERE d.datallowconn AND NOT d.datistemplate;
GRANT SELECT ON beacon.workers TO PUBLIC;
COMMENT ON VIEW beacon.workers IS
  'Background maintenance of every database of the cluster: state of its pg_beacon scheduler (running, waiting for a worker slot, no pg_beacon), its pid, rounds done since it started, when the database was last maintained and since when it has been waiting.';

-- What a monitoring system polls: nothing when all is well. Runs as the caller, through
-- the catalog views, so it shows only what the caller may see.
-- beacon.status() is created at the end, once every catalog it reads exists

-- Announces the new database to the launcher and warns when it will wait for a slot.
SELECT beacon._announce();

-- analysis on demand: funnels, retention, segmentation, user timelines (src/analysis/)
CREATE FUNCTION beacon."funnel"(
	"project" TEXT, /* & str */
	"steps" jsonb, /* JsonB */
	"window" interval, /* Interval */
	"from" timestamp with time zone, /* TimestampWithTimeZone */
	"to" timestamp with time zone, /* TimestampWithTimeZone */
	"breakdown" TEXT DEFAULT NULL, /* Option < & str > */
	"time_zone" TEXT DEFAULT 'UTC' /* & str */
) RETURNS TABLE (
	"step" INT,  /* i32 */
	"collection" TEXT,  /* String */
	"breakdown" TEXT,  /* Option < String > */
	"users" bigint,  /* i64 */
	"conversion_from_previous" double precision,  /* Option < f64 > */
	"conversion_from_first" double precision,  /* Option < f64 > */
	"median_time_from_previous" interval  /* Option < Interval > */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'funnel_wrapper';
CREATE FUNCTION beacon."retention"(
	"project" TEXT, /* & str */
	"first_action" jsonb, /* JsonB */
	"returning_action" jsonb, /* JsonB */
	"period" TEXT, /* & str */
	"from" timestamp with time zone, /* TimestampWithTimeZone */
	"to" timestamp with time zone, /* TimestampWithTimeZone */
	"breakdown" TEXT DEFAULT NULL, /* Option < & str > */
	"time_zone" TEXT DEFAULT 'UTC' /* & str */
) RETURNS TABLE (
	"cohort" date,  /* pgrx :: datum :: Date */
	"breakdown" TEXT,  /* Option < String > */
	"period" INT,  /* i32 */
	"users" bigint,  /* i64 */
	"cohort_size" bigint  /* i64 */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'retention_wrapper';
CREATE FUNCTION beacon."segmentation"(
	"project" TEXT, /* & str */
	"collection" TEXT, /* & str */
	"measure" jsonb, /* JsonB */
	"bucket" TEXT, /* & str */
	"from" timestamp with time zone, /* TimestampWithTimeZone */
	"to" timestamp with time zone, /* TimestampWithTimeZone */
	"breakdown" TEXT DEFAULT NULL, /* Option < & str > */
	"r#where" TEXT DEFAULT NULL, /* Option < & str > */
	"time_zone" TEXT DEFAULT 'UTC' /* & str */
) RETURNS TABLE (
	"bucket" timestamp with time zone,  /* TimestampWithTimeZone */
	"breakdown" TEXT,  /* Option < String > */
	"value" NUMERIC  /* Option < AnyNumeric > */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'segmentation_wrapper';
CREATE FUNCTION beacon."user_timeline"(
	"project" TEXT, /* & str */
	"user_id" TEXT, /* & str */
	"from" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"to" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"lim" INT DEFAULT 100, /* i32 */
	"before" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"collection" TEXT,  /* String */
	"id" bigint,  /* i64 */
	"time" timestamp with time zone,  /* TimestampWithTimeZone */
	"event" jsonb,  /* JsonB */
	"cursor" TEXT  /* String */
)
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'user_timeline_wrapper';

COMMENT ON FUNCTION beacon.funnel(text, jsonb, interval, timestamptz, timestamptz, text, text) IS
  'Users who did steps 1..n in order, step n within window of their first step-1 event in [from, to): per step (and breakdown value), users, conversion from the previous and the first step, median time from the previous step. Requires read.';
COMMENT ON FUNCTION beacon.retention(text, jsonb, jsonb, text, timestamptz, timestamptz, text, text) IS
  'Cohorts by the day, week or month (in time_zone) of each user''s first first_action in [from, to); per cohort and period n >= 0, users who did returning_action n periods later, and the cohort size. Requires read.';
COMMENT ON FUNCTION beacon.segmentation(text, text, jsonb, text, timestamptz, timestamptz, text, text, text) IS
  'A measure (count, distinct users, sum/avg/min/max of a property) of one collection''s events per time bucket in time_zone, optionally by a property and filtered by a condition. Requires read.';
COMMENT ON FUNCTION beacon.user_timeline(text, text, timestamptz, timestamptz, integer, text) IS
  'One user''s events across the project''s collections, newest first, lim per page; pass the last row''s cursor as before for the next page. Requires read.';

-- new: dropping the extension (src/lifecycle/, sql/lifecycle.sql): DROP EXTENSION
-- pg_beacon, DROP SCHEMA beacon and DROP OWNED BY the extension owner refuse while projects
-- exist, and with CASCADE drop every project first (schemas, generated functions and triggers, roles), so that nothing
-- of a project outlives the extension its generated code calls into.
CREATE FUNCTION beacon._drop_guard() RETURNS event_trigger
LANGUAGE c AS 'MODULE_PATHNAME', '_drop_guard_wrapper';
REVOKE ALL ON FUNCTION beacon._drop_guard() FROM PUBLIC;
COMMENT ON FUNCTION beacon._drop_guard() IS
  'Internal: the event trigger that drops or protects pg_beacon projects when the extension is dropped.';
CREATE EVENT TRIGGER beacon_drop_guard ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP OWNED')
    EXECUTE FUNCTION beacon._drop_guard();
COMMENT ON EVENT TRIGGER beacon_drop_guard IS
  'pg_beacon: DROP EXTENSION pg_beacon, DROP SCHEMA beacon and DROP OWNED BY its owner refuse while projects exist; with CASCADE they drop the projects first.';

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
CREATE EVENT TRIGGER beacon_sql_drop ON sql_drop EXECUTE FUNCTION beacon._on_sql_drop();

CREATE FUNCTION beacon._on_alter_table() RETURNS event_trigger
LANGUAGE c SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS 'MODULE_PATHNAME', '_on_alter_table_wrapper';
REVOKE ALL ON FUNCTION beacon._on_alter_table() FROM PUBLIC;
COMMENT ON FUNCTION beacon._on_alter_table() IS
  'Internal: after ALTER TABLE on a project''s table by hand, follows renamed and retyped columns, refuses renaming a collection.';
CREATE EVENT TRIGGER beacon_alter_table ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION beacon._on_alter_table();

-- lifecycle: collections whose table was dropped by hand under 0.2.0 left their catalog
-- entries behind (collect then failed with 42P01 for good): forgotten, so that collecting
-- creates them anew; their fields and subscriptions go with them (foreign keys)
DELETE FROM beacon.collection c
 WHERE c.name <> '_users'
   AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.project, c.name)) IS NULL;

-- continuous queries over joins: the other tables a query reads, the capture's check
-- under REPEATABLE READ, and the index advisor's argument
ALTER TABLE beacon.continuous_query ADD COLUMN joined text[] NOT NULL DEFAULT '{}';
CREATE OR REPLACE VIEW beacon.continuous_queries WITH (security_barrier) AS
SELECT q.project, q.name, q.mode, q.source, q.time_zone,
       q.rows_applied + coalesce((SELECT sum(a.partials) FROM beacon.cq_applied a
                                   WHERE a.project = q.project AND a.name = q.name), 0)::bigint AS rows_applied,
       coalesce(b.pending, 0) AS pending_deltas,
       coalesce(now() - b.oldest, interval '0') AS lag,
       q.last_compaction, q.last_error, q.query, q.created_at, q.joined
  FROM beacon.continuous_query q
  CROSS JOIN LATERAL beacon._backlog(q.project, q.name) b
 WHERE has_schema_privilege(q.project, 'USAGE');
COMMENT ON VIEW beacon.continuous_queries IS
  'Continuous queries visible to the current role: mode, source and joined tables, rows applied, pending deltas, lag, last error.';
CREATE FUNCTION beacon."create_continuous_query"(
	"project" TEXT,
	"name" TEXT,
	"query" TEXT,
	"mode" TEXT,
	"create_indexes" bool
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_continuous_query_with_indexes_wrapper';
CREATE FUNCTION beacon."_unchanged_since_snapshot"(
	"relation" oid,
	"column" TEXT,
	"keys" anyarray
) RETURNS void
PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'unchanged_since_snapshot_wrapper';

-- 0.2.1: document views (src/documents/, sql/documents.sql)

CREATE FUNCTION beacon."_document_housekeeping"() RETURNS bigint
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_document_housekeeping_wrapper';
REVOKE ALL ON FUNCTION beacon._document_housekeeping() FROM PUBLIC;
CREATE FUNCTION beacon."_refresh_document_view_one"(
	"project" TEXT,
	"name" TEXT
) RETURNS bigint
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_refresh_document_view_one_wrapper';
CREATE FUNCTION beacon."create_document_view"(
	"project" TEXT,
	"name" TEXT,
	"spec" jsonb,
	"mode" TEXT DEFAULT 'async'
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_document_view_wrapper';
CREATE FUNCTION beacon."drop_document_view"(
	"project" TEXT,
	"name" TEXT
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'drop_document_view_wrapper';
CREATE FUNCTION beacon."subscribe_documents"(
	"project" TEXT,
	"view" TEXT,
	"filter" TEXT DEFAULT NULL,
	"temporary" bool DEFAULT true
) RETURNS TEXT
LANGUAGE c
AS 'MODULE_PATHNAME', 'subscribe_documents_wrapper';
CREATE FUNCTION beacon."unsubscribe_documents"(
	"channel" TEXT
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'unsubscribe_documents_wrapper';


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

-- 0.2.1: time partitions, retention and the Parquet archive (src/collect/partitions/,
-- sql/partitions.sql)

CREATE FUNCTION beacon."partition_collection"(
	"project" TEXT,
	"collection" TEXT,
	"period" TEXT
) RETURNS bigint
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'partition_collection_wrapper';
CREATE FUNCTION beacon."create_partitions"(
	"project" TEXT,
	"collection" TEXT,
	"from" timestamp with time zone,
	"to" timestamp with time zone
) RETURNS bigint
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_partitions_wrapper';
CREATE FUNCTION beacon."set_retention"(
	"project" TEXT,
	"collection" TEXT,
	"keep" interval,
	"archive" bool DEFAULT false
) RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_retention_wrapper';
CREATE FUNCTION beacon."archive_now"(
	"project" TEXT,
	"collection" TEXT,
	"before" timestamp with time zone
) RETURNS bigint
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'archive_now_wrapper';
CREATE FUNCTION beacon."archived_events"(
	"project" TEXT,
	"collection" TEXT,
	"from" timestamp with time zone DEFAULT NULL,
	"to" timestamp with time zone DEFAULT NULL
) RETURNS TABLE (
	"_id" bigint,
	"_time" timestamp with time zone,
	"_user" TEXT,
	"properties" jsonb
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'archived_events_wrapper';
CREATE FUNCTION beacon."_maintain_partitions"(
	"project" TEXT,
	"collection" TEXT
) RETURNS timestamp with time zone[]
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_maintain_partitions_wrapper';
CREATE FUNCTION beacon."_retire_partition"(
	"project" TEXT,
	"collection" TEXT,
	"lower" timestamp with time zone
) RETURNS bigint
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_retire_partition_wrapper';


-- A collection's partitioning and retention live with the collection: collect reads the
-- period in the catalog read it does anyway.
ALTER TABLE beacon.collection
    ADD COLUMN partition_period text CHECK (partition_period IN ('day', 'week', 'month')),
    ADD COLUMN retention_keep interval CHECK (retention_keep > interval '0'),
    ADD COLUMN retention_archive boolean NOT NULL DEFAULT false,
    ADD COLUMN maintained_at timestamptz,
    ADD COLUMN maintenance_error text;

-- The partitions pg_beacon created: `relname` in the project's schema holds
-- [lower, upper) of `_time`.
CREATE TABLE beacon.partition (
    project     text NOT NULL,
    collection  text NOT NULL,
    lower       timestamptz NOT NULL,
    upper       timestamptz NOT NULL,
    relname     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, collection, lower),
    FOREIGN KEY (project, collection) REFERENCES beacon.collection (project, name) ON DELETE CASCADE
);

-- Archived partitions: `file` is relative to beacon.archive_dir. Kept after the
-- collection or project is dropped, as the files are.
CREATE TABLE beacon.archive_file (
    project     text NOT NULL,
    collection  text NOT NULL,
    lower       timestamptz NOT NULL,
    upper       timestamptz NOT NULL,
    file        text NOT NULL,
    rows        bigint NOT NULL,
    min_time    timestamptz,
    max_time    timestamptz,
    bytes       bigint NOT NULL,
    checksum    text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, collection, file)
);

SELECT pg_catalog.pg_extension_config_dump('beacon.partition', '');
SELECT pg_catalog.pg_extension_config_dump('beacon.archive_file', '');
REVOKE ALL ON beacon.partition, beacon.archive_file FROM PUBLIC;

-- The scheduler's list: partitioned collections, each maintained in its own transaction.
CREATE FUNCTION beacon._partitioned_collections() RETURNS TABLE (project text, name text)
LANGUAGE sql STABLE SECURITY DEFINER 
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    SELECT c.project, c.name FROM beacon.collection c
     WHERE c.partition_period IS NOT NULL ORDER BY 1, 2
$$;
REVOKE ALL ON FUNCTION beacon._partitioned_collections() FROM PUBLIC;

-- The outcome of a maintenance round, in its own transaction (a failed one rolled back).
CREATE FUNCTION beacon._partition_maintenance_done(project text, collection text, error text)
RETURNS void LANGUAGE sql SECURITY DEFINER 
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    UPDATE beacon.collection SET maintained_at = now(), maintenance_error = error
     WHERE beacon.collection.project = _partition_maintenance_done.project
       AND name = _partition_maintenance_done.collection
$$;
REVOKE ALL ON FUNCTION beacon._partition_maintenance_done(text, text, text) FROM PUBLIC;

CREATE VIEW beacon.partitioned_collections WITH (security_barrier) AS
SELECT c.project, c.name AS collection, c.partition_period AS period,
       c.retention_keep AS keep, c.retention_archive AS archive,
       (SELECT count(*) FROM beacon.partition p
         WHERE p.project = c.project AND p.collection = c.name) AS partitions,
       (SELECT min(p.lower) FROM beacon.partition p
         WHERE p.project = c.project AND p.collection = c.name) AS oldest,
       (SELECT max(p.upper) FROM beacon.partition p
         WHERE p.project = c.project AND p.collection = c.name) AS newest,
       (SELECT count(*) FROM beacon.archive_file a
         WHERE a.project = c.project AND a.collection = c.name) AS archive_files,
       c.maintained_at, c.maintenance_error
  FROM beacon.collection c
 WHERE c.partition_period IS NOT NULL AND has_schema_privilege(c.project, 'USAGE');
GRANT SELECT ON beacon.partitioned_collections TO PUBLIC;
COMMENT ON VIEW beacon.partitioned_collections IS
  'Partitioned collections visible to the current role: period, retention, partitions, archive files, last maintenance and its error.';

CREATE VIEW beacon.partitions WITH (security_barrier) AS
SELECT p.project, p.collection, p.relname AS partition, p.lower, p.upper,
       GREATEST(c.reltuples, 0)::bigint AS estimated_rows,
       pg_catalog.pg_total_relation_size(c.oid) AS bytes
  FROM beacon.partition p
  JOIN pg_catalog.pg_namespace n ON n.nspname = p.project
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = p.relname
 WHERE has_schema_privilege(n.oid, 'USAGE');
GRANT SELECT ON beacon.partitions TO PUBLIC;
COMMENT ON VIEW beacon.partitions IS
  'Partitions of the collections visible to the current role: range of _time, estimated rows, size.';

CREATE VIEW beacon.archives WITH (security_barrier) AS
SELECT a.project, a.collection, a.file, a.lower, a.upper, a.rows, a.min_time, a.max_time,
       a.bytes, a.checksum, a.archived_at
  FROM beacon.archive_file a
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                WHERE n.nspname = a.project AND has_schema_privilege(n.oid, 'USAGE'))
    OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
GRANT SELECT ON beacon.archives TO PUBLIC;
COMMENT ON VIEW beacon.archives IS
  'Archived partitions (Parquet files under beacon.archive_dir) of the projects visible to the current role: file, rows, _time range, bytes, SHA-256.';

-- The scheduler's steps, with their errors caught: a background worker that raised would
-- exit. Each runs in a transaction of its own.
CREATE FUNCTION beacon._maintain_partitions_caught(project text, collection text,
                                                   OUT due timestamptz[], OUT error text)
LANGUAGE plpgsql SECURITY DEFINER 
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
BEGIN
    due := beacon._maintain_partitions(project, collection);
EXCEPTION WHEN OTHERS THEN
    error := SQLERRM;
END $$;
REVOKE ALL ON FUNCTION beacon._maintain_partitions_caught(text, text) FROM PUBLIC;

CREATE FUNCTION beacon._retire_partition_caught(project text, collection text, lower timestamptz)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER 
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
BEGIN
    PERFORM beacon._retire_partition(project, collection, lower);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLERRM;
END $$;
REVOKE ALL ON FUNCTION beacon._retire_partition_caught(text, text, timestamptz) FROM PUBLIC;

REVOKE ALL ON FUNCTION beacon._maintain_partitions(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION beacon._retire_partition(text, text, timestamptz) FROM PUBLIC;


-- continuous funnels and retention (src/analysis/continuous/)
CREATE FUNCTION beacon."_refresh_continuous_analysis_one"(
	"project" TEXT,
	"name" TEXT
) RETURNS bigint
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', '_refresh_continuous_analysis_one_wrapper';
CREATE FUNCTION beacon."continuous_funnel"(
	"project" TEXT,
	"name" TEXT,
	"from" timestamp with time zone,
	"to" timestamp with time zone
) RETURNS TABLE (
	"step" INT, 
	"collection" TEXT, 
	"breakdown" TEXT, 
	"users" bigint, 
	"conversion_from_previous" double precision, 
	"conversion_from_first" double precision, 
	"median_time_from_previous" interval 
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'continuous_funnel_wrapper';
CREATE FUNCTION beacon."continuous_retention"(
	"project" TEXT,
	"name" TEXT,
	"from" timestamp with time zone,
	"to" timestamp with time zone
) RETURNS TABLE (
	"cohort" date, 
	"breakdown" TEXT, 
	"period" INT, 
	"users" bigint, 
	"cohort_size" bigint 
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'continuous_retention_wrapper';
/* </end connected objects> */

/* <begin connected objects> */
CREATE FUNCTION beacon."create_continuous_funnel"(
	"project" TEXT,
	"name" TEXT,
	"steps" jsonb,
	"window" interval,
	"breakdown" TEXT DEFAULT NULL,
	"mode" TEXT DEFAULT 'async',
	"time_zone" TEXT DEFAULT 'UTC'
) RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_continuous_funnel_wrapper';
CREATE FUNCTION beacon."create_continuous_retention"(
	"project" TEXT,
	"name" TEXT,
	"first_action" jsonb,
	"returning_action" jsonb,
	"period" TEXT,
	"breakdown" TEXT DEFAULT NULL,
	"mode" TEXT DEFAULT 'async',
	"time_zone" TEXT DEFAULT 'UTC'
) RETURNS void
LANGUAGE c
AS 'MODULE_PATHNAME', 'create_continuous_retention_wrapper';
CREATE FUNCTION beacon."drop_continuous_analysis"(
	"project" TEXT,
	"name" TEXT
) RETURNS void
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'drop_continuous_analysis_wrapper';

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

-- What a monitoring system polls: nothing when all is well. Runs as the caller, through
-- the catalog views, so it shows only what the caller may see.
CREATE FUNCTION beacon.status(lag_threshold interval DEFAULT interval '1 minute')
RETURNS TABLE (severity text, component text, project text, name text, problem text, since timestamptz)
LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'error', 'worker', NULL::text, pg_catalog.current_database()::text,
           'pg_beacon is not in shared_preload_libraries: nothing is maintained in the background',
           NULL::timestamptz
     WHERE NOT beacon._preloaded()
    UNION ALL
    SELECT 'error', 'worker', NULL, NULL,
           'the pg_beacon launcher is not running (no background worker slot when the server started?)',
           NULL
     WHERE beacon._preloaded()
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                        WHERE a.backend_type = 'pg_beacon launcher')
    UNION ALL
    SELECT 'warning', 'worker', NULL, w.database,
           'no scheduler: waiting for a background worker slot (max_worker_processes)',
           w.waiting_since
      FROM beacon.workers w
     WHERE w.state = 'waiting for a worker slot'
    UNION ALL
    SELECT 'warning', 'worker', NULL, w.database,
           'no round of maintenance finished for ' || (pg_catalog.now() - coalesce(w.last_maintained, w.started))::text,
           coalesce(w.last_maintained, w.started)
      FROM beacon.workers w
     WHERE w.state = 'running'
       AND coalesce(w.last_maintained, w.started) < pg_catalog.now() - lag_threshold
    UNION ALL
    SELECT 'error', 'continuous query', q.project, q.name,
           'compaction failed: ' || q.last_error, q.last_compaction
      FROM beacon.continuous_queries q
     WHERE q.last_error IS NOT NULL
    UNION ALL
    SELECT 'warning', 'continuous query', q.project, q.name,
           q.pending_deltas || ' pending deltas, the oldest ' || q.lag::text || ' old',
           pg_catalog.now() - q.lag
      FROM beacon.continuous_queries q
     WHERE q.lag > lag_threshold
    UNION ALL
    SELECT 'warning', 'subscription', s.project, s.channel,
           'its filter failed on ' || s.events_failed || ' events (not sent): ' || coalesce(s.last_error, ''),
           NULL
      FROM beacon.subscriptions s
     WHERE s.events_failed > 0
    UNION ALL
    SELECT 'error', 'materialized view', m.project, m.name,
           'refresh failed: ' || m.last_error, m.last_refresh
      FROM beacon.materialized_views m
     WHERE m.last_error IS NOT NULL
    UNION ALL
    SELECT 'warning', 'materialized view', m.project, m.name,
           'refresh overdue by ' || (pg_catalog.now() - m.next_refresh)::text,
           m.next_refresh
      FROM beacon.materialized_views m
     WHERE m.next_refresh < pg_catalog.now() - lag_threshold
    UNION ALL
    SELECT 'error', 'document view', d.project, d.name,
           'refresh failed: ' || d.last_error, d.last_refresh
      FROM beacon.document_views d
     WHERE d.last_error IS NOT NULL
    UNION ALL
    SELECT 'warning', 'document view', d.project, d.name,
           d.pending || ' documents waiting to be rebuilt, the oldest ' || d.lag::text || ' old',
           pg_catalog.now() - d.lag
      FROM beacon.document_views d
     WHERE d.pending > 0 AND d.lag > lag_threshold
    UNION ALL
    SELECT 'error', 'continuous analysis', a.project, a.name,
           'refresh failed: ' || a.last_error, a.last_refresh
      FROM beacon.continuous_analyses a
     WHERE a.last_error IS NOT NULL
    UNION ALL
    SELECT 'warning', 'continuous analysis', a.project, a.name,
           a.pending || ' pending changes, the oldest ' || a.lag::text || ' old',
           pg_catalog.now() - a.lag
      FROM beacon.continuous_analyses a
     WHERE a.pending > 0 AND a.lag > lag_threshold
    UNION ALL
    SELECT 'error', 'partitions', c.project, c.collection,
           'partition maintenance failed: ' || c.maintenance_error, c.maintained_at
      FROM beacon.partitioned_collections c
     WHERE c.maintenance_error IS NOT NULL
$$;
COMMENT ON FUNCTION beacon.status(interval) IS
  'One row per problem, for monitoring: workers missing or stalled, continuous queries with a failed compaction or lag above lag_threshold, subscriptions whose filter failed, materialized views whose refresh failed or is overdue, document views and continuous analyses whose refresh failed or lags above lag_threshold, partitioned collections whose maintenance (partitions ahead, retention, archive) failed. No rows when all is well.';

-- one call merges every immediate query a committing transaction wrote
-- (src/cq/commit_merge.rs)
CREATE FUNCTION beacon."_cq_merge_pending"(
	"pending" TEXT /* &str */
) RETURNS void
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_cq_merge_pending_wrapper';
REVOKE ALL ON FUNCTION beacon._cq_merge_pending(text) FROM PUBLIC;
CREATE OR REPLACE FUNCTION beacon._cq_merge() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
DECLARE
    pending text := current_setting('pg_beacon.pending_merges', true);
BEGIN
    IF pending IS NULL OR pending = '' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('pg_beacon.pending_merges', '', true);
    -- only catalogued immediate queries, whatever the setting says; each merge runs as its
    -- project's owner role, never as the definer here (src/cq/commit_merge.rs)
    PERFORM beacon._cq_merge_pending(pending);
    RETURN NULL;
END $$;

-- each change of the catalog tables collect reads tells every backend to read them again
-- (src/catalog_cache.rs)
CREATE FUNCTION beacon."_catalog_changed"() RETURNS TRIGGER
LANGUAGE c
AS 'MODULE_PATHNAME', '_catalog_changed_wrapper';
REVOKE ALL ON FUNCTION beacon._catalog_changed() FROM PUBLIC;
CREATE TRIGGER _beacon_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON beacon.project
    FOR EACH STATEMENT EXECUTE FUNCTION beacon._catalog_changed();
CREATE TRIGGER _beacon_catalog_changed AFTER INSERT OR UPDATE OF project, name, partition_period OR DELETE OR TRUNCATE
    ON beacon.collection FOR EACH STATEMENT EXECUTE FUNCTION beacon._catalog_changed();
CREATE TRIGGER _beacon_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON beacon.field
    FOR EACH STATEMENT EXECUTE FUNCTION beacon._catalog_changed();

-- every upgrade ends here: rebuild what the previous version generated with this one's code
SELECT beacon.regenerate();
