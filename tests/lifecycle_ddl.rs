//! Collections that end, and DDL run by hand on a project's tables, against a real server:
//! `beacon.drop_collection` and the event triggers that keep the catalog in step
//! (src/lifecycle/). After every such change, collecting works, new continuous queries
//! equal their defining query and new subscriptions deliver.

mod common;

use common::server;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Project roles are cluster-wide: tests making project "life" take turns.
static TURN: Mutex<()> = Mutex::new(());

const QUERY: &str = "SELECT a, count(*) AS n, sum(b) AS total FROM pageview GROUP BY a";

fn setup(db: &str) -> (MutexGuard<'static, ()>, Client, Arc<Mutex<Vec<String>>>) {
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for other in [
        "life_recreate",
        "life_by_hand",
        "life_columns",
        "life_attack",
    ] {
        server().drop_db(other);
    }
    drop(server().fresh_db(db));
    let (mut client, notices) = connect_with_notices(db);
    client
        .batch_execute("SELECT beacon.create_project('life')")
        .unwrap();
    collect_many(&mut client, 0..20);
    (turn, client, notices)
}

fn collect_many(client: &mut Client, range: std::ops::Range<i64>) {
    for i in range {
        client
            .execute(
                "SELECT beacon.collect('life', 'pageview', $1)",
                &[&serde_json::json!({"a": format!("k{}", i % 3), "b": i, "c": i % 2 == 0})],
            )
            .unwrap();
    }
}

/// Rows in the view and not in the query, plus the reverse.
fn differences(client: &mut Client, view: &str, query: &str) -> i64 {
    client
        .batch_execute("SET search_path = life, public")
        .unwrap();
    let n: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM ((SELECT * FROM {view} EXCEPT ALL ({query}))
                 UNION ALL (({query}) EXCEPT ALL SELECT * FROM {view})) d"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    client.batch_execute("RESET search_path").unwrap();
    n
}

/// A connection as postgres that keeps the NOTICEs it receives.
fn connect_with_notices(db: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config: Config = server().dsn(db, "postgres").parse().unwrap();
    config.notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()));
    (config.connect(NoTls).unwrap(), notices)
}

/// Runs `sql` and returns the NOTICEs it raised.
fn notices_of(client: &mut Client, notices: &Arc<Mutex<Vec<String>>>, sql: &str) -> Vec<String> {
    notices.lock().unwrap().clear();
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    std::mem::take(&mut *notices.lock().unwrap())
}

fn text(client: &mut Client, sql: &str) -> Option<String> {
    client.query_one(sql, &[]).unwrap().get(0)
}

fn count(client: &mut Client, sql: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM ({sql}) q"), &[])
        .unwrap()
        .get(0)
}

fn sqlstate(result: Result<u64, postgres::Error>) -> Option<String> {
    result
        .err()
        .and_then(|e| e.code().map(|c| c.code().to_string()))
}

/// What pg_beacon keeps for life.pageview: catalog rows, generated functions, relations.
fn traces(client: &mut Client) -> i64 {
    count(
        client,
        "SELECT 1 FROM beacon.collection WHERE project = 'life' AND name = 'pageview'
         UNION ALL SELECT 1 FROM beacon.field WHERE project = 'life' AND collection = 'pageview'
         UNION ALL SELECT 1 FROM beacon.continuous_query WHERE project = 'life'
         UNION ALL SELECT 1 FROM beacon.subscription WHERE project = 'life'
         UNION ALL SELECT 1 FROM beacon.materialized_view WHERE project = 'life'
         UNION ALL SELECT 1 FROM beacon.generated_object WHERE project = 'life'
         UNION ALL SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = 'life' AND p.proname ~ '^_(cq|stream)_'
         UNION ALL SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = 'life' AND (c.relname ~ '^_cq_' OR c.relname = 'pageview')",
    )
}

/// A new subscription on life.pageview delivers a matching event within the deadline:
/// property "b", stored in `column`.
fn assert_subscription_delivers(client: &mut Client, db: &str, column: &str, marker: i64) {
    let channel: String = client
        .query_one(
            "SELECT beacon.subscribe('life', 'pageview', $1, false)",
            &[&format!("{column}::text = '{marker}'")],
        )
        .unwrap()
        .get(0);
    let mut listener = server().connect(db);
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .unwrap();
    client
        .execute(
            "SELECT beacon.collect('life', 'pageview', $1)",
            &[&serde_json::json!({"a": "sub", "b": marker})],
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "no notification on {channel} within 30 s"
        );
        let mut notifications = listener.notifications();
        let mut pending = notifications.timeout_iter(Duration::from_millis(200));
        if let Some(n) = pending.next().unwrap() {
            let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
            let value = payload["event"][column].to_string();
            assert_eq!(value.trim_matches('"'), marker.to_string(), "{payload}");
            return;
        }
    }
}

