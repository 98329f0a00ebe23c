-- pg_beacon 0.2.0 → 0.2.1

-- new: which version generated each generated object (src/generated.rs, sql/generated.sql)
CREATE VIEW beacon.generated_objects AS
SELECT g.kind, g.project, g.name, g.version,
       g.version = (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_beacon') AS current,
       g.generated_at
  FROM beacon.generated_object g
 WHERE has_schema_privilege(g.project, 'USAGE');
GRANT SELECT ON beacon.generated_objects TO PUBLIC;
COMMENT ON VIEW beacon.generated_objects IS
  'Objects pg_beacon generated (capture and stream triggers, continuous-query views, materialized views) visible to the current role, with the version that generated each.';

-- every upgrade ends here: rebuild what the previous version generated with this one's code
SELECT beacon.regenerate();
