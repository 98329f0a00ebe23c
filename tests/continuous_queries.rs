//! Continuous queries against a real server: under concurrent writers, across time zones,
//! through refusals, dropped sources and a crash, every view must equal its defining query
//! run from scratch (the oracle).

mod common;

use common::{eventually, server, Rng};
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, GenericClient};
use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Barrier, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;

/// The crash test stops the one server this binary shares. Every other test holds this
/// lock for reading, so none of them runs while the server is down.
static SERVER_IN_USE: RwLock<()> = RwLock::new(());

fn shared_server() -> RwLockReadGuard<'static, ()> {
    SERVER_IN_USE.read().unwrap_or_else(PoisonError::into_inner)
}

fn exclusive_server() -> RwLockWriteGuard<'static, ()> {
    SERVER_IN_USE
        .write()
        .unwrap_or_else(PoisonError::into_inner)
}

const SOURCE_COLUMNS: &str = "(id bigserial PRIMARY KEY, ts timestamptz, country text NULL, \
     product int, price double precision NULL, qty bigint, flag boolean NULL, amount numeric)";

fn create_source(client: &mut Client, project: &str) {
    client
        .batch_execute(&format!("CREATE TABLE {project}.src {SOURCE_COLUMNS}"))
        .unwrap();
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQLSTATE, message, detail and hint: enough to tell from a failure what went wrong.
fn describe(e: &postgres::Error) -> String {
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

/// Deadlocks and serialization failures roll the whole transaction back, so they leave
/// the source and the views as if the operation never ran: a writer may just go on.
fn retryable(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
        || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE)
}

fn create_cq(client: &mut impl GenericClient, project: &str, name: &str, query: &str, mode: &str) {
    client
        .execute(
            "SELECT beacon.create_continuous_query($1, $2, $3, $4)",
            &[&project, &name, &query, &mode],
        )
        .unwrap_or_else(|e| {
            panic!(
                "create {project}.{name} ({mode}) as `{query}`: {}",
                describe(&e)
            )
        });
}

fn pending_deltas(client: &mut impl GenericClient, project: &str) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(pending_deltas), 0)::bigint FROM beacon.continuous_queries WHERE project = $1",
            &[&project],
        )
        .unwrap()
        .get(0)
}

fn compact(client: &mut impl GenericClient) -> i64 {
    let applied: i64 = client
        .query_one("SELECT beacon.compact()", &[])
        .unwrap_or_else(|e| panic!("beacon.compact(): {}", describe(&e)))
        .get(0);
    assert!(applied >= 0, "beacon.compact() returned {applied}");
    applied
}

/// Every object a continuous query could leave behind, in a stable order: relations,
/// functions, types, triggers and catalog rows outside PostgreSQL's own schemas.
fn objects(client: &mut impl GenericClient) -> Vec<String> {
    client
        .query(
            r"SELECT kind || ' ' || what FROM (
                SELECT 'relation' AS kind, format('%I.%I', n.nspname, c.relname) AS what
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                   AND n.nspname !~ '^pg_(toast_)?temp_'
                UNION ALL
                SELECT 'function', format('%I.%I(%s)', n.nspname, p.proname,
                                          pg_get_function_identity_arguments(p.oid))
                  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname !~ '^pg_(toast_)?temp_'
                UNION ALL
                SELECT 'type', format('%I.%I', n.nspname, t.typname)
                  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                   AND n.nspname !~ '^pg_(toast_)?temp_'
                UNION ALL
                SELECT 'trigger', format('%s on %s', tgname, tgrelid::regclass)
                  FROM pg_trigger WHERE NOT tgisinternal
                UNION ALL
                SELECT 'event trigger', evtname FROM pg_event_trigger
                UNION ALL
                SELECT 'continuous query', format('%s.%s', project, name) FROM beacon.continuous_queries
              ) o ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Comparing a view with its oracle

/// One result row: the columns compared exactly (as normalized text), then the double
/// precision aggregates compared with a tolerance.
type ResultRow = (Vec<Option<String>>, Vec<Option<f64>>);

fn column_types(client: &mut impl GenericClient, sql: &str) -> Vec<(String, Type)> {
    client
        .prepare(sql)
        .unwrap_or_else(|e| panic!("prepare `{sql}`: {}", describe(&e)))
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect()
}

/// Sums, averages and variances of doubles legitimately depend on the order rows were
/// added and removed in; min and max pick one of the inputs and must be exact.
fn tolerant(name: &str, ty: &Type) -> bool {
    (*ty == Type::FLOAT8 || *ty == Type::FLOAT4)
        && !name.starts_with("min")
        && !name.starts_with("max")
}

fn cmp_floats(a: &[Option<f64>], b: &[Option<f64>]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x, y) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => x.total_cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            // the tiny absolute term only matters for results that should be 0
            a == b
                || (a.is_nan() && b.is_nan())
                || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-12
        }
        _ => false,
    }
}

/// The rows of `from` (a relation or a parenthesized query), sorted. Numerics compare by
/// value (trailing zeros of the scale do not count) and timestamps as epochs, so the
/// reader's TimeZone does not change the text compared.
fn fetch(
    client: &mut impl GenericClient,
    from: &str,
    columns: &[(String, Type)],
) -> Vec<ResultRow> {
    let mut exact = Vec::new();
    let mut approx = Vec::new();
    for (name, ty) in columns {
        let col = format!("r.{}", ident(name));
        if tolerant(name, ty) {
            approx.push(format!("{col}::float8"));
        } else if *ty == Type::NUMERIC {
            exact.push(format!("trim_scale({col})::text"));
        } else if *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP {
            exact.push(format!("extract(epoch FROM {col})::text"));
        } else {
            exact.push(format!("{col}::text"));
        }
    }
    let list: Vec<String> = exact.iter().chain(&approx).cloned().collect();
    let sql = format!("SELECT {} FROM {from} AS r", list.join(", "));
    let rows = client
        .query(sql.as_str(), &[])
        .unwrap_or_else(|e| panic!("`{sql}`: {}", describe(&e)));
    let mut result: Vec<ResultRow> = rows
        .iter()
        .map(|row| {
            let e = (0..exact.len()).map(|i| row.get(i)).collect();
            let a = (exact.len()..exact.len() + approx.len())
                .map(|i| row.get(i))
                .collect();
            (e, a)
        })
        .collect();
    result.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| cmp_floats(&a.1, &b.1)));
    result
}

