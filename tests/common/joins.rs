//! Shared helpers of the join tests (tests/cq_joins.rs, tests/cq_joins_fuzz.rs): a project
//! database, the oracle, and sessions driven step by step from the test thread for
//! deterministic interleavings.
//!
//! The oracle compares each view with its defining query as multisets of row *texts*
//! (`row::text EXCEPT ALL`), so a numeric scale or a NULL-vs-empty difference counts, and
//! compares every view in ONE statement, so under READ COMMITTED all of them are read in
//! one snapshot together with the tables they are compared with.
#![allow(dead_code)]

use crate::common::{server, Server};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls, SimpleQueryMessage};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A continuous query: its name in the project schema, its SQL and its mode.
#[derive(Clone, Debug)]
pub struct View {
    pub name: String,
    pub query: String,
    pub mode: String,
}

impl View {
    pub fn new(name: &str, query: &str, mode: &str) -> View {
        View {
            name: name.into(),
            query: query.into(),
            mode: mode.into(),
        }
    }

    /// The same queries in each mode, named `<name>_<mode>`.
    pub fn in_modes(queries: &[(&str, &str)], modes: &[&str]) -> Vec<View> {
        let mut views = Vec::new();
        for mode in modes {
            for (name, query) in queries {
                views.push(View::new(&format!("{name}_{mode}"), query, mode));
            }
        }
        views
    }
}

/// SQLSTATE, message, detail and hint.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} {}{}{}",
            db.code().code(),
            db.message(),
            db.detail()
                .map(|d| format!(" DETAIL: {d}"))
                .unwrap_or_default(),
            db.hint().map(|h| format!(" HINT: {h}")).unwrap_or_default()
        ),
        None => e.to_string(),
    }
}

pub fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| "client".into())
}

/// Serialization failures and deadlocks: the contract's only retryable writer errors.
pub fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// What every session of a join test runs first: the project schema on the search path
/// (tables are created and named unqualified, as a project's user does), and deadlocks
/// (retryable between dimension writers) detected quickly.
pub fn settings(db: &str) -> String {
    format!(
        "SET search_path = {db}, public; SET TimeZone = 'UTC'; SET statement_timeout = '90s'; \
         SET deadlock_timeout = '100ms'"
    )
}

pub fn connect_to(server: &Server, db: &str) -> Client {
    let mut client = server.connect(db);
    client.batch_execute(&settings(db)).unwrap();
    client
}

/// A session on the shared server (the project is named after the database).
pub fn connect(db: &str) -> Client {
    connect_to(server(), db)
}

/// A new database with pg_beacon and a project of the database's name.
pub fn project_db(server: &Server, db: &str) -> Client {
    server.fresh_db(db);
    let mut client = connect_to(server, db);
    client
        .execute("SELECT beacon.create_project($1)", &[&db])
        .unwrap();
    client
}

/// Creates the continuous query. With `BEACON_JOINS_PLAIN_VIEWS` set, a plain PostgreSQL
/// view instead: trivially exact, it checks the harness itself (oracle, generators,
/// schedules, retries) without the feature.
pub fn create(client: &mut Client, view: &View) -> Result<(), postgres::Error> {
    if std::env::var_os("BEACON_JOINS_PLAIN_VIEWS").is_some() {
        return client.batch_execute(&format!("CREATE VIEW {} AS {}", view.name, view.query));
    }
    client
        .execute(
            "SELECT beacon.create_continuous_query(current_schema(), $1, $2, $3)",
            &[&view.name, &view.query, &view.mode],
        )
        .map(|_| ())
}

/// Creates every view; a refusal fails the test naming the query.
pub fn create_all(client: &mut Client, views: &[View]) {
    for view in views {
        create(client, view).unwrap_or_else(|e| {
            panic!(
                "creating {} ({}) failed: {}\nquery: {}",
                view.name,
                view.mode,
                describe(&e),
                view.query
            )
        });
        if let Err(e) = check_types(client, view) {
            panic!("{} ({}): {e}\nquery: {}", view.name, view.mode, view.query);
        }
    }
}

