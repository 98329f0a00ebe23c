//! Shared helpers of the document view tests (tests/documents.rs, tests/documents_fuzz.rs):
//! creating views, and the oracle.
//!
//! The oracle builds every document in Rust from the rows of the tables, independently of
//! the SQL the extension generates: each table is read as `to_jsonb(row)`; only the order
//! of a lookup's rows is left to PostgreSQL (a `row_number()` over `order_by`, then the
//! whole row, so that text collations and jsonb ordering are PostgreSQL's own) and the
//! root's `where` (evaluated as a boolean column). Matching rows (equal, non-NULL
//! on-columns), embedding, renaming and replacing are done here. The view and the oracle
//! are read in ONE snapshot (a REPEATABLE READ transaction, or the caller's own open
//! transaction), then compared as sets of (key, document): missing, extra, duplicated and
//! different documents are listed readably.
#![allow(dead_code)]

use crate::common::Server;
use postgres::error::SqlState;
use postgres::Client;
use serde_json::Value;
use std::collections::HashMap;

#[path = "documents_oracle.rs"]
mod oracle;
#[allow(unused_imports)]
pub use oracle::{compare_docs, jsonb_text, Docs};
use oracle::{expected, quote, read_docs, Cache};

/// A document view of a test: its name in the project schema, its spec and mode, and the
/// columns its tables had when it was created (the default fields are those).
#[derive(Clone, Debug)]
pub struct DocView {
    pub name: String,
    pub spec: Value,
    pub mode: String,
    /// table → its columns in attnum order, read when the view was created
    pub columns: HashMap<String, Vec<String>>,
}

impl DocView {
    pub fn new(name: &str, spec: Value, mode: &str) -> DocView {
        DocView {
            name: name.into(),
            spec,
            mode: mode.into(),
            columns: HashMap::new(),
        }
    }

    pub fn key(&self) -> Vec<String> {
        strings(&self.spec["key"])
    }