fn show(rows: &[ResultRow]) -> String {
    let mut text: Vec<String> = rows
        .iter()
        .take(40)
        .map(|r| format!("  {:?} {:?}", r.0, r.1))
        .collect();
    if rows.len() > 40 {
        text.push(format!("  ... {} more", rows.len() - 40));
    }
    text.join("\n")
}

/// Compares the view `project.view` with `query` run now: the oracle is evaluated with
/// TimeZone `oracle_tz` (the creator's), the view is read with TimeZone `reader_tz` and the
/// default search_path, like any other reader. Leaves the session's TimeZone at `reader_tz`.
fn compare(
    client: &mut impl GenericClient,
    project: &str,
    view: &str,
    query: &str,
    oracle_tz: &str,
    reader_tz: &str,
) -> Result<(), String> {
    let relation = format!("{}.{}", ident(project), ident(view));
    client.batch_execute("RESET search_path").unwrap();
    let view_columns = column_types(client, &format!("SELECT * FROM {relation}"));
    client
        .batch_execute(&format!(
            "SET search_path TO {}, public; SET TimeZone TO '{oracle_tz}'",
            ident(project)
        ))
        .unwrap();
    let oracle_columns = column_types(client, &format!("SELECT * FROM ({query}) AS oracle"));
    if view_columns != oracle_columns {
        client.batch_execute("RESET search_path").unwrap();
        return Err(format!(
            "columns differ: view {view_columns:?}, query {oracle_columns:?}"
        ));
    }
    let expected = fetch(client, &format!("({query})"), &view_columns);
    client
        .batch_execute(&format!("RESET search_path; SET TimeZone TO '{reader_tz}'"))
        .unwrap();
    let got = fetch(client, &relation, &view_columns);
    let same = expected.len() == got.len()
        && expected
            .iter()
            .zip(&got)
            .all(|(e, g)| e.0 == g.0 && e.1.iter().zip(&g.1).all(|(x, y)| close(*x, *y)));
    if same {
        return Ok(());
    }
    let only_expected: Vec<ResultRow> = expected
        .iter()
        .filter(|e| {
            !got.iter()
                .any(|g| g.0 == e.0 && g.1.iter().zip(&e.1).all(|(x, y)| close(*x, *y)))
        })
        .cloned()
        .collect();
    let only_got: Vec<ResultRow> = got
        .iter()
        .filter(|g| {
            !expected
                .iter()
                .any(|e| e.0 == g.0 && e.1.iter().zip(&g.1).all(|(x, y)| close(*x, *y)))
        })
        .cloned()
        .collect();
    let names: Vec<&str> = {
        let exact = view_columns.iter().filter(|(n, t)| !tolerant(n, t));
        let approx = view_columns.iter().filter(|(n, t)| tolerant(n, t));
        exact.chain(approx).map(|(n, _)| n.as_str()).collect()
    };
    Err(format!(
        "columns {names:?}; the query has {} rows, the view {}\nonly in the query:\n{}\nonly in the view:\n{}",
        expected.len(),
        got.len(),
        show(&only_expected),
        show(&only_got)
    ))
}

