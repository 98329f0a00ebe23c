//! The security suite: attempts an attacker would make through `beacon.query`, through the
//! roles pg_beacon hands out, and through names, each asserting that the attempt fails and
//! that nothing changed (a fingerprint of everything an attack could touch, taken before
//! and after).

mod common;

use common::server;
use postgres::Client;
use std::sync::{Mutex, MutexGuard, OnceLock};

const DB: &str = "security";
const SECRET: &str = "TOP SECRET beta row";

/// Everything an attack could read, change or create, as one string.
const FINGERPRINT: &str = "
SELECT concat_ws(' | ',
  (SELECT string_agg(s.note, ',' ORDER BY s._id) FROM beta.secret s),
  (SELECT count(*) FROM alpha.events),
  (SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text, ',' ORDER BY n.nspname, c.relname)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'),
  (SELECT string_agg(rolname || rolsuper::text || rolcanlogin::text, ',' ORDER BY rolname) FROM pg_roles),
  (SELECT string_agg(roleid::regrole::text || '>' || member::regrole::text, ',' ORDER BY roleid::regrole::text, member::regrole::text) FROM pg_auth_members),
  (SELECT string_agg(name, ',' ORDER BY name) FROM beacon.project),
  (SELECT count(*) FROM beacon.field),
  (SELECT count(*) FROM beacon.subscription),
  (SELECT count(*) FROM beacon.continuous_query),
  (SELECT count(*) FROM beacon.materialized_view),
  (SELECT count(*) FROM pg_largeobject_metadata),
  (SELECT string_agg(proname, ',' ORDER BY proname) FROM pg_proc WHERE pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)))";

fn setup() -> &'static () {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut admin = server().fresh_db(DB);
        admin
            .batch_execute(&format!(
                r#"
                CREATE ROLE reader LOGIN; CREATE ROLE writer LOGIN; CREATE ROLE boss LOGIN;
                CREATE ROLE outsider LOGIN;
                SELECT beacon.create_project('alpha'); SELECT beacon.create_project('beta');
                SELECT beacon.grant('alpha', 'reader', 'read');
                SELECT beacon.grant('alpha', 'writer', 'write');
                SELECT beacon.grant('alpha', 'boss', 'admin');
                SELECT beacon.collect('alpha', 'events', '{{"url": "/a", "price": 3}}');
                SELECT beacon.collect('beta', 'secret', '{{"note": "{SECRET}"}}');
                SELECT beacon.set_user('beta', 'vip', '{{"card": "4111"}}');
                "#
            ))
            .unwrap();
    })
}

/// The tests compare fingerprints of the whole database, so they take turns.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn connect(role: &str) -> Client {
    setup();
    server().connect_as(DB, role)
}

fn fingerprint() -> String {
    connect("postgres")
        .query_one(FINGERPRINT, &[])
        .unwrap()
        .get(0)
}

