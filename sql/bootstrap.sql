-- pg_tide catalog. Every table here is extension-owned and registered with
-- pg_extension_config_dump so that pg_dump carries projects, collections and
-- fields along with the data they describe. Objects are referenced by name,
-- never by OID, so a restore into another database keeps working.

CREATE TABLE tide.project (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tide.collection (
    project     text NOT NULL REFERENCES tide.project (name) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, name)
);

-- One row per event property: which column holds it and with what type.
-- The column name differs from the property when the property is too long,
-- empty, or collides with a system column (see names.rs).
CREATE TABLE tide.field (
    project     text NOT NULL,
    collection  text NOT NULL,
    property    text NOT NULL,
    column_name text NOT NULL,
    type        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, collection, property),
    UNIQUE (project, collection, column_name),
    FOREIGN KEY (project, collection) REFERENCES tide.collection (project, name) ON DELETE CASCADE
);

SELECT pg_catalog.pg_extension_config_dump('tide.project', '');
SELECT pg_catalog.pg_extension_config_dump('tide.collection', '');
SELECT pg_catalog.pg_extension_config_dump('tide.field', '');

REVOKE ALL ON tide.project, tide.collection, tide.field FROM PUBLIC;

-- The views show only projects whose schema the current role may use, so a
-- member of one project's roles does not learn another project's layout.
CREATE VIEW tide.projects AS
SELECT p.name,
       p.name AS schema,
       format('tide_%s_read', p.name)  AS read_role,
       format('tide_%s_write', p.name) AS write_role,
       format('tide_%s_admin', p.name) AS admin_role,
       (SELECT count(*) FROM tide.collection c WHERE c.project = p.name AND c.name <> '_users') AS collections,
       p.created_at
  FROM tide.project p
 WHERE has_schema_privilege(p.name, 'USAGE');

-- _users is registered like a collection (its properties live in tide.field) but
-- has system columns of its own.
CREATE VIEW tide.fields AS
SELECT c.project, c.name AS collection, s.property, s.property AS column_name, s.type, true AS system
  FROM tide.collection c
  JOIN (VALUES (false, '_id', 'bigint'),
               (false, '_time', 'timestamptz'),
               (false, '_user', 'text'),
               (true, 'id', 'text'),
               (true, 'created_at', 'timestamptz'),
               (true, 'updated_at', 'timestamptz')) AS s (users, property, type)
    ON s.users = (c.name = '_users')
 WHERE has_schema_privilege(c.project, 'USAGE')
UNION ALL
SELECT f.project, f.collection, f.property, f.column_name, f.type, false
  FROM tide.field f
 WHERE has_schema_privilege(f.project, 'USAGE');

GRANT USAGE ON SCHEMA tide TO PUBLIC;
GRANT SELECT ON tide.projects, tide.fields TO PUBLIC;

COMMENT ON VIEW tide.projects IS 'pg_tide projects visible to the current role, with their schema and group roles.';
COMMENT ON VIEW tide.fields IS 'Every collection''s fields: system columns and the properties that became columns, with their types.';
