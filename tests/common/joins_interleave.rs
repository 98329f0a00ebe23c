//! Deterministic interleavings of two writers over a star + snowflake schema, every step
//! ordered by the test thread: `facts` (the root) → `products` → `brands` (snowflake) and
//! `facts` → `customers` (star). A statement that waits for a lock is left waiting (seen
//! in pg_stat_activity) and the other session goes on, so both "X waits for Y's commit"
//! orders happen for real.
//!
//! Each case is an ordered pair of operations; each runs in three schedules:
//! - `interleaved`: A's statement, B's statement, A commits, B commits;
//! - `second commits first`: A's statement, B's statement, B commits (when B did not wait), A commits;
//! - `stale snapshot` (REPEATABLE READ only): both take their snapshots, A writes and
//!   commits, then B writes from its older snapshot and commits.
//!
//! Along the way the views are compared with their queries by a third session and by each
//! writer inside its own open transaction (its uncommitted writes included); at the end
//! once more, and after `beacon.compact()`. A failed transaction is retried only for the
//! errors the contract allows: 40001 under REPEATABLE READ, 40P01 between two dimension
//! writers. Fact writers must never wait for each other.
#![allow(dead_code)]

use crate::common::server;
use crate::joins::{self, DbError, Session, Step, View};
use crate::joins_cases::{baseline, reset_sql, QUERIES, SCHEMA};
use postgres::Client;

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Side {
    Fact,
    Dimension,
}

/// An operation: `{id}`, `{fact}` and `{fact2}` become rows of the session's own (A's
/// facts 101, 1 and 3; B's 102, 7 and 8: the same join keys, different rows).
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub label: &'static str,
    pub table: &'static str,
    pub sql: &'static str,
}

const fn op(label: &'static str, table: &'static str, sql: &'static str) -> Op {
    Op { label, table, sql }
}

pub const FACT_OPS: [Op; 7] = [
    op(
        "fact insert",
        "facts",
        "INSERT INTO facts VALUES ({id}, 1, 1, 5)",
    ),
    op(
        "fact insert without dimension rows",
        "facts",
        "INSERT INTO facts VALUES ({id}, 4, 3, 7)",
    ),
    op(
        "fact insert under a missing brand",
        "facts",
        "INSERT INTO facts VALUES ({id}, 3, 1, 11)",
    ),
    op(
        "fact measure update",
        "facts",
        "UPDATE facts SET qty = qty + 100 WHERE id = {fact}",
    ),
    op(
        "fact join-key update away",
        "facts",
        "UPDATE facts SET product = 2, customer = 2 WHERE id = {fact}",
    ),
    op(
        "fact join-key update onto the row",
        "facts",
        "UPDATE facts SET product = 1, customer = 1 WHERE id = {fact2}",
    ),
    op(
        "fact delete",
        "facts",
        "DELETE FROM facts WHERE id = {fact}",
    ),
];

pub const PRODUCT_OPS: [Op; 6] = [
    op(
        "product attribute update",
        "products",
        "UPDATE products SET category = 'c9' WHERE id = 1",
    ),
    op(
        "product key update",
        "products",
        "UPDATE products SET id = 9 WHERE id = 1",
    ),
    op(
        "product key update onto a missing key",
        "products",
        "UPDATE products SET id = 4 WHERE id = 2",
    ),
    op(
        "product insert of a missing row",
        "products",
        "INSERT INTO products VALUES (4, 'c4', 1)",
    ),
    op(
        "product delete",
        "products",
        "DELETE FROM products WHERE id = 1",
    ),
    op(
        "product brand (sub-dimension key) update",
        "products",
        "UPDATE products SET brand = 2 WHERE id = 1",
    ),
];

pub const CUSTOMER_OPS: [Op; 4] = [
    op(
        "customer attribute update",
        "customers",
        "UPDATE customers SET segment = 'corp' WHERE id = 1",
    ),
    op(
        "customer key update",
        "customers",
        "UPDATE customers SET id = 9 WHERE id = 1",
    ),
    op(
        "customer insert of a missing row",
        "customers",
        "INSERT INTO customers VALUES (3, 'new')",
    ),
    op(
        "customer delete",
        "customers",
        "DELETE FROM customers WHERE id = 1",
    ),
];

pub const BRAND_OPS: [Op; 4] = [
    op(
        "brand attribute update",
        "brands",
        "UPDATE brands SET region = 'west' WHERE id = 1",
    ),
    op(
        "brand key update",
        "brands",
        "UPDATE brands SET id = 9 WHERE id = 1",
    ),
    op(
        "brand insert of a missing row",
        "brands",
        "INSERT INTO brands VALUES (4, 'mid')",
    ),
    op("brand delete", "brands", "DELETE FROM brands WHERE id = 1"),
];

