-- pg_beacon catalog. Every table here is extension-owned and registered with
-- pg_extension_config_dump so that pg_dump carries projects, collections and
-- fields along with the data they describe. Objects are referenced by name,
-- never by OID, so a restore into another database keeps working.

CREATE TABLE beacon.project (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE beacon.collection (
    project     text NOT NULL REFERENCES beacon.project (name) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);

-- One row per event property: which column holds it and with what type.
-- The column name differs from the property when the property is too long,
-- empty, or collides with a system column (see names.rs).
CREATE TABLE beacon.field (
    project     text NOT NULL,
    collection  text NOT NULL,
    property    text NOT NULL,
    column_name text NOT NULL,
    type        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, collection, property),
    UNIQUE (project, collection, column_name),
    FOREIGN KEY (project, collection) REFERENCES beacon.collection (project, name) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('beacon.project', '');
SELECT pg_catalog.pg_extension_config_dump('beacon.collection', '');
SELECT pg_catalog.pg_extension_config_dump('beacon.field', '');

REVOKE ALL ON beacon.project, beacon.collection, beacon.field FROM PUBLIC;

-- The views show only projects whose schema the current role may use, so a
-- member of one project's roles does not learn another project's layout.
CREATE VIEW beacon.projects WITH (security_barrier) AS
SELECT p.name,
       p.name AS schema,
       format('beacon_%s_read', p.name)  AS read_role,
       format('beacon_%s_write', p.name) AS write_role,
       format('beacon_%s_admin', p.name) AS admin_role,
       (SELECT count(*) FROM beacon.collection c WHERE c.project = p.name AND c.name <> '_users') AS collections,
       p.created_at
  FROM beacon.project p
 WHERE has_schema_privilege(p.name, 'USAGE');

-- _users is registered like a collection (its properties live in beacon.field) but
-- has system columns of its own.
CREATE VIEW beacon.fields WITH (security_barrier) AS
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

GRANT USAGE ON SCHEMA beacon TO PUBLIC;
GRANT SELECT ON beacon.projects, beacon.fields TO PUBLIC;

COMMENT ON VIEW beacon.projects IS 'pg_beacon projects visible to the current role, with their schema and group roles.';
COMMENT ON VIEW beacon.fields IS 'Every collection''s fields: system columns and the properties that became columns, with their types.';
