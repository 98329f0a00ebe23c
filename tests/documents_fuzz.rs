//! The document view fuzzer: random tables and specs (tests/common/documents_gen.rs:
//! depth 1–3, object and array lookups, self-lookups, one or two on-pairs of integers or
//! text, NULLs and missing matches, columns/exclude/rename, order_by, `where`, NULL keys),
//! random DML on every table in transactions (some compared inside the transaction, some
//! rolled back, wholly or to a savepoint), TRUNCATE and ADD COLUMN now and then, and a
//! round of concurrent writers; after every transaction each view is compared with the
//! oracle (tests/common/documents.rs) in both modes, and at the end of each epoch the
//! stored documents too, once the worker applied everything.
//!
//! Seeded: `BEACON_SEED` replays the schemas, specs and statements (not the interleaving
//! of the concurrent round); the seed is printed and named in every failure, with the
//! epoch's DDL, specs and committed statements. `BEACON_DOCUMENTS_FUZZ_EPOCHS` changes
//! the number of epochs.

mod common;
#[path = "common/documents.rs"]
mod documents;
#[path = "common/documents_gen.rs"]
mod gen;

use common::{server, Rng};
use documents::DocView;
use gen::{between, chance, Schema};
use postgres::Client;
use std::sync::Mutex;
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const VIEWS: u64 = 4;
const TRANSACTIONS: u64 = 14;
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
    std::env::var("BEACON_DOCUMENTS_FUZZ_EPOCHS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

struct Epoch {
    schema: Schema,
    views: Vec<DocView>,
    log: Vec<String>,
}

impl Epoch {
    /// The context of a failure: the schema, the specs, what was committed.
    fn context(&self, seed: u64, epoch: u64) -> String {
        let specs: Vec<String> = self
            .views
            .iter()
            .map(|v| format!("  {} ({}): {}", v.name, v.mode, v.spec))
            .collect();
        format!(
            "seed {seed} (BEACON_SEED={seed}), epoch {epoch}\nschema:\n{}\nviews:\n{}\nstatements so far:\n{}\n",
            self.schema.ddl(),
            specs.join("\n"),
            self.log.join(";\n")
        )
    }
}

fn run(client: &mut Client, sql: &str) -> Result<(), String> {
    client
        .batch_execute(sql)
        .map_err(|e| format!("`{sql}` failed: {}", documents::describe(&e)))
}

fn check(
    client: &mut Client,
    views: &[DocView],
    when: &str,
    in_transaction: bool,
) -> Result<(), String> {
    match documents::mismatches_in(client, views, false, in_transaction) {
        Ok(p) if p.is_empty() => Ok(()),
        Ok(p) => Err(format!("{when}:\n{}", p.join("\n"))),
        Err(e) => Err(format!("{when}: reading failed: {e}")),
    }
}

/// The single-session part of an epoch: transactions of random statements, each view
/// compared after each.
fn sequential(
    client: &mut Client,
    pauser: &mut Client,
    e: &mut Epoch,
    rng: &mut Rng,
) -> Result<(), String> {
    let views = e.views.clone();
    for t in 0..TRANSACTIONS {
        let statements: Vec<String> = (0..between(rng, 1, 3))
            .map(|_| e.schema.statement(rng, true))
            .collect();
        run(client, "BEGIN")?;
        let savepoint = chance(rng, 15);
        for (i, sql) in statements.iter().enumerate() {
            if savepoint && i == statements.len() - 1 {
                run(client, "SAVEPOINT s")?;
            }
            run(client, sql)?;
        }
        if chance(rng, 30) {
            check(
                client,
                &views,
                &format!(
                    "transaction {t}, inside, after:\n  {}",
                    statements.join(";\n  ")
                ),
                true,
            )?;
        }
        let mut kept = statements.clone();
        if savepoint {
            run(client, "ROLLBACK TO SAVEPOINT s")?;
            kept.pop();
            check(
                client,
                &views,
                &format!(
                    "transaction {t}, after ROLLBACK TO SAVEPOINT of:\n  {}",
                    statements.last().unwrap()
                ),
                true,
            )?;
        }
        if chance(rng, 10) {
            run(client, "ROLLBACK")?;
            kept.clear();
        } else {
            run(client, "COMMIT")?;
        }
        e.log.extend(kept.iter().cloned());
        check(
            client,
            &views,
            &format!("after transaction {t}:\n  {}", kept.join(";\n  ")),
            false,
        )?;
        if chance(rng, 8) {
            // a TRUNCATE waits for the async views' refreshes, which the held-off worker
            // stands for
            let held: Vec<&DocView> = views.iter().filter(|v| v.mode == "async").collect();
            for v in &held {
                documents::resume_worker(pauser, &v.name);
            }
            let table = gen::pick(rng, &e.schema.tables).clone();
            let sql = format!("TRUNCATE {}", table.name);
            documents::run_retrying(client, &sql);
            for v in &held {
                documents::pause_worker(pauser, &v.name);
            }
            e.log.push(sql.clone());
            check(client, &views, &format!("after {sql}"), false)?;
            let sql = e.schema.populate(rng, &table);
            run(client, &sql)?;
            e.log.push(sql);
            check(
                client,
                &views,
                &format!("after TRUNCATE {} and new rows", table.name),
                false,
            )?;
        }
        if chance(rng, 5) {
            let table = gen::pick(rng, &e.schema.tables).clone();
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN extra_{t} text DEFAULT 'x'; UPDATE {} SET a = a WHERE id IS NOT NULL",
                table.name, table.name
            );
            run(client, &sql)?;
            e.log.push(sql);
            check(
                client,
                &views,
                &format!("after a column added to {}", table.name),
                false,
            )?;
        }
        if chance(rng, 10) {
            run(
                pauser,
                "SELECT beacon.refresh_document_view(current_schema())",
            )?;
            e.log.push("-- refresh_document_view".into());
            check(client, &views, "after refresh_document_view", false)?;
        }
    }
    Ok(())
}