    pub fn root(&self) -> String {
        self.spec["from"].as_str().unwrap_or_default().to_string()
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

/// Serialization failures and deadlocks: the only writer errors a client retries.
pub fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// What every session of a document test runs first: the project schema first on the
/// search path (tables are named unqualified), UTC (documents render timestamptz in UTC,
/// and so does the oracle's to_jsonb), and deadlocks detected quickly.
pub fn settings(db: &str) -> String {
    format!(
        "SET search_path = {db}, public; SET TimeZone = 'UTC'; SET extra_float_digits = 1; \
         SET statement_timeout = '120s'; SET deadlock_timeout = '100ms'"
    )
}

pub fn connect_to(server: &Server, db: &str) -> Client {
    let mut client = server.connect(db);
    client.batch_execute(&settings(db)).unwrap();
    client
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

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The columns of a table of the current schema, in attnum order.
pub fn table_columns(client: &mut Client, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT a.attname::text FROM pg_catalog.pg_attribute a
              WHERE a.attrelid = pg_catalog.quote_ident($1)::regclass AND a.attnum > 0
                AND NOT a.attisdropped ORDER BY a.attnum",
            &[&table],
        )
        .unwrap_or_else(|e| panic!("columns of {table}: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Creates the view (in the schema of the session's search path, which is the project's)
/// and records its tables' columns for the oracle.
pub fn create(client: &mut Client, view: &mut DocView) -> Result<(), postgres::Error> {
    client.execute(
        "SELECT beacon.create_document_view(current_schema(), $1, $2, $3)",
        &[&view.name, &view.spec, &view.mode],
    )?;
    let mut tables = vec![view.root()];
    for l in view.spec["lookups"].as_array().into_iter().flatten() {
        tables.push(l["from"].as_str().unwrap_or_default().to_string());
    }
    for t in tables {
        let columns = table_columns(client, &t);
        view.columns.insert(t, columns);
    }
    Ok(())
}

/// Creates every view; a refusal fails the test naming the view and its spec.
pub fn create_all(client: &mut Client, views: &mut [DocView]) {
    for view in views.iter_mut() {
        create(client, view).unwrap_or_else(|e| {
            panic!(
                "creating {} ({}) failed: {}\nspec: {}",
                view.name,
                view.mode,
                describe(&e),
                view.spec
            )
        });
    }
}

/// Compares each view (and, with `stored`, its hidden documents table as well) with the
/// oracle, in the current transaction (the caller's open one) or, outside one, in a
/// REPEATABLE READ transaction of its own. Err on a read failure.
pub fn mismatches_in(
    client: &mut Client,
    views: &[DocView],
    stored: bool,
    in_transaction: bool,
) -> Result<Vec<String>, String> {
    if !in_transaction {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(|e| describe(&e))?;
    }
    let result = (|| {
        let mut problems = Vec::new();
        let mut cache = Cache::new();
        for view in views {
            let want = expected(client, view, &mut cache)?;
            let (got, duplicated) = read_docs(client, view, &quote(&view.name))?;
            let what = format!("view {} ({})", view.name, view.mode);
            problems.extend(compare_docs(&what, &got, &duplicated, &want));
            if stored {
                let (got, duplicated) =
                    read_docs(client, view, &quote(&format!("_dv_{}", view.name)))?;
                let what = format!("stored documents of {} ({})", view.name, view.mode);
                problems.extend(compare_docs(&what, &got, &duplicated, &want));
            }
        }
        Ok(problems)
    })();
    if !in_transaction {
        let _ = client.batch_execute("COMMIT");
    }
    result
}

/// Every view equals its oracle now (in one snapshot).
pub fn assert_exact(client: &mut Client, views: &[DocView], when: &str) {
    match mismatches_in(client, views, false, false) {
        Ok(p) if p.is_empty() => {}
        Ok(p) => panic!("{when}:\n{}", p.join("\n")),
        Err(e) => panic!("{when}: reading failed: {e}"),
    }
}

/// Inside the caller's open transaction (its own uncommitted writes included).
pub fn assert_exact_in_transaction(client: &mut Client, views: &[DocView], when: &str) {
    match mismatches_in(client, views, false, true) {
        Ok(p) if p.is_empty() => {}
        Ok(p) => panic!("{when} (inside the open transaction):\n{}", p.join("\n")),
        Err(e) => panic!("{when}: reading failed: {e}"),
    }
}

/// The oracle's documents of one view, in the current snapshot.
pub fn oracle(client: &mut Client, view: &DocView) -> Docs {
    expected(client, view, &mut Cache::new()).unwrap_or_else(|e| panic!("{e}"))
}

/// The documents the view shows now.
pub fn view_docs(client: &mut Client, view: &DocView) -> Docs {
    read_docs(client, view, &quote(&view.name))
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// The pending entries of one view, from the status view.
pub fn pending(client: &mut Client, view: &str) -> i64 {
    client
        .query_one(
            "SELECT pending FROM beacon.document_views WHERE project = current_schema() AND name = $1",
            &[&view],
        )
        .unwrap_or_else(|e| panic!("status of {view}: {}", describe(&e)))
        .get(0)
}

/// Waits (30 s) until the worker applied every pending change of the async views, then
/// checks that both the views and their stored documents equal the oracle.
pub fn assert_worker_caught_up(client: &mut Client, views: &[DocView], when: &str) {
    let names: Vec<String> = views
        .iter()
        .filter(|v| v.mode == "async")
        .map(|v| v.name.clone())
        .collect();
    crate::common::eventually(
        &format!("{when}: the worker to apply every pending change of {names:?}"),
        || names.iter().all(|n| pending(client, n) == 0),
    );
    match mismatches_in(client, views, true, false) {
        Ok(p) if p.is_empty() => {}
        Ok(p) => panic!(
            "{when}, after the worker applied everything:\n{}",
            p.join("\n")
        ),
        Err(e) => panic!("{when}: reading failed: {e}"),
    }
    for v in views {
        let row = client
            .query_one(
                "SELECT last_error FROM beacon.document_views WHERE project = current_schema() AND name = $1",
                &[&v.name],
            )
            .unwrap();
        let error: Option<String> = row.get(0);
        assert!(
            error.is_none(),
            "{when}: {} has last_error {error:?}",
            v.name
        );
    }
}

/// The worker's refresh of one view takes this advisory lock (src/documents/mod.rs,
/// `refresh_one`); holding it in a session of the test keeps the worker from applying that
/// view's pending changes, so that the reads before a refresh are reads of pending
/// changes. Released by `resume_worker` (or the end of the session).
pub fn pause_worker(client: &mut Client, view: &str) {
    client
        .execute(
            "SELECT pg_catalog.pg_advisory_lock(pg_catalog.hashtextextended(\
               'beacon.document_view ' || current_schema() || '.' || $1, 0))",
            &[&view],
        )
        .unwrap();
}

pub fn resume_worker(client: &mut Client, view: &str) {
    client
        .execute(
            "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended(\
               'beacon.document_view ' || current_schema() || '.' || $1, 0))",
            &[&view],
        )
        .unwrap();
}

/// Relations, functions and triggers of the project schema whose names belong to a
/// document view `name` (none after a failed create or a drop), and its catalog rows.
pub fn leftovers(client: &mut Client, name: &str) -> Vec<String> {
    let pattern = format!("\\_dv\\_{}%", name.replace('_', "\\_"));
    let trigger = format!("\\_beacon\\_dv\\_{}%", name.replace('_', "\\_"));
    let mut out: Vec<String> = client
        .query(
            "SELECT 'relation ' || c.relname FROM pg_catalog.pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace
                AND (c.relname LIKE $1 OR c.relname = $2)
             UNION ALL
             SELECT 'function ' || p.proname FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE $1
             UNION ALL
             SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass::text
               FROM pg_catalog.pg_trigger t WHERE t.tgname LIKE $3
             UNION ALL
             SELECT 'catalog row ' || v.name FROM beacon.document_views v
              WHERE v.project = current_schema() AND v.name = $2",
            &[&pattern, &name, &trigger],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    out.sort();
    out
}

/// Runs a batch, again (after a ROLLBACK) when it fails with a deadlock: DDL on an async
/// view's table can deadlock with the worker's refresh (see
/// `documents_ddl_alongside_a_refresh_never_deadlocks` in tests/documents.rs), which a
/// client retries; the batch must be whole transactions (or begin one).
pub fn run_retrying(client: &mut Client, sql: &str) {
    for attempt in 1.. {
        match client.batch_execute(sql) {
            Ok(()) => return,
            Err(e) if sqlstate(&e) == "40P01" && attempt < 10 => {
                eprintln!(
                    "`{sql}` deadlocked (attempt {attempt}), retried: {}",
                    describe(&e)
                );
                let _ = client.batch_execute("ROLLBACK");
                std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
            }
            Err(e) => panic!("`{sql}`: {}", describe(&e)),
        }
    }
}
