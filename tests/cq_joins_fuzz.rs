//! The join fuzzer: random star/snowflake schemas (tests/common/joins_gen.rs) and join queries
//! (tests/common/joins_query.rs),
//! concurrent random DML on every table at once from several connections, and after every
//! round each view compared with its defining query (tests/common/joins.rs), before and
//! after `beacon.compact()`; writers also compare a view inside their own open
//! transactions now and then (their uncommitted writes included).
//!
//! Seeded: `BEACON_SEED` replays the schemas, queries and statements (not the thread
//! interleaving); the seed is printed, and named in every failure. Writers retry only on
//! 40001 and 40P01; every other error is a failure. `BEACON_JOINS_FUZZ_EPOCHS` changes the
//! number of epochs (a schema each).

mod common;
#[path = "common/joins.rs"]
mod joins;
#[path = "common/joins_gen.rs"]
mod joins_gen;
#[path = "common/joins_query.rs"]
mod joins_query;

use common::{server, Rng};
use joins::View;
use joins_gen::{between, chance, Schema};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const ROUNDS: u64 = 3;
const QUERIES: u64 = 6;
const TRANSACTIONS: u64 = 14;
/// Attempts of a transaction failing with 40001/40P01 before the writer gives up (a
/// transaction that can never commit is a failure).
const RETRIES: u64 = 100;

fn seed() -> u64 {
    std::env::var("BEACON_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("BEACON_SEED: an unsigned integer"))
        .unwrap_or_else(|| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            now.as_secs() * 1000 + u64::from(now.subsec_millis())
        })
}

fn epochs(default: u64) -> u64 {
    std::env::var("BEACON_JOINS_FUZZ_EPOCHS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    failures: Vec<String>,
    statements: u64,
    retries: u64,
    /// Retries by SQLSTATE and whether the transaction wrote only the fact table.
    retried: std::collections::BTreeMap<String, u64>,
    comparisons: u64,
    own_reads: u64,
}

/// What the writers of a round share.
struct Round<'a> {
    db: &'a str,
    schema: &'a Schema,
    views: &'a [View],
    isolation: &'a str,
    tally: &'a Mutex<Tally>,
    log: &'a Mutex<Vec<String>>,
    /// Writers change only the fact table, each its own rows: nothing may make them wait
    /// for each other, so any retry is a failure.
    fact_only: Option<u64>,
}

