//! Time partitions (issue 16), end to end: converting a collection while writers keep
//! collecting, every kind of reader on a partitioned collection against its oracle after
//! random concurrent writes, retention through the worker, and the archive across
//! crashes at each of its steps.

mod common;

use common::{eventually, server, sql, Rng, Server};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

thread_local! {
    static PROJECT: std::cell::RefCell<String> = std::cell::RefCell::new("shop".into());
}

/// Project names are cluster-wide and tests run at once: each test (and its writer
/// threads) names its own project, which its SQL's `shop` stands for.
fn set_project(name: &str) {
    PROJECT.with(|p| *p.borrow_mut() = name.to_string());
}

fn p(sql: &str) -> String {
    let project = PROJECT.with(|p| p.borrow().clone());
    sql.replace("'shop'", &format!("'{project}'"))
        .replace("shop.", &format!("{project}."))
        .replace("= shop,", &format!("= {project},"))
}

fn run(client: &mut Client, sql: &str) {
    sql::run(client, &p(sql));
}

fn one_i64(client: &mut Client, sql: &str) -> i64 {
    sql::one_i64(client, &p(sql))
}

fn differences(client: &mut Client, a: &str, b: &str) -> i64 {
    sql::differences(client, &p(a), &p(b))
}

/// A `_time` for a generated event: mostly recent days, sometimes far in the past or the
/// future, sometimes none (the transaction's start).
fn event_time(rng: &mut Rng) -> Option<String> {
    match rng.below(10) {
        0 => None,
        1 => Some(format!(
            "19{:02}-0{}-1{}T08:00:00Z",
            rng.below(100),
            1 + rng.below(9),
            rng.below(10)
        )),
        2 => Some(format!(
            "23{:02}-1{}-0{}T23:59:59.5+03:00",
            rng.below(100),
            rng.below(3),
            1 + rng.below(9)
        )),
        _ => Some(format!(
            "2026-11-{:02}T{:02}:{:02}:00{}",
            1 + rng.below(30),
            rng.below(24),
            rng.below(60),
            ["Z", "+05:30", "-08:00"][rng.below(3) as usize]
        )),
    }
}

