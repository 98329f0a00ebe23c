//! Continuous queries under concurrent writers: pg_beacon's own locks never deadlock
//! writers (immediate mode merges at commit in one global order; count(DISTINCT) keeps its
//! multiplicities through the delta in both modes), dropping a query never fails a
//! writer, compaction and drop never deadlock, and every view equals its query afterwards.
//! Orders are drawn from a seeded generator (`BEACON_SEED`); failures print the seed.

mod common;

use common::{server, Rng};
use postgres::error::SqlState;
use postgres::Client;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

const SOURCE: &str = "(id bigserial PRIMARY KEY, g int, h int, qty bigint, product int, note text)";

/// Exact aggregates only (integers), so the comparison with the query is a plain EXCEPT ALL.
const QUERIES: [&str; 3] = [
    "SELECT g, count(*) AS n, sum(qty) AS total, min(qty) AS lo, max(qty) AS hi, \
     count(DISTINCT product) AS products FROM src GROUP BY g",
    "SELECT h, count(*) AS n, count(DISTINCT product) AS products, max(qty) AS hi FROM src GROUP BY h",
    "SELECT count(*) AS n, sum(qty) AS total, min(qty) AS lo, count(DISTINCT g) AS groups FROM src",
];

fn seed() -> u64 {
    std::env::var("BEACON_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_260_311)
}

fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn is_deadlock(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
}

fn connect(db: &str) -> Client {
    let mut client = server().connect(db);
    client
        .batch_execute(&format!(
            "SET search_path = {db}, public; SET TimeZone = 'UTC'"
        ))
        .unwrap();
    client
}

/// A database with a project of its name, table `src` and one query per shape and mode
/// (`<mode>_<i>`); returns the query names.
fn setup(db: &str, modes: &[&str]) -> Vec<(String, &'static str)> {
    server().fresh_db(db);
    let mut client = connect(db);
    client
        .batch_execute(&format!(
            "SELECT beacon.create_project('{db}'); CREATE TABLE src {SOURCE};
             INSERT INTO src (g, h, qty, product)
             SELECT i % 5, i % 3, i % 17, i % 7 FROM generate_series(1, 200) i"
        ))
        .unwrap();
    let mut names = Vec::new();
    for mode in modes {
        for (i, query) in QUERIES.iter().enumerate() {
            let name = format!("{mode}_{i}");
            client
                .execute(
                    "SELECT beacon.create_continuous_query(current_schema(), $1, $2, $3)",
                    &[&name, query, mode],
                )
                .unwrap_or_else(|e| panic!("create {name}: {}", describe(&e)));
            names.push((name, *query));
        }
    }
    names
}

/// Rows in the view but not in its query plus the reverse, for every query; empty when
/// all views are exact.
fn mismatches(client: &mut Client, names: &[(String, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, query) in names {
        let n: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM ((SELECT * FROM {name} EXCEPT ALL {query}) \
                     UNION ALL ({query} EXCEPT ALL SELECT * FROM {name})) x"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        if n != 0 {
            out.push(format!("{name}: {n} rows differ"));
        }
    }
    out
}

/// What the writers saw: deadlocks and any other error.
#[derive(Default)]
struct Outcome {
    deadlocks: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Outcome {
    fn record(&self, what: &str, e: &postgres::Error) {
        if is_deadlock(e) {
            self.deadlocks.fetch_add(1, Ordering::SeqCst);
        } else {
            self.errors
                .lock()
                .unwrap()
                .push(format!("{what}: {}", describe(e)));
        }
    }
}

/// Multi-statement transactions: each inserts disjoint rows into shared groups in a random
/// order (and deletes some of its own earlier rows), so two transactions touch the same
/// groups in opposite orders.
fn multi_statement_writer(db: &str, seed: u64, transactions: usize, outcome: &Outcome) {
    let mut client = connect(db);
    let mut rng = Rng::new(seed);
    let mut own: Vec<i64> = Vec::new();
    for _ in 0..transactions {
        let mut tx = client.transaction().unwrap();
        let mut inserted = Vec::new();
        let result = (|| -> Result<(), postgres::Error> {
            for _ in 0..2 + rng.below(5) {
                let row = tx.query_one(
                    "INSERT INTO src (g, h, qty, product) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[
                        &(rng.below(5) as i32),
                        &(rng.below(3) as i32),
                        &(rng.below(50) as i64),
                        &(rng.below(9) as i32),
                    ],
                )?;
                inserted.push(row.get::<_, i64>(0));
            }
            if !own.is_empty() && rng.below(3) == 0 {
                let victim = own.swap_remove(rng.below(own.len() as u64) as usize);
                tx.execute("DELETE FROM src WHERE id = $1", &[&victim])?;
            }
            Ok(())
        })();
        match result.and_then(|()| tx.commit()) {
            Ok(()) => own.extend(inserted),
            Err(e) => outcome.record("multi-statement transaction", &e),
        }
    }
}

/// Single-statement UPDATEs of rows only this writer updates (`id % writers = slot`),
/// moving them between groups.
fn single_update_writer(db: &str, seed: u64, slot: i64, writers: i64, n: usize, outcome: &Outcome) {
    let mut client = connect(db);
    let mut rng = Rng::new(seed);
    let ids: Vec<i64> = client
        .query(
            "SELECT id FROM src WHERE id % $1 = $2 ORDER BY id",
            &[&writers, &slot],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for _ in 0..n {
        let id = ids[rng.below(ids.len() as u64) as usize];
        if let Err(e) = client.execute(
            "UPDATE src SET g = $2, h = $3, qty = qty + 1, product = $4 WHERE id = $1",
            &[
                &id,
                &(rng.below(5) as i32),
                &(rng.below(3) as i32),
                &(rng.below(9) as i32),
            ],
        ) {
            outcome.record("single-statement update", &e);
        }
    }
}

fn run_workload(db: &str, seed: u64, writers: u64) -> (u64, Vec<String>) {
    let outcome = Arc::new(Outcome::default());
    let mut handles = Vec::new();
    for w in 0..writers {
        let (db, outcome) = (db.to_string(), outcome.clone());
        handles.push(thread::spawn(move || {
            multi_statement_writer(&db, seed ^ (w + 1), 60, &outcome)
        }));
    }
    for handle in handles.drain(..) {
        handle.join().unwrap();
    }
    for w in 0..writers {
        let (db, outcome) = (db.to_string(), outcome.clone());
        handles.push(thread::spawn(move || {
            single_update_writer(
                &db,
                seed ^ (w + 101),
                w as i64,
                writers as i64,
                80,
                &outcome,
            )
        }));
    }
    for handle in handles {
        handle.join().unwrap();
    }
    let errors = outcome.errors.lock().unwrap().clone();
    (outcome.deadlocks.load(Ordering::SeqCst), errors)
}

#[test]
fn concurrent_writers_never_deadlock_on_pg_beacons_locks() {
    let seed = seed();
    let db = "cq_conc_deadlocks";
    let names = setup(db, &["immediate", "async"]);
    let (deadlocks, errors) = run_workload(db, seed, 4);
    println!("seed {seed}: {deadlocks} deadlocks (40P01) under the concurrent workload");
    assert!(errors.is_empty(), "seed {seed}: writers failed: {errors:?}");
    let mut client = connect(db);
    let wrong = mismatches(&mut client, &names);
    client.batch_execute("SELECT beacon.compact()").unwrap();
    let wrong_compacted = mismatches(&mut client, &names);
    if std::env::var("BEACON_COUNT_ONLY").is_err() {
        assert_eq!(deadlocks, 0, "seed {seed}: writers deadlocked");
    }
    assert!(wrong.is_empty(), "seed {seed}: {wrong:?}");
    assert!(
        wrong_compacted.is_empty(),
        "seed {seed}: {wrong_compacted:?}"
    );
    server().drop_db(db);
}

/// A reader sees its own uncommitted writes, count(DISTINCT) included, and a rolled-back
/// savepoint takes its share of the pending deltas along.
#[test]
fn views_include_the_readers_own_pending_writes() {
    let db = "cq_conc_own_writes";
    let names = setup(db, &["immediate", "async"]);
    let mut client = connect(db);
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(
        "INSERT INTO src (g, h, qty, product) VALUES (1, 1, 1000, 99), (7, 1, -5, 98);
         DELETE FROM src WHERE id IN (SELECT id FROM src WHERE g = 2 ORDER BY id LIMIT 30);
         SAVEPOINT s; INSERT INTO src (g, h, qty, product) VALUES (8, 2, 1, 97); ROLLBACK TO SAVEPOINT s;
         UPDATE src SET product = 50 WHERE g = 3",
    )
    .unwrap();
    let check = |client: &mut postgres::Transaction, when: &str| {
        for (name, query) in &names {
            let n: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM ((SELECT * FROM {name} EXCEPT ALL {query}) \
                         UNION ALL ({query} EXCEPT ALL SELECT * FROM {name})) x"
                    ),
                    &[],
                )
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "{name} {when}");
        }
    };
    check(&mut tx, "before commit");
    tx.commit().unwrap();
    let mut tx = client.transaction().unwrap();
    check(&mut tx, "after commit");
    tx.commit().unwrap();
    server().drop_db(db);
}

