-- Time partitions, retention and the Parquet archive of event collections
-- (src/collect/partitions/).

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