/// One statement comparing every view with its query; its column i is NULL when view i
/// is exact, else the rows in one and not the other (at most 10 each way).
pub fn diff_sql(views: &[View]) -> String {
    let columns: Vec<String> = views
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // each side read once (a CTE referenced twice is materialized)
            format!(
                "(WITH beacon_vr AS (SELECT beacon_v::text AS r FROM {name} beacon_v), \
                      beacon_qr AS (SELECT beacon_q::text AS r FROM ({query}) beacon_q) \
                 SELECT pg_catalog.string_agg(d.side || d.r, E'\\n') FROM (\
                   (SELECT '  view  has ' AS side, x.r FROM (TABLE beacon_vr EXCEPT ALL TABLE beacon_qr) x LIMIT 10) \
                   UNION ALL \
                   (SELECT '  query has ', y.r FROM (TABLE beacon_qr EXCEPT ALL TABLE beacon_vr) y LIMIT 10)) d) AS c{i}",
                name = v.name,
                query = v.query
            )
        })
        .collect();
    format!("SELECT {}", columns.join(", "))
}

/// Reads the differing views out of `diff_sql`'s row.
pub fn differences(views: &[View], row: &[Option<String>]) -> Vec<String> {
    views
        .iter()
        .zip(row)
        .filter_map(|(v, cell)| {
            cell.as_ref().map(|rows| {
                format!(
                    "{} ({}) differs from its query\n  query: {}\n{rows}",
                    v.name, v.mode, v.query
                )
            })
        })
        .collect()
}

/// The views that differ from their queries, read in one snapshot; Err if the read failed.
pub fn mismatches(client: &mut Client, views: &[View]) -> Result<Vec<String>, String> {
    if views.is_empty() {
        return Ok(vec![]);
    }
    let rows = simple_rows(client, &diff_sql(views)).map_err(|e| e.text)?;
    Ok(differences(views, &rows[0]))
}

pub fn assert_exact(client: &mut Client, views: &[View], when: &str) {
    match mismatches(client, views) {
        Ok(wrong) if wrong.is_empty() => {}
        Ok(wrong) => panic!("{when}:\n{}", wrong.join("\n")),
        Err(e) => panic!("{when}: reading the views failed: {e}"),
    }
}

/// Exact at this moment, and again after `beacon.compact()` merged the async deltas.
pub fn assert_exact_and_compacted(client: &mut Client, views: &[View], when: &str) {
    assert_exact(client, views, when);
    client.batch_execute("SELECT beacon.compact()").unwrap();
    assert_exact(client, views, &format!("{when}, after beacon.compact()"));
}

/// name and format_type of every column of a relation.
fn columns_of(client: &mut Client, relation: &str) -> Result<Vec<(String, String)>, String> {
    client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
               FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&relation],
        )
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .map_err(|e| describe(&e))
}

/// The view has the query's column names and types.
pub fn check_types(client: &mut Client, view: &View) -> Result<(), String> {
    client
        .batch_execute(&format!(
            "SET client_min_messages = warning; DROP VIEW IF EXISTS pg_temp.joins_oracle; \
             RESET client_min_messages; CREATE TEMP VIEW joins_oracle AS {}",
            view.query
        ))
        .map_err(|e| format!("the query itself fails: {}", describe(&e)))?;
    let expected = columns_of(client, "pg_temp.joins_oracle")?;
    let got = columns_of(client, &view.name)?;
    client
        .batch_execute("DROP VIEW pg_temp.joins_oracle")
        .map_err(|e| describe(&e))?;
    if expected != got {
        return Err(format!(
            "columns differ:\n  view  {got:?}\n  query {expected:?}"
        ));
    }
    Ok(())
}

/// A session that keeps the notices it receives (severity, message, detail, hint).
pub fn noticing(server: &Server, db: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config: Config = server.dsn(db, "postgres").parse().unwrap();
    config.notice_callback(move |n| {
        sink.lock().unwrap().push(format!(
            "{}: {} {} {}",
            n.severity(),
            n.message(),
            n.detail().unwrap_or(""),
            n.hint().unwrap_or("")
        ))
    });
    let mut client = config.connect(NoTls).unwrap();
    client.batch_execute(&settings(db)).unwrap();
    (client, notices)
}

