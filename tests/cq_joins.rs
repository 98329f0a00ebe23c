//! Joins in continuous queries, deterministic: every kind of change on every table of a
//! star + snowflake, readers' own uncommitted writes, TRUNCATE of each table, refusals
//! (SQLSTATE and the part named), the index advisor, a crash in the middle of fact and
//! dimension writes, and two-session interleavings of every pair of writers
//! (tests/common/joins_interleave.rs) in both modes and both isolation levels. Every check
//! compares each view with its defining query (tests/common/joins.rs).

mod common;
#[path = "common/joins.rs"]
mod joins;
#[path = "common/joins_cases.rs"]
mod joins_cases;
#[path = "common/joins_interleave.rs"]
mod joins_interleave;

use common::{eventually, server, Rng, Server};
use joins::View;
use joins_cases::*;
use joins_interleave::{run_class, Pairs};
use postgres::Client;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

// ---------------------------------------------------------------------------------------
// Every change kind, sequentially

fn shop(db: &str) -> (Client, Vec<View>) {
    let mut client = joins::project_db(server(), db);
    client.batch_execute(SHOP).unwrap();
    let views = View::in_modes(&SHOP_QUERIES, &["async", "immediate"]);
    joins::create_all(&mut client, &views);
    joins::assert_exact(&mut client, &views, "right after creation on existing rows");
    (client, views)
}

#[test]
fn joins_every_change_kind_keeps_views_exact() {
    let db = "joins_changes";
    let (mut client, views) = shop(db);
    for (i, change) in SHOP_CHANGES.iter().enumerate() {
        client
            .batch_execute(change)
            .unwrap_or_else(|e| panic!("change {i} `{change}` failed: {}", joins::describe(&e)));
        joins::assert_exact(&mut client, &views, &format!("after change {i}: {change}"));
        if i % 5 == 4 {
            joins::assert_exact_and_compacted(&mut client, &views, &format!("after change {i}"));
        }
    }
    joins::assert_exact_and_compacted(&mut client, &views, "after every change");
    server().drop_db(db);
}

/// A reader's view includes its own uncommitted writes on every table; a rolled-back
/// savepoint takes its part along; a rolled-back transaction leaves nothing.
#[test]
fn joins_views_include_the_readers_own_uncommitted_writes() {
    let db = "joins_own_writes";
    let (mut client, views) = shop(db);
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO orders (item, store, qty, big, note, placed, rush) VALUES (2, 11, 9, 9, 'own', '2024-01-02', true);
             UPDATE items SET cat = 'mine' WHERE iid = 2;
             DELETE FROM stores WHERE sid = 10;",
        )
        .unwrap();
    joins::assert_exact(
        &mut client,
        &views,
        "own fact insert, dimension update and delete",
    );
    client
        .batch_execute(
            "SAVEPOINT s;
             UPDATE regions SET rname = 'gone' WHERE rcode = 'S';
             INSERT INTO items VALUES (9, 'new', 1.00, '2024-01-01');
             UPDATE orders SET store = 12 WHERE store = 11;",
        )
        .unwrap();
    joins::assert_exact(&mut client, &views, "inside a savepoint");
    client.batch_execute("ROLLBACK TO SAVEPOINT s").unwrap();
    joins::assert_exact(&mut client, &views, "after ROLLBACK TO SAVEPOINT");
    client.batch_execute("COMMIT").unwrap();
    joins::assert_exact_and_compacted(&mut client, &views, "after COMMIT");
    client
        .batch_execute("BEGIN; DELETE FROM orders; UPDATE items SET iid = iid + 100;")
        .unwrap();
    joins::assert_exact(
        &mut client,
        &views,
        "every fact deleted, every item key moved",
    );
    client.batch_execute("ROLLBACK").unwrap();
    joins::assert_exact_and_compacted(&mut client, &views, "after ROLLBACK");
    server().drop_db(db);
}

