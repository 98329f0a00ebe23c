//! Least privilege by construction: whatever a checker lets through runs as the project's
//! owner role `beacon_<project>_owner`, which owns the project and reaches nothing else.
//! These tests assert the facts that containment rests on (who owns what, what the owner
//! role may do), and run code planted inside a project — standing in for a checker gap —
//! through pg_beacon's own elevated paths to show it runs as that role and no further.

use crate::common::attack::*;
use postgres::Client;

const OWNER: &str = "beacon_alpha_owner";

/// Objects in `project`'s schema (and the schema itself) not owned by its owner role.
fn foreign_owned(admin: &mut Client, project: &str) -> Vec<String> {
    admin
        .query(
            "SELECT kind || ' ' || what || ' owner=' || pg_catalog.pg_get_userbyid(owner)
               FROM (SELECT 'schema' AS kind, n.nspname::text AS what, n.nspowner AS owner, n.nspname AS nsp
                       FROM pg_catalog.pg_namespace n
                     UNION ALL
                     SELECT 'relation', c.oid::regclass::text, c.relowner, n.nspname
                       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     UNION ALL
                     SELECT 'function', p.oid::regprocedure::text, p.proowner, n.nspname
                       FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                     UNION ALL
                     SELECT 'type', t.oid::regtype::text, t.typowner, n.nspname
                       FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace) o
              WHERE o.nsp = $1 AND pg_catalog.pg_get_userbyid(o.owner) <> 'beacon_' || $1 || '_owner'
              ORDER BY 1",
            &[&project],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn attacks_containment_every_project_object_belongs_to_its_owner_role() {
    let _turn = turn();
    let mut admin = admin();
    for project in ["alpha", "beta"] {
        let wrong = foreign_owned(&mut admin, project);
        assert!(wrong.is_empty(), "{project}: {wrong:#?}");
        // the generated SECURITY DEFINER functions are there, and are the owner role's
        let definers: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = $1 AND p.prosecdef
                    AND pg_catalog.pg_get_userbyid(p.proowner) = 'beacon_' || $1 || '_owner'",
                &[&project],
            )
            .unwrap()
            .get(0);
        assert!(
            definers >= 2,
            "{project}: {definers} SECURITY DEFINER functions"
        );
    }
}

#[test]
fn attacks_containment_the_owner_role_has_no_attributes_and_no_memberships() {
    let mut admin = admin();
    for project in ["alpha", "beta"] {
        let owner = format!("beacon_{project}_owner");
        let row = admin
            .query_one(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication,
                        rolbypassrls, rolinherit,
                        (SELECT count(*) FROM pg_catalog.pg_auth_members m
                          WHERE m.member = r.oid OR m.roleid = r.oid)
                   FROM pg_catalog.pg_roles r WHERE rolname = $1",
                &[&owner],
            )
            .unwrap();
        for (i, attribute) in [
            "LOGIN",
            "SUPERUSER",
            "CREATEROLE",
            "CREATEDB",
            "REPLICATION",
            "BYPASSRLS",
            "INHERIT",
        ]
        .iter()
        .enumerate()
        {
            assert!(!row.get::<_, bool>(i), "{owner} has {attribute}");
        }
        assert_eq!(row.get::<_, i64>(7), 0, "{owner} has memberships");
    }
}

/// Runs `sql` as the owner role in a transaction that is rolled back; the SQLSTATE if it
/// failed.
fn as_owner(admin: &mut Client, sql: &str) -> Option<String> {
    admin
        .batch_execute(&format!("BEGIN; SET LOCAL ROLE {OWNER}"))
        .unwrap();
    let result = admin.batch_execute(sql);
    admin.batch_execute("ROLLBACK").unwrap();
    result
        .err()
        .map(|e| e.code().map(|c| c.code().to_string()).unwrap_or_default())
}

#[test]
fn attacks_containment_the_owner_role_reaches_its_project_only() {
    let _turn = turn();
    let before = fingerprint();
    let mut admin = admin();
    // its own project, as pg_beacon's code uses it
    for sql in [
        "SELECT count(*) FROM alpha.events",
        "INSERT INTO alpha._rejected (collection, properties, reason) VALUES ('x', '{}', 'test')",
        "CREATE TABLE alpha.scratch (x int)",
    ] {
        assert_eq!(as_owner(&mut admin, sql), None, "{sql}");
    }
    let mut findings = Vec::new();
    for sql in [
        // another project
        "SELECT * FROM beta.secret",
        "SELECT * FROM beta._users",
        "SELECT * FROM beta.beta_cq",
        "SELECT * FROM beta.beta_mv",
        "INSERT INTO beta.secret (note) VALUES ('x')",
        "CREATE TABLE beta.planted (x int)",
        // pg_beacon's catalog: read as the extension owner, written by pg_beacon only
        "SELECT * FROM beacon.project",
        "SELECT * FROM beacon.collection",
        "SELECT * FROM beacon.field",
        "SELECT * FROM beacon.continuous_query",
        "SELECT * FROM beacon.materialized_view",
        "SELECT * FROM beacon.generated_object",
        "SELECT * FROM beacon.subscription",
        "SELECT * FROM beacon.channel_secret",
        "SELECT * FROM beacon.subscription_sent",
        "SELECT * FROM beacon.subscription_failure",
        "INSERT INTO beacon.project (name) VALUES ('planted')",
        "UPDATE beacon.continuous_query SET query = 'x'",
        "DELETE FROM beacon.subscription",
        "UPDATE beacon.subscription_sent SET sent = 0",
        // elevating functions of the extension
        "SELECT beacon._mailbox_channel('beta', NULL)",
        "SELECT beacon._cq_merge_one('beta', 'beta_cq')",
        "SELECT beacon._refresh_materialized_view('beta', 'beta_mv', true, false)",
        "SELECT beacon._record_error('beta', 'beta_cq', 'x')",
        "SELECT beacon.regenerate()",
        "SELECT beacon._stream_housekeeping()",
        // pg_beacon's entry points: the owner role holds no level, even on its own project
        "SELECT beacon.collect('alpha', 'events', '{\"url\": \"/x\"}')",
        "SELECT beacon.collect('beta', 'secret', '{\"note\": \"x\"}')",
        "SELECT beacon.query('beta', 'SELECT * FROM secret')",
        "SELECT beacon.grant('alpha', 'outsider', 'admin')",
        "SELECT beacon.create_project('planted')",
        "SELECT beacon.drop_project('beta')",
        // cluster-level rights
        "CREATE ROLE planted",
        "CREATE SCHEMA planted",
        // (SET ROLE is decided by the session user, a superuser here: memberships are
        // checked above instead)
        "GRANT beacon_alpha_read TO outsider",
        "COPY (SELECT 1) TO PROGRAM 'true'",
        "SELECT pg_catalog.pg_read_file('PG_VERSION')",
    ] {
        match as_owner(&mut admin, sql) {
            Some(state) if state == "42501" || state == "0LP01" => {}
            other => findings.push(format!("{sql}: {other:?}")),
        }
    }
    drop(admin);
    assert!(findings.is_empty(), "{findings:#?}");
    assert_eq!(fingerprint(), before);
}

/// Code planted in project alpha (a trigger on its collection, standing in for whatever a
/// checker gap would let through) run by pg_beacon's elevated `collect` runs as alpha's
/// owner role: it cannot read beta, write the catalog or create a role.
#[test]
fn attacks_containment_planted_code_runs_as_the_project_owner_only() {
    let _turn = turn();
    let mut admin = admin();
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION alpha._planted() RETURNS trigger LANGUAGE plpgsql AS $$
             DECLARE seen text := current_user;
             BEGIN
               BEGIN PERFORM count(*) FROM beta.secret; seen := seen || ' read-beta';
               EXCEPTION WHEN insufficient_privilege THEN NULL; END;
               BEGIN INSERT INTO beacon.project (name) VALUES ('planted'); seen := seen || ' wrote-catalog';
               EXCEPTION WHEN insufficient_privilege THEN NULL; END;
               BEGIN CREATE ROLE planted_by_trigger; seen := seen || ' created-role';
               EXCEPTION WHEN insufficient_privilege THEN NULL; END;
               PERFORM pg_catalog.set_config('attack.seen', seen, false);
               RETURN NEW;
             END $$;
             ALTER FUNCTION alpha._planted() OWNER TO {OWNER};
             CREATE TRIGGER _planted BEFORE INSERT ON alpha.events
               FOR EACH ROW EXECUTE FUNCTION alpha._planted();"
        ))
        .unwrap();
    let mut writer = Session::connect("writer");
    let outcome = writer.run(
        "SELECT beacon.collect('alpha', 'events', '{\"url\": \"/planted\"}');
         SELECT pg_catalog.current_setting('attack.seen', true)",
    );
    admin
        .batch_execute(
            "DROP TRIGGER _planted ON alpha.events; DROP FUNCTION alpha._planted();
             DELETE FROM alpha.events WHERE url = '/planted'",
        )
        .unwrap();
    drop(admin);
    assert_eq!(outcome.error, None, "{outcome:?}");
    let seen = outcome.rows.last().and_then(|r| r[0].clone());
    assert_eq!(seen.as_deref(), Some(OWNER), "{outcome:?}");
    assert!(!role_exists("planted_by_trigger"));
}