// ---------------------------------------------------------------------------------------
// Sessions driven step by step

/// An error as a session reports it.
#[derive(Clone, Debug)]
pub struct DbError {
    pub code: String,
    pub text: String,
}

impl DbError {
    fn from(e: &postgres::Error) -> DbError {
        DbError {
            code: sqlstate(e),
            text: describe(e),
        }
    }
}

pub type Rows = Vec<Vec<Option<String>>>;

/// The rows of a statement run with the simple protocol (every value as text).
pub fn simple_rows(client: &mut Client, sql: &str) -> Result<Rows, DbError> {
    let messages = client.simple_query(sql).map_err(|e| DbError::from(&e))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

pub enum Step {
    Done(Result<Rows, DbError>),
    /// The statement is waiting for a lock (`wait_event_type = 'Lock'`); `finish` collects it.
    Waiting,
}

/// A connection run by its own thread, so that one of its statements may wait for a lock
/// while the test thread goes on with the other session.
pub struct Session {
    pub name: String,
    pub pid: i32,
    to: Sender<String>,
    from: Receiver<Result<Rows, DbError>>,
    busy: bool,
}

const STEP_DEADLINE: Duration = Duration::from_secs(30);

impl Session {
    pub fn open(server: &Server, db: &str, name: &str) -> Session {
        let mut client = connect_to(server, db);
        let pid: i32 = client
            .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let (to, inbox) = channel::<String>();
        let (outbox, from) = channel();
        thread::spawn(move || {
            for sql in inbox {
                if outbox.send(simple_rows(&mut client, &sql)).is_err() {
                    break;
                }
            }
        });
        Session {
            name: name.into(),
            pid,
            to,
            from,
            busy: false,
        }
    }

    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Sends a statement and returns once it completed or is seen waiting for a lock.
    pub fn step(&mut self, sql: &str, watcher: &mut Client) -> Step {
        assert!(
            !self.busy,
            "{}: a step while the last one is unfinished",
            self.name
        );
        self.to.send(sql.to_string()).expect("session thread");
        self.busy = true;
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            match self.from.recv_timeout(Duration::from_millis(2)) {
                Ok(result) => {
                    self.busy = false;
                    return Step::Done(result);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{}: session thread died", self.name)
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let waiting: bool = watcher
                .query_one(
                    // waiting for another session of the test; not for autovacuum
                    // truncating the table, nor a relation extension lock (no blocker)
                    "SELECT coalesce(wait_event_type = 'Lock', false)
                            AND EXISTS (SELECT 1 FROM pg_catalog.unnest(pg_catalog.pg_blocking_pids($1)) b
                                          JOIN pg_catalog.pg_stat_activity a ON a.pid = b
                                         WHERE a.backend_type = 'client backend')
                       FROM pg_catalog.pg_stat_activity WHERE pid = $1",
                    &[&self.pid],
                )
                .map(|r| r.get(0))
                .unwrap_or(false);
            if waiting {
                return Step::Waiting;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: `{sql}` neither completed nor waited for a lock within {STEP_DEADLINE:?}",
                    self.name
                );
            }
        }
    }

    /// The result of the statement under way (Err with code "timeout" after 30 s).
    pub fn finish(&mut self) -> Result<Rows, DbError> {
        assert!(self.busy, "{}: nothing to finish", self.name);
        match self.from.recv_timeout(STEP_DEADLINE) {
            Ok(result) => {
                self.busy = false;
                result
            }
            Err(_) => Err(DbError {
                code: "timeout".into(),
                text: format!("{}: no result within {STEP_DEADLINE:?}", self.name),
            }),
        }
    }

    /// A statement run to completion.
    pub fn run(&mut self, sql: &str) -> Result<Rows, DbError> {
        assert!(
            !self.busy,
            "{}: a statement while the last one is unfinished",
            self.name
        );
        self.to.send(sql.to_string()).expect("session thread");
        self.busy = true;
        self.finish()
    }
}
