-- Generated objects and the version that generated each (see src/generated.rs).
CREATE TABLE beacon.generated_object (
    kind         text NOT NULL CHECK (kind IN ('cq_capture', 'cq_view', 'stream_trigger', 'materialized_view')),
    project      text NOT NULL REFERENCES beacon.project (name) ON DELETE CASCADE,
    -- the source table (cq_capture), the collection (stream_trigger), else the object
    name         text NOT NULL,
    version      text NOT NULL,
    generated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, project, name)
);
SELECT pg_catalog.pg_extension_config_dump('beacon.generated_object', '');
REVOKE ALL ON beacon.generated_object FROM PUBLIC;

CREATE VIEW beacon.generated_objects WITH (security_barrier) AS
SELECT g.kind, g.project, g.name, g.version,
       g.version = (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_beacon') AS current,
       g.generated_at
  FROM beacon.generated_object g
 WHERE has_schema_privilege(g.project, 'USAGE');
GRANT SELECT ON beacon.generated_objects TO PUBLIC;
COMMENT ON VIEW beacon.generated_objects IS
  'Objects pg_beacon generated (capture and stream triggers, continuous-query views, materialized views) visible to the current role, with the version that generated each.';