/// A `collect_batch` argument of events `first..first + n` of `writer`, and the `i`s of
/// those a subscription with `b >= 0` must deliver.
fn batch_with(writer: u64, first: u64, n: u64, rng: &mut Rng) -> (String, Vec<u64>) {
    let mut delivered = Vec::new();
    let events: Vec<String> = (first..first + n)
        .map(|i| {
            let time = event_time(rng)
                .map(|t| format!(r#", "_time": "{t}""#))
                .unwrap_or_default();
            let b = rng.below(1000) as i64 - 500;
            if b >= 0 {
                delivered.push(i);
            }
            format!(
                r#"{{"collection": "events", "properties": {{"w": {writer}, "i": {i}, "a": "k{}", "b": {b}, "x": {}.25{time}}}}}"#,
                rng.below(5),
                rng.below(100)
            )
        })
        .collect();
    (format!("[{}]", events.join(", ")), delivered)
}

fn batch(writer: u64, first: u64, n: u64, rng: &mut Rng) -> String {
    batch_with(writer, first, n, rng).0
}

const QUERIES: [(&str, &str); 3] = [
    ("by_key", "SELECT a, count(*) AS n, sum(b) AS total, avg(b) AS mean, min(x) AS low, max(b) AS high FROM events GROUP BY a"),
    ("distinct_users", "SELECT a, count(DISTINCT w) AS writers, sum(x) AS xs FROM events GROUP BY a"),
    ("by_kind", "SELECT e.a, k.label, count(*) AS n, sum(e.b) AS total FROM events e JOIN kinds k ON k.a = e.a GROUP BY e.a, k.label"),
];

fn project_db(server: &Server, db: &str) -> Client {
    let mut client = server.fresh_db(db);
    // project names are cluster-wide: one per test
    set_project(db);
    run(&mut client, "SELECT beacon.create_project('shop')");
    run(
        &mut client,
        r#"SELECT beacon.define_collection('shop', 'events', '{"w": "bigint", "i": "bigint", "a": "text", "b": "bigint", "x": "numeric"}');
           SELECT beacon.collect_batch('shop', '[{"collection": "kinds", "properties": {"a": "k0", "label": "zero"}},
               {"collection": "kinds", "properties": {"a": "k1", "label": "one"}},
               {"collection": "kinds", "properties": {"a": "k2", "label": "two"}},
               {"collection": "kinds", "properties": {"a": "k3", "label": "three"}}]');
           CREATE UNIQUE INDEX ON shop.kinds (a);"#,
    );
    client
}

fn create_queries(client: &mut Client) {
    for (name, query) in QUERIES {
        for mode in ["async", "immediate"] {
            run(
                client,
                &format!(
                    "SELECT beacon.create_continuous_query('shop', '{name}_{mode}', $q${query}$q$, '{mode}')"
                ),
            );
        }
    }
}

fn assert_queries_exact(client: &mut Client, when: &str) {
    run(client, "SET search_path = shop, public");
    for (name, query) in QUERIES {
        run(
            client,
            &format!("SELECT beacon.compact('shop', '{name}_async')"),
        );
        for mode in ["async", "immediate"] {
            let view = format!("SELECT * FROM shop.{name}_{mode}");
            assert_eq!(
                differences(client, &view, query),
                0,
                "{when}: {name}_{mode}"
            );
        }
    }
    run(client, "RESET search_path");
}

/// Writers collect (half of them under REPEATABLE READ) while the collection is converted;
/// afterwards every event a writer was told was stored is there exactly once, with its
/// `_id`, and every continuous query equals its query.
#[test]
fn partitioning_under_concurrent_writers_loses_and_doubles_nothing() {
    let db = "partitions_convert";
    let mut client = project_db(server(), db);
    run(
        &mut client,
        &format!(
            "SELECT beacon.collect_batch('shop', $b${}$b$)",
            batch(0, 0, 500, &mut Rng::new(7))
        ),
    );
    create_queries(&mut client);
    run(
        &mut client,
        "SELECT beacon.subscribe('shop', 'events', 'b > 400')",
    );
    let before = one_i64(&mut client, "SELECT count(*) FROM shop.events");
    let progress = Arc::new(AtomicU64::new(0));
    let converted = Arc::new(AtomicBool::new(false));
    let seed = std::env::var("BEACON_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let writers: Vec<_> = (1..=4u64)
        .map(|w| {
            let (progress, converted) = (progress.clone(), converted.clone());
            let dsn = server().dsn(db, "postgres");
            thread::spawn(move || {
                set_project(db);
                let mut rng = Rng::new(seed * 100 + w);
                let mut c = Client::connect(&dsn, NoTls).unwrap();
                if w % 2 == 0 {
                    run(
                        &mut c,
                        "SET default_transaction_isolation = 'repeatable read'",
                    );
                }
                let mut stored = BTreeSet::new();
                let (mut next, mut after) = (0, 0);
                while after < 15 {
                    let n = 1 + rng.below(20);
                    match c.execute(
                        &p("SELECT beacon.collect_batch('shop', $1::text::jsonb)"),
                        &[&batch(w, next, n, &mut rng)],
                    ) {
                        Ok(_) => stored.extend(next..next + n),
                        Err(e) => {
                            let code = e.code().map(|c| c.code().to_string());
                            assert!(
                                matches!(code.as_deref(), Some("40001" | "40P01")),
                                "writer {w}: {e:?}"
                            );
                        }
                    }
                    next += n;
                    progress.fetch_add(1, Ordering::SeqCst);
                    if converted.load(Ordering::SeqCst) {
                        after += 1;
                    }
                }
                (w, stored)
            })
        })
        .collect();
    eventually("writers under way", || {
        progress.load(Ordering::SeqCst) >= 20
    });
    let moved = one_i64(
        &mut client,
        "SELECT beacon.partition_collection('shop', 'events', 'day')",
    );
    converted.store(true, Ordering::SeqCst);
    assert!(moved >= before, "{moved} moved, {before} before");
    let mut total = before;
    for writer in writers {
        let (w, stored) = writer.join().unwrap();
        let rows = client
            .query(
                &p(&format!(
                    "SELECT i FROM shop.events WHERE w = {w} ORDER BY i"
                )),
                &[],
            )
            .unwrap();
        let found: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let unique: BTreeSet<u64> = found.iter().map(|i| *i as u64).collect();
        assert_eq!(
            found.len(),
            unique.len(),
            "writer {w}: an event stored twice"
        );
        assert_eq!(
            unique, stored,
            "writer {w}: stored events and acknowledged ones differ"
        );
        total += stored.len() as i64;
    }
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM shop.events"),
        total
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(DISTINCT _id) FROM shop.events"),
        total
    );
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM pg_class WHERE oid = 'shop.events'::regclass AND relkind = 'p'"
        ),
        1
    );
    assert_queries_exact(&mut client, "after the conversion");
    server().drop_db(db);
}