// ---------------------------------------------------------------------------------------
// TRUNCATE

#[test]
fn joins_truncate_of_each_table() {
    let db = "joins_truncate";
    let mut client = joins::project_db(server(), db);
    client.batch_execute(SCHEMA).unwrap();
    client.batch_execute(&baseline()).unwrap();
    let views = View::in_modes(&QUERIES, &["async", "immediate"]);
    joins::create_all(&mut client, &views);
    for (table, rows) in BASELINE_ROWS {
        client.batch_execute(&reset_sql()).unwrap();
        joins::assert_exact(&mut client, &views, "after the reset");
        client.batch_execute(&format!("TRUNCATE {table}")).unwrap();
        joins::assert_exact_and_compacted(&mut client, &views, &format!("after TRUNCATE {table}"));
        client.batch_execute(rows).unwrap();
        joins::assert_exact_and_compacted(
            &mut client,
            &views,
            &format!("after TRUNCATE {table} and inserting its rows again"),
        );
    }
    client.batch_execute("TRUNCATE products, brands").unwrap();
    joins::assert_exact_and_compacted(&mut client, &views, "after TRUNCATE products, brands");
    client.batch_execute(&reset_sql()).unwrap();
    client.batch_execute("BEGIN; TRUNCATE facts").unwrap();
    joins::assert_exact(
        &mut client,
        &views,
        "inside the transaction that truncated facts",
    );
    client.batch_execute("ROLLBACK").unwrap();
    joins::assert_exact_and_compacted(&mut client, &views, "after rolling back TRUNCATE facts");
    client
        .batch_execute(
            "BEGIN; TRUNCATE customers; INSERT INTO customers VALUES (3, 'new'), (1, 'corp')",
        )
        .unwrap();
    joins::assert_exact(
        &mut client,
        &views,
        "TRUNCATE customers and new rows, not committed",
    );
    client.batch_execute("COMMIT").unwrap();
    joins::assert_exact_and_compacted(
        &mut client,
        &views,
        "after TRUNCATE customers committed with new rows",
    );
    server().drop_db(db);
}

// ---------------------------------------------------------------------------------------
// Refusals