/// A writer: `TRANSACTIONS` transactions of 1–3 random statements, sometimes with a
/// comparison of one view inside the open transaction.
fn writer(round: &Round, mut rng: Rng, no: u64) {
    let Round {
        db,
        schema,
        views,
        isolation,
        tally,
        log,
        fact_only,
    } = *round;
    let mut client = joins::connect(db);
    // Retries back off by a random delay, as a client should after 40001/40P01: retrying
    // at once replays the same race (a long transaction is then the victim every time).
    // Its own generator, so that the statements do not depend on how many retries there were.
    let mut jitter = Rng::new(no.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for _ in 0..TRANSACTIONS {
        let statements: Vec<String> = (0..between(&mut rng, 1, 3))
            .map(|_| match fact_only {
                Some(writers) => schema.fact_statement(&mut rng, no, writers),
                None => schema.statement(&mut rng),
            })
            .collect();
        let own_read = if !views.is_empty() && chance(&mut rng, 15) {
            Some(joins_gen::pick(&mut rng, views).clone())
        } else {
            None
        };
        for attempt in 0.. {
            let result = (|| -> Result<(), String> {
                client
                    .batch_execute(&format!("BEGIN ISOLATION LEVEL {isolation}"))
                    .map_err(|e| joins::describe(&e))?;
                for sql in &statements {
                    client.batch_execute(sql).map_err(|e| {
                        if joins::retryable(&e) {
                            format!("retry {}", joins::sqlstate(&e))
                        } else {
                            format!("`{sql}` failed: {}", joins::describe(&e))
                        }
                    })?;
                }
                if let Some(view) = &own_read {
                    let wrong = joins::mismatches(&mut client, std::slice::from_ref(view))?;
                    tally.lock().unwrap().own_reads += 1;
                    if !wrong.is_empty() {
                        return Err(format!(
                            "inside a writer's open transaction ({isolation}), after:\n  {}\n{}",
                            statements.join(";\n  "),
                            wrong.join("\n")
                        ));
                    }
                }
                client.batch_execute("COMMIT").map_err(|e| {
                    if joins::retryable(&e) {
                        format!("retry {}", joins::sqlstate(&e))
                    } else {
                        format!("COMMIT failed: {}", joins::describe(&e))
                    }
                })
            })();
            match result {
                Ok(()) => {
                    tally.lock().unwrap().statements += statements.len() as u64;
                    log.lock()
                        .unwrap()
                        .push(format!("-- writer {no}\n{};", statements.join(";\n")));
                    break;
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK");
                    if e.starts_with("retry ") && fact_only.is_some() {
                        tally.lock().unwrap().failures.push(format!(
                            "writer {no}: {} in a transaction changing only its own fact rows:\n  {}",
                            &e[6..],
                            statements.join(";\n  ")
                        ));
                    }
                    if e.starts_with("retry ") && attempt < RETRIES {
                        let fact = &schema.tables[0].name;
                        let fact_only = statements.iter().all(|s| {
                            [
                                format!("INSERT INTO {fact} "),
                                format!("UPDATE {fact} "),
                                format!("DELETE FROM {fact} "),
                            ]
                            .iter()
                            .any(|p| s.starts_with(p))
                        });
                        let mut tally = tally.lock().unwrap();
                        tally.retries += 1;
                        let what = if fact_only {
                            "fact-only"
                        } else {
                            "with dimensions"
                        };
                        *tally
                            .retried
                            .entry(format!("{} {what}", &e[6..]))
                            .or_default() += 1;
                        drop(tally);
                        let ceiling = 1u64 << attempt.min(7);
                        std::thread::sleep(std::time::Duration::from_millis(
                            1 + jitter.below(ceiling),
                        ));
                        continue;
                    }
                    let e = match e.strip_prefix("retry ") {
                        Some(code) => format!(
                            "{code} on every one of {RETRIES} attempts (no attempt could commit):\n  {}",
                            statements.join(";\n  ")
                        ),
                        None => e,
                    };
                    tally
                        .lock()
                        .unwrap()
                        .failures
                        .push(format!("writer {no}: {e}"));
                    break;
                }
            }
        }
    }
}

fn compare(
    client: &mut postgres::Client,
    views: &[View],
    when: &str,
    tally: &Mutex<Tally>,
) -> bool {
    let mut tally = tally.lock().unwrap();
    tally.comparisons += 1;
    match joins::mismatches(client, views) {
        Ok(wrong) if wrong.is_empty() => true,
        Ok(wrong) => {
            tally
                .failures
                .extend(wrong.into_iter().map(|w| format!("{when}: {w}")));
            false
        }
        Err(e) => {
            tally
                .failures
                .push(format!("{when}: reading the views failed: {e}"));
            false
        }
    }
}

/// One schema: creation, population, rounds of concurrent DML with comparisons. Returns
/// the failures, each prefixed with what is needed to understand it.
fn epoch(
    db: &str,
    seed: u64,
    epoch: u64,
    isolation: &str,
    writers: u64,
    fact_only: bool,
    tally: &Mutex<Tally>,
) {
    let mut rng = Rng::new(seed ^ epoch.wrapping_mul(0x9E37_79B9));
    let prefix = format!("e{epoch}");
    let schema = Schema::random(&mut rng, &prefix);
    let mut admin = joins::connect(db);
    admin.batch_execute(&schema.ddl()).unwrap();
    for sql in schema.populate(&mut rng) {
        admin.batch_execute(&sql).unwrap();
    }
    let mut views = Vec::new();
    let before = tally.lock().unwrap().failures.len();
    for i in 0..QUERIES {
        let query = if fact_only {
            schema.query_from_fact(&mut rng)
        } else {
            schema.query(&mut rng)
        };
        let view = View::new(&format!("{prefix}_q{i}"), &query.sql, query.mode);
        eprintln!("{db} {} ({}): {}", view.name, view.mode, view.query);
        match joins::create(&mut admin, &view) {
            Ok(()) => match joins::check_types(&mut admin, &view) {
                Ok(()) => views.push(view),
                Err(e) => tally.lock().unwrap().failures.push(format!(
                    "{} ({}): {e}\n  query: {}",
                    view.name, view.mode, view.query
                )),
            },
            Err(e) => tally.lock().unwrap().failures.push(format!(
                "creating {} ({}) was refused: {}\n  query: {}",
                view.name,
                view.mode,
                joins::describe(&e),
                view.query
            )),
        }
    }
    compare(
        &mut admin,
        &views,
        "after creation on the initial rows",
        tally,
    );
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    for round_no in 0..ROUNDS {
        let round = Round {
            db,
            schema: &schema,
            views: &views,
            isolation,
            tally,
            log: &log,
            fact_only: fact_only.then_some(writers),
        };
        thread::scope(|scope| {
            for w in 0..writers {
                let writer_rng = Rng::new(rng.next() ^ w);
                let round = &round;
                scope.spawn(move || writer(round, writer_rng, w));
            }
        });
        let when = format!("round {round_no}, after the writers committed");
        if compare(&mut admin, &views, &when, tally) {
            admin.batch_execute("SELECT beacon.compact()").unwrap();
            compare(
                &mut admin,
                &views,
                &format!("{when} and beacon.compact()"),
                tally,
            );
        }
        if !fact_only && chance(&mut rng, 35) {
            let table = &joins_gen::pick(&mut rng, &schema.tables).name;
            admin.batch_execute(&format!("TRUNCATE {table}")).unwrap();
            log.lock().unwrap().push(format!("TRUNCATE {table};"));
            compare(
                &mut admin,
                &views,
                &format!("round {round_no}, after TRUNCATE {table}"),
                tally,
            );
            for sql in schema.populate(&mut rng) {
                if sql.contains(&format!("INTO {table} ")) {
                    admin.batch_execute(&sql).unwrap();
                    log.lock().unwrap().push(format!("{sql};"));
                }
            }
        }
    }
    let mut tally = tally.lock().unwrap();
    if tally.failures.len() > before {
        let path = format!("/tmp/joins_fuzz_{seed}_{prefix}.sql");
        let _ = std::fs::write(&path, log.lock().unwrap().join("\n"));
        let context = format!(
            "seed {seed}, epoch {epoch} ({isolation}, {writers} writers); schema:\n{}\n\
             committed transactions in commit order: {path}\n",
            schema.ddl()
        );
        for failure in &mut tally.failures[before..] {
            *failure = format!("{context}{failure}");
        }
    }
}

fn fuzz(db: &str, isolation: &str, default_epochs: u64, fact_only: bool) {
    let seed = seed();
    let started = Instant::now();
    joins::project_db(server(), db);
    let tally = Mutex::new(Tally::default());
    let epochs = epochs(default_epochs);
    for e in 0..epochs {
        let writers = 3 + e % 2;
        epoch(db, seed, e, isolation, writers, fact_only, &tally);
    }
    let tally = tally.into_inner().unwrap();
    eprintln!(
        "{db}: seed {seed}, {epochs} epochs in {:.0} s: {} statements committed, {} retries \
         {:?}, {} comparisons, {} reads inside writers' transactions, {} failures",
        started.elapsed().as_secs_f64(),
        tally.statements,
        tally.retries,
        tally.retried,
        tally.comparisons,
        tally.own_reads,
        tally.failures.len()
    );
    server().drop_db(db);
    assert!(
        tally.failures.is_empty(),
        "seed {seed} (re-run with BEACON_SEED={seed}): {} failures, the first ones:\n\n{}",
        tally.failures.len(),
        tally
            .failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(
        tally.statements > 0,
        "seed {seed}: no writer statement committed"
    );
}

#[test]
fn joins_fuzz_read_committed_writers() {
    fuzz("joins_fuzz_rc", "READ COMMITTED", 4, false);
}

#[test]
fn joins_fuzz_repeatable_read_writers() {
    fuzz("joins_fuzz_rr", "REPEATABLE READ", 2, false);
}

/// Only the fact table is written, each writer its own rows, under every kind of join
/// query rooted at the fact: writers of the root never wait for each other, so not one
/// deadlock or serialization failure may happen.
#[test]
fn joins_fuzz_fact_writers_of_their_own_rows_never_conflict() {
    fuzz("joins_fuzz_facts", "READ COMMITTED", 2, true);
}
