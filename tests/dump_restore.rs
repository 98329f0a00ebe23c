//! pg_dump of a database with a project, restored into a new database, keeps collecting
//! into the same tables.

mod common;

use common::{pg_command, server};
use std::process::Command;

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