#[test]
fn joins_refusals_name_the_part() {
    let db = "joins_refusals";
    let other = "joins_refusals_other";
    let mut client = joins::project_db(server(), db);
    client.batch_execute(REFUSAL_SCHEMA).unwrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE public.outside_dim (pid int, label text);
             SELECT beacon.create_project('{other}');
             CREATE TABLE {other}.foreign_dim (pid int, label text);"
        ))
        .unwrap();
    let other_table = format!(
        "SELECT o.label, count(*) AS n FROM f JOIN {other}.foreign_dim o ON o.pid = f.pid GROUP BY o.label"
    );
    let other_parts = ["foreign_dim", other];
    let cases: Vec<(&str, &str, &[&str])> = vec![
        ("right_join", "SELECT p.cat, count(*) AS n FROM f RIGHT JOIN p ON p.pid = f.pid GROUP BY p.cat", &["right"]),
        ("right_outer_join", "SELECT p.cat, count(*) AS n FROM f RIGHT OUTER JOIN p ON p.pid = f.pid GROUP BY p.cat", &["right"]),
        ("right_join_second", "SELECT p.cat, count(*) AS n FROM f JOIN c ON c.cid = f.cid RIGHT JOIN p ON p.pid = f.pid GROUP BY p.cat", &["right"]),
        ("full_join", "SELECT p.cat, count(*) AS n FROM f FULL JOIN p ON p.pid = f.pid GROUP BY p.cat", &["full"]),
        ("cross_join", "SELECT p.cat, count(*) AS n FROM f CROSS JOIN p GROUP BY p.cat", &["cross"]),
        ("comma_join", "SELECT p.cat, count(*) AS n FROM f, p WHERE p.pid = f.pid GROUP BY p.cat", &["comma", "cross", "from list", "more than one"]),
        ("less_than", "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.pid < f.pid GROUP BY p.cat", &EQUALITY),
        ("not_equal", "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.pid <> f.pid GROUP BY p.cat", &EQUALITY),
        ("only_a_filter", "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.cat = 'x' GROUP BY p.cat", &EQUALITY),
        ("on_true", "SELECT p.cat, count(*) AS n FROM f JOIN p ON true GROUP BY p.cat", &EQUALITY),
        ("expression_equality", "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.pid = f.pid + 1 GROUP BY p.cat", &EQUALITY),
        ("disjunction", "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.pid = f.pid OR p.cat = 'x' GROUP BY p.cat", &["equal", " or ", "conjunction", "disjunction"]),
        ("left_with_a_filter", "SELECT p.cat, count(*) AS n FROM f LEFT JOIN p ON p.pid = f.pid AND p.cat = 'x' GROUP BY p.cat", &["left"]),
        ("left_non_equi", "SELECT p.cat, count(*) AS n FROM f LEFT JOIN p ON p.pid > f.pid GROUP BY p.cat", &["left"]),
        ("left_to_two_tables", "SELECT p.cat, count(*) AS n FROM f JOIN c ON c.cid = f.cid LEFT JOIN p ON p.pid = f.pid AND p.pid = c.cid GROUP BY p.cat", &["left", "two earlier", "tree"]),
        ("left_self_join", "SELECT a.cat, count(*) AS n FROM p a LEFT JOIN p b ON b.pid = a.pid GROUP BY a.cat", &["self", "left", "twice", "same table"]),
        ("using_clause", "SELECT p.cat, count(*) AS n FROM f JOIN p USING (pid) GROUP BY p.cat", &["using"]),
        ("natural_join", "SELECT c.seg, count(*) AS n FROM f NATURAL JOIN c GROUP BY c.seg", &["natural"]),
        ("subquery_in_from", "SELECT s.cat, count(*) AS n FROM f JOIN (SELECT pid, cat FROM p) s ON s.pid = f.pid GROUP BY s.cat", &["subquer"]),
        ("subquery_in_on", "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.pid = f.pid AND p.pid IN (SELECT cid FROM c) GROUP BY p.cat", &["subquer"]),
        ("subquery_in_where", "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.pid = f.pid WHERE f.cid IN (SELECT cid FROM c) GROUP BY p.cat", &["subquer"]),
        ("outside_the_project", "SELECT o.label, count(*) AS n FROM f JOIN public.outside_dim o ON o.pid = f.pid GROUP BY o.label", &["outside_dim", "\"public\""]),
        ("outside_the_project_first", "SELECT p.cat, count(*) AS n FROM public.outside_dim o JOIN p ON p.pid = o.pid GROUP BY p.cat", &["outside_dim", "\"public\""]),
        ("another_projects_table", &other_table, &other_parts),
    ];
    let problems: Vec<String> = cases
        .iter()
        .filter_map(|(name, query, parts)| {
            assert_refused(&mut client, name, query, &["0A000"], parts)
        })
        .collect();
    server().drop_db(db);
    assert!(
        problems.is_empty(),
        "{} refusals wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Join columns of different type families (integer and numeric; date and timestamptz)
/// are refused (0A000 or 42804) naming a column.
#[test]
fn joins_join_columns_of_different_type_families_are_refused() {
    let db = "joins_type_families";
    let mut client = joins::project_db(server(), db);
    client.batch_execute(REFUSAL_SCHEMA).unwrap();
    let mut problems = Vec::new();
    for (name, query, parts) in [
        (
            "integer_and_numeric",
            "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.pid = f.amount GROUP BY p.cat",
            ["amount", "pid"],
        ),
        (
            "date_and_timestamptz",
            "SELECT p.cat, count(*) AS n FROM f JOIN p ON p.since = f.day GROUP BY p.cat",
            ["since", "day"],
        ),
    ] {
        problems.extend(assert_refused(
            &mut client,
            name,
            query,
            &["0A000", "42804"],
            &parts,
        ));
    }
    server().drop_db(db);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn joins_ambiguous_unqualified_column_is_42702() {
    let db = "joins_ambiguous";
    let mut client = joins::project_db(server(), db);
    client.batch_execute(REFUSAL_SCHEMA).unwrap();
    let problems: Vec<String> = [
        ("key_in_both_tables", "SELECT pid, count(*) AS n FROM f JOIN p ON p.pid = f.pid GROUP BY pid", "pid"),
        ("self_join_attribute", "SELECT cat, count(*) AS n FROM p a JOIN p b ON b.pid = a.pid GROUP BY cat", "cat"),
        ("aggregate_argument", "SELECT p.cat, count(DISTINCT cid) AS n FROM f JOIN c ON c.cid = f.cid JOIN p ON p.pid = f.pid GROUP BY p.cat", "cid"),
    ]
    .iter()
    .filter_map(|(name, query, column)| {
        let view = View::new(name, query, "immediate");
        match joins::create(&mut client, &view) {
            Ok(()) => Some(format!("{name}: accepted\n  {query}")),
            Err(e) if joins::sqlstate(&e) == "42702" && joins::describe(&e).contains(column) => None,
            Err(e) => Some(format!("{name}: {} (expected 42702 naming {column})\n  {query}", joins::describe(&e))),
        }
    })
    .collect();
    // the same queries qualified, and unqualified names that only one table has, are fine
    let views = vec![
        View::new("qualified", "SELECT p.pid, count(*) AS n FROM f JOIN p ON p.pid = f.pid GROUP BY p.pid", "async"),
        View::new("unique_names", "SELECT cat, seg, count(*) AS n, sum(q) AS q FROM f JOIN p ON p.pid = f.pid LEFT JOIN c ON c.cid = f.cid GROUP BY cat, seg", "immediate"),
    ];
    joins::create_all(&mut client, &views);
    client
        .batch_execute(
            "INSERT INTO p VALUES (1, 'x', now()), (2, 'y', now()); INSERT INTO c VALUES (1, 'r');
             INSERT INTO f (pid, cid, q) VALUES (1, 1, 5), (2, 2, 7), (1, NULL, 1), (3, 1, 2);
             UPDATE p SET cat = 'z' WHERE pid = 2",
        )
        .unwrap();
    joins::assert_exact_and_compacted(&mut client, &views, "after writes on every table");
    server().drop_db(db);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Index advisor

#[test]
fn joins_index_advisor_notice_names_the_missing_indexes() {
    let db = "joins_advisor";
    joins::project_db(server(), db);
    let (mut client, notices) = joins::noticing(server(), db);
    client.batch_execute(ADVISOR_SCHEMA).unwrap();
    let before = indexes(&mut client);
    let star = View::new("star", STAR, "async");
    let snowflake = View::new("snowflake", SNOWFLAKE, "immediate");
    joins::create_all(&mut client, std::slice::from_ref(&star));
    let seen: Vec<String> = notices.lock().unwrap().drain(..).collect();
    let mut problems = Vec::new();
    for (table, column) in [
        ("sales", "prod_ref"),
        ("sales", "cust_ref"),
        ("catalog", "code"),
    ] {
        if !names_index(&seen, table, column) {
            problems.push(format!(
                "the star query's notices do not name {table} ({column})"
            ));
        }
    }
    if names_index(&seen, "clients", "cid") {
        problems.push("a notice names clients (cid), which its primary key indexes".into());
    }
    if !seen.iter().any(|n| n.starts_with("NOTICE")) {
        problems.push("no NOTICE at all".into());
    }
    if indexes(&mut client) != before {
        problems.push("indexes were created without create_indexes => true".into());
    }
    client
        .batch_execute("CREATE INDEX ON sales (prod_ref)")
        .unwrap();
    joins::create_all(&mut client, std::slice::from_ref(&snowflake));
    let seen: Vec<String> = notices.lock().unwrap().drain(..).collect();
    if !names_index(&seen, "catalog", "maker_ref") {
        problems.push("the snowflake query's notices do not name catalog (maker_ref)".into());
    }
    if names_index(&seen, "sales", "prod_ref") {
        problems.push("a notice names sales (prod_ref) after it was indexed".into());
    }
    if names_index(&seen, "makers", "mk") {
        problems.push("a notice names makers (mk), which its primary key indexes".into());
    }
    client.batch_execute("UPDATE catalog SET grp = 'g3' WHERE code = 1; UPDATE makers SET country = 'it' WHERE mk = 2").unwrap();
    joins::assert_exact_and_compacted(&mut client, &[star, snowflake], "after dimension updates");
    server().drop_db(db);
    assert!(
        problems.is_empty(),
        "{}\nnotices seen: {seen:?}",
        problems.join("\n")
    );
}

#[test]
fn joins_create_indexes_creates_the_advised_indexes() {
    let db = "joins_advisor_create";
    joins::project_db(server(), db);
    let (mut client, notices) = joins::noticing(server(), db);
    client.batch_execute(ADVISOR_SCHEMA).unwrap();
    let clients_before: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = 'clients'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    for (name, query, mode) in [
        ("star", STAR, "async"),
        ("snowflake", SNOWFLAKE, "immediate"),
    ] {
        client
            .execute(
                "SELECT beacon.create_continuous_query(current_schema(), $1, $2, $3, create_indexes => true)",
                &[&name, &query, &mode],
            )
            .unwrap_or_else(|e| panic!("create {name} with create_indexes => true: {}", joins::describe(&e)));
    }
    let mut problems = Vec::new();
    for (table, column) in [
        ("sales", "prod_ref"),
        ("sales", "cust_ref"),
        ("catalog", "code"),
        ("catalog", "maker_ref"),
    ] {
        if !indexed(&mut client, table, column) {
            problems.push(format!("no index leads with {table} ({column})"));
        }
    }
    let clients_after: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_index WHERE indrelid = 'clients'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    if clients_after != clients_before {
        problems.push(
            "an index was added to clients, whose join column its primary key indexes".into(),
        );
    }
    notices.lock().unwrap().clear();
    let again = View::new("star_again", STAR, "immediate");
    joins::create_all(&mut client, std::slice::from_ref(&again));
    let seen: Vec<String> = notices.lock().unwrap().drain(..).collect();
    for (table, column) in [
        ("sales", "prod_ref"),
        ("sales", "cust_ref"),
        ("catalog", "code"),
    ] {
        if names_index(&seen, table, column) {
            problems.push(format!(
                "after create_indexes a new query is still advised {table} ({column}): {seen:?}"
            ));
        }
    }
    client.batch_execute("UPDATE catalog SET grp = 'g3' WHERE code = 1; INSERT INTO sales (prod_ref, cust_ref, amount) VALUES (1, 1, 5)").unwrap();
    let views = [
        View::new("star", STAR, "async"),
        View::new("snowflake", SNOWFLAKE, "immediate"),
        again,
    ];
    joins::assert_exact_and_compacted(&mut client, &views, "after writes with the created indexes");
    eprintln!("indexes: {:?}", indexes(&mut client));
    server().drop_db(db);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Crash

/// A server of the test's own, stopped and removed however the test ends.
struct OwnServer(Server);

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = common::pg_command("pg_ctl")
            .args([
                "-D",
                self.0.data.to_str().unwrap(),
                "stop",
                "-m",
                "immediate",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.0.data);
    }
}

/// `pg_ctl stop -m immediate` of a server of the test's own while writers change facts
/// and dimensions; after the restart every view equals its query, before and after
/// compaction, and maintenance goes on.
#[test]
fn joins_crash_mid_fact_and_dimension_writes_keeps_views_exact() {
    let own = OwnServer(Server::start_with(&[], ""));
    let own = &own.0;
    let db = "joins_crash";
    let mut admin = joins::project_db(own, db);
    admin.batch_execute(SCHEMA).unwrap();
    admin.batch_execute(&baseline()).unwrap();
    admin
        .batch_execute("CREATE SEQUENCE fact_ids START 1000")
        .unwrap();
    let views = View::in_modes(&QUERIES, &["async", "immediate"]);
    joins::create_all(&mut admin, &views);
    // the test server commits asynchronously: a crash may lose the last commits (source and
    // deltas together), but not the queries themselves
    admin.batch_execute("CHECKPOINT").unwrap();
    let crashing = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let dsn = own.dsn(db, "postgres");
    let writers: Vec<_> = (0..3u64)
        .map(|no| {
            let (crashing, done, dsn) = (crashing.clone(), done.clone(), dsn.clone());
            thread::spawn(move || -> Result<(), String> {
                let mut client =
                    postgres::Client::connect(&dsn, postgres::NoTls).map_err(|e| e.to_string())?;
                client
                    .batch_execute(&joins::settings(db))
                    .map_err(|e| e.to_string())?;
                let mut rng = Rng::new(7_000 + no);
                for _ in 0..50_000 {
                    if crashing.load(Ordering::SeqCst) {
                        return Ok(());
                    }
                    let sql = crash_op(&mut rng);
                    match client.batch_execute(&sql) {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) if crashing.load(Ordering::SeqCst) => return Ok(()),
                        Err(e) if joins::retryable(&e) => {
                            let _ = client.batch_execute("ROLLBACK");
                        }
                        Err(e) => {
                            return Err(format!(
                                "writer {no}: `{sql}` failed: {}",
                                joins::describe(&e)
                            ))
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    eventually("writers to commit 150 operations", || {
        done.load(Ordering::SeqCst) >= 150 || writers.iter().any(|w| w.is_finished())
    });
    crashing.store(true, Ordering::SeqCst);
    own.stop("immediate");
    let results: Vec<Result<(), String>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    drop(admin);
    own.start_existing();
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        errors.is_empty(),
        "writers failed before the crash: {errors:?}"
    );
    let mut client = joins::connect_to(own, db);
    joins::assert_exact_and_compacted(&mut client, &views, "after crash recovery");
    let mut rng = Rng::new(99);
    for _ in 0..40 {
        let sql = crash_op(&mut rng);
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("after the restart `{sql}`: {}", joins::describe(&e)));
    }
    joins::assert_exact_and_compacted(&mut client, &views, "after writes following the recovery");
}

// ---------------------------------------------------------------------------------------
// DDL alongside the database's scheduler

/// The names of the relations (and the backends) a deadlock report mentions.
fn relations_named(client: &mut Client, text: &str) -> String {
    let mut out = Vec::new();
    for (word, next) in text.split_whitespace().zip(text.split_whitespace().skip(1)) {
        let number: String = next.chars().filter(char::is_ascii_digit).collect();
        if number.is_empty() {
            continue;
        }
        let sql = match word {
            "relation" => "SELECT $1::text::oid::regclass::text",
            "process" | "Process" => {
                "SELECT coalesce(backend_type || ': ' || left(query, 120), 'gone') \
                   FROM pg_catalog.pg_stat_activity WHERE pid = $1::text::int"
            }
            _ => continue,
        };
        if let Ok(Some(row)) = client.query_opt(sql, &[&number]) {
            out.push(format!("{word} {number} = {}", row.get::<_, String>(0)));
        }
    }
    out.sort();
    out.dedup();
    out.join("; ")
}

/// Creating join queries right after CREATE EXTENSION (the new database's scheduler
/// starting its first rounds and compacting the async ones already created), writing, and
/// dropping the project: no step deadlocks (40P01) or fails. Several databases, since the
/// race is the scheduler's start.
#[test]
fn joins_ddl_alongside_the_scheduler_never_deadlocks() {
    let mut problems = Vec::new();
    for round in 0..4 {
        let db = format!("joins_ddl_{round}");
        let mut client = joins::project_db(server(), &db);
        client.batch_execute(SCHEMA).unwrap();
        client.batch_execute(&baseline()).unwrap();
        let views = View::in_modes(&QUERIES, &["async", "immediate"]);
        for view in &views {
            if let Err(e) = joins::create(&mut client, view) {
                let text = joins::describe(&e);
                let named = relations_named(&mut client, &text);
                problems.push(format!("{db}: creating {}: {text}\n  {named}", view.name));
            }
            if let Err(e) = client.batch_execute(
                "INSERT INTO facts SELECT 1000 + g + 10 * (SELECT count(*) FROM facts), 1 + g % 4, 1 + g % 3, g \
                 FROM pg_catalog.generate_series(1, 5) g; UPDATE products SET category = category || 'x' WHERE id = 1",
            ) {
                problems.push(format!("{db}: writing: {}", joins::describe(&e)));
            }
        }
        if let Err(e) = client.execute("SELECT beacon.drop_project($1)", &[&db]) {
            let text = joins::describe(&e);
            let named = relations_named(&mut client, &text);
            problems.push(format!("{db}: drop_project: {text}\n  {named}"));
        }
        drop(client);
        server().drop_db(&db);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Fact writers in multi-statement transactions

#[test]
fn joins_fact_writers_crossing_join_keys_never_wait_read_committed() {
    fact_writers_cross_keys("async", "READ COMMITTED");
    fact_writers_cross_keys("immediate", "READ COMMITTED");
}

#[test]
fn joins_fact_writers_crossing_join_keys_never_wait_repeatable_read() {
    fact_writers_cross_keys("async", "REPEATABLE READ");
    fact_writers_cross_keys("immediate", "REPEATABLE READ");
}

// ---------------------------------------------------------------------------------------
// Two-session interleavings: every pair, both modes, both isolation levels

macro_rules! interleavings {
    ($($name:ident: $class:ident, $mode:literal, $isolation:literal;)*) => {$(
        #[test]
        fn $name() {
            run_class($mode, $isolation, Pairs::$class);
        }
    )*};
}

interleavings! {
    joins_interleave_fact_fact_read_committed_async: FactFact, "async", "READ COMMITTED";
    joins_interleave_fact_fact_read_committed_immediate: FactFact, "immediate", "READ COMMITTED";
    joins_interleave_fact_fact_repeatable_read_async: FactFact, "async", "REPEATABLE READ";
    joins_interleave_fact_fact_repeatable_read_immediate: FactFact, "immediate", "REPEATABLE READ";
    joins_interleave_fact_dimension_read_committed_async: FactDimension, "async", "READ COMMITTED";
    joins_interleave_fact_dimension_read_committed_immediate: FactDimension, "immediate", "READ COMMITTED";
    joins_interleave_fact_dimension_repeatable_read_async: FactDimension, "async", "REPEATABLE READ";
    joins_interleave_fact_dimension_repeatable_read_immediate: FactDimension, "immediate", "REPEATABLE READ";
    joins_interleave_dimension_dimension_read_committed_async: DimensionDimension, "async", "READ COMMITTED";
    joins_interleave_dimension_dimension_read_committed_immediate: DimensionDimension, "immediate", "READ COMMITTED";
    joins_interleave_dimension_dimension_repeatable_read_async: DimensionDimension, "async", "REPEATABLE READ";
    joins_interleave_dimension_dimension_repeatable_read_immediate: DimensionDimension, "immediate", "REPEATABLE READ";
}