/// An AFTER INSERT row trigger that updates the new row: the merge at commit sees the
/// update's deletion (a dirty group) and recomputes min and max from the table.
#[test]
fn a_row_trigger_updating_the_new_row_leaves_min_and_max_exact() {
    let db = "cq_conc_row_trigger";
    let names = setup(db, &["immediate", "async"]);
    let mut client = connect(db);
    client
        .batch_execute(
            "CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN UPDATE src SET qty = NEW.qty + 1000 WHERE id = NEW.id; RETURN NULL; END $$;
             CREATE TRIGGER bump AFTER INSERT ON src FOR EACH ROW EXECUTE FUNCTION bump();
             INSERT INTO src (g, h, qty, product) VALUES (1, 1, -50, 1), (6, 0, -60, 2);
             BEGIN; INSERT INTO src (g, h, qty, product) VALUES (6, 2, -70, 3); COMMIT",
        )
        .unwrap();
    let wrong = mismatches(&mut client, &names);
    assert!(wrong.is_empty(), "{wrong:?}");
    let lo: i64 = client
        .query_one("SELECT lo FROM immediate_0 WHERE g = 6", &[])
        .unwrap()
        .get(0);
    assert_eq!(lo, 930);
    server().drop_db(db);
}

/// Writers keep writing (single statements and transactions) while every query is
/// dropped: none of their statements fails.
#[test]
fn dropping_queries_while_others_write_never_fails_a_writer() {
    let seed = seed();
    let db = "cq_conc_drop";
    let names = setup(db, &["immediate", "async"]);
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(Outcome::default());
    let written = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for w in 0..3u64 {
        let (db, stop, outcome, written) = (
            db.to_string(),
            stop.clone(),
            outcome.clone(),
            written.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut client = connect(&db);
            let mut rng = Rng::new(seed ^ (w + 1));
            while !stop.load(Ordering::SeqCst) {
                let result = if rng.below(2) == 0 {
                    client
                        .execute(
                            "INSERT INTO src (g, h, qty, product) SELECT $1, i % 3, i, i % 5 FROM generate_series(1, 20) i",
                            &[&(rng.below(5) as i32)],
                        )
                        .map(|_| ())
                } else {
                    client.batch_execute(
                        "BEGIN; INSERT INTO src (g, h, qty, product) VALUES (1, 2, 3, 4);
                         UPDATE src SET qty = qty + 1 WHERE id = (SELECT max(id) FROM src);
                         INSERT INTO src (g, h, qty, product) VALUES (4, 0, 9, 1); COMMIT",
                    )
                };
                match result {
                    Ok(()) => {
                        written.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        outcome.record("writer", &e);
                        let _ = client.batch_execute("ROLLBACK");
                    }
                }
            }
        }));
    }
    let mut admin = connect(db);
    let mut order: Vec<&(String, &str)> = names.iter().collect();
    let mut rng = Rng::new(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for (name, _) in order {
        let before = written.load(Ordering::SeqCst);
        common::eventually("writers to make progress", || {
            written.load(Ordering::SeqCst) > before + 3
        });
        admin
            .execute(
                "SELECT beacon.drop_continuous_query(current_schema(), $1)",
                &[name],
            )
            .unwrap_or_else(|e| panic!("seed {seed}: drop {name}: {}", describe(&e)));
    }
    let before = written.load(Ordering::SeqCst);
    common::eventually("writers to go on after the drops", || {
        written.load(Ordering::SeqCst) > before + 3
    });
    stop.store(true, Ordering::SeqCst);
    for handle in handles {
        handle.join().unwrap();
    }
    let errors = outcome.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "seed {seed}: writers failed: {errors:?}");
    assert_eq!(
        outcome.deadlocks.load(Ordering::SeqCst),
        0,
        "seed {seed}: writers deadlocked"
    );
    server().drop_db(db);
}

