//! Collections under concurrency, and rejected events, against a real server.

mod common;

use common::{eventually, server, Rng};
use postgres::Client;
use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;

fn property_value(k: u64, n: u64) -> serde_json::Value {
    // each property keeps one JSON type everywhere, so no event should be rejected
    match k % 3 {
        0 => serde_json::json!(n),
        1 => serde_json::json!(format!("v{n}")),
        _ => serde_json::json!(n.is_multiple_of(2)),
    }
}

fn i64_of(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn concurrent_schema_evolution_loses_nothing() {
    const CLIENTS: u64 = 6;
    const ROUNDS: u64 = 30;
    let db = "evolve";
    let mut admin = server().fresh_db(db);
    admin
        .batch_execute("SELECT beacon.create_project('race')")
        .unwrap();

    let start = Arc::new(Barrier::new(CLIENTS as usize));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|client_no| {
            let start = start.clone();
            thread::spawn(move || {
                let mut client = server().connect(db);
                let mut rng = Rng::new(client_no + 1);
                let mut sent = 0u64;
                let mut seq_sum = 0u64;
                let mut properties = BTreeSet::new();
                start.wait();
                for round in 0..ROUNDS {
                    let batch_size = if round % 2 == 0 { 1 } else { 10 };
                    let mut events = Vec::new();
                    for _ in 0..batch_size {
                        let seq = sent + 1;
                        let mut props = serde_json::json!({"client": client_no, "seq": seq});
                        for _ in 0..1 + rng.below(3) {
                            let k = rng.below(24);
                            props[format!("p{k}")] = property_value(k, seq);
                            properties.insert(format!("p{k}"));
                        }
                        let collection = format!("ev{}", rng.below(3));
                        events.push(
                            serde_json::json!({"collection": collection, "properties": props}),
                        );
                        sent += 1;
                        seq_sum += seq;
                    }
                    if batch_size == 1 {
                        let e = &events[0];
                        let id: Option<i64> = client
                            .query_one(
                                "SELECT beacon.collect('race', $1, $2)",
                                &[&e["collection"].as_str().unwrap(), &e["properties"]],
                            )
                            .unwrap()
                            .get(0);
                        assert!(id.is_some());
                    } else {
                        let stored: i64 = client
                            .query_one(
                                "SELECT beacon.collect_batch('race', $1)",
                                &[&serde_json::Value::Array(events)],
                            )
                            .unwrap()
                            .get(0);
                        assert_eq!(stored, batch_size as i64);
                    }
                }
                (sent, seq_sum, properties)
            })
        })
        .collect();

    let mut sent = 0;
    let mut per_client_seq: Vec<u64> = Vec::new();
    let mut properties = BTreeSet::new();
    for w in workers {
        let (s, sum, props) = w.join().expect("worker");
        sent += s;
        per_client_seq.push(sum);
        properties.extend(props);
    }
    let stored = i64_of(
        &mut admin,
        "SELECT (SELECT count(*) FROM race.ev0) + (SELECT count(*) FROM race.ev1) + (SELECT count(*) FROM race.ev2)",
    );
    assert_eq!(stored as u64, sent, "every event stored exactly once");
    assert_eq!(i64_of(&mut admin, "SELECT count(*) FROM race._rejected"), 0);
    for (client_no, expected) in per_client_seq.iter().enumerate() {
        let got = i64_of(
            &mut admin,
            &format!(
                "SELECT coalesce(sum(seq), 0)::bigint FROM (SELECT seq FROM race.ev0 WHERE client = {client_no}
                   UNION ALL SELECT seq FROM race.ev1 WHERE client = {client_no}
                   UNION ALL SELECT seq FROM race.ev2 WHERE client = {client_no}) s"
            ),
        );
        assert_eq!(got as u64, *expected, "client {client_no}");
    }
    // one column per property, never two, in every collection that saw it
    let duplicated = i64_of(
        &mut admin,
        "SELECT count(*) FROM (SELECT collection, column_name FROM beacon.field WHERE project = 'race'
                                GROUP BY 1, 2 HAVING count(*) > 1) d",
    );
    assert_eq!(duplicated, 0);
    let typed_wrong = i64_of(
        &mut admin,
        "SELECT count(*) FROM beacon.field WHERE project = 'race' AND property LIKE 'p%' AND type <>
           CASE substr(property, 2)::int % 3 WHEN 0 THEN 'bigint' WHEN 1 THEN 'text' ELSE 'boolean' END",
    );
    assert_eq!(typed_wrong, 0);
    let distinct_props = i64_of(
        &mut admin,
        "SELECT count(DISTINCT property) FROM beacon.field WHERE project = 'race' AND property LIKE 'p%'",
    );
    assert_eq!(distinct_props as usize, properties.len());
}