#[test]
fn ddl_drop_and_recreate_a_collection_with_queries_and_subscriptions() {
    let db = "life_recreate";
    let (_turn, mut client, notices) = setup(db);
    for mode in ["async", "immediate"] {
        client
            .execute(
                "SELECT beacon.create_continuous_query('life', $1, $2, $3)",
                &[&format!("v_{mode}"), &QUERY, &mode],
            )
            .unwrap();
    }
    client
        .batch_execute("SELECT beacon.subscribe('life', 'pageview', 'b > 5', false)")
        .unwrap();
    let refused = client.execute("SELECT beacon.drop_collection('life', 'pageview')", &[]);
    let error = refused.as_ref().unwrap_err().as_db_error().unwrap().clone();
    assert_eq!(error.code().code(), "2BP01");
    for name in ["v_async", "v_immediate", "subscription"] {
        assert!(error.message().contains(name), "{}", error.message());
    }
    assert!(error.hint().unwrap_or_default().contains("cascade"));
    let said = notices_of(
        &mut client,
        &notices,
        "SELECT beacon.drop_collection('life', 'pageview', cascade => true)",
    );
    for dependent in [
        "dropping continuous query life.v_async",
        "dropping continuous query life.v_immediate",
        "ending subscription",
    ] {
        assert!(
            said.iter().any(|n| n.contains(dependent)),
            "{dependent}: {said:?}"
        );
    }
    assert_eq!(
        said.len(),
        3,
        "one NOTICE per dependent, nothing else: {said:?}"
    );
    assert_eq!(traces(&mut client), 0);

    // the same name again, with new queries in both modes and a new subscription
    collect_many(&mut client, 100..130);
    for mode in ["async", "immediate"] {
        client
            .execute(
                "SELECT beacon.create_continuous_query('life', $1, $2, $3)",
                &[&format!("v_{mode}"), &QUERY, &mode],
            )
            .unwrap();
    }
    collect_many(&mut client, 130..160);
    client
        .batch_execute("DELETE FROM life.pageview WHERE b % 7 = 0")
        .unwrap();
    for mode in ["async", "immediate"] {
        assert_eq!(
            differences(&mut client, &format!("life.v_{mode}"), QUERY),
            0
        );
    }
    client.batch_execute("SELECT beacon.compact()").unwrap();
    assert_eq!(differences(&mut client, "life.v_async", QUERY), 0);
    assert_eq!(
        count(&mut client, "SELECT 1 FROM life.pageview WHERE b < 100"),
        0,
        "old events went with the old table"
    );
    assert_subscription_delivers(&mut client, db, "b", 424242);
    server().drop_db(db);
}

#[test]
fn ddl_table_dropped_by_hand_is_forgotten_and_collect_works_again() {
    let db = "life_by_hand";
    let (_turn, mut client, notices) = setup(db);
    client
        .batch_execute("SELECT beacon.subscribe('life', 'pageview', NULL, false)")
        .unwrap();
    let said = notices_of(&mut client, &notices, "DROP TABLE life.pageview");
    assert!(
        said.iter()
            .any(|n| n.contains("collection life.pageview was dropped")),
        "{said:?}"
    );
    assert_eq!(traces(&mut client), 0);
    assert_eq!(
        count(
            &mut client,
            "SELECT 1 FROM beacon.fields WHERE project = 'life' AND collection = 'pageview'"
        ),
        0
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT 1 FROM beacon.projects WHERE name = 'life' AND collections > 0"
        ),
        0
    );
    // not a permanent 42P01: collect, collect_batch and define_collection all work
    client
        .batch_execute(
            r#"SELECT beacon.collect('life', 'pageview', '{"b": "a string now"}');
               SELECT beacon.collect_batch('life', '[{"collection": "pageview", "properties": {"b": "more"}}]');
               SELECT beacon.define_collection('life', 'pageview', '{"a": "text"}');"#,
        )
        .unwrap();
    assert_eq!(
        text(
            &mut client,
            "SELECT string_agg(property || ':' || type, ',' ORDER BY property) FROM beacon.fields
              WHERE project = 'life' AND collection = 'pageview' AND NOT system"
        ),
        Some("a:text,b:text".into())
    );
    // a source of both query modes dropped by hand with CASCADE takes its queries along
    for mode in ["async", "immediate"] {
        client
            .execute(
                "SELECT beacon.create_continuous_query('life', $1, 'SELECT b, count(*) FROM pageview GROUP BY b', $2)",
                &[&format!("q_{mode}"), &mode],
            )
            .unwrap();
    }
    // in a transaction that wrote through the immediate query first
    client
        .batch_execute(
            r#"BEGIN;
               SELECT beacon.collect('life', 'pageview', '{"b": "x"}');
               DROP TABLE life.pageview CASCADE;
               COMMIT;"#,
        )
        .unwrap();
    assert_eq!(traces(&mut client), 0);
    collect_many(&mut client, 0..5);
    assert_subscription_delivers(&mut client, db, "b", 77);
    server().drop_db(db);
}