/// Compaction (on demand here, and the real scheduler) runs while async queries are
/// created and dropped and writers write: neither side deadlocks or fails.
#[test]
fn compaction_concurrent_with_drop_never_deadlocks() {
    let seed = seed();
    let db = "cq_conc_compact_drop";
    setup(db, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(Outcome::default());
    let mut handles = Vec::new();
    {
        let (db, stop, outcome) = (db.to_string(), stop.clone(), outcome.clone());
        handles.push(thread::spawn(move || {
            let mut client = connect(&db);
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = client.batch_execute("SELECT beacon.compact()") {
                    outcome.record("compact", &e);
                }
            }
        }));
    }
    {
        let (db, stop, outcome) = (db.to_string(), stop.clone(), outcome.clone());
        handles.push(thread::spawn(move || {
            let mut client = connect(&db);
            let mut rng = Rng::new(seed);
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = client.execute(
                    "INSERT INTO src (g, h, qty, product) SELECT $1, i % 3, i, i % 5 FROM generate_series(1, 10) i",
                    &[&(rng.below(5) as i32)],
                ) {
                    outcome.record("writer", &e);
                }
            }
        }));
    }
    let mut admin = connect(db);
    let mut rng = Rng::new(seed);
    for round in 0..12 {
        let names: Vec<String> = (0..3).map(|i| format!("a{round}_{i}")).collect();
        for (name, query) in names.iter().zip(QUERIES) {
            admin
                .execute(
                    "SELECT beacon.create_continuous_query(current_schema(), $1, $2, 'async')",
                    &[name, &query],
                )
                .unwrap_or_else(|e| panic!("seed {seed}: create {name}: {}", describe(&e)));
        }
        // let the writers leave deltas for compaction to hold while the drop comes
        admin
            .batch_execute("SELECT pg_catalog.pg_sleep(0.02)")
            .unwrap();
        let first = rng.below(3) as usize;
        for i in 0..3 {
            let name = &names[(first + i) % 3];
            if let Err(e) = admin.execute(
                "SELECT beacon.drop_continuous_query(current_schema(), $1)",
                &[name],
            ) {
                outcome.record(&format!("drop {name}"), &e);
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for handle in handles {
        handle.join().unwrap();
    }
    let errors = outcome.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "seed {seed}: {errors:?}");
    assert_eq!(
        outcome.deadlocks.load(Ordering::SeqCst),
        0,
        "seed {seed}: compaction and drop deadlocked"
    );
    server().drop_db(db);
}

/// Bulk inserts with three immediate queries: printed for the report, never asserted.
#[test]
fn bulk_insert_timing_with_three_immediate_queries() {
    let db = "cq_conc_timing";
    setup(db, &["immediate"]);
    let mut client = connect(db);
    let bare = Instant::now();
    client
        .batch_execute("CREATE TABLE bare (LIKE src INCLUDING ALL)")
        .unwrap();
    for i in 0..20 {
        client
            .execute(
                "INSERT INTO bare (g, h, qty, product) SELECT (i + $1) % 50, i % 3, i, i % 97 FROM generate_series(1, 1000) i",
                &[&i],
            )
            .unwrap();
    }
    let bare = bare.elapsed();
    let started = Instant::now();
    for i in 0..20 {
        client
            .execute(
                "INSERT INTO src (g, h, qty, product) SELECT (i + $1) % 50, i % 3, i, i % 97 FROM generate_series(1, 1000) i",
                &[&i],
            )
            .unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "20 INSERTs of 1,000 rows, 3 immediate queries: {:.1} ms per INSERT ({:.1} ms on a bare table, ratio {:.1})",
        elapsed.as_secs_f64() * 1000.0 / 20.0,
        bare.as_secs_f64() * 1000.0 / 20.0,
        elapsed.as_secs_f64() / bare.as_secs_f64()
    );
    server().drop_db(db);
}
