//! pg_dump of a database with a project, restored into a new database, keeps collecting
//! into the same tables. A copy on the same cluster shares the project's roles (they
//! belong to the cluster): each database drops its own objects, the last one the roles. A
//! copy on another cluster needs the roles first (`pg_dumpall --roles-only`).

mod common;

use common::lifecycle::{assert_works, connect_with_notices, error_of, leftovers, populate, roles};
use common::{pg_command, server, Server};
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

#[test]
fn dump_and_restore_keeps_collecting() {
    let mut origin = server().fresh_db("origin");
    origin
        .batch_execute(
            r#"SELECT beacon.create_project('keep');
               SELECT beacon.define_collection('keep', 'order', '{"total": "numeric"}');
               SELECT beacon.collect_batch('keep', '[
                 {"collection": "pageview", "properties": {"url": "/a", "price": 1.5, "at": "2024-01-01T00:00:00Z", "tags": ["x"]}},
                 {"collection": "pageview", "properties": {"url": "/b", "price": 2, "_user": "u1"}},
                 {"collection": "pageview", "properties": {"price": "bad"}},
                 {"collection": "order", "properties": {"total": 10.10}}]');"#,
        )
        .unwrap();
    let max_id: i64 = origin
        .query_one("SELECT max(_id) FROM keep.pageview", &[])
        .unwrap()
        .get(0);

    let dump = server().data.join("origin.sql");
    let out = pg_command("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server().port.to_string(),
            "-U",
            "postgres",
            "-f",
        ])
        .arg(&dump)
        .arg("origin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    server().plain_db("restored");
    let out = Command::new(format!("{}/psql", common::pg_bin()))
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &server().port.to_string(),
        ])
        .args(["-U", "postgres", "-d", "restored", "-f"])
        .arg(&dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut restored = server().connect("restored");
    let catalog = "SELECT string_agg(format('%s.%s.%s:%s:%s', project, collection, property, column_name, type), ',' ORDER BY 1) FROM beacon.fields";
    let before: String = origin.query_one(catalog, &[]).unwrap().get(0);
    let after: String = restored.query_one(catalog, &[]).unwrap().get(0);
    assert_eq!(before, after, "catalog restored");
    let projects: i64 = restored
        .query_one(
            "SELECT count(*) FROM beacon.projects WHERE name = 'keep'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(projects, 1);
    let rejected: i64 = restored
        .query_one("SELECT count(*) FROM keep._rejected", &[])
        .unwrap()
        .get(0);
    assert_eq!(rejected, 1);

    // existing property, a new one, and a new collection, into the restored tables
    let new_id: Option<i64> = restored
        .query_one(
            r#"SELECT beacon.collect('keep', 'pageview', '{"url": "/c", "price": 3.5, "referrer": "ad"}')"#,
            &[],
        )
        .unwrap()
        .get(0);
    assert!(new_id.unwrap() > max_id, "identity continues after restore");
    restored
        .batch_execute(r#"SELECT beacon.collect('keep', 'signup', '{"plan": "pro"}')"#)
        .unwrap();
    let row = restored
        .query_one(
            "SELECT count(*), sum(price)::float8, count(referrer), count(at), count(_user) FROM keep.pageview",
            &[],
        )
        .unwrap();
    let (n, sum, referrers, ats, users): (i64, f64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!((n, sum, referrers, ats, users), (3, 7.0, 1, 1, 1));
    let total: String = restored
        .query_one("SELECT total::text FROM keep.\"order\"", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, "10.10");
    // the restored project's grants still work
    let readable: bool = restored
        .query_one(
            "SELECT has_table_privilege('beacon_keep_read', 'keep.signup', 'SELECT')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(readable);
}

/// `pg_dump` of `db` on `server` into `file` (plain SQL).
fn dump(server: &Server, db: &str, file: &Path) {
    dump_with(server, db, file, &[]);
}

fn dump_with(server: &Server, db: &str, file: &Path, options: &[&str]) {
    let out = pg_command("pg_dump")
        .args(options)
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-U", "postgres", "-f"])
        .arg(file)
        .arg(db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a SQL file with psql; with `stop_on_error`, returns its errors when it fails.
fn psql_file(server: &Server, db: &str, file: &Path, stop_on_error: bool) -> Result<(), String> {
    let out = Command::new(format!("{}/psql", common::pg_bin()))
        .args(["-X", "-q", "-v"])
        .arg(format!("ON_ERROR_STOP={}", u8::from(stop_on_error)))
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-U", "postgres", "-d", db, "-f"])
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn dropped_roles_notice(notices: &Mutex<Vec<String>>) -> Option<String> {
    notices
        .lock()
        .unwrap()
        .iter()
        .find(|n| n.contains("are kept"))
        .cloned()
}

#[test]
fn a_copy_on_the_same_cluster_shares_the_roles() {
    let project = "dr_same";
    let mut origin = server().fresh_db("dr_origin");
    let channel = populate(&mut origin, project);
    let file = server().data.join("dr_origin.sql");
    dump(server(), "dr_origin", &file);
    server().plain_db("dr_copy");
    psql_file(server(), "dr_copy", &file, true).expect("restore into a second database");

    let (mut copy, copy_notices) = connect_with_notices(&server().dsn("dr_copy", "postgres"));
    let mut listener = server().connect("dr_copy");
    assert_works(&mut copy, &mut listener, project, &channel);
    let mut origin_listener = server().connect("dr_origin");
    assert_works(&mut origin, &mut origin_listener, project, &channel);

    // the name is taken in every other database of the cluster, and the error says where
    let mut third = server().fresh_db("dr_third");
    let (code, message, hint) = error_of(&mut third, "SELECT beacon.create_project('dr_same')")
        .expect("a third database cannot make a project of the same name");
    assert_eq!(code, "42710", "{message}");
    assert!(
        message.contains("\"dr_origin\"") && message.contains("\"dr_copy\""),
        "{message}"
    );
    assert!(hint.contains("another project name"), "{hint}");
    assert_eq!(
        leftovers(&mut third, project)
            .iter()
            .filter(|l| l.starts_with("schema"))
            .count(),
        0,
        "nothing made"
    );

    // dropping it in the copy drops the copy's objects and keeps the roles the original uses
    copy.execute("SELECT beacon.drop_project($1)", &[&project])
        .unwrap();
    let kept = dropped_roles_notice(&copy_notices).expect("a notice that the roles are kept");
    assert!(kept.contains("\"dr_origin\""), "{kept}");
    assert!(leftovers(&mut copy, project)
        .iter()
        .all(|l| !l.contains(project)));
    assert_eq!(roles(&mut origin, project).len(), 4);
    assert_works(&mut origin, &mut origin_listener, project, &channel);

    // then in the original, the last database that uses them: the roles go too
    origin
        .execute("SELECT beacon.drop_project($1)", &[&project])
        .unwrap();
    assert_eq!(roles(&mut origin, project), Vec::<String>::new());
    // and the name is free again
    third
        .execute("SELECT beacon.create_project('dr_same')", &[])
        .unwrap();
    for db in ["dr_origin", "dr_copy", "dr_third"] {
        server().drop_db(db);
    }
}

#[test]
fn a_copy_on_the_same_cluster_dropped_last() {
    // the other order: the original first, then the copy
    let project = "dr_order";
    let mut origin = server().fresh_db("dr_order_a");
    let channel = populate(&mut origin, project);
    let file = server().data.join("dr_order_a.sql");
    dump(server(), "dr_order_a", &file);
    server().plain_db("dr_order_b");
    psql_file(server(), "dr_order_b", &file, true).expect("restore");
    origin
        .execute("SELECT beacon.drop_project($1)", &[&project])
        .unwrap();
    assert_eq!(
        roles(&mut origin, project).len(),
        4,
        "the copy still uses them"
    );
    let mut copy = server().connect("dr_order_b");
    let mut listener = server().connect("dr_order_b");
    assert_works(&mut copy, &mut listener, project, &channel);
    // DROP EXTENSION CASCADE in the last database drops the roles with the project
    copy.batch_execute("DROP EXTENSION pg_beacon CASCADE")
        .unwrap();
    assert_eq!(roles(&mut copy, project), Vec::<String>::new());
    assert_eq!(leftovers(&mut copy, project), Vec::<String>::new());
    for db in ["dr_order_a", "dr_order_b"] {
        server().drop_db(db);
    }
}

#[test]
fn a_copy_on_another_cluster_after_its_roles() {
    let project = "dr_far";
    let mut origin = server().fresh_db("dr_far");
    let channel = populate(&mut origin, project);
    let file = server().data.join("dr_far.sql");
    dump(server(), "dr_far", &file);
    let roles_file = server().data.join("dr_far_roles.sql");
    let out = pg_command("pg_dumpall")
        .args(["-h", "127.0.0.1", "-p", &server().port.to_string()])
        .args(["-U", "postgres", "--roles-only", "-f"])
        .arg(&roles_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dumpall: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let other = Server::start_with_env(&[]);
    other.plain_db("dr_far");
    // without the roles, the restore fails on the first object owned by one
    let missing = psql_file(&other, "dr_far", &file, true).expect_err("roles missing");
    assert!(missing.contains("beacon_dr_far_"), "{missing}");
    other.plain_db("dr_far");
    // every role of the source cluster; the one that exists already (postgres) is an
    // error psql reports and goes past
    let _ = psql_file(&other, "postgres", &roles_file, false);
    psql_file(&other, "dr_far", &file, true).expect("restore after the roles");

    let mut far = other.connect("dr_far");
    let mut listener = other.connect("dr_far");
    assert_works(&mut far, &mut listener, project, &channel);
    far.execute("SELECT beacon.drop_project($1)", &[&project])
        .unwrap();
    assert_eq!(
        roles(&mut far, project),
        Vec::<String>::new(),
        "dropped there"
    );
    assert_eq!(roles(&mut origin, project).len(), 4, "kept here");
    assert_works(
        &mut origin,
        &mut server().connect("dr_far"),
        project,
        &channel,
    );
    drop((far, listener));
    other.stop_and_remove();
    server().drop_db("dr_far");
}

#[test]
fn a_clean_restore_over_the_original() {
    // pg_dump --clean drops every table and function of the project, then the extension
    // (the project schema is empty by then: nothing of it calls into the extension, so the
    // drop is not refused, and the roles stay), then the schemas, and makes them again
    let project = "dr_clean";
    let mut origin = server().fresh_db("dr_clean");
    let channel = populate(&mut origin, project);
    let file = server().data.join("dr_clean.sql");
    dump_with(server(), "dr_clean", &file, &["--clean", "--if-exists"]);
    drop(origin);
    psql_file(server(), "dr_clean", &file, true).expect("a clean restore over the original");
    let mut restored = server().connect("dr_clean");
    let mut listener = server().connect("dr_clean");
    assert_eq!(roles(&mut restored, project).len(), 4);
    assert_works(&mut restored, &mut listener, project, &channel);
    server().drop_db("dr_clean");
}