#[test]
fn ddl_on_columns_by_hand_keeps_collecting() {
    let db = "life_columns";
    let (_turn, mut client, notices) = setup(db);
    client
        .execute(
            "SELECT beacon.create_continuous_query('life', 'by_a', $1, 'async')",
            &[&QUERY],
        )
        .unwrap();
    client
        .execute(
            "SELECT beacon.create_continuous_query('life', 'count_a', 'SELECT a, count(*) AS n FROM pageview GROUP BY a', 'immediate')",
            &[],
        )
        .unwrap();
    // DROP COLUMN of a column a query reads: PostgreSQL's refusal, then CASCADE
    assert_eq!(
        sqlstate(client.execute("ALTER TABLE life.pageview DROP COLUMN b", &[])),
        Some("2BP01".into())
    );
    let said = notices_of(
        &mut client,
        &notices,
        "ALTER TABLE life.pageview DROP COLUMN b CASCADE",
    );
    assert!(
        said.iter()
            .any(|n| n.contains("dropping continuous query life.by_a")),
        "{said:?}"
    );
    assert!(
        said.iter().any(|n| n.contains("property \"b\"")),
        "{said:?}"
    );
    assert_eq!(
        text(
            &mut client,
            "SELECT string_agg(name, ',') FROM beacon.continuous_queries WHERE project = 'life'"
        ),
        Some("count_a".into())
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT 1 FROM pg_class WHERE relname ~ '^(_cq_)?by_a'"
        ),
        0
    );
    collect_many(&mut client, 200..210);
    assert_eq!(
        text(
            &mut client,
            "SELECT type FROM beacon.fields WHERE project = 'life' AND property = 'b'"
        ),
        Some("bigint".into()),
        "an event carrying the dropped property added its column again"
    );
    assert_eq!(count(&mut client, "SELECT 1 FROM life._rejected"), 0);
    assert_eq!(
        differences(
            &mut client,
            "life.count_a",
            "SELECT a, count(*) AS n FROM pageview GROUP BY a"
        ),
        0
    );

    // a column only a subscription filter reads: dropped without CASCADE, writers go on
    client
        .batch_execute("SELECT beacon.subscribe('life', 'pageview', 'c AND b > 0', false)")
        .unwrap();
    let said = notices_of(
        &mut client,
        &notices,
        "ALTER TABLE life.pageview DROP COLUMN c",
    );
    assert!(
        said.iter().any(|n| n.contains("ending subscription")),
        "{said:?}"
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT 1 FROM beacon.subscriptions WHERE project = 'life'"
        ),
        0
    );
    collect_many(&mut client, 210..220);
    assert_eq!(
        count(
            &mut client,
            "SELECT 1 FROM life.pageview WHERE c IS NOT NULL"
        ),
        10
    );

    // RENAME COLUMN: the field follows; a column a query reads: refused
    client
        .batch_execute("ALTER TABLE life.pageview RENAME COLUMN b TO amount")
        .unwrap();
    collect_many(&mut client, 220..223);
    assert_eq!(
        count(
            &mut client,
            "SELECT 1 FROM life.pageview WHERE amount >= 220"
        ),
        3
    );
    assert_eq!(
        sqlstate(client.execute("ALTER TABLE life.pageview RENAME COLUMN a TO letter", &[])),
        Some("0A000".into())
    );
    // RENAME TABLE and SET SCHEMA: refused
    for ddl in [
        "ALTER TABLE life.pageview RENAME TO views",
        "ALTER TABLE life.pageview SET SCHEMA public",
    ] {
        assert_eq!(
            sqlstate(client.execute(ddl, &[])),
            Some("0A000".into()),
            "{ddl}"
        );
    }
    // ALTER TYPE: of a query's column refused by PostgreSQL; of another, the catalog follows
    assert_eq!(
        sqlstate(client.execute(
            "ALTER TABLE life.pageview ALTER COLUMN a TYPE varchar(5)",
            &[]
        )),
        Some("0A000".into())
    );
    client
        .batch_execute("ALTER TABLE life.pageview ALTER COLUMN amount TYPE text")
        .unwrap();
    client
        .batch_execute(r#"SELECT beacon.collect('life', 'pageview', '{"a": "t", "b": "ten"}')"#)
        .unwrap();
    assert_eq!(
        count(
            &mut client,
            "SELECT 1 FROM life.pageview WHERE amount = 'ten'"
        ),
        1
    );
    assert_eq!(count(&mut client, "SELECT 1 FROM life._rejected"), 0);
    assert_eq!(
        differences(
            &mut client,
            "life.count_a",
            "SELECT a, count(*) AS n FROM pageview GROUP BY a"
        ),
        0
    );
    assert_subscription_delivers(&mut client, db, "amount", 5150);
    server().drop_db(db);
}

