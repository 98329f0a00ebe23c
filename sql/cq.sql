-- Continuous queries: catalog, compaction entry point and monitoring view.

CREATE TABLE beacon.continuous_query (
    project         text NOT NULL REFERENCES beacon.project (name) ON DELETE CASCADE,
    name            text NOT NULL,
    query           text NOT NULL,
    source          text NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('async', 'immediate')),
    -- keys such as date_trunc('hour', _time) are computed in this zone by every writer
    time_zone       text NOT NULL,
    rows_applied    bigint NOT NULL DEFAULT 0,
    last_compaction timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- the other tables a join reads, each with capture triggers like the source's
    joined          text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (project, name)
);
SELECT pg_catalog.pg_extension_config_dump('beacon.continuous_query', '');
REVOKE ALL ON beacon.continuous_query FROM PUBLIC;

-- Partials merged at commit by immediate queries, one row per query and backend slot
-- (src/cq/commit_merge.rs): a single counter row would serialize the query's writers.
-- Statistics only, so unlogged like the subscription counters.
CREATE UNLOGGED TABLE beacon.cq_applied (
    project  text NOT NULL,
    name     text NOT NULL,
    slot     integer NOT NULL,
    partials bigint NOT NULL,
    PRIMARY KEY (project, name, slot),
    FOREIGN KEY (project, name) REFERENCES beacon.continuous_query (project, name) ON DELETE CASCADE
);
REVOKE ALL ON beacon.cq_applied FROM PUBLIC;

-- Pending deltas of one async query: how many, and the oldest one's time.
CREATE FUNCTION beacon._backlog(project text, name text, OUT pending bigint, OUT oldest timestamptz)
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
GRANT EXECUTE ON FUNCTION beacon._backlog(text, text) TO PUBLIC;

CREATE VIEW beacon.continuous_queries WITH (security_barrier) AS
SELECT q.project, q.name, q.mode, q.source, q.time_zone,
       q.rows_applied + coalesce((SELECT sum(a.partials) FROM beacon.cq_applied a
                                   WHERE a.project = q.project AND a.name = q.name), 0)::bigint AS rows_applied,
       coalesce(b.pending, 0) AS pending_deltas,
       coalesce(now() - b.oldest, interval '0') AS lag,
       q.last_compaction, q.last_error, q.query, q.created_at, q.joined
  FROM beacon.continuous_query q
  CROSS JOIN LATERAL beacon._backlog(q.project, q.name) b
 WHERE has_schema_privilege(q.project, 'USAGE');
GRANT SELECT ON beacon.continuous_queries TO PUBLIC;
COMMENT ON VIEW beacon.continuous_queries IS
  'Continuous queries visible to the current role: mode, source and joined tables, rows applied, pending deltas, lag, last error.';

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
CREATE FUNCTION beacon.compact(project text DEFAULT NULL, name text DEFAULT NULL) RETURNS bigint
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
COMMENT ON FUNCTION beacon.compact(text, text) IS
  'Applies pending deltas of async continuous queries now; returns how many were applied.';

CREATE FUNCTION beacon._record_error(project text, name text, message text) RETURNS void
LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp SET standard_conforming_strings = on SET backslash_quote = safe_encoding
    SET transform_null_equals = off SET array_nulls = on SET DateStyle = 'ISO, MDY' SET IntervalStyle = postgres
    SET default_tablespace = '' SET default_table_access_method = heap
AS $$
    UPDATE beacon.continuous_query SET last_error = message
     WHERE continuous_query.project = _record_error.project AND continuous_query.name = _record_error.name
$$;
REVOKE ALL ON FUNCTION beacon._record_error(text, text, text) FROM PUBLIC;

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

-- The digest a continuous query's unique indexes hold for a text key or distinct value,
-- whose size btree limits to about 2.7 kB. Under a deterministic collation text equality
-- is byte equality, which the digest of the bytes keeps exact. convert_to the database's
-- own encoding is the bytes as stored, which never change in a database: IMMUTABLE holds
-- (textsend would be stable: it converts to the client's encoding).
CREATE FUNCTION beacon._text_digest(value text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.sha256(pg_catalog.convert_to(value, pg_catalog.getdatabaseencoding())) $$;

-- The deferred trigger of every immediate query's delta table: at commit, the first one
-- to fire merges every immediate query the transaction has pending deltas for (listed by
-- the capture in pg_beacon.pending_merges), ordered by project and name, each of which
-- locks its groups in key order. So merging transactions lock groups in one global order
-- and cannot deadlock each other; the later firings find the list empty.
CREATE FUNCTION beacon._cq_merge() RETURNS trigger
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
REVOKE ALL ON FUNCTION beacon._cq_merge() FROM PUBLIC;