/// Compares every listed view with its query (creator's zone UTC) and reports all
/// differences at once.
fn assert_views_match(
    client: &mut impl GenericClient,
    project: &str,
    views: &[(String, String)],
    when: &str,
) {
    let failures: Vec<String> = views
        .iter()
        .filter_map(|(name, query)| {
            compare(client, project, name, query, "UTC", "UTC")
                .err()
                .map(|e| format!("view {project}.{name} differs from `{query}`: {e}"))
        })
        .collect();
    assert!(failures.is_empty(), "{when}:\n{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------
// A random writer

const COUNTRIES: [&str; 8] = ["US", "us", "DE", "de", "Fr", "FR", "IN", "br"];

/// Generates writes from small value domains so that rows keep colliding in the same
/// groups. Prices are multiples of 0.25 and amounts always have two decimals, so sums are
/// exact in double precision and the numeric scale never depends on which rows are left.
struct Writer {
    table: String,
    rng: Rng,
    /// The highest id this writer has seen; updates and deletes aim below it.
    hi: i64,
    last_sql: String,
}

impl Writer {
    fn new(project: &str, seed: u64) -> Writer {
        Writer {
            table: format!("{project}.src"),
            rng: Rng::new(seed),
            hi: 0,
            last_sql: String::new(),
        }
    }

    fn country(&mut self) -> String {
        if self.rng.below(8) == 0 {
            "NULL".into()
        } else {
            format!(
                "'{}'",
                COUNTRIES[self.rng.below(COUNTRIES.len() as u64) as usize]
            )
        }
    }

    fn price(&mut self) -> String {
        if self.rng.below(6) == 0 {
            "NULL".into()
        } else {
            let quarters = self.rng.below(400);
            format!("{}.{:02}", quarters / 4, (quarters % 4) * 25)
        }
    }

    fn flag(&mut self) -> &'static str {
        match self.rng.below(5) {
            0 => "NULL",
            1 | 2 => "true",
            _ => "false",
        }
    }

    fn row(&mut self) -> String {
        let ts = format!(
            "'2024-03-10 {:02}:{:02}:{:02}+00'",
            self.rng.below(2),
            self.rng.below(30),
            self.rng.below(60)
        );
        let country = self.country();
        let product = self.rng.below(30);
        let price = self.price();
        let qty = self.rng.below(12) as i64 - 2;
        let flag = self.flag();
        let amount = format!("{}.{:02}", self.rng.below(100), self.rng.below(100));
        format!("({ts}, {country}, {product}, {price}, {qty}, {flag}, {amount})")
    }

    fn id(&mut self) -> i64 {
        1 + self.rng.below(self.hi.max(1) as u64) as i64
    }

    fn insert(
        &mut self,
        client: &mut impl GenericClient,
        rows: u64,
    ) -> Result<Vec<i64>, postgres::Error> {
        let values: Vec<String> = (0..rows).map(|_| self.row()).collect();
        self.last_sql = format!(
            "INSERT INTO {} (ts, country, product, price, qty, flag, amount) VALUES {} RETURNING id",
            self.table,
            values.join(", ")
        );
        let ids: Vec<i64> = client
            .query(self.last_sql.as_str(), &[])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        self.hi = self.hi.max(ids.iter().copied().max().unwrap_or(0));
        Ok(ids)
    }

    fn run(
        &mut self,
        client: &mut impl GenericClient,
        sql: String,
    ) -> Result<u64, postgres::Error> {
        self.last_sql = sql;
        client.execute(self.last_sql.as_str(), &[])
    }

    /// Changes keys and values, sets NULLs, and sometimes changes nothing at all.
    fn update_sql(&mut self) -> String {
        let t = self.table.clone();
        let id = self.id();
        match self.rng.below(7) {
            0 => format!("UPDATE {t} SET country = {}, price = {} WHERE id = {id}", self.country(), self.price()),
            1 => format!(
                "UPDATE {t} SET product = {}, qty = qty + {} WHERE id BETWEEN {id} AND {}",
                self.rng.below(30),
                self.rng.below(5),
                id + self.rng.below(8) as i64
            ),
            2 => format!("UPDATE {t} SET ts = ts + interval '1 minute', flag = NOT flag WHERE id = {id}"),
            3 => format!("UPDATE {t} SET price = NULL, flag = NULL, country = NULL WHERE id = {id}"),
            4 => format!(
                "UPDATE {t} SET amount = amount + 0.25, price = {} WHERE product = {} AND id % 5 = {}",
                self.price(),
                self.rng.below(30),
                self.rng.below(5)
            ),
            5 => format!("UPDATE {t} SET qty = {} WHERE id = {id}", self.rng.below(20) as i64 - 5),
            _ => format!("UPDATE {t} SET id = id WHERE id BETWEEN {id} AND {}", id + 3),
        }
    }

    /// Single rows, ranges, and rows that are the current min or max of their group.
    fn delete_sql(&mut self) -> String {
        let t = self.table.clone();
        let id = self.id();
        match self.rng.below(5) {
            0 => format!("DELETE FROM {t} WHERE id = {id}"),
            1 => format!("DELETE FROM {t} WHERE id BETWEEN {id} AND {}", id + self.rng.below(20) as i64),
            2 => format!(
                "DELETE FROM {t} WHERE product = {} AND qty >= {}",
                self.rng.below(30),
                self.rng.below(10)
            ),
            3 => format!(
                "DELETE FROM {t} WHERE amount = (SELECT max(amount) FROM {t} WHERE product % 10 = {})",
                self.rng.below(10)
            ),
            _ => format!(
                "DELETE FROM {t} WHERE price = (SELECT min(price) FROM {t} WHERE lower(country) = '{}')",
                COUNTRIES[self.rng.below(COUNTRIES.len() as u64) as usize].to_lowercase()
            ),
        }
    }

    /// Inserts, then changes and deletes some of its own rows, and undoes a savepoint.
    /// It only touches rows nobody else can see yet, so it never waits for another writer
    /// while holding locks.
    fn committed_transaction(&mut self, client: &mut Client) -> Result<(), postgres::Error> {
        let mut tx = client.transaction()?;
        let rows = 1 + self.rng.below(10);
        let ids = self.insert(&mut tx, rows)?;
        let (country, price) = (self.country(), self.price());
        self.last_sql = format!(
            "UPDATE {} SET qty = qty * 2, country = {country}, price = {price} WHERE id = ANY($1)",
            self.table
        );
        tx.execute(self.last_sql.as_str(), &[&ids])?;
        self.last_sql = format!("DELETE FROM {} WHERE id = $1", self.table);
        tx.execute(self.last_sql.as_str(), &[&ids[0]])?;
        {
            let mut undone = tx.savepoint("undone")?;
            let rows = 1 + self.rng.below(5);
            let more = self.insert(&mut undone, rows)?;
            self.last_sql = format!(
                "UPDATE {} SET price = NULL, product = 99 WHERE id = ANY($1)",
                self.table
            );
            undone.execute(self.last_sql.as_str(), &[&ids])?;
            self.last_sql = format!("DELETE FROM {} WHERE id = ANY($1)", self.table);
            undone.execute(self.last_sql.as_str(), &[&more])?;
            undone.rollback()?;
        }
        tx.commit()
    }

    fn rolled_back_transaction(&mut self, client: &mut Client) -> Result<(), postgres::Error> {
        let mut tx = client.transaction()?;
        let rows = 1 + self.rng.below(20);
        let ids = self.insert(&mut tx, rows)?;
        let sql = if self.rng.below(2) == 0 {
            self.update_sql()
        } else {
            self.delete_sql()
        };
        self.run(&mut tx, sql)?;
        self.last_sql = format!(
            "UPDATE {} SET country = NULL, qty = 1000 WHERE id = ANY($1)",
            self.table
        );
        tx.execute(self.last_sql.as_str(), &[&ids])?;
        tx.rollback()
    }

    fn truncate(&mut self, client: &mut Client, commit: bool) -> Result<(), postgres::Error> {
        let mut tx = client.transaction()?;
        self.last_sql = format!("TRUNCATE {}", self.table);
        tx.batch_execute(&self.last_sql)?;
        if commit {
            tx.commit()
        } else {
            tx.rollback()
        }
    }

    fn random_op(&mut self, client: &mut Client) -> Result<(), postgres::Error> {
        match self.rng.below(100) {
            0..=24 => {
                let rows = 1 + self.rng.below(50);
                self.insert(client, rows)?;
            }
            25..=39 => {
                self.insert(client, 1)?;
            }
            40..=59 => {
                let sql = self.update_sql();
                self.run(client, sql)?;
            }
            60..=74 => {
                let sql = self.delete_sql();
                self.run(client, sql)?;
            }
            75..=87 => self.committed_transaction(client)?,
            _ => self.rolled_back_transaction(client)?,
        }
        Ok(())
    }

    /// Like `random_op`, but every operation commits on its own: what a crash interrupts
    /// is then only ever one transaction per writer.
    fn committing_op(&mut self, client: &mut Client) -> Result<(), postgres::Error> {
        match self.rng.below(10) {
            0..=4 => {
                let rows = 1 + self.rng.below(20);
                self.insert(client, rows)?;
            }
            5..=6 => {
                let sql = self.update_sql();
                self.run(client, sql)?;
            }
            7..=8 => {
                let sql = self.delete_sql();
                self.run(client, sql)?;
            }
            _ => self.committed_transaction(client)?,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Concurrent workload against the oracle

struct Shape {
    name: &'static str,
    /// `{project}` is replaced by the project name.
    sql: &'static str,
    /// Created on the empty source; the others are created after an initial load and so
    /// start from a backfill.
    early: bool,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "by_minute",
        sql: "SELECT date_trunc('minute', ts) AS minute, count(*) AS n, sum(qty) AS qty, \
              sum(amount) AS amount, avg(price) AS avg_price FROM src GROUP BY date_trunc('minute', ts)",
        early: true,
    },
    Shape {
        name: "by_country",
        sql: "SELECT lower(country) AS country, count(*) AS n, count(price) AS priced, \
              sum(price) AS revenue, min(price) AS min_price, max(price) AS max_price \
              FROM src GROUP BY lower(country)",
        early: true,
    },
    Shape {
        name: "totals",
        sql: "SELECT count(*) AS n, sum(qty) AS qty, sum(amount) AS amount, avg(amount) AS avg_amount, \
              min(ts) AS min_ts, max(ts) AS max_ts, bool_and(flag) AS all_flag, bool_or(flag) AS any_flag \
              FROM src",
        early: true,
    },
    Shape {
        name: "price_stats",
        sql: "SELECT product, stddev(price) AS sd, stddev_pop(price) AS sd_pop, variance(price) AS var_samp, \
              var_pop(price) AS var_pop, avg(qty) AS avg_qty, avg(product) AS avg_product \
              FROM {project}.src GROUP BY product",
        early: true,
    },
    Shape {
        name: "filtered",
        sql: "SELECT country, product, count(*) AS n, sum(qty) AS qty, sum(product) AS product_sum \
              FROM src WHERE price > 20 AND flag GROUP BY country, product",
        early: true,
    },
    Shape {
        name: "distincts",
        sql: "SELECT product % 10 AS bucket, count(DISTINCT country) AS countries, count(DISTINCT qty) AS qtys, \
              beacon.approx_count_distinct(product) AS products, min(amount) AS min_amount, \
              max(amount) AS max_amount FROM src GROUP BY product % 10",
        early: true,
    },
    Shape {
        name: "hidden_key",
        sql: "SELECT country, count(*) AS n, max(qty) AS max_qty, min(qty) AS min_qty \
              FROM src GROUP BY country, product",
        early: false,
    },
    Shape {
        name: "by_flag",
        sql: "SELECT flag, count(*) AS n, count(country) AS with_country, min(country) AS min_country, \
              max(country) AS max_country, count(flag) AS flagged FROM src GROUP BY flag",
        early: false,
    },
    Shape {
        name: "default_names",
        sql: "SELECT lower(country), count(*), sum(price), min(ts), max(ts) FROM src \
              WHERE qty BETWEEN 2 AND 8 GROUP BY lower(country)",
        early: false,
    },
    Shape {
        name: "global_distinct",
        sql: "SELECT count(DISTINCT product) AS products, count(DISTINCT country) AS countries, \
              beacon.approx_count_distinct(country) AS approx_countries, count(flag) AS flagged, \
              max(price) AS max_price FROM src",
        early: false,
    },
    Shape {
        name: "minute_country",
        sql: "SELECT date_trunc('minute', ts) AS minute, lower(country) AS country, count(*) AS n, \
              sum(price) AS revenue, bool_and(flag) AS all_flag, bool_or(flag) AS any_flag FROM src \
              WHERE product % 10 <> 3 GROUP BY date_trunc('minute', ts), lower(country)",
        early: false,
    },
    Shape {
        name: "approx_ids",
        sql: "SELECT country, beacon.approx_count_distinct(id) AS ids, \
              beacon.approx_count_distinct(amount) AS amounts, count(*) AS n FROM src GROUP BY country",
        early: false,
    },
    Shape {
        name: "bucket_stats",
        sql: "SELECT product % 10 AS bucket, count(*) AS n, sum(price) AS revenue, variance(price) AS var_samp, \
              stddev(price) AS sd, min(amount) AS min_amount, sum(product) AS product_sum \
              FROM src WHERE country IS NOT NULL GROUP BY product % 10",
        early: false,
    },
];

fn views_of(project: &str, early_only: bool) -> Vec<(String, String)> {
    SHAPES
        .iter()
        .filter(|s| s.early || !early_only)
        .map(|s| (s.name.to_string(), s.sql.replace("{project}", project)))
        .collect()
}

fn oracle_under_concurrent_workload(
    mode: &'static str,
    db: &'static str,
    project: &'static str,
    seed: u64,
) {
    const CLIENTS: u64 = 4;
    const OPERATIONS: u64 = 150;
    // the writers' own zones must not matter: keys use the creator's (UTC)
    const ZONES: [&str; CLIENTS as usize] = [
        "UTC",
        "Asia/Kolkata",
        "America/New_York",
        "Australia/Adelaide",
    ];
    let _server = shared_server();
    let mut admin = server().fresh_db(db);
    admin
        .batch_execute(&format!(
            "SET TimeZone TO 'UTC'; SELECT beacon.create_project('{project}')"
        ))
        .unwrap();
    create_source(&mut admin, project);

    let early = views_of(project, true);
    for (name, query) in &early {
        create_cq(&mut admin, project, name, query, mode);
    }
    assert_views_match(&mut admin, project, &early, "on the empty source");

    let mut loader = Writer::new(project, seed * 1000);
    for _ in 0..6 {
        loader.insert(&mut admin, 50).unwrap();
    }
    let all = views_of(project, false);
    for (name, query) in all
        .iter()
        .filter(|(n, _)| !early.iter().any(|(e, _)| e == n))
    {
        create_cq(&mut admin, project, name, query, mode);
    }
    assert_views_match(
        &mut admin,
        project,
        &all,
        "after the initial load (backfill)",
    );

    let hi = loader.hi;
    let start = Arc::new(Barrier::new(CLIENTS as usize));
    let writers: Vec<_> = (0..CLIENTS)
        .map(|no| {
            let start = start.clone();
            thread::spawn(move || {
                let mut client = server().connect(db);
                client
                    .batch_execute(&format!("SET TimeZone TO '{}'", ZONES[no as usize]))
                    .unwrap();
                let mut writer = Writer::new(project, seed * 10 + no);
                writer.hi = hi;
                let mut aborted = 0u64;
                start.wait();
                for op in 0..OPERATIONS {
                    // one client, at fixed points: a TRUNCATE undone, then one kept
                    let result = match (no, op) {
                        (0, 40) => writer.truncate(&mut client, false),
                        (0, 110) => writer.truncate(&mut client, true),
                        _ => writer.random_op(&mut client),
                    };
                    match result {
                        Ok(()) => {}
                        Err(e) if retryable(&e) => aborted += 1,
                        Err(e) => panic!(
                            "client {no}, operation {op}: {}\nlast statement: {}",
                            describe(&e),
                            writer.last_sql
                        ),
                    }
                }
                aborted
            })
        })
        .collect();
    let aborted: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    if aborted > 0 {
        eprintln!(
            "{mode}: {aborted} operations rolled back by deadlocks or serialization failures"
        );
    }
    // otherwise the comparisons below would vouch for a workload that mostly never ran
    assert!(
        aborted * 2 < CLIENTS * OPERATIONS,
        "{aborted} of {} operations rolled back by deadlocks or serialization failures",
        CLIENTS * OPERATIONS
    );

    // the scheduler compacts on its own, so pending deltas are likely but not certain here
    let pending = pending_deltas(&mut admin, project);
    eprintln!("{mode}: {pending} pending deltas right after the workload");
    assert_views_match(
        &mut admin,
        project,
        &all,
        "after the workload, before compaction",
    );

    // a reader sees its own uncommitted writes through the views, and nothing after rollback
    {
        let mut tx = admin.transaction().unwrap();
        tx.execute(
            &format!(
                "INSERT INTO {project}.src (ts, country, product, price, qty, flag, amount) \
                 VALUES ('2024-03-10 00:00:00+00', 'Own', 7, 1.5, 3, true, 1.25)"
            ),
            &[],
        )
        .unwrap();
        let own: i64 = tx
            .query_one(
                &format!("SELECT n FROM {project}.by_country WHERE country = 'own'"),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(own, 1, "the view shows the reader's own uncommitted insert");
        assert_views_match(
            &mut tx,
            project,
            &all,
            "inside a transaction with an uncommitted insert",
        );
        tx.rollback().unwrap();
    }
    let own: i64 = admin
        .query_one(
            &format!("SELECT count(*) FROM {project}.by_country WHERE country = 'own'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(own, 0, "the rolled back insert left no group behind");

    compact(&mut admin);
    assert_views_match(&mut admin, project, &all, "after beacon.compact()");
    if mode == "async" {
        assert_eq!(
            pending_deltas(&mut admin, project),
            0,
            "no pending deltas after beacon.compact()"
        );
    }

    let catalog = admin
        .query(
            "SELECT name::text, mode::text, time_zone::text, last_error::text FROM beacon.continuous_queries \
             WHERE project = $1 ORDER BY name",
            &[&project],
        )
        .unwrap();
    let mut expected_names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
    expected_names.sort();
    let names: Vec<String> = catalog.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        names, expected_names,
        "every query is in beacon.continuous_queries"
    );
    for row in &catalog {
        let name: String = row.get(0);
        assert_eq!(row.get::<_, String>(1), mode, "mode of {name}");
        assert_eq!(row.get::<_, String>(2), "UTC", "time zone of {name}");
        assert_eq!(
            row.get::<_, Option<String>>(3),
            None,
            "last error of {name}"
        );
    }
}

#[test]
fn oracle_under_concurrent_workload_async() {
    oracle_under_concurrent_workload("async", "cq_async_db", "cq_async", 1);
}

#[test]
fn oracle_under_concurrent_workload_immediate() {
    oracle_under_concurrent_workload("immediate", "cq_imm_db", "cq_imm", 2);
}

// ---------------------------------------------------------------------------------------

#[test]
fn time_zone_is_fixed_at_creation() {
    const CREATOR_TZ: &str = "America/New_York";
    const WRITER_ZONES: [&str; 2] = ["UTC", "Asia/Kolkata"];
    const QUERY: &str = "SELECT date_trunc('hour', ts) AS hour, date_trunc('day', ts) AS day, \
                         count(*) AS n, sum(qty) AS qty FROM src \
                         GROUP BY date_trunc('hour', ts), date_trunc('day', ts)";
    let _server = shared_server();
    let (db, project) = ("tz_db", "tzp");
    let mut creator = server().fresh_db(db);
    creator
        .batch_execute(&format!(
            "SET TimeZone TO '{CREATOR_TZ}'; SELECT beacon.create_project('{project}');
             CREATE TABLE {project}.src (id bigserial PRIMARY KEY, ts timestamptz NOT NULL, qty bigint)"
        ))
        .unwrap();
    let views = ["by_hour_async", "by_hour_immediate"];
    create_cq(&mut creator, project, views[0], QUERY, "async");
    create_cq(&mut creator, project, views[1], QUERY, "immediate");

    let start = Arc::new(Barrier::new(WRITER_ZONES.len()));
    let writers: Vec<_> = WRITER_ZONES
        .iter()
        .enumerate()
        .map(|(no, zone)| {
            let start = start.clone();
            thread::spawn(move || {
                let mut client = server().connect(db);
                client.batch_execute(&format!("SET TimeZone TO '{zone}'")).unwrap();
                let mut rng = Rng::new(100 + no as u64);
                let mut hi = 0i64;
                start.wait();
                for _ in 0..60 {
                    // three days around New York's switch to daylight saving time (March 10,
                    // 07:00 UTC); local times without an offset are read in the writer's zone
                    let sql = match rng.below(10) {
                        0..=6 => {
                            let values: Vec<String> = (0..1 + rng.below(10))
                                .map(|_| {
                                    let offset = ["+00", "", "+05:30"][rng.below(3) as usize];
                                    format!(
                                        "('2024-03-{:02} {:02}:{:02}:00{offset}', {})",
                                        9 + rng.below(3),
                                        rng.below(24),
                                        rng.below(60),
                                        rng.below(10)
                                    )
                                })
                                .collect();
                            format!("INSERT INTO {project}.src (ts, qty) VALUES {} RETURNING id", values.join(", "))
                        }
                        7 | 8 => format!(
                            "UPDATE {project}.src SET ts = ts + interval '45 minutes' WHERE id = {} RETURNING id",
                            1 + rng.below(hi.max(1) as u64)
                        ),
                        _ => format!(
                            "DELETE FROM {project}.src WHERE id = {} RETURNING id",
                            1 + rng.below(hi.max(1) as u64)
                        ),
                    };
                    let rows = client
                        .query(sql.as_str(), &[])
                        .unwrap_or_else(|e| panic!("writer in {zone}: `{sql}`: {}", describe(&e)));
                    hi = rows.iter().map(|r| r.get::<_, i64>(0)).fold(hi, i64::max);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }

    let mut reader = server().connect(db);
    for view in views {
        // read while deltas may be pending, from a session in yet another zone
        if let Err(e) = compare(
            &mut reader,
            project,
            view,
            QUERY,
            CREATOR_TZ,
            "Asia/Kolkata",
        ) {
            panic!("{view} before compaction, read from Asia/Kolkata: {e}");
        }
        // the data must straddle zone-dependent boundaries, or this test proves nothing
        assert!(
            compare(&mut reader, project, view, QUERY, "Asia/Kolkata", "Asia/Kolkata").is_err(),
            "{view} also equals the query evaluated in Asia/Kolkata: the data does not exercise time zones"
        );
    }
    compact(&mut reader);
    for view in views {
        if let Err(e) = compare(&mut reader, project, view, QUERY, CREATOR_TZ, "UTC") {
            panic!("{view} after compaction, read from UTC: {e}");
        }
    }
    let zones = reader
        .query(
            "SELECT name::text, time_zone::text FROM beacon.continuous_queries WHERE project = $1 ORDER BY name",
            &[&project],
        )
        .unwrap();
    let zones: Vec<(String, String)> = zones.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        zones,
        vec![
            (views[0].to_string(), CREATOR_TZ.to_string()),
            (views[1].to_string(), CREATOR_TZ.to_string())
        ]
    );
}

// ---------------------------------------------------------------------------------------

#[test]
fn refusals_leave_nothing_behind() {
    let _server = shared_server();
    let (db, project) = ("refuse_db", "refuse");
    let mut client = server().fresh_db(db);
    client
        .batch_execute(&format!(
            "SET TimeZone TO 'UTC'; SELECT beacon.create_project('{project}'); SELECT beacon.create_project('refuse_other');
             CREATE TABLE refuse_other.src {SOURCE_COLUMNS};
             CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.t (a int)"
        ))
        .unwrap();
    create_source(&mut client, project);
    let baseline = objects(&mut client);

    let group = "FROM src GROUP BY country";
    // (what, query, refused as unsupported with 0A000, a part the message must name)
    let cases: Vec<(&str, String, bool, &str)> = vec![
        (
            "a full join",
            "SELECT s.country, count(*) AS n FROM src s FULL JOIN src t ON s.id = t.id GROUP BY s.country".into(),
            true,
            "FULL JOIN",
        ),
        (
            "a non-equi join",
            "SELECT s.country, count(*) AS n FROM src s JOIN src t ON s.id < t.id GROUP BY s.country".into(),
            true,
            "non-equi",
        ),
        ("a comma join", "SELECT country, count(*) AS n FROM src, _rejected GROUP BY country".into(), true, "join"),
        (
            "a subquery in WHERE",
            "SELECT country, count(*) AS n FROM src WHERE id IN (SELECT id FROM src) GROUP BY country".into(),
            true,
            "subquer",
        ),
        (
            "a subquery in FROM",
            "SELECT country, count(*) AS n FROM (SELECT * FROM src) s GROUP BY country".into(),
            true,
            "subquer",
        ),
        (
            "a window function",
            format!("SELECT country, count(*) AS n, row_number() OVER () AS r {group}"),
            true,
            "window",
        ),
        ("LIMIT", format!("SELECT country, count(*) AS n {group} LIMIT 5"), true, "LIMIT"),
        ("ORDER BY", format!("SELECT country, count(*) AS n {group} ORDER BY country"), true, "ORDER BY"),
        ("HAVING", format!("SELECT country, count(*) AS n {group} HAVING count(*) > 1"), true, "HAVING"),
        ("DISTINCT", format!("SELECT DISTINCT country, count(*) AS n {group}"), true, "DISTINCT"),
        (
            "UNION",
            format!("SELECT country, count(*) AS n {group} UNION SELECT country, count(*) AS n {group}"),
            true,
            "UNION",
        ),
        (
            "random() in a key",
            "SELECT floor(random() * 10) AS k, count(*) AS n FROM src GROUP BY floor(random() * 10)".into(),
            true,
            "random",
        ),
        (
            "now() in WHERE",
            "SELECT country, count(*) AS n FROM src WHERE ts > now() - interval '1 day' GROUP BY country".into(),
            true,
            "now(",
        ),
        (
            "string_agg",
            "SELECT product, string_agg(country, ',') AS countries FROM src GROUP BY product".into(),
            true,
            "string_agg",
        ),
        (
            "an expression over an aggregate",
            "SELECT product, sum(qty) + 1 AS s FROM src GROUP BY product".into(),
            true,
            "sum(qty)",
        ),
        ("SELECT *", "SELECT * FROM src".into(), true, "*"),
        (
            "a table in another schema",
            "SELECT a, count(*) AS n FROM elsewhere.t GROUP BY a".into(),
            false,
            "elsewhere",
        ),
        (
            "a table of another project",
            "SELECT country, count(*) AS n FROM refuse_other.src GROUP BY country".into(),
            false,
            "refuse_other",
        ),
        (
            "a missing table",
            "SELECT country, count(*) AS n FROM missing_table GROUP BY country".into(),
            false,
            "missing_table",
        ),
    ];
    let valid = format!("SELECT country, count(*) AS n {group}");
    let mut attempts: Vec<(String, String, String, &str, bool, &str)> = Vec::new();
    for (what, query, unsupported, needle) in &cases {
        for mode in ["async", "immediate"] {
            attempts.push((
                format!("{what} ({mode})"),
                "attempt".into(),
                query.clone(),
                mode,
                *unsupported,
                needle,
            ));
        }
    }
    attempts.push((
        "an invalid mode".into(),
        "attempt".into(),
        valid.clone(),
        "sometimes",
        false,
        "sometimes",
    ));
    attempts.push((
        "an invalid name".into(),
        "Bad Name".into(),
        valid.clone(),
        "async",
        false,
        "Bad Name",
    ));
    attempts.push((
        "a name taken by a table".into(),
        "src".into(),
        valid.clone(),
        "async",
        false,
        "src",
    ));

    let check_refused = |client: &mut Client,
                         baseline: &[String],
                         (what, name, query, mode, unsupported, needle): &(
        String,
        String,
        String,
        &str,
        bool,
        &str,
    )| {
        let result = client.execute(
            "SELECT beacon.create_continuous_query($1, $2, $3, $4)",
            &[&project, name, query, mode],
        );
        let error = match result {
            Ok(_) => panic!("{what} was accepted: `{query}`"),
            Err(e) => e,
        };
        let db_error = error
            .as_db_error()
            .unwrap_or_else(|| panic!("{what}: not a server error: {error}"));
        if *unsupported {
            assert_eq!(
                db_error.code(),
                &SqlState::FEATURE_NOT_SUPPORTED,
                "{what} must be refused as feature_not_supported: {}",
                describe(&error)
            );
        }
        let text = describe(&error).to_lowercase();
        assert!(
            text.contains(&needle.to_lowercase()),
            "the refusal of {what} does not mention {needle:?}: {}",
            describe(&error)
        );
        assert_eq!(objects(client), baseline, "{what} left something behind");
        let triggers: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'refuse.src'::regclass AND NOT tgisinternal",
                &[],
            )
            .unwrap()
            .get(0);
        let before = baseline
            .iter()
            .filter(|o| o.starts_with("trigger ") && o.ends_with(" on refuse.src"))
            .count();
        assert_eq!(
            triggers as usize, before,
            "{what} left a trigger on the source"
        );
    };
    for attempt in &attempts {
        check_refused(&mut client, &baseline[..], attempt);
    }
    let listed: i64 = client
        .query_one("SELECT count(*) FROM beacon.continuous_queries", &[])
        .unwrap()
        .get(0);
    assert_eq!(listed, 0);

    // the refusals were about the queries, not the setup: a valid one is accepted
    create_cq(&mut client, project, "accepted", &valid, "async");
    let accepted: i64 = client
        .query_one(
            "SELECT count(*) FROM beacon.continuous_queries WHERE project = $1 AND name = 'accepted'",
            &[&project],
        )
        .unwrap()
        .get(0);
    assert_eq!(accepted, 1);
    assert!(
        compare(&mut client, project, "accepted", &valid, "UTC", "UTC").is_ok(),
        "the accepted query's view"
    );
    let with_accepted = objects(&mut client);
    check_refused(
        &mut client,
        &with_accepted[..],
        &(
            "a name taken by a continuous query".into(),
            "accepted".into(),
            valid.clone(),
            "async",
            false,
            "accepted",
        ),
    );
}

// ---------------------------------------------------------------------------------------

#[test]
fn drop_source_column_is_refused_or_clean() {
    let _server = shared_server();
    let (db, project) = ("dropcol_db", "dropcol");
    let mut client = server().fresh_db(db);
    client
        .batch_execute(&format!(
            "SET TimeZone TO 'UTC'; SELECT beacon.create_project('{project}')"
        ))
        .unwrap();
    let baseline = objects(&mut client);
    create_source(&mut client, project);
    let mut writer = Writer::new(project, 77);
    writer.insert(&mut client, 40).unwrap();
    let views: Vec<(String, String)> = vec![
        (
            "revenue".into(),
            "SELECT country, count(*) AS n, sum(price) AS revenue FROM src GROUP BY country".into(),
        ),
        (
            "price_range".into(),
            "SELECT product, min(price) AS min_price, max(price) AS max_price FROM src GROUP BY product".into(),
        ),
    ];
    create_cq(&mut client, project, &views[0].0, &views[0].1, "async");
    create_cq(&mut client, project, &views[1].0, &views[1].1, "immediate");

    let dropped = client.batch_execute(&format!("ALTER TABLE {project}.src DROP COLUMN price"));
    assert!(
        dropped.is_err(),
        "dropping a column a continuous query reads must fail"
    );
    let dropped = client.batch_execute(&format!("DROP TABLE {project}.src"));
    assert!(
        dropped.is_err(),
        "dropping the source of a continuous query without CASCADE must fail"
    );

    // the failed attempts must not have disturbed capture
    writer.insert(&mut client, 30).unwrap();
    let sql = format!("DELETE FROM {project}.src WHERE id % 3 = 0");
    writer.run(&mut client, sql).unwrap();
    assert_views_match(&mut client, project, &views, "after refused drops");

    for (name, _) in &views {
        client
            .execute(
                "SELECT beacon.drop_continuous_query($1, $2)",
                &[&project, name],
            )
            .unwrap_or_else(|e| panic!("drop {name}: {}", describe(&e)));
    }
    client
        .batch_execute(&format!("DROP TABLE {project}.src"))
        .unwrap_or_else(|e| panic!("DROP TABLE after dropping the queries: {}", describe(&e)));
    let leftovers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = $1::text::regnamespace AND relname LIKE '\\_cq\\_%'",
            &[&project],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        leftovers, 0,
        "no _cq_ relation is left in the project schema"
    );
    let listed: i64 = client
        .query_one(
            "SELECT count(*) FROM beacon.continuous_queries WHERE project = $1",
            &[&project],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 0);
    assert_eq!(
        objects(&mut client),
        baseline,
        "dropping the queries and the source leaves nothing behind"
    );
}

// ---------------------------------------------------------------------------------------

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, AtomicOrdering::SeqCst);
    }
}

#[test]
fn crash_during_workload_keeps_views_exact() {
    const WRITERS: u64 = 3;
    const MAX_OPERATIONS: u64 = 20_000;
    let _server = exclusive_server();
    let (db, project) = ("crash_db", "crash");
    let mut admin = server().fresh_db(db);
    admin
        .batch_execute(&format!(
            "SET TimeZone TO 'UTC'; SELECT beacon.create_project('{project}')"
        ))
        .unwrap();
    create_source(&mut admin, project);
    let mut loader = Writer::new(project, 500);
    for _ in 0..4 {
        loader.insert(&mut admin, 50).unwrap();
    }
    let views: Vec<(String, String, &str)> = vec![
        (
            "by_country".into(),
            "SELECT lower(country) AS country, count(*) AS n, sum(qty) AS qty, sum(amount) AS amount, \
             min(price) AS min_price, max(amount) AS max_amount, avg(price) AS avg_price, \
             count(DISTINCT product) AS products FROM src GROUP BY lower(country)"
                .into(),
            "async",
        ),
        (
            "totals".into(),
            "SELECT count(*) AS n, sum(price) AS revenue, max(ts) AS max_ts, bool_or(flag) AS any_flag FROM src"
                .into(),
            "async",
        ),
        (
            "by_bucket".into(),
            "SELECT product % 10 AS bucket, count(*) AS n, sum(qty) AS qty, min(amount) AS min_amount, \
             bool_or(flag) AS any_flag, beacon.approx_count_distinct(id) AS ids FROM src GROUP BY product % 10"
                .into(),
            "immediate",
        ),
    ];
    for (name, query, mode) in &views {
        create_cq(&mut admin, project, name, query, mode);
    }
    // the test server commits asynchronously: a crash may lose the last commits, which is
    // fine for the writers' (the source and its deltas lose them together) but not for the
    // queries themselves
    admin.batch_execute("CHECKPOINT").unwrap();
    let views: Vec<(String, String)> = views.into_iter().map(|(n, q, _)| (n, q)).collect();

    let crashing = Arc::new(AtomicBool::new(false));
    // should this test fail early, the writers stop instead of slowing down the others
    let _stop_writers = SetOnDrop(crashing.clone());
    let done = Arc::new(AtomicU64::new(0));
    let hi = loader.hi;
    let writers: Vec<_> = (0..WRITERS)
        .map(|no| {
            let (crashing, done) = (crashing.clone(), done.clone());
            thread::spawn(move || {
                let mut client = server().connect(db);
                let mut writer = Writer::new(project, 600 + no);
                writer.hi = hi;
                for op in 0..MAX_OPERATIONS {
                    if crashing.load(AtomicOrdering::SeqCst) {
                        break;
                    }
                    match writer.committing_op(&mut client) {
                        Ok(()) => {
                            done.fetch_add(1, AtomicOrdering::SeqCst);
                        }
                        // the server is going down under us: that is the point
                        Err(_) if crashing.load(AtomicOrdering::SeqCst) => break,
                        Err(e) if retryable(&e) => {}
                        Err(e) => panic!(
                            "writer {no}, operation {op} before the crash: {}\nlast statement: {}",
                            describe(&e),
                            writer.last_sql
                        ),
                    }
                }
            })
        })
        .collect();

    eventually("writes under way with deltas pending", || {
        done.load(AtomicOrdering::SeqCst) >= 50 && pending_deltas(&mut admin, project) > 0
    });
    crashing.store(true, AtomicOrdering::SeqCst);
    server().stop("immediate");
    server().start_existing();
    for w in writers {
        w.join().expect("writer");
    }
    drop(admin);

    let mut client = server().connect(db);
    client.batch_execute("SET TimeZone TO 'UTC'").unwrap();
    assert_views_match(
        &mut client,
        project,
        &views,
        "after crash recovery, before compaction",
    );
    compact(&mut client);
    assert_views_match(
        &mut client,
        project,
        &views,
        "after crash recovery and beacon.compact()",
    );
    assert_eq!(pending_deltas(&mut client, project), 0);

    // the restarted scheduler must pick up new deltas without being asked
    let mut writer = Writer::new(project, 700);
    writer.hi = client
        .query_one(
            &format!("SELECT coalesce(max(id), 0) FROM {project}.src"),
            &[],
        )
        .unwrap()
        .get(0);
    for op in 0..100 {
        writer.committing_op(&mut client).unwrap_or_else(|e| {
            panic!(
                "operation {op} after restart: {}\n{}",
                describe(&e),
                writer.last_sql
            )
        });
    }
    eventually("the scheduler to compact after the restart", || {
        pending_deltas(&mut client, project) == 0
    });
    assert_views_match(
        &mut client,
        project,
        &views,
        "after the scheduler compacted",
    );
    let errors: i64 = client
        .query_one(
            "SELECT count(*) FROM beacon.continuous_queries WHERE project = $1 AND last_error IS NOT NULL",
            &[&project],
        )
        .unwrap()
        .get(0);
    assert_eq!(errors, 0, "no continuous query recorded an error");
}

// ---------------------------------------------------------------------------------------

/// Queries created while writers keep committing: each row is either visible to the
/// backfill or captured by the trigger, never both and never neither.
#[test]
fn backfill_misses_no_concurrent_rows() {
    let _server = shared_server();
    let (db, project) = ("backfill_db", "backfill");
    let mut client = server().fresh_db(db);
    client
        .batch_execute(&format!(
            "SET TimeZone TO 'UTC'; SELECT beacon.create_project('{project}')"
        ))
        .unwrap();
    create_source(&mut client, project);
    let mut loader = Writer::new(project, 501);
    for _ in 0..40 {
        loader.insert(&mut client, 50).unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..3u64)
        .map(|n| {
            let (stop, committed) = (stop.clone(), committed.clone());
            thread::spawn(move || {
                let mut client = server().connect(db);
                let mut writer = Writer::new(project, 600 + n);
                writer.hi = 2000;
                let mut operations = 0;
                while !stop.load(AtomicOrdering::SeqCst) && operations < 5000 {
                    match writer.committing_op(&mut client) {
                        Ok(()) => {
                            committed.fetch_add(1, AtomicOrdering::SeqCst);
                        }
                        Err(e) if retryable(&e) => {}
                        Err(e) => panic!("writer {n}: {}: {}", writer.last_sql, describe(&e)),
                    }
                    operations += 1;
                }
            })
        })
        .collect();

    let shapes = [
        ("by_country", "SELECT country, count(*) AS n, sum(qty) AS q, max(price) AS top FROM src GROUP BY country"),
        ("by_product", "SELECT product % 7 AS bucket, count(DISTINCT country) AS countries, min(ts) AS first FROM src GROUP BY 1"),
    ];
    let mut views = Vec::new();
    for (name, query) in shapes {
        for mode in ["async", "immediate"] {
            // let writers commit between creations, so each creation races with them
            let before = committed.load(AtomicOrdering::SeqCst);
            eventually("writers to commit more operations", || {
                committed.load(AtomicOrdering::SeqCst) >= before + 20
            });
            let view = format!("{name}_{mode}");
            create_cq(&mut client, project, &view, query, mode);
            views.push((view, query.to_string()));
        }
    }
    let before = committed.load(AtomicOrdering::SeqCst);
    eventually("writers to commit after the last creation", || {
        committed.load(AtomicOrdering::SeqCst) >= before + 50
    });
    stop.store(true, AtomicOrdering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    assert_views_match(&mut client, project, &views, "after concurrent creation");
    compact(&mut client);
    assert_views_match(&mut client, project, &views, "after compaction");
}
