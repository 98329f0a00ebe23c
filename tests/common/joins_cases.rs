//! Fixtures of the deterministic join tests (tests/cq_joins.rs): the star + snowflake
//! schema of the interleavings, TRUNCATE, crash and DDL tests; the shop schema of the
//! change-kind tests and its queries; the refusal and index-advisor schemas and their
//! checks; the driver of the crossing fact writers.
#![allow(dead_code)]

use crate::common::{server, Rng};
use crate::joins::{self, View};
use postgres::Client;

// ---------------------------------------------------------------------------------------
// Star + snowflake: facts → products → brands, facts → customers

pub const SCHEMA: &str = "
    CREATE TABLE brands (id int PRIMARY KEY, region text);
    CREATE TABLE products (id int PRIMARY KEY, category text, brand int);
    CREATE INDEX ON products (brand);
    CREATE TABLE customers (id int PRIMARY KEY, segment text);
    CREATE TABLE facts (id int PRIMARY KEY, product int, customer int, qty int);
    CREATE INDEX ON facts (product);
    CREATE INDEX ON facts (customer);";

/// Product 4, customer 3 and brand 4 are referenced but missing (LEFT JOIN rows without a
/// match); brand 3 has no product, facts 4 and 6 have NULL keys.
pub const BASELINE_ROWS: [(&str, &str); 4] = [
    (
        "brands",
        "INSERT INTO brands VALUES (1, 'north'), (2, 'south'), (3, 'east')",
    ),
    (
        "products",
        "INSERT INTO products VALUES (1, 'c1', 1), (2, 'c2', 2), (3, 'c1', 4)",
    ),
    (
        "customers",
        "INSERT INTO customers VALUES (1, 'retail'), (2, 'corp')",
    ),
    (
        "facts",
        "INSERT INTO facts VALUES (1, 1, 1, 10), (2, 1, 2, 20), (3, 2, 1, 30), (4, 3, NULL, 40), \
         (5, 4, 3, 50), (6, NULL, 2, 60), (7, 1, 1, 70), (8, 2, 2, 80)",
    ),
];