/// Random concurrent inserts (in the past, now and the future), updates that move events
/// between partitions and deletes, on a partitioned collection: continuous queries (one
/// table and a join), a document view looking events up, and a subscription all equal
/// their oracles.
#[test]
fn readers_of_a_partitioned_collection_equal_their_oracles() {
    let db = "partitions_readers";
    let mut client = project_db(server(), db);
    run(
        &mut client,
        "SELECT beacon.partition_collection('shop', 'events', 'week')",
    );
    create_queries(&mut client);
    run(
        &mut client,
        r#"SELECT beacon.create_document_view('shop', 'kind_docs',
             '{"from": "kinds", "key": ["a"], "columns": ["a", "label"],
               "lookups": [{"path": "events", "from": "events", "type": "array",
                            "on": {"a": "a"}, "order_by": ["_id"], "columns": ["_id", "w", "i", "b"]}]}',
             'immediate')"#,
    );
    let mut listener = server().connect(db);
    let channel: String = listener
        .query_one(
            &p("SELECT beacon.subscribe('shop', 'events', 'b >= 0')"),
            &[],
        )
        .unwrap()
        .get(0);
    run(&mut listener, &format!("LISTEN {channel}"));
    let seed = std::env::var("BEACON_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(61);
    let writers: Vec<_> = (1..=3u64)
        .map(|w| {
            let dsn = server().dsn(db, "postgres");
            thread::spawn(move || {
                set_project(db);
                let mut rng = Rng::new(seed * 10 + w);
                let mut c = Client::connect(&dsn, NoTls).unwrap();
                let mut delivered = BTreeSet::new();
                for round in 0..40u64 {
                    let mut batch_delivers = Vec::new();
                    let sql = match rng.below(6) {
                        // moves events into this week's or the next one's partition (SQL by
                        // hand, unlike collect, needs its partition to exist)
                        0 => format!(
                            "UPDATE shop.events SET _time = date_trunc('week', now()) + interval '{} hours' + (i % 60) * interval '1 minute', b = b + 1 WHERE w = {w} AND i % 7 = {}",
                            rng.below(14 * 24),
                            rng.below(7)
                        ),
                        1 => format!("DELETE FROM shop.events WHERE w = {w} AND i % 11 = {}", rng.below(11)),
                        _ => {
                            let (json, delivers) = batch_with(w, round * 100, 1 + rng.below(30), &mut rng);
                            batch_delivers = delivers;
                            format!("SELECT beacon.collect_batch('shop', $b${json}$b$)")
                        }
                    };
                    match c.batch_execute(&p(&sql)) {
                        Ok(()) => delivered.extend(batch_delivers.into_iter().map(|i| (w, i))),
                        Err(e) => {
                            let code = e.code().map(|c| c.code().to_string());
                            assert!(matches!(code.as_deref(), Some("40001" | "40P01")), "{sql}: {e:?}");
                        }
                    }
                }
                delivered
            })
        })
        .collect();
    let mut expected = BTreeSet::new();
    for writer in writers {
        expected.extend(writer.join().unwrap());
    }
    assert_queries_exact(&mut client, "after random writers");
    assert_eq!(
        differences(
            &mut client,
            "SELECT * FROM shop.kind_docs",
            "SELECT * FROM shop._dv_kind_docs_source"
        ),
        0,
        "the document view equals its defining query"
    );
    // the subscription delivered every inserted event with b >= 0, once, and nothing else
    // (an UPDATE that moves an event to another partition is not an insert)
    let mut received: Vec<(u64, u64)> = Vec::new();
    eventually("the subscription's notifications", || {
        let mut notifications = listener.notifications();
        let mut iter = notifications.timeout_iter(std::time::Duration::from_millis(200));
        while let Ok(Some(n)) = iter.next() {
            let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
            let field = |f: &str| payload["event"][f].as_u64().unwrap();
            received.push((field("w"), field("i")));
        }
        received.len() >= expected.len()
    });
    let unique: BTreeSet<(u64, u64)> = received.iter().copied().collect();
    assert_eq!(unique.len(), received.len(), "an event delivered twice");
    assert_eq!(unique, expected);
    server().drop_db(db);
}
