-- Operations: the background maintenance of every database, and one row per problem.

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

-- Announces the new database to the launcher and warns when it will wait for a slot.
SELECT beacon._announce();