impl Op {
    fn side(&self) -> Side {
        if self.table == "facts" {
            Side::Fact
        } else {
            Side::Dimension
        }
    }

    fn sql_for(&self, role: usize) -> String {
        self.sql
            .replace("{id}", ["101", "102"][role])
            .replace("{fact}", ["1", "7"][role])
            .replace("{fact2}", ["3", "8"][role])
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Schedule {
    Interleaved,
    SecondCommitsFirst,
    StaleSnapshot,
}

pub enum Pairs {
    FactFact,
    FactDimension,
    DimensionDimension,
}

/// The ordered pairs of a class: both orders of every unordered pair.
pub fn pairs(class: Pairs) -> Vec<(Op, Op)> {
    let dims: Vec<Op> = PRODUCT_OPS
        .iter()
        .chain(&CUSTOMER_OPS)
        .chain(&BRAND_OPS)
        .copied()
        .collect();
    let mut out = Vec::new();
    match class {
        // the same rows never meet: one order is enough
        Pairs::FactFact => {
            for (i, a) in FACT_OPS.iter().enumerate() {
                for b in &FACT_OPS[i..] {
                    out.push((*a, *b));
                }
            }
        }
        Pairs::FactDimension => {
            for f in &FACT_OPS {
                for d in &dims {
                    out.push((*f, *d));
                    out.push((*d, *f));
                }
            }
        }
        // two dimensions of the star sharing the fact; dimension and sub-dimension
        Pairs::DimensionDimension => {
            for p in &PRODUCT_OPS {
                for other in CUSTOMER_OPS.iter().chain(&BRAND_OPS) {
                    out.push((*p, *other));
                    out.push((*other, *p));
                }
            }
        }
    }
    out
}

/// One writer of a case.
struct Writer {
    session: Session,
    sql: String,
    isolation: &'static str,
    /// Both writers write dimensions: a deadlock (40P01) is allowed.
    dims: bool,
    /// Why its transaction failed (a retryable error): it is retried at the end.
    failed: Option<DbError>,
    waited: bool,
}

pub struct Bench {
    db: String,
    isolation: &'static str,
    views: Vec<View>,
    observer: Client,
    sessions: [Option<Session>; 2],
}

impl Bench {
    /// A database with the schema and the views in `mode`, two writer sessions and an
    /// observer (which also watches pg_stat_activity).
    pub fn new(db: &str, mode: &str, isolation: &'static str) -> Bench {
        let mut observer = joins::project_db(server(), db);
        observer.batch_execute(SCHEMA).unwrap();
        observer.batch_execute(&baseline()).unwrap();
        let views = View::in_modes(&QUERIES, &[mode]);
        joins::create_all(&mut observer, &views);
        observer.batch_execute("SET lock_timeout = '10s'").unwrap();
        Bench {
            db: db.into(),
            isolation,
            sessions: [
                Some(Session::open(server(), db, "A")),
                Some(Session::open(server(), db, "B")),
            ],
            views,
            observer,
        }
    }

    fn check_observer(&mut self, when: &str) -> Result<(), String> {
        match joins::mismatches(&mut self.observer, &self.views) {
            Ok(wrong) if wrong.is_empty() => Ok(()),
            Ok(wrong) => Err(format!(
                "{when}, read by a third session:\n{}",
                wrong.join("\n")
            )),
            Err(e) => Err(format!("{when}: a third session's read failed: {e}")),
        }
    }

    fn reset(&mut self) -> Result<(), String> {
        self.observer
            .batch_execute(&reset_sql())
            .map_err(|e| format!("reset failed: {}", joins::describe(&e)))?;
        self.check_observer("after resetting the tables (DELETE + INSERT of the baseline)")
    }

    /// Runs one case; Ok with a note on what happened (who waited, what was retried).
    pub fn run(&mut self, first: Op, second: Op, schedule: Schedule) -> Result<String, String> {
        self.reset()?;
        let sessions = [self.sessions[0].take(), self.sessions[1].take()];
        let [Some(a), Some(b)] = sessions else {
            panic!("sessions lost")
        };
        let dims = first.side() == Side::Dimension && second.side() == Side::Dimension;
        let mut w = [
            Writer {
                session: a,
                sql: first.sql_for(0),
                isolation: self.isolation,
                dims,
                failed: None,
                waited: false,
            },
            Writer {
                session: b,
                sql: second.sql_for(1),
                isolation: self.isolation,
                dims,
                failed: None,
                waited: false,
            },
        ];
        let result = self.schedule(&mut w, schedule);
        let result = result.and_then(|()| self.retry(&mut w));
        let result = result.and_then(|()| {
            let facts_only = first.side() == Side::Fact && second.side() == Side::Fact;
            if facts_only && (w[0].waited || w[1].waited) {
                return Err(
                    "a fact writer waited for the other fact writer (they touch different rows)"
                        .into(),
                );
            }
            self.check_observer("after both commits")?;
            self.observer
                .batch_execute("SELECT beacon.compact()")
                .map_err(|e| joins::describe(&e))?;
            self.check_observer("after both commits and beacon.compact()")?;
            let mut note = Vec::new();
            for (i, writer) in w.iter().enumerate() {
                let name = ["A", "B"][i];
                if writer.waited {
                    note.push(format!("{name} waited"));
                }
                if let Some(e) = &writer.failed {
                    note.push(format!("{name} retried after {}", e.code));
                }
            }
            Ok(note.join(", "))
        });
        let [a, b] = w;
        let a = self.cleanup(a.session);
        let b = self.cleanup(b.session);
        self.sessions = [Some(a), Some(b)];
        result.map_err(|e| {
            format!(
                "A: {} [{}]\nB: {} [{}]\nschedule {schedule:?}, {}: {e}",
                first.label,
                first.sql_for(0),
                second.label,
                second.sql_for(1),
                self.isolation
            )
        })
    }

    fn schedule(&mut self, w: &mut [Writer; 2], schedule: Schedule) -> Result<(), String> {
        let begin = format!("BEGIN ISOLATION LEVEL {}", self.isolation);
        for writer in w.iter_mut() {
            // the snapshots are taken here, before either writes
            run(writer, &begin)?;
            run(writer, "SELECT 1")?;
        }
        let sql = w[0].sql.clone();
        self.exec(&mut w[0], &sql)?;
        if w[0].session.busy() {
            return Err("A's statement waited for a lock while B had not written".into());
        }
        self.check_observer("A wrote, not committed")?;
        self.check_own(&mut w[0], "A wrote, not committed; A's own read")?;
        if schedule == Schedule::StaleSnapshot {
            self.exec(&mut w[0], "COMMIT")?;
            settle(&mut w[0])?;
            self.check_observer("A committed, B holds an older snapshot")?;
        }
        let sql = w[1].sql.clone();
        self.exec(&mut w[1], &sql)?;
        if !w[1].session.busy() {
            self.check_observer("both wrote, neither committed")?;
            self.check_own(&mut w[1], "both wrote; B's own read")?;
        }
        match schedule {
            Schedule::StaleSnapshot => {
                settle(&mut w[1])?;
                self.exec(&mut w[1], "COMMIT")?;
                settle(&mut w[1])?;
            }
            Schedule::SecondCommitsFirst if !w[1].session.busy() => {
                self.exec(&mut w[1], "COMMIT")?;
                if !w[1].session.busy() {
                    self.check_observer("B committed, A not yet")?;
                    self.check_own(&mut w[0], "B committed; A's own read")?;
                }
                self.exec(&mut w[0], "COMMIT")?;
                settle(&mut w[1])?;
                settle(&mut w[0])?;
            }
            _ => {
                self.exec(&mut w[0], "COMMIT")?;
                settle(&mut w[1])?;
                if !w[0].session.busy() {
                    self.check_observer("A committed, B not yet")?;
                    self.check_own(&mut w[1], "A committed; B's own read")?;
                }
                self.exec(&mut w[1], "COMMIT")?;
                settle(&mut w[0])?;
                settle(&mut w[1])?;
            }
        }
        Ok(())
    }

    /// Starts a statement of a writer whose transaction is alive; a waiting statement is
    /// left to `settle`.
    fn exec(&mut self, writer: &mut Writer, sql: &str) -> Result<(), String> {
        if writer.failed.is_some() {
            return Ok(());
        }
        settle(writer)?;
        if writer.failed.is_some() {
            return Ok(());
        }
        match writer.session.step(sql, &mut self.observer) {
            Step::Waiting => {
                writer.waited = true;
                Ok(())
            }
            Step::Done(result) => outcome(writer, sql, result),
        }
    }

    /// The writer's own read inside its transaction.
    fn check_own(&mut self, writer: &mut Writer, when: &str) -> Result<(), String> {
        if writer.failed.is_some() || writer.session.busy() {
            return Ok(());
        }
        match writer.session.run(&joins::diff_sql(&self.views)) {
            Ok(rows) => {
                let wrong = joins::differences(&self.views, &rows[0]);
                if wrong.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{when}:\n{}", wrong.join("\n")))
                }
            }
            Err(e) => Err(format!("{when}: the read failed: {}", e.text)),
        }
    }

    /// Re-runs the failed transactions alone until they commit.
    fn retry(&mut self, w: &mut [Writer; 2]) -> Result<(), String> {
        for writer in w.iter_mut() {
            let Some(why) = writer.failed.clone() else {
                continue;
            };
            let mut attempts = 0;
            loop {
                attempts += 1;
                let sql = format!(
                    "BEGIN ISOLATION LEVEL {}; {}; COMMIT",
                    self.isolation, writer.sql
                );
                match writer.session.run(&sql) {
                    Ok(_) => break,
                    Err(e) if allowed(&e, writer) && attempts < 10 => {
                        let _ = writer.session.run("ROLLBACK");
                    }
                    Err(e) => {
                        return Err(format!(
                            "{}: retrying after {} failed: {}",
                            writer.session.name, why.text, e.text
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Rolls back whatever is left; a session stuck past the deadline is terminated and
    /// replaced so that the next case starts clean.
    fn cleanup(&mut self, mut session: Session) -> Session {
        if session.busy() && session.finish().is_err() {
            let _ = self.observer.execute(
                "SELECT pg_catalog.pg_terminate_backend($1)",
                &[&session.pid],
            );
            return Session::open(server(), &self.db, &session.name);
        }
        if session.run("ROLLBACK").is_err() {
            return Session::open(server(), &self.db, &session.name);
        }
        session
    }
}

fn allowed(e: &DbError, writer: &Writer) -> bool {
    (e.code == "40001" && writer.isolation != "READ COMMITTED")
        || (e.code == "40P01" && writer.dims)
}

/// Records a statement's result: a retryable error fails the transaction (rolled back,
/// retried later), any other error fails the case.
fn outcome(
    writer: &mut Writer,
    sql: &str,
    result: Result<joins::Rows, DbError>,
) -> Result<(), String> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if allowed(&e, writer) => {
            writer.failed = Some(e);
            let _ = writer.session.run("ROLLBACK");
            Ok(())
        }
        Err(e) => Err(format!(
            "{}: `{sql}` failed: {}",
            writer.session.name, e.text
        )),
    }
}

fn run(writer: &mut Writer, sql: &str) -> Result<(), String> {
    writer
        .session
        .run(sql)
        .map(|_| ())
        .map_err(|e| format!("{}: `{sql}` failed: {}", writer.session.name, e.text))
}

/// Waits for the writer's statement under way, if any.
fn settle(writer: &mut Writer) -> Result<(), String> {
    if !writer.session.busy() {
        return Ok(());
    }
    let result = writer.session.finish();
    if let Err(e) = &result {
        if e.code == "timeout" {
            return Err(format!(
                "{}: a statement waited for a lock past the deadline (the other session had finished)",
                writer.session.name
            ));
        }
    }
    let sql = writer.sql.clone();
    outcome(writer, &sql, result)
}

/// Runs every pair in every schedule of the isolation level; fails listing every case
/// that went wrong.
pub fn run_class(mode: &str, isolation: &'static str, class: Pairs) {
    let db = format!(
        "joins_il_{}_{}_{mode}",
        match class {
            Pairs::FactFact => "ff",
            Pairs::FactDimension => "fd",
            Pairs::DimensionDimension => "dd",
        },
        if isolation == "READ COMMITTED" {
            "rc"
        } else {
            "rr"
        }
    );
    let db = db.as_str();
    let mut bench = Bench::new(db, mode, isolation);
    let schedules: &[Schedule] = if isolation == "READ COMMITTED" {
        &[Schedule::Interleaved, Schedule::SecondCommitsFirst]
    } else {
        &[
            Schedule::Interleaved,
            Schedule::SecondCommitsFirst,
            Schedule::StaleSnapshot,
        ]
    };
    let mut failures = Vec::new();
    let mut notes = std::collections::BTreeMap::<String, usize>::new();
    let mut cases = 0;
    for (first, second) in pairs(class) {
        let mut second_waited = false;
        for schedule in schedules {
            // when B waits for A, B cannot commit first: the same schedule as interleaved
            if *schedule == Schedule::SecondCommitsFirst && second_waited {
                continue;
            }
            cases += 1;
            match bench.run(first, second, *schedule) {
                Ok(note) => {
                    second_waited |=
                        *schedule == Schedule::Interleaved && note.contains("B waited");
                    *notes.entry(note).or_default() += 1
                }
                Err(e) => failures.push(e),
            }
        }
    }
    eprintln!("{db}: {cases} cases ({mode}, {isolation}); outcomes: {notes:?}");
    server().drop_db(db);
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed ({mode}, {isolation}):\n\n{}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