/// Runs `sql` as `role`, asserts it fails with `state`, and returns the message.
fn refused(role: &str, sql: &str, state: &str) -> String {
    let mut client = connect(role);
    let error = match client.batch_execute(sql) {
        Ok(()) => panic!("{role} could run: {sql}"),
        Err(e) => e,
    };
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: {error}"));
    assert_eq!(db.code().code(), state, "{sql}: {}", db.message());
    db.message().to_string()
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Hostile analysis SQL, each of which barrier 1 must refuse.
fn hostile_queries() -> Vec<String> {
    let mut queries: Vec<String> = [
        // other schemas
        "SELECT * FROM pg_catalog.pg_authid",
        "SELECT rolpassword FROM pg_catalog.pg_authid",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM beta.secret",
        "SELECT * FROM beta._users",
        "SELECT * FROM beacon.project",
        "SELECT * FROM public.anything",
        "SELECT * FROM security.beta.secret",
        "SELECT * FROM \"beta\".\"secret\"",
        "SELECT * FROM beta . secret",
        "SELECT * FROM beta/**/.secret",
        "TABLE beta.secret",
        "SELECT * FROM ONLY beta.secret",
        "SELECT * FROM events UNION ALL SELECT _id, _time, _user, note, 0 FROM beta.secret",
        "SELECT (SELECT note FROM beta.secret LIMIT 1) FROM events",
        "SELECT * FROM events WHERE _user IN (SELECT usename FROM pg_catalog.pg_user)",
        "SELECT * FROM events, LATERAL (SELECT * FROM beta.secret) s",
        "SELECT * FROM events WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_shadow)",
        "WITH pg_authid AS (SELECT 1 AS x) SELECT * FROM pg_catalog.pg_authid",
        "WITH secret AS (SELECT 1) SELECT * FROM beta.secret",
        "VALUES ((SELECT count(*) FROM beta.secret))",
        // functions that run SQL text, touch files, sleep, or change settings
        "SELECT dblink('dbname=security', 'SELECT note FROM beta.secret')",
        "SELECT * FROM dblink('dbname=security', 'DROP TABLE beta.secret') AS t(x text)",
        "SELECT query_to_xml('SELECT * FROM beta.secret', true, true, '')",
        "SELECT table_to_xml('beta.secret', true, true, '')",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT \"pg_catalog\".\"pg_read_file\"('/etc/passwd')",
        "SELECT pg_catalog/**/.pg_read_file('/etc/passwd')",
        "SELECT PG_CATALOG.PG_READ_BINARY_FILE('/etc/passwd')",
        "SELECT * FROM pg_ls_dir('.')",
        "SELECT pg_stat_file('postgresql.conf')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(1, '/tmp/beacon_pwned')",
        "COPY (SELECT 1) TO '/tmp/beacon_pwned'",
        "SELECT pg_sleep(30)",
        "SELECT pg_catalog.pg_sleep_for('30 seconds')",
        "SELECT U&\"pg_sleep\"(30)",
        "SELECT set_config('beacon.query_timeout', '0', false)",
        "SELECT current_setting('data_directory')",
        "SELECT pg_advisory_lock(42)",
        "SELECT pg_notify('x', 'y')",
        "SELECT pg_terminate_backend(1)",
        "SELECT pg_reload_conf()",
        "SELECT nextval('beta.secret__id_seq')",
        "SELECT txid_current()",
        "SELECT version()",
        "SELECT public.anything(1)",
        "SELECT beta.f()",
        // casts that reach other objects
        "SELECT 'beta.secret'::regclass",
        "SELECT CAST('pg_sleep' AS regproc)",
        "SELECT 'pg_read_file(text)'::regprocedure",
        "SELECT '1259'::oid",
        "SELECT regclass 'pg_authid'",
        // statements that are not one read-only SELECT
        "SELECT 1 INTO stolen",
        "SELECT * FROM events FOR UPDATE",
        "SELECT * FROM events FOR SHARE",
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE events",
        "SELECT * FROM events; COMMIT; DROP TABLE beta.secret",
        "WITH d AS (DELETE FROM events RETURNING *) SELECT * FROM d",
        "WITH i AS (INSERT INTO events (url) VALUES ('x') RETURNING 1) SELECT * FROM i",
        "WITH u AS (UPDATE events SET url = 'x' RETURNING 1) SELECT 1",
        "DELETE FROM events",
        "INSERT INTO events (url) VALUES ('x')",
        "DROP TABLE events",
        "EXPLAIN ANALYZE SELECT 1",
        "SET ROLE postgres",
        "RESET ROLE",
        "DO $$ BEGIN DROP TABLE beta.secret; END $$",
        "CALL beta.p()",
        "PREPARE p AS SELECT 1",
        "LISTEN beacon_x",
        "NOTIFY beacon_x",
        "SELECT * FROM events WHERE url = $1",
        "SELECT 1 OPERATOR(pg_catalog.+) 1",
        "",
        "   ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // size and depth
    queries.push(format!(
        "SELECT {} FROM events",
        vec!["price"; 40_000].join(" + ")
    ));
    queries.push(format!(
        "SELECT {}1{}",
        "(".repeat(10_000),
        ")".repeat(10_000)
    ));
    queries.push(format!(
        "SELECT 1 FROM events WHERE {}",
        vec!["(SELECT 1 FROM beta.secret) = 1"; 50].join(" OR ")
    ));
    queries
}

#[test]
fn hostile_queries_are_refused_and_change_nothing() {
    let _turn = turn();
    let before = fingerprint();
    let queries = hostile_queries();
    assert!(queries.len() >= 40);
    for sql in &queries {
        // refused by the policy: not allowed (42501), too long or deep (54001), or text it does not read as one
        // allowed statement (42601, which sqlparser also says of statements it has no
        // grammar for, such as TABLE)
        let mut client = connect("reader");
        let error = client
            .batch_execute(&format!(
                "SELECT * FROM beacon.query('alpha', {})",
                quoted(sql)
            ))
            .expect_err(sql);
        let db = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {error}"));
        assert!(
            ["42501", "42601", "54001"].contains(&db.code().code()),
            "{sql}: {} {}",
            db.code().code(),
            db.message()
        );
        let message = db.message().to_string();
        assert!(message.starts_with("query refused"), "{sql}: {message}");
        assert!(!message.contains(SECRET));
    }
    assert_eq!(fingerprint(), before);
    assert!(!std::path::Path::new("/tmp/beacon_pwned").exists());
}

#[test]
fn accepted_queries_see_only_the_project() {
    let _turn = turn();
    let mut reader = connect("reader");
    let rows = reader
        .query(
            "SELECT r::text FROM beacon.query('alpha', $1) r",
            &[&"SELECT url, price FROM events WHERE url = '/a'"],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), r#"{"url": "/a", "price": 3}"#);
    // an unqualified name is the project's table, never another schema's
    let missing = refused(
        "reader",
        "SELECT * FROM beacon.query('alpha', 'SELECT * FROM secret')",
        "42P01",
    );
    assert!(missing.contains("alpha"), "{missing}");
    let missing = refused(
        "reader",
        "SELECT * FROM beacon.query('alpha', 'SELECT * FROM pg_authid')",
        "42P01",
    );
    assert!(!missing.contains("rolpassword"));
}

/// Barrier 2 on its own: objects a superuser planted inside the project, which the parser
/// accepts because they are the project's tables, still run as the read role, read-only,
/// with the project as search_path, and under the timeout.
#[test]
fn execution_is_confined_even_when_the_parser_accepts() {
    let _turn = turn();
    let mut admin = connect("postgres");
    admin
        .batch_execute(
            "CREATE FUNCTION public.plant_write() RETURNS int LANGUAGE plpgsql SECURITY DEFINER AS
               $$ BEGIN DELETE FROM beta.secret; RETURN 1; END $$;
             CREATE FUNCTION public.plant_sleep() RETURNS int LANGUAGE sql AS 'SELECT 1 FROM pg_sleep(60)';
             CREATE VIEW alpha.who AS SELECT current_user::text AS who, current_setting('search_path') AS path,
                                             current_setting('transaction_read_only') AS ro;
             CREATE VIEW alpha.writes AS SELECT public.plant_write() AS x;
             CREATE VIEW alpha.sleeps AS SELECT public.plant_sleep() AS x;
             GRANT SELECT ON alpha.who, alpha.writes, alpha.sleeps TO beacon_alpha_read;
             ALTER ROLE reader SET beacon.query_timeout = '500ms';",
        )
        .unwrap();
    let before = fingerprint();
    let mut reader = connect("reader");
    let seen: String = reader
        .query_one(
            "SELECT r::text FROM beacon.query('alpha', 'SELECT * FROM who') r",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        seen,
        r#"{"ro": "on", "who": "beacon_alpha_read", "path": "pg_catalog, \"alpha\", pg_temp"}"#
    );
    refused(
        "reader",
        "SELECT * FROM beacon.query('alpha', 'SELECT * FROM writes')",
        "25006",
    );
    let timed_out = reader
        .batch_execute("SELECT * FROM beacon.query('alpha', 'SELECT * FROM sleeps')")
        .unwrap_err();
    assert_eq!(timed_out.code().map(|c| c.code()), Some("57014"));
    // the timeout is the query's own: the session goes on, writable, as itself
    let after: (String, String) = {
        let row = reader
            .query_one(
                "SELECT current_user::text, current_setting('transaction_read_only')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(after, ("reader".to_string(), "off".to_string()));
    // and a caller cannot lift the timeout: it is a superuser setting
    refused("reader", "SET beacon.query_timeout = '1h'", "42501");
    assert_eq!(fingerprint(), before);
    admin
        .batch_execute(
            "DROP VIEW alpha.who, alpha.writes, alpha.sleeps;
             DROP FUNCTION public.plant_write(), public.plant_sleep();
             ALTER ROLE reader RESET beacon.query_timeout;",
        )
        .unwrap();
}

#[test]
fn a_reader_cannot_write_reach_other_projects_or_change_objects() {
    let _turn = turn();
    let before = fingerprint();
    let attempts = [
        r#"SELECT beacon.collect('alpha', 'events', '{"url": "/x"}')"#,
        r#"SELECT beacon.collect_batch('alpha', '[{"collection": "events", "properties": {}}]')"#,
        "INSERT INTO alpha.events (url) VALUES ('x')",
        "UPDATE alpha.events SET url = 'x'",
        "DELETE FROM alpha.events",
        "SELECT * FROM beta.secret",
        "SELECT * FROM beta._users",
        "SELECT * FROM beacon.query('beta', 'SELECT * FROM secret')",
        "SELECT beacon.subscribe('beta', 'secret')",
        "SELECT beacon.mailbox_channel('beta', 'vip')",
        "SELECT * FROM beacon.mailbox('beta', 'vip')",
        "DROP TABLE alpha.events",
        "ALTER TABLE alpha.events ADD COLUMN x int",
        "TRUNCATE alpha.events",
        "CREATE TABLE alpha.mine (x int)",
        "CREATE VIEW alpha.mine AS SELECT 1",
        "SELECT beacon.drop_project('alpha')",
        "SELECT beacon.create_project('gamma')",
        "SELECT beacon.grant('alpha', 'reader', 'admin')",
        "SELECT beacon.grant('beta', 'reader', 'read')",
        "SELECT beacon.revoke('alpha', 'boss', 'admin')",
        "SELECT beacon.define_collection('alpha', 'events', '{\"y\": \"text\"}')",
        "SELECT beacon.create_continuous_query('alpha', 'cq', 'SELECT count(*) FROM events')",
        "SELECT beacon.create_materialized_view('alpha', 'mv', 'SELECT count(*) FROM events')",
        r#"SELECT beacon.set_user('alpha', 'u', '{"a": 1}')"#,
        "SELECT beacon.increment_user('alpha', 'u', 'a')",
        "SELECT beacon.send_message('alpha', 'a', 'b', 'spam')",
        "SELECT beacon.mark_read('alpha', 'b', ARRAY[1])",
        "SET ROLE beacon_alpha_admin",
        "SET ROLE postgres",
        "SELECT * FROM beacon.project",
        "SELECT * FROM beacon.channel_secret",
        "SELECT * FROM beacon.subscription",
        "UPDATE beacon.field SET type = 'text'",
        "SELECT beacon._refresh_materialized_view('alpha', 'mv', true, false)",
        "SELECT beacon._mailbox_channel('beta', 'vip')",
    ];
    for sql in attempts {
        refused("reader", sql, "42501");
    }
    let mut reader = connect("reader");
    let visible: Vec<String> = reader
        .query("SELECT name FROM beacon.projects", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(visible, vec!["alpha".to_string()]);
    assert_eq!(fingerprint(), before);
}

#[test]
fn a_writer_collects_but_reads_only_when_also_granted_read() {
    let _turn = turn();
    let mut writer = connect("writer");
    writer
        .batch_execute(r#"SELECT beacon.collect('alpha', 'events', '{"url": "/w"}')"#)
        .unwrap();
    refused(
        "writer",
        "SELECT * FROM beacon.query('alpha', 'SELECT count(*) FROM events')",
        "42501",
    );
    refused("writer", "SELECT * FROM alpha.events", "42501");
    refused(
        "writer",
        "SELECT beacon.subscribe('alpha', 'events')",
        "42501",
    );
    refused(
        "writer",
        "SELECT beacon.create_continuous_query('alpha', 'cq', 'SELECT count(*) FROM events')",
        "42501",
    );
    refused(
        "writer",
        "SELECT beacon.create_materialized_view('alpha', 'mv', 'SELECT count(*) FROM events')",
        "42501",
    );
    let mut boss = connect("boss");
    boss.batch_execute("SELECT beacon.grant('alpha', 'writer', 'read')")
        .unwrap();
    let n: serde_json::Value = writer
        .query_one(
            "SELECT * FROM beacon.query('alpha', 'SELECT count(*) AS n FROM events WHERE url = ''/w''')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, serde_json::json!({"n": 1}));
    boss.batch_execute("SELECT beacon.revoke('alpha', 'writer', 'read')")
        .unwrap();
}

#[test]
fn only_an_admin_defines_queries_and_views_and_only_within_the_project() {
    let _turn = turn();
    let mut boss = connect("boss");
    boss.batch_execute(
        "SELECT beacon.create_continuous_query('alpha', 'boss_cq', 'SELECT url, count(*) AS n FROM events GROUP BY url');
         SELECT beacon.create_materialized_view('alpha', 'boss_mv', 'SELECT url, count(*) AS n FROM events GROUP BY url');",
    )
    .unwrap();
    // readers monitor what admins define
    let mut reader = connect("reader");
    for view in ["beacon.continuous_queries", "beacon.materialized_views"] {
        let n: i64 = reader
            .query_one(&format!("SELECT count(*) FROM {view}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{view}");
    }
    let before = fingerprint();
    let attempts = [
        ("SELECT beacon.create_continuous_query('alpha', 'x', 'SELECT count(*) FROM beta.secret')", "0A000"),
        ("SELECT beacon.create_materialized_view('alpha', 'x', 'SELECT * FROM beta.secret')", "42501"),
        ("SELECT beacon.create_materialized_view('alpha', 'x', 'SELECT * FROM pg_catalog.pg_authid')", "42501"),
        ("SELECT beacon.create_materialized_view('alpha', 'x', 'SELECT pg_read_file(''/etc/passwd'')')", "42501"),
        ("SELECT beacon.create_continuous_query('beta', 'x', 'SELECT count(*) FROM secret')", "42501"),
        ("SELECT beacon.drop_materialized_view('beta', 'x')", "42501"),
        ("SELECT beacon.grant('beta', 'boss', 'read')", "42501"),
        ("SELECT beacon.drop_project('alpha')", "42501"),
        ("DROP MATERIALIZED VIEW alpha.boss_mv", "42501"),
        ("DROP VIEW alpha.boss_cq", "42501"),
    ];
    for (sql, state) in attempts {
        refused("boss", sql, state);
    }
    assert_eq!(fingerprint(), before);
    boss.batch_execute(
        "SELECT beacon.drop_continuous_query('alpha', 'boss_cq');
         SELECT beacon.drop_materialized_view('alpha', 'boss_mv');",
    )
    .unwrap();
}

#[test]
fn an_outsider_sees_and_reaches_nothing() {
    let _turn = turn();
    // one of everything the monitoring views list, so that seeing none of it means something
    let mut admin = connect("postgres");
    let channel: String = admin
        .query_one(
            "SELECT beacon.subscribe('alpha', 'events', NULL, false)",
            &[],
        )
        .unwrap()
        .get(0);
    admin
        .batch_execute(
            "SELECT beacon.create_continuous_query('alpha', 'seen_cq', 'SELECT count(*) AS n FROM events');
             SELECT beacon.create_materialized_view('alpha', 'seen_mv', 'SELECT count(*) AS n FROM events');",
        )
        .unwrap();
    let before = fingerprint();
    for sql in [
        "SELECT * FROM beacon.query('alpha', 'SELECT 1')",
        "SELECT beacon.subscribe('alpha', 'events')",
        "SELECT beacon.mailbox_channel('alpha')",
        "SELECT * FROM alpha.events",
    ] {
        refused("outsider", sql, "42501");
    }
    let mut outsider = connect("outsider");
    for view in [
        "beacon.projects",
        "beacon.fields",
        "beacon.subscriptions",
        "beacon.continuous_queries",
        "beacon.materialized_views",
    ] {
        let n: i64 = outsider
            .query_one(&format!("SELECT count(*) FROM {view}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{view}");
    }
    assert_eq!(fingerprint(), before);
    admin
        .execute("SELECT beacon.unsubscribe($1)", &[&channel])
        .unwrap();
    admin
        .batch_execute(
            "SELECT beacon.drop_continuous_query('alpha', 'seen_cq');
             SELECT beacon.drop_materialized_view('alpha', 'seen_mv');",
        )
        .unwrap();
}

#[test]
fn names_built_to_break_quoting_are_refused_or_stored_verbatim() {
    let _turn = turn();
    let before = fingerprint();
    for (sql, state) in [
        (
            r#"SELECT beacon.create_project('a"; DROP TABLE beta.secret; --')"#,
            "42602",
        ),
        (
            "SELECT beacon.create_project('x''); DROP TABLE beta.secret; --')",
            "42602",
        ),
        ("SELECT beacon.create_project('pg_catalog')", "42939"),
        ("SELECT beacon.create_project('beacon')", "42939"),
        ("SELECT beacon.create_project('Alpha')", "42602"),
        (
            r#"SELECT beacon.collect('alpha', 'e"; DROP TABLE beta.secret; --', '{}')"#,
            "42602",
        ),
        (r#"SELECT beacon.collect('alpha', '_users', '{}')"#, "42602"),
        (
            r#"SELECT beacon.collect('alpha"; --', 'events', '{}')"#,
            "3F000",
        ),
        (
            r#"SELECT beacon.create_materialized_view('alpha', 'v"; DROP TABLE beta.secret; --', 'SELECT 1 AS x')"#,
            "42602",
        ),
        (
            r#"SELECT beacon.subscribe('alpha', 'events', 'url = ''x''; DROP TABLE beta.secret')"#,
            "42601",
        ),
        (
            r#"SELECT beacon.subscribe('alpha', 'events', '"url"" = 1 OR pg_sleep(1) IS NULL OR ""x" = 1')"#,
            "42501",
        ),
    ] {
        refused("postgres", sql, state);
    }
    assert_eq!(fingerprint(), before);

    // property names and values are data: each lands in its own column, verbatim
    let mut admin = connect("postgres");
    let mut nasty = serde_json::json!({
        "a\"; DROP TABLE beta.secret; --": 1,
        "'); DROP TABLE beta.secret; --": "v",
        "x\" text, \"y": true,
        "$$; DROP TABLE beta.secret; $$": 2,
        "_id": 5,
        "ctid": 6,
        "": 7,
        "ünïcødé \u{1F600}": 8,
    });
    nasty
        .as_object_mut()
        .unwrap()
        .insert("p".repeat(200), 9.into());
    admin
        .execute("SELECT beacon.collect('alpha', 'nasty', $1)", &[&nasty])
        .unwrap();
    admin
        .execute(
            "SELECT beacon.set_user('alpha', $1, $2)",
            &[&"u'; DROP TABLE beta.secret; --", &nasty],
        )
        .unwrap();
    admin
        .execute(
            "SELECT beacon.send_message('alpha', $1, $2, $3)",
            &[&"a\"b", &"'; DROP TABLE beta.secret; --", &"$$x$$"],
        )
        .unwrap();
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM beacon.fields WHERE project = 'alpha' AND collection = 'nasty' AND NOT system",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 9);
    let back: serde_json::Value = admin
        .query_one(
            "SELECT jsonb_object_agg(f.property, to_jsonb(n) -> f.column_name)
               FROM alpha.nasty n, beacon.fields f
              WHERE f.project = 'alpha' AND f.collection = 'nasty' AND NOT f.system",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(back, nasty);
    let secret: i64 = admin
        .query_one("SELECT count(*) FROM beta.secret", &[])
        .unwrap()
        .get(0);
    assert_eq!(secret, 1);
}