pub fn baseline() -> String {
    BASELINE_ROWS
        .iter()
        .map(|(_, sql)| format!("{sql};"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Empties every table with DELETE (maintained like any writer) and inserts the baseline.
pub fn reset_sql() -> String {
    format!(
        "BEGIN; DELETE FROM facts; DELETE FROM products; DELETE FROM customers; \
         DELETE FROM brands; {} COMMIT",
        baseline()
    )
}

pub const QUERIES: [(&str, &str); 5] = [
    (
        "by_category",
        "SELECT p.category, count(*) AS n, sum(f.qty) AS qty, count(DISTINCT f.customer) AS customers \
         FROM facts f JOIN products p ON p.id = f.product GROUP BY p.category",
    ),
    (
        "by_category_segment",
        "SELECT p.category, c.segment, count(*) AS n, count(p.id) AS matched, sum(f.qty) AS qty, max(f.qty) AS top \
         FROM facts f LEFT JOIN products p ON p.id = f.product LEFT JOIN customers c ON c.id = f.customer \
         GROUP BY p.category, c.segment",
    ),
    (
        "by_region",
        "SELECT b.region, count(*) AS n, sum(f.qty) AS qty, min(p.category) AS first_category \
         FROM facts f JOIN products p ON p.id = f.product JOIN brands b ON b.id = p.brand GROUP BY b.region",
    ),
    (
        "by_region_left",
        "SELECT b.region, count(*) AS n, sum(f.qty) AS qty, count(c.segment) AS with_segment \
         FROM facts f LEFT JOIN customers c ON c.id = f.customer LEFT JOIN products p ON p.id = f.product \
         LEFT JOIN brands b ON b.id = p.brand GROUP BY b.region",
    ),
    (
        "not_corporate",
        "SELECT count(*) AS n, sum(f.qty) AS qty FROM facts f JOIN customers c ON c.id = f.customer AND c.segment <> 'corp'",
    ),
];

// ---------------------------------------------------------------------------------------
// Every change kind

/// orders → items (int4 = int8), orders → stores (int8 = int2) → regions (text = varchar):
/// join columns of mixed widths and of text and varchar.
pub const SHOP: &str = "
    CREATE TABLE regions (rcode varchar(8), rname text);
    CREATE TABLE stores (sid smallint, region_code text, sname text);
    CREATE TABLE items (iid bigint PRIMARY KEY, cat text, price numeric, launched date);
    CREATE TABLE orders (oid bigserial PRIMARY KEY, item int, store bigint, qty int2, big int8,
                         note text, placed date, rush boolean);
    INSERT INTO regions VALUES ('N', 'north'), ('S', 'south'), ('E', 'empty');
    INSERT INTO stores VALUES (10, 'N', 'ten'), (11, 'S', 'eleven'), (12, 'X', 'lost'), (13, NULL, 'nowhere');
    INSERT INTO items VALUES (1, 'c1', 1.50, '2024-01-01'), (2, 'c2', 2.25, '2024-01-02'),
                             (3, 'c1', 10.00, '2024-01-03'), (4, 'unsold', 0.01, '2024-01-04');
    INSERT INTO orders (item, store, qty, big, note, placed, rush) VALUES
        (1, 10, 3, 9000000000, 'a', '2024-01-01', true), (2, 11, 5, -1, 'b', '2024-01-02', false),
        (3, 12, 1, 1, NULL, '2024-01-03', NULL), (9, 10, 2, 2, 'c', '2024-01-01', true),
        (NULL, NULL, 4, 4, 'd', NULL, true), (1, 13, 6, 6, 'a', '2024-01-01', false);";

pub const SHOP_QUERIES: [(&str, &str); 8] = [
    (
        "every_aggregate",
        "SELECT i.cat, count(*) AS n, count(s.sname) AS named, count(DISTINCT o.store) AS stores, \
         sum(o.qty) AS q, sum(o.big) AS b, sum(i.price) AS revenue, avg(o.qty) AS avg_q, \
         avg(i.price) AS avg_price, min(o.note) AS first_note, max(i.launched) AS last_launch, \
         min(o.placed) AS first_placed, stddev_samp(o.qty) AS sd, var_pop(i.price) AS vp, \
         bool_and(o.rush) AS all_rush, bool_or(o.rush) AS any_rush \
         FROM orders o JOIN items i ON i.iid = o.item LEFT JOIN stores s ON s.sid = o.store GROUP BY i.cat",
    ),
    (
        "unqualified_snowflake",
        "SELECT rname, count(*) AS n, sum(qty) AS q, max(sname) AS last_store FROM orders \
         JOIN stores ON sid = store JOIN regions ON rcode = region_code WHERE rush GROUP BY rname",
    ),
    (
        "left_chain",
        "SELECT r.rname, s.sname, count(*) AS n, count(i.iid) AS with_item, max(o.qty) AS top \
         FROM orders o LEFT JOIN stores s ON s.sid = o.store LEFT JOIN regions r ON r.rcode = s.region_code \
         LEFT JOIN items i ON i.iid = o.item GROUP BY r.rname, s.sname",
    ),
    (
        "two_equalities_and_a_filter",
        "SELECT o.placed, count(*) AS n, sum(o.qty) AS q FROM orders o \
         JOIN items i ON i.iid = o.item AND i.launched = o.placed AND i.price > 1 GROUP BY o.placed",
    ),
    (
        "self_join",
        "SELECT a.cat, count(*) AS pairs, sum(b.price) AS p FROM items a JOIN items b ON b.cat = a.cat AND b.price > 2 \
         GROUP BY a.cat",
    ),
    (
        "fact_through_a_self_join",
        "SELECT o.note, count(*) AS n, count(DISTINCT b.iid) AS siblings FROM orders o \
         JOIN items a ON a.iid = o.item JOIN items b ON b.cat = a.cat GROUP BY o.note",
    ),
    (
        "rooted_at_a_dimension",
        "SELECT i.cat, count(*) AS n, count(o.oid) AS orders, sum(o.qty) AS q, min(o.placed) AS first \
         FROM items i LEFT JOIN orders o ON o.item = i.iid GROUP BY i.cat",
    ),
    (
        "global_left_where",
        "SELECT count(*) AS n, sum(o.qty) AS q, count(DISTINCT s.region_code) AS regions \
         FROM orders o LEFT JOIN stores s ON s.sid = o.store WHERE s.sid IS NULL OR s.sname <> 'lost'",
    ),
];

/// Each statement is one kind of change; the views are compared after every one.
pub const SHOP_CHANGES: [&str; 22] = [
    "INSERT INTO orders (item, store, qty, big, note, placed, rush) VALUES \
     (1, 10, 7, 9223372036854775807, 'e', '2024-01-01', true), (4, 11, 1, 1, 'f', '2024-01-04', NULL)",
    "INSERT INTO items VALUES (9, 'new', 4.50, '2024-01-01')",
    "UPDATE items SET cat = 'moved' WHERE iid = 1",
    "UPDATE items SET price = price * 2 WHERE cat = 'c1'",
    "UPDATE items SET iid = 20 WHERE iid = 2",
    "UPDATE orders SET item = 20 WHERE item = 2",
    "UPDATE orders SET store = NULL WHERE note = 'a'",
    "UPDATE stores SET region_code = 'S' WHERE sid = 10",
    "UPDATE regions SET rname = 'South' WHERE rcode = 'S'",
    "UPDATE regions SET rcode = 'Q' WHERE rcode = 'N'",
    "INSERT INTO regions VALUES ('X', 'found')",
    "INSERT INTO stores VALUES (12, 'N', 'duplicate twelve'), (10, 'S', 'duplicate ten')",
    "DELETE FROM stores WHERE sname = 'duplicate ten'",
    "DELETE FROM items WHERE iid = 9",
    "DELETE FROM orders WHERE qty > 5",
    "UPDATE orders SET qty = qty + 1, rush = NOT rush WHERE store = 11",
    "DELETE FROM regions WHERE rcode = 'S'",
    "INSERT INTO orders (item, store, qty, big, note, placed, rush) \
     SELECT g % 5, 10 + g % 4, g % 7, g, pg_catalog.chr(97 + g % 4), date '2024-01-01' + g % 3, g % 2 = 0 \
     FROM pg_catalog.generate_series(1, 60) g",
    "UPDATE items SET cat = NULL WHERE iid = 3",
    "UPDATE stores SET sid = 11 WHERE sid = 13",
    "UPDATE orders SET item = CASE WHEN item = 1 THEN 3 WHEN item = 3 THEN 1 ELSE item END WHERE oid % 2 = 0",
    "DELETE FROM items WHERE cat = 'moved'",
];

// ---------------------------------------------------------------------------------------
// Refusals

pub const REFUSAL_SCHEMA: &str = "
    CREATE TABLE f (id bigserial PRIMARY KEY, pid int, cid int, q int, amount numeric, day date);
    CREATE TABLE p (pid int PRIMARY KEY, cat text, since timestamptz);
    CREATE TABLE c (cid int PRIMARY KEY, seg text);";

/// Creation must fail with one of `codes`, the message (or detail, or hint) naming the refused
/// part (one of `parts`, lower case), and nothing created. The query is valid SQL, so the
/// refusal is pg_beacon's.
pub fn assert_refused(
    client: &mut Client,
    name: &str,
    query: &str,
    codes: &[&str],
    parts: &[&str],
) -> Option<String> {
    if let Err(e) = client.batch_execute(&format!("EXPLAIN {query}")) {
        return Some(format!(
            "{name}: the query is not valid SQL: {}\n  {query}",
            joins::describe(&e)
        ));
    }
    let before: i64 = client
        .query_one("SELECT count(*) FROM beacon.continuous_queries", &[])
        .unwrap()
        .get(0);
    let view = View::new(name, query, "async");
    let problem = match joins::create(client, &view) {
        Ok(()) => Some("was accepted".to_string()),
        Err(e) => {
            let text = joins::describe(&e);
            let lower = text.to_lowercase();
            if !codes.contains(&joins::sqlstate(&e).as_str()) {
                Some(format!("failed with {text}, expected SQLSTATE {codes:?}"))
            } else if !parts.iter().any(|p| lower.contains(p)) {
                Some(format!("failed with {text}: names none of {parts:?}"))
            } else {
                None
            }
        }
    };
    let after: i64 = client
        .query_one("SELECT count(*) FROM beacon.continuous_queries", &[])
        .unwrap()
        .get(0);
    let relation: Option<String> = client
        .query_one("SELECT pg_catalog.to_regclass($1)::text", &[&name])
        .unwrap()
        .get(0);
    let leftovers = if problem.is_none() && (after != before || relation.is_some()) {
        Some("refused but left a query or a relation behind".to_string())
    } else {
        None
    };
    problem
        .or(leftovers)
        .map(|p| format!("{name}: {p}\n  {query}"))
}

pub const EQUALITY: [&str; 5] = ["equal", "equi-", "equijoin", " = ", "\"=\""];

// ---------------------------------------------------------------------------------------
// Index advisor

pub const ADVISOR_SCHEMA: &str = "
    CREATE TABLE sales (id bigserial PRIMARY KEY, prod_ref int, cust_ref int, amount int);
    CREATE TABLE catalog (code int, grp text, maker_ref int);
    CREATE TABLE clients (cid int PRIMARY KEY, tier text);
    CREATE TABLE makers (mk int PRIMARY KEY, country text);
    INSERT INTO catalog VALUES (1, 'g1', 1), (2, 'g2', 2), (3, 'g1', NULL);
    INSERT INTO clients VALUES (1, 'gold'), (2, 'tin');
    INSERT INTO makers VALUES (1, 'fr'), (2, 'de');
    INSERT INTO sales (prod_ref, cust_ref, amount) SELECT g % 4, g % 3, g FROM pg_catalog.generate_series(1, 30) g;";

pub const STAR: &str = "SELECT c.grp, k.tier, count(*) AS n, sum(s.amount) AS total FROM sales s \
     JOIN catalog c ON c.code = s.prod_ref LEFT JOIN clients k ON k.cid = s.cust_ref GROUP BY c.grp, k.tier";
pub const SNOWFLAKE: &str = "SELECT m.country, count(*) AS n, max(s.amount) AS top FROM sales s \
     JOIN catalog c ON c.code = s.prod_ref JOIN makers m ON m.mk = c.maker_ref GROUP BY m.country";

/// Whether some notice names `table` and, within the next three words, `column` (as in
/// `sales (prod_ref)`, `sales.prod_ref`, `ON sales USING btree (prod_ref)`).
pub fn names_index(notices: &[String], table: &str, column: &str) -> bool {
    notices.iter().any(|n| {
        let words: Vec<&str> = n
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        words
            .iter()
            .enumerate()
            .any(|(i, w)| *w == table && words[i + 1..].iter().take(3).any(|x| *x == column))
    })
}

/// The indexes of the test's own tables (pg_beacon's state tables have theirs).
pub fn indexes(client: &mut Client) -> Vec<String> {
    client
        .query(
            "SELECT indexdef FROM pg_catalog.pg_indexes WHERE schemaname = current_schema() \
               AND tablename IN ('sales', 'catalog', 'clients', 'makers') ORDER BY indexdef",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The leading column of some index of `table` is `column`.
pub fn indexed(client: &mut Client, table: &str, column: &str) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = $1::text::regclass AND a.attname = $2)",
            &[&table, &column],
        )
        .unwrap()
        .get(0)
}

// ---------------------------------------------------------------------------------------
// Crash

/// One random committing operation on any table of the interleavings' schema.
pub fn crash_op(rng: &mut Rng) -> String {
    let (p, c, b) = (rng.below(6) + 1, rng.below(4) + 1, rng.below(5) + 1);
    match rng.below(10) {
        0..=2 => format!(
            "INSERT INTO facts SELECT pg_catalog.nextval('fact_ids'), {p}, {c}, g FROM pg_catalog.generate_series(1, {}) g",
            rng.below(4) + 1
        ),
        3 => format!("UPDATE facts SET product = {p}, qty = qty + 1 WHERE id % 17 = {}", rng.below(17)),
        4 => format!("DELETE FROM facts WHERE id % 29 = {}", rng.below(29)),
        5 => format!("UPDATE products SET category = 'c{}' WHERE id = {p}", rng.below(4)),
        6 => format!("UPDATE products SET brand = {b} WHERE id = {p}"),
        7 => format!(
            "BEGIN; INSERT INTO customers VALUES ({c}, 's{}') ON CONFLICT (id) DO UPDATE SET segment = EXCLUDED.segment; \
             INSERT INTO facts VALUES (pg_catalog.nextval('fact_ids'), {p}, {c}, 1); COMMIT",
            rng.below(3)
        ),
        8 => format!(
            "INSERT INTO products VALUES ({p}, 'c{}', {b}) ON CONFLICT (id) DO NOTHING; DELETE FROM products WHERE id = {}",
            rng.below(4),
            rng.below(6) + 1
        ),
        _ => format!(
            "UPDATE brands SET region = 'r{}' WHERE id = {b}; INSERT INTO brands VALUES ({b}, 'x') ON CONFLICT (id) DO NOTHING",
            rng.below(3)
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Fact writers in multi-statement transactions

/// Two transactions writing different fact rows whose join keys cross (A: product 1 then
/// 2, B: product 2 then 1; inserts, updates of measures and of join keys, deletes) never
/// wait for each other, and the views stay exact inside each and after both commit.
pub fn fact_writers_cross_keys(mode: &str, isolation: &str) {
    let db = format!(
        "joins_cross_{}_{mode}",
        if isolation == "READ COMMITTED" {
            "rc"
        } else {
            "rr"
        }
    );
    let db = db.as_str();
    let mut watcher = joins::project_db(server(), db);
    watcher.batch_execute(SCHEMA).unwrap();
    watcher.batch_execute(&baseline()).unwrap();
    let views = View::in_modes(&QUERIES, &[mode]);
    joins::create_all(&mut watcher, &views);
    let mut a = joins::Session::open(server(), db, "A");
    let mut b = joins::Session::open(server(), db, "B");
    let steps: [(usize, &str); 12] = [
        (0, "INSERT INTO facts VALUES (201, 1, 1, 1)"),
        (1, "INSERT INTO facts VALUES (202, 2, 2, 2)"),
        (0, "INSERT INTO facts VALUES (203, 2, 2, 3)"),
        (1, "INSERT INTO facts VALUES (204, 1, 1, 4)"),
        (0, "UPDATE facts SET qty = qty + 1 WHERE id = 1"),
        (1, "UPDATE facts SET qty = qty + 1 WHERE id = 3"),
        (0, "UPDATE facts SET product = 2, customer = 2 WHERE id = 7"),
        (1, "UPDATE facts SET product = 1, customer = 1 WHERE id = 8"),
        (0, "DELETE FROM facts WHERE id = 2"),
        (1, "DELETE FROM facts WHERE id = 6"),
        (0, "INSERT INTO facts SELECT 300 + g, 1 + g % 2, 1 + g % 2, g FROM pg_catalog.generate_series(1, 10) g"),
        (1, "INSERT INTO facts SELECT 400 + g, 2 - g % 2, 2 - g % 2, g FROM pg_catalog.generate_series(1, 10) g"),
    ];
    let begin = format!("BEGIN ISOLATION LEVEL {isolation}");
    for session in [&mut a, &mut b] {
        session.run(&begin).unwrap();
        session.run("SELECT 1").unwrap();
    }
    let mut problems = Vec::new();
    let mut failed: [Option<String>; 2] = [None, None];
    let diff = joins::diff_sql(&views);
    for (who, sql) in steps
        .iter()
        .map(|(w, s)| (*w, *s))
        .chain([(0, "COMMIT"), (1, "COMMIT")])
    {
        if failed[who].is_some() {
            continue;
        }
        let session = if who == 0 { &mut a } else { &mut b };
        match session.step(sql, &mut watcher) {
            joins::Step::Done(Ok(_)) => {}
            // the contract allows REPEATABLE READ writers serialization failures: retried below
            joins::Step::Done(Err(e)) if e.code == "40001" && isolation != "READ COMMITTED" => {
                failed[who] = Some(format!("`{sql}`: {}", e.text));
                let _ = session.run("ROLLBACK");
                continue;
            }
            joins::Step::Done(Err(e)) => {
                problems.push(format!("{}: `{sql}` failed: {}", session.name, e.text));
                break;
            }
            joins::Step::Waiting => {
                problems.push(format!(
                    "{}: `{sql}` waited for the other fact writer",
                    session.name
                ));
                let _ = session.finish();
                break;
            }
        }
        if sql != "COMMIT" {
            match session.run(&diff) {
                Ok(rows) => problems.extend(
                    joins::differences(&views, &rows[0])
                        .into_iter()
                        .map(|w| format!("{}'s own read after `{sql}`: {w}", session.name)),
                ),
                Err(e) => problems.push(format!("{}'s own read failed: {}", session.name, e.text)),
            }
        }
        match joins::mismatches(&mut watcher, &views) {
            Ok(wrong) => problems.extend(
                wrong
                    .into_iter()
                    .map(|w| format!("a third session after `{sql}`: {w}")),
            ),
            Err(e) => problems.push(format!("a third session's read failed: {e}")),
        }
    }
    for (who, why) in failed.iter().enumerate() {
        let Some(why) = why else { continue };
        eprintln!("{db}: writer {who} retried after {why}");
        let mine: Vec<&str> = steps
            .iter()
            .filter(|(w, _)| *w == who)
            .map(|(_, s)| *s)
            .collect();
        let session = if who == 0 { &mut a } else { &mut b };
        let sql = format!("{begin}; {}; COMMIT", mine.join("; "));
        let mut attempts = 0;
        while let Err(e) = session.run(&sql) {
            let _ = session.run("ROLLBACK");
            attempts += 1;
            if e.code != "40001" || attempts == 10 {
                problems.push(format!("{}: the retry failed: {}", session.name, e.text));
                break;
            }
        }
    }
    drop((a, b));
    if problems.is_empty() {
        joins::assert_exact_and_compacted(&mut watcher, &views, "after both commits");
    }
    server().drop_db(db);
    assert!(
        problems.is_empty(),
        "{mode}, {isolation}:\n{}",
        problems.join("\n")
    );
}
