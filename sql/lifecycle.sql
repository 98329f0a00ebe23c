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