#[test]
fn ddl_outsiders_cannot_drop_collections_nor_steer_the_event_triggers() {
    let db = "life_attack";
    let (_turn, mut client, _notices) = setup(db);
    client
        .batch_execute(
            "DROP ROLE IF EXISTS life_outsider; DROP ROLE IF EXISTS life_writer;
             CREATE ROLE life_outsider LOGIN; CREATE ROLE life_writer LOGIN;
             SELECT beacon.grant('life', 'life_writer', 'write');",
        )
        .unwrap();
    client
        .batch_execute(&format!("GRANT CREATE ON DATABASE {db} TO life_outsider"))
        .unwrap();
    let before = traces(&mut client);
    for role in ["life_outsider", "life_writer"] {
        let mut attacker = server().connect_as(db, role);
        assert_eq!(
            sqlstate(attacker.execute(
                "SELECT beacon.drop_collection('life', 'pageview', cascade => true)",
                &[]
            )),
            Some("42501".into()),
            "{role}"
        );
    }
    // a schema of the outsider's own, with look-alike tables, views and functions: its
    // DDL runs as usual, and pg_beacon's catalog and objects are untouched
    let mut outsider = server().connect_as(db, "life_outsider");
    outsider
        .batch_execute(
            "CREATE SCHEMA mine;
             CREATE TABLE mine.pageview (a text, b bigint);
             CREATE TABLE mine._cq_by_a_state (a text);
             CREATE VIEW mine._cq_by_a_columns AS SELECT a FROM mine.pageview;
             CREATE FUNCTION mine._cq_capture_pageview() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
             ALTER TABLE mine.pageview RENAME COLUMN b TO c;
             ALTER TABLE mine.pageview ALTER COLUMN c TYPE text;
             ALTER TABLE mine.pageview RENAME TO life;
             DROP VIEW mine._cq_by_a_columns;
             ALTER TABLE mine.life DROP COLUMN c;
             DROP FUNCTION mine._cq_capture_pageview();
             DROP SCHEMA mine CASCADE;",
        )
        .unwrap();
    assert_eq!(traces(&mut client), before);
    // the event trigger functions are not the outsider's to call
    for function in ["beacon._on_sql_drop()", "beacon._on_alter_table()"] {
        assert_eq!(
            sqlstate(outsider.execute(&format!("SELECT {function}"), &[])),
            Some("42501".into()),
            "{function}"
        );
    }
    // and the project's tables are not the outsider's (or the writer's) to alter
    for role in ["life_outsider", "life_writer"] {
        let mut attacker = server().connect_as(db, role);
        assert_eq!(
            sqlstate(attacker.execute("DROP TABLE life.pageview", &[])),
            Some("42501".into())
        );
    }
    assert_eq!(traces(&mut client), before);
    collect_many(&mut client, 0..3);
    drop(outsider);
    server().drop_db(db);
    client = server().connect("postgres");
    client
        .batch_execute("DROP ROLE IF EXISTS life_outsider; DROP ROLE IF EXISTS life_writer;")
        .unwrap();
}