fn waiting_on_lock(admin: &mut Client, pid: i32) -> bool {
    admin
        .query_one(
            "SELECT coalesce((SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1), false)",
            &[&pid],
        )
        .unwrap()
        .get(0)
}

/// Two sessions add the same new property (and create the same collection) while the
/// first one's transaction is still open: the second waits, then reuses the first one's
/// column instead of failing.
#[test]
fn same_new_property_and_collection_from_two_open_transactions() {
    let db = "samenew";
    let mut admin = server().fresh_db(db);
    admin
        .batch_execute("SELECT beacon.create_project('dup')")
        .unwrap();
    admin
        .batch_execute("SELECT beacon.collect('dup', 'seen', '{\"a\": 1}')")
        .unwrap();

    for (collection, first, second, total) in [
        ("seen", r#"{"late": 1}"#, r#"{"late": 2, "later": "x"}"#, 3),
        ("fresh", r#"{"b": 1.5}"#, r#"{"b": 2.5}"#, 2),
    ] {
        let mut first_session = server().connect(db);
        first_session.batch_execute("BEGIN").unwrap();
        first_session
            .execute(
                "SELECT beacon.collect('dup', $1, $2::text::jsonb)",
                &[&collection, &first],
            )
            .unwrap();
        let second_pid = Arc::new(std::sync::Mutex::new(0));
        let pid_slot = second_pid.clone();
        let (collection_owned, second_owned) = (collection.to_string(), second.to_string());
        let second_session = thread::spawn(move || {
            let mut client = server().connect(db);
            let pid: i32 = client
                .query_one("SELECT pg_backend_pid()", &[])
                .unwrap()
                .get(0);
            *pid_slot.lock().unwrap() = pid;
            let id: Option<i64> = client
                .query_one(
                    "SELECT beacon.collect('dup', $1, $2::text::jsonb)",
                    &[&collection_owned, &second_owned],
                )
                .unwrap()
                .get(0);
            id
        });
        eventually("the second session to wait for the first", || {
            let pid = *second_pid.lock().unwrap();
            pid != 0 && waiting_on_lock(&mut admin, pid)
        });
        first_session.batch_execute("COMMIT").unwrap();
        let id = second_session.join().expect("second session");
        assert!(id.is_some(), "second event stored in {collection}");
        assert_eq!(
            i64_of(
                &mut admin,
                &format!("SELECT count(*) FROM dup.{collection}")
            ),
            total
        );
    }
    assert_eq!(i64_of(&mut admin, "SELECT count(*) FROM dup._rejected"), 0);
    assert_eq!(
        i64_of(
            &mut admin,
            "SELECT count(*) FROM beacon.field WHERE project = 'dup' AND property = 'late'"
        ),
        1
    );
    assert_eq!(
        i64_of(&mut admin, "SELECT sum(late)::bigint FROM dup.seen"),
        3
    );
    assert_eq!(
        i64_of(&mut admin, "SELECT (sum(b) * 10)::bigint FROM dup.fresh"),
        40
    );
}

#[test]
fn type_conflicts_land_in_rejected_with_reason() {
    let db = "conflict";
    let mut client = server().fresh_db(db);
    client
        .batch_execute("SELECT beacon.create_project('shop')")
        .unwrap();
    let first: Option<i64> = client
        .query_one(
            "SELECT beacon.collect('shop', 'buy', '{\"price\": 1.5, \"sku\": \"a\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(first.is_some());
    let rejected: Option<i64> = client
        .query_one(
            "SELECT beacon.collect('shop', 'buy', '{\"price\": \"cheap\", \"sku\": \"b\"}')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rejected, None);
    let stored: i64 = client
        .query_one(
            r#"SELECT beacon.collect_batch('shop', '[
                 {"collection": "buy", "properties": {"price": 2}},
                 {"collection": "buy", "properties": {"price": true}},
                 {"collection": "buy", "properties": {"price": [1]}},
                 {"collection": "buy", "properties": {"price": 3.25, "sku": "c"}}]')"#,
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 2);
    assert_eq!(i64_of(&mut client, "SELECT count(*) FROM shop.buy"), 3);
    let rows = client
        .query(
            "SELECT properties::text, reason FROM shop._rejected ORDER BY _id",
            &[],
        )
        .unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![
            (
                r#"{"sku": "b", "price": "cheap"}"#.to_string(),
                r#"property "price": value "cheap" (string) does not fit type double precision"#
                    .to_string()
            ),
            (
                r#"{"price": true}"#.to_string(),
                r#"property "price": value true (boolean) does not fit type double precision"#
                    .to_string()
            ),
            (
                r#"{"price": [1]}"#.to_string(),
                r#"property "price": value [1] (array) does not fit type double precision"#
                    .to_string()
            ),
        ]
    );
}

/// A writer's session remembers what it read of the catalog (src/catalog_cache.rs). Every
/// change another session commits to the collection, the project or the roles must be
/// seen by the writer's next event, as if nothing were remembered.
#[test]
fn a_writer_sees_every_change_other_sessions_commit() {
    let db = "collect_cache";
    let mut admin = server().fresh_db(db);
    let run = |c: &mut Client, sql: &str| c.batch_execute(sql).unwrap();
    run(
        &mut admin,
        "DROP ROLE IF EXISTS cache_writer; CREATE ROLE cache_writer LOGIN;
         SELECT beacon.create_project('cache'); SELECT beacon.grant('cache', 'cache_writer', 'write');",
    );
    let mut writer = server().connect_as(db, "cache_writer");
    let collect = |w: &mut Client, props: serde_json::Value| -> Option<i64> {
        w.query_one("SELECT beacon.collect('cache', 'ev', $1)", &[&props])
            .unwrap()
            .get(0)
    };
    let rejected = |admin: &mut Client| i64_of(admin, "SELECT count(*) FROM cache._rejected");
    for i in 0..3 {
        assert!(collect(&mut writer, serde_json::json!({"price": i, "quantity": i})).is_some());
    }

    // a column renamed by hand: the property goes on to the new column
    run(
        &mut admin,
        "ALTER TABLE cache.ev RENAME COLUMN price TO cost",
    );
    assert!(collect(&mut writer, serde_json::json!({"price": 30})).is_some());
    assert_eq!(
        i64_of(&mut admin, "SELECT count(*) FROM cache.ev WHERE cost = 30"),
        1
    );

    // a column's type changed by hand: values of the new type are accepted
    run(
        &mut admin,
        "ALTER TABLE cache.ev ALTER COLUMN quantity TYPE text",
    );
    assert!(collect(&mut writer, serde_json::json!({"quantity": "many"})).is_some());
    assert_eq!(rejected(&mut admin), 0);
    assert_eq!(
        i64_of(
            &mut admin,
            "SELECT count(*) FROM cache.ev WHERE quantity = 'many'"
        ),
        1
    );

    // a property another session added: the writer uses its column, and adds no other
    admin
        .execute(
            "SELECT beacon.collect('cache', 'ev', '{\"color\": \"red\"}')",
            &[],
        )
        .unwrap();
    assert!(collect(
        &mut writer,
        serde_json::json!({"color": "blue", "price": 31})
    )
    .is_some());
    assert_eq!(
        i64_of(
            &mut admin,
            "SELECT count(*) FROM beacon.field WHERE project = 'cache' AND collection = 'ev'"
        ),
        3
    );
    assert_eq!(
        i64_of(
            &mut admin,
            "SELECT count(*) FROM cache.ev WHERE color = 'blue' AND cost = 31"
        ),
        1
    );

    // the collection partitioned by another session: an event years away gets its partition
    run(
        &mut admin,
        "SELECT beacon.partition_collection('cache', 'ev', 'month')",
    );
    assert!(collect(
        &mut writer,
        serde_json::json!({"_time": "2031-05-05T00:00:00Z", "price": 32})
    )
    .is_some());
    assert_eq!(
        i64_of(
            &mut admin,
            "SELECT count(*) FROM cache.ev WHERE cost = 32 AND tableoid <> 'cache.ev'::regclass
                AND (SELECT relkind FROM pg_class WHERE oid = 'cache.ev'::regclass) = 'p'"
        ),
        1
    );

    // the collection dropped and created again with another type for the same property
    run(&mut admin, "SELECT beacon.drop_collection('cache', 'ev')");
    admin
        .execute(
            "SELECT beacon.collect('cache', 'ev', '{\"price\": \"free\"}')",
            &[],
        )
        .unwrap();
    assert!(collect(&mut writer, serde_json::json!({"price": "cheap"})).is_some());
    assert_eq!(rejected(&mut admin), 0);
    assert_eq!(
        i64_of(
            &mut admin,
            "SELECT count(*) FROM cache.ev WHERE price = 'cheap'"
        ),
        1
    );

    // the project dropped and created again: new schema, new owner role
    run(
        &mut admin,
        "SELECT beacon.drop_project('cache'); SELECT beacon.create_project('cache');
         SELECT beacon.grant('cache', 'cache_writer', 'write');",
    );
    assert!(collect(&mut writer, serde_json::json!({"price": 33})).is_some());
    assert_eq!(
        i64_of(&mut admin, "SELECT count(*) FROM cache.ev WHERE price = 33"),
        1
    );

    // write access revoked: the next event is refused
    run(
        &mut admin,
        "SELECT beacon.revoke('cache', 'cache_writer', 'write')",
    );
    let refused = writer
        .query_one("SELECT beacon.collect('cache', 'ev', '{}')", &[])
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"));
    run(
        &mut admin,
        "SELECT beacon.drop_project('cache'); DROP ROLE cache_writer",
    );
}