/// A round of concurrent writers (no key updates: they could collide on unique keys),
/// retried on 40001/40P01.
fn concurrent(db: &str, e: &mut Epoch, seed: u64) -> Result<u64, String> {
    let failures = Mutex::new(Vec::new());
    let retries = Mutex::new(0u64);
    let log = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for no in 0..3u64 {
            let (failures, retries, schema, log) = (&failures, &retries, &e.schema, &log);
            scope.spawn(move || {
                let mut client = documents::connect_to(server(), db);
                let mut rng = Rng::new(seed ^ (no + 7).wrapping_mul(0x9E37_79B9));
                let mut jitter = Rng::new(seed.wrapping_add(no));
                for _ in 0..8 {
                    let statements: Vec<String> = (0..between(&mut rng, 1, 3))
                        .map(|_| schema.statement(&mut rng, false))
                        .collect();
                    for attempt in 0.. {
                        let result = (|| -> Result<(), postgres::Error> {
                            client.batch_execute("BEGIN")?;
                            for sql in &statements {
                                client.batch_execute(sql)?;
                            }
                            client.batch_execute("COMMIT")
                        })();
                        match result {
                            Ok(()) => {
                                log.lock().unwrap().push(format!(
                                    "-- concurrent writer {no}, committed:\n{}",
                                    statements.join(";\n")
                                ));
                                break;
                            }
                            Err(err) => {
                                let _ = client.batch_execute("ROLLBACK");
                                if documents::retryable(&err) && attempt < RETRIES {
                                    *retries.lock().unwrap() += 1;
                                    let ceiling = 1u64 << attempt.min(7);
                                    thread::sleep(std::time::Duration::from_millis(
                                        1 + jitter.below(ceiling),
                                    ));
                                    continue;
                                }
                                failures.lock().unwrap().push(format!(
                                    "concurrent writer {no}: {}\n  {}",
                                    documents::describe(&err),
                                    statements.join(";\n  ")
                                ));
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    e.log.extend(log.into_inner().unwrap());
    let failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        Ok(retries.into_inner().unwrap())
    } else {
        Err(failures.join("\n"))
    }
}

fn epoch(db: &str, seed: u64, no: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed ^ no.wrapping_mul(0x9E37_79B9));
    let prefix = format!("e{no}");
    let schema = Schema::random(&mut rng, &prefix);
    let mut client = documents::connect_to(server(), db);
    let mut pauser = documents::connect_to(server(), db);
    let mut e = Epoch {
        schema,
        views: Vec::new(),
        log: Vec::new(),
    };
    run(&mut client, &e.schema.ddl())?;
    for t in e.schema.tables.clone() {
        let sql = e.schema.populate(&mut rng, &t);
        run(&mut client, &sql)?;
    }
    let mut failures = Vec::new();
    for i in 0..VIEWS {
        let mode = if i % 2 == 0 { "async" } else { "immediate" };
        let mut view = DocView::new(&format!("{prefix}_v{i}"), e.schema.spec(&mut rng), mode);
        eprintln!("{db} {} ({mode}): {}", view.name, view.spec);
        match documents::create(&mut client, &mut view) {
            Ok(()) => e.views.push(view),
            Err(err) => failures.push(format!(
                "creating {} ({mode}) was refused: {}\n  spec: {}",
                view.name,
                documents::describe(&err),
                view.spec
            )),
        }
    }
    let async_views: Vec<String> = e
        .views
        .iter()
        .filter(|v| v.mode == "async")
        .map(|v| v.name.clone())
        .collect();
    for v in &async_views {
        documents::pause_worker(&mut pauser, v);
    }
    let result = check(&mut client, &e.views, "after creation", false)
        .and_then(|()| sequential(&mut client, &mut pauser, &mut e, &mut rng));
    failures.extend(result.err());
    for v in &async_views {
        documents::resume_worker(&mut pauser, v);
    }
    if failures.is_empty() {
        match concurrent(db, &mut e, seed ^ no) {
            Ok(retries) => {
                e.log
                    .push(format!("-- a concurrent round ({retries} retries)"));
                failures.extend(
                    check(&mut client, &e.views, "after the concurrent round", false).err(),
                );
            }
            Err(f) => failures.push(f),
        }
    }
    if failures.is_empty() {
        let caught_up = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            documents::assert_worker_caught_up(&mut client, &e.views, "at the end of the epoch")
        }));
        if let Err(p) = caught_up {
            let text = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(text);
        }
    }
    if failures.is_empty() {
        // dropping every view leaves nothing behind
        for v in &e.views {
            run(
                &mut client,
                &format!(
                    "SELECT beacon.drop_document_view(current_schema(), '{}')",
                    v.name
                ),
            )?;
        }
        for v in &e.views {
            let left = documents::leftovers(&mut client, &v.name);
            if !left.is_empty() {
                failures.push(format!("after dropping {}: {left:?}", v.name));
            }
        }
        Ok(())
    } else {
        Err(format!("{}{}", e.context(seed, no), failures.join("\n\n")))
    }
}

#[test]
fn documents_fuzz_random_specs_and_writes() {
    let seed = seed();
    let started = Instant::now();
    let db = "documents_fuzz";
    documents::project_db(server(), db);
    let epochs = epochs(8);
    eprintln!("{db}: seed {seed} (BEACON_SEED={seed} replays it), {epochs} epochs");
    let mut failures = Vec::new();
    // BEACON_DOCUMENTS_FUZZ_ONLY=<epoch> replays one epoch alone
    let only: Option<u64> = std::env::var("BEACON_DOCUMENTS_FUZZ_ONLY")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    for no in (0..epochs).filter(|n| only.is_none_or(|o| o == *n)) {
        if let Err(f) = epoch(db, seed, no) {
            failures.push(f);
        }
    }
    eprintln!(
        "{db}: seed {seed}, {epochs} epochs in {:.0} s, {} failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    server().drop_db(db);
    assert!(
        failures.is_empty(),
        "seed {seed} (re-run with BEACON_SEED={seed}): {} of {epochs} epochs failed; the first:\n\n{}",
        failures.len(),
        failures[0]
    );
}
