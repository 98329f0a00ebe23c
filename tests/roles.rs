//! What a project's roles can and cannot do, from real login sessions.

mod common;

use common::server;
use postgres::Client;

fn sqlstate(client: &mut Client, sql: &str) -> Option<String> {
    match client.batch_execute(sql) {
        Ok(()) => None,
        Err(e) => Some(
            e.code()
                .map(|c| c.code().to_string())
                .unwrap_or_else(|| e.to_string()),
        ),
    }
}

#[test]
fn read_write_and_cross_project_access() {
    let db = "roles";
    let mut admin = server().fresh_db(db);
    admin
        .batch_execute(
            r#"SELECT beacon.create_project('alpha');
               SELECT beacon.create_project('beta');
               SELECT beacon.collect('alpha', 'ev', '{"v": 1}');
               SELECT beacon.collect('beta', 'ev', '{"secret": "b"}');
               DROP ROLE IF EXISTS reader_a, writer_a, admin_a;
               CREATE ROLE reader_a LOGIN; CREATE ROLE writer_a LOGIN; CREATE ROLE admin_a LOGIN;
               SELECT beacon.grant('alpha', 'reader_a', 'read');
               SELECT beacon.grant('alpha', 'writer_a', 'write');
               SELECT beacon.grant('alpha', 'admin_a', 'admin');"#,
        )
        .unwrap();

    let mut reader = server().connect_as(db, "reader_a");
    let n: i64 = reader
        .query_one("SELECT count(*) FROM alpha.ev", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "read can SELECT");
    assert_eq!(
        sqlstate(
            &mut reader,
            r#"SELECT beacon.collect('alpha', 'ev', '{"v": 2}')"#
        )
        .as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut reader, "INSERT INTO alpha.ev (v) VALUES (3)").as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut reader, "SELECT * FROM beta.ev").as_deref(),
        Some("42501"),
        "A cannot read B"
    );
    assert_eq!(
        sqlstate(&mut reader, r#"SELECT beacon.collect('beta', 'ev', '{}')"#).as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut reader, "DROP TABLE alpha.ev").as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut reader, "ALTER TABLE alpha.ev ADD COLUMN x int").as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut reader, "SELECT beacon.drop_project('alpha')").as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(
            &mut reader,
            "SELECT beacon.grant('alpha', 'reader_a', 'admin')"
        )
        .as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut reader, "SELECT * FROM beacon.field").as_deref(),
        Some("42501"),
        "raw catalog is private"
    );
    let visible: Vec<String> = reader
        .query("SELECT DISTINCT project FROM beacon.fields ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        visible,
        vec!["alpha".to_string()],
        "beacon.fields hides other projects"
    );

    let mut writer = server().connect_as(db, "writer_a");
    writer
        .batch_execute(r#"SELECT beacon.collect('alpha', 'ev', '{"v": 2, "new_prop": true}')"#)
        .unwrap();
    assert_eq!(
        sqlstate(&mut writer, "SELECT * FROM alpha.ev").as_deref(),
        Some("42501"),
        "write alone cannot read"
    );
    assert_eq!(
        sqlstate(&mut writer, r#"SELECT beacon.collect('beta', 'ev', '{}')"#).as_deref(),
        Some("42501")
    );

    let mut project_admin = server().connect_as(db, "admin_a");
    let n: i64 = project_admin
        .query_one("SELECT count(*) FROM alpha.ev", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2, "admin reads, and sees the writer's event");
    project_admin
        .batch_execute("SELECT beacon.revoke('alpha', 'writer_a', 'write')")
        .unwrap();
    assert_eq!(
        sqlstate(
            &mut writer,
            r#"SELECT beacon.collect('alpha', 'ev', '{"v": 3}')"#
        )
        .as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&mut project_admin, "SELECT * FROM beta.ev").as_deref(),
        Some("42501")
    );
}
