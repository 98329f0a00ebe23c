-- Dropping the extension (src/lifecycle/extension.rs): DROP EXTENSION pg_beacon, DROP SCHEMA beacon and
-- DROP OWNED BY the extension owner refuse while projects exist, and with CASCADE drop
-- every project first (schemas, generated functions and triggers, roles), so that nothing
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
