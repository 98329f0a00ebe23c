//! Continuous queries give what their defining query gives, digit for digit, for every
//! argument type: integers (whose avg and variances are numeric), numeric (whose scale is
//! the remaining rows'), floating point (NaN, infinities, cancellation, variances of
//! nearly equal values), intervals; and whatever the writers' and readers' session
//! settings. Each case runs in both modes, is read before compaction (the view merges
//! pending deltas and recomputes dirty groups itself) and after it.

mod common;

use common::{server, Rng};
use postgres::Client;
use serde_json::Value;

const TABLE: &str = "CREATE TABLE t (id serial PRIMARY KEY, g int, i2 smallint, i4 integer, \
     i8 bigint, n numeric, r real, f double precision, iv interval, ts timestamptz, d date, b boolean)";

/// A database with project `p_<name>`, its table `t`, and a session whose search_path
/// finds both (project names are cluster-wide, as their roles are).
fn database(name: &str) -> Client {
    let db = format!("cq_types_{name}");
    let mut client = server().fresh_db(&db);
    client
        .batch_execute(&format!(
            "SELECT beacon.create_project('p_{name}'); SET search_path = p_{name}; {TABLE}"
        ))
        .unwrap();
    client
}

fn project(client: &mut Client) -> String {
    client
        .query_one("SELECT name FROM beacon.project", &[])
        .unwrap()
        .get(0)
}

fn connect(client: &mut Client) -> Client {
    let p = project(client);
    let mut other = server().connect(&format!("cq_types_{}", &p[2..]));
    other
        .batch_execute(&format!("SET search_path = {p}"))
        .unwrap();
    other
}

fn create(client: &mut Client, name: &str, query: &str, mode: &str) {
    client
        .execute(
            "SELECT beacon.create_continuous_query((SELECT name FROM beacon.project), $1, $2, $3)",
            &[&name, &query, &mode],
        )
        .unwrap_or_else(|e| panic!("create {name} ({mode}) `{query}`: {e:?}"));
}

/// The view's and the query's rows as JSON objects (numerics keep their scale, floats
/// print exactly), sorted by their key columns.
fn rows(client: &mut Client, sql: &str, keys: &[&str]) -> Vec<serde_json::Map<String, Value>> {
    let mut rows: Vec<serde_json::Map<String, Value>> = client
        .query(&format!("SELECT to_jsonb(q) FROM ({sql}) q"), &[])
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .map(|row| match row.get::<_, Value>(0) {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        })
        .collect();
    let key = |row: &serde_json::Map<String, Value>| -> String {
        keys.iter()
            .map(|k| row.get(*k).map(Value::to_string).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\u{1}")
    };
    rows.sort_by_key(key);
    rows
}

fn float_types(client: &mut Client, view: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = $1::text::regclass AND attnum > 0 ORDER BY attnum",
            &[&view],
        )
        .unwrap()
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Exact, except that float results may differ by the rounding of another summation
/// order (PostgreSQL's own result depends on the heap order too).
fn same(a: &Value, b: &Value, ty: &str) -> bool {
    if a == b {
        return true;
    }
    let tolerance = match ty {
        "double precision" => 1e-9,
        "real" => 1e-6,
        _ => return false,
    };
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= tolerance * x.abs().max(y.abs()) + 1e-12,
        _ => false,
    }
}

/// Asserts the view equals the query, under fixed settings: the settings a continuous
/// query computes under (its time zone is given).
fn check(client: &mut Client, view: &str, query: &str, keys: &[&str], zone: &str, context: &str) {
    let p = project(client);
    client
        .batch_execute(&format!(
            "SET search_path = {p}; SET TimeZone = '{zone}'; SET DateStyle = 'ISO, MDY'; \
             SET IntervalStyle = postgres; SET extra_float_digits = 1"
        ))
        .unwrap();
    let types = float_types(client, &format!("{p}.{view}"));
    client
        .batch_execute(&format!(
            "DROP VIEW IF EXISTS pg_temp.oracle; CREATE TEMP VIEW oracle AS {query}"
        ))
        .unwrap();
    let oracle_types = float_types(client, "pg_temp.oracle");
    assert_eq!(
        types, oracle_types,
        "{context}: column names and types of {view}"
    );
    let got = rows(client, &format!("SELECT * FROM {p}.{view}"), keys);
    let want = rows(client, query, keys);
    let describe = || format!("{context}: {view} = `{query}`\n view:  {got:?}\n query: {want:?}");
    assert_eq!(got.len(), want.len(), "{}", describe());
    for (g, w) in got.iter().zip(&want) {
        for (name, ty) in &types {
            let (a, b) = (&g[name.as_str()], &w[name.as_str()]);
            assert!(same(a, b, ty), "{} (column {name}: {a} vs {b})", describe());
        }
    }
    client
        .batch_execute(&format!("RESET ALL; SET search_path = {p}"))
        .unwrap();
}

/// Reads each view before compaction, compacts from a session in another time zone, and
/// reads again.
fn check_all(client: &mut Client, views: &[(&str, &str)], keys: &[&str], zone: &str, step: &str) {
    for (view, query) in views {
        check(client, view, query, keys, zone, &format!("{step}, pending"));
    }
    client
        .batch_execute("SET TimeZone = 'Pacific/Chatham'; SELECT beacon.compact(); RESET TimeZone")
        .unwrap();
    for (view, query) in views {
        check(
            client,
            view,
            query,
            keys,
            zone,
            &format!("{step}, compacted"),
        );
    }
}

fn both_modes<'a>(
    client: &mut Client,
    prefix: &str,
    queries: &'a [&'a str],
) -> Vec<(String, &'a str)> {
    let mut views = Vec::new();
    for mode in ["async", "immediate"] {
        for (i, query) in queries.iter().enumerate() {
            let name = format!("{prefix}{i}_{}", &mode[..1]);
            create(client, &name, query, mode);
            views.push((name, *query));
        }
    }
    views
}

/// Random DML over generated values: inserts of one and many rows, updates that move
/// rows between groups, deletes, each checked against the oracle.
fn random_rounds(
    client: &mut Client,
    seed: u64,
    values: impl Fn(&mut Rng) -> String,
    views: &[(String, &str)],
    rounds: usize,
) {
    let mut rng = Rng::new(seed);
    let views: Vec<(&str, &str)> = views.iter().map(|(v, q)| (v.as_str(), *q)).collect();
    for round in 0..rounds {
        let rows = 1 + rng.below(12);
        let tuples: Vec<String> = (0..rows)
            .map(|_| format!("({}, {})", rng.below(4), values(&mut rng)))
            .collect();
        client
            .batch_execute(&format!(
                "INSERT INTO t (g, i2, i4, i8, n, r, f, iv) VALUES {}",
                tuples.join(", ")
            ))
            .unwrap_or_else(|e| panic!("seed {seed}, round {round}: insert: {e:?}"));
        let change = match rng.below(3) {
            0 => format!("DELETE FROM t WHERE id % 5 = {}", rng.below(5)),
            1 => format!(
                "UPDATE t SET g = (g + 1) % 4 WHERE id % 3 = {}",
                rng.below(3)
            ),
            _ => format!("DELETE FROM t WHERE g = {} AND id % 2 = 0", rng.below(4)),
        };
        client
            .batch_execute(&change)
            .unwrap_or_else(|e| panic!("seed {seed}, round {round}: {change}: {e:?}"));
        if round % 3 == 2 {
            check_all(
                client,
                &views,
                &["g"],
                "UTC",
                &format!("seed {seed}, round {round}"),
            );
        }
    }
}

fn seed() -> u64 {
    std::env::var("BEACON_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        })
}

fn pick<'a>(rng: &mut Rng, choices: &[&'a str]) -> &'a str {
    choices[rng.below(choices.len() as u64) as usize]
}

#[test]
fn types_integer_averages_and_spreads_are_numeric_and_exact() {
    let mut client = database("int");
    // rows that overflow x*x in the argument's type, before the query exists
    client
        .batch_execute(
            "INSERT INTO t (g, i2, i4, i8) VALUES (0, 200, 46341, 3037000500), (0, 1, 2, 9000000000000000000)",
        )
        .unwrap();
    let queries = [
        "SELECT g, avg(i2) AS a2, avg(i4) AS a4, avg(i8) AS a8, sum(i2) AS s2, sum(i4) AS s4, sum(i8) AS s8 FROM t GROUP BY g",
        "SELECT g, var_samp(i2) AS v2, var_pop(i4) AS v4, variance(i8) AS v8, stddev_samp(i2) AS d2, stddev_pop(i4) AS d4, stddev(i8) AS d8 FROM t GROUP BY g",
    ];
    let views = both_modes(&mut client, "int", &queries);
    let seed = seed();
    eprintln!("integer_averages: seed {seed} (BEACON_TEST_SEED to replay)");
    random_rounds(
        &mut client,
        seed,
        |rng| {
            let i2 = pick(rng, &["1", "2", "-3", "200", "32767", "-32768", "NULL"]);
            let i4 = pick(
                rng,
                &["1", "2", "46341", "-2147483648", "2147483647", "7", "NULL"],
            );
            let i8 = pick(
                rng,
                &["1", "3037000500", "9000000000000000000", "-5", "NULL", "2"],
            );
            format!("{i2}, {i4}, {i8}, NULL, NULL, NULL, NULL")
        },
        &views,
        24,
    );
}

#[test]
fn types_numeric_results_have_the_remaining_rows_scale() {
    let mut client = database("numeric");
    let queries = [
        "SELECT g, sum(n) AS s, avg(n) AS a, count(n) AS c FROM t GROUP BY g",
        "SELECT g, var_pop(n) AS vp, var_samp(n) AS vs, stddev_samp(n) AS ds, stddev_pop(n) AS dp FROM t GROUP BY g",
    ];
    let views = both_modes(&mut client, "num", &queries);
    // the scale of a deleted row must not stay: sum(1.50, 1) - 1.50 is 1, not 1.00
    client
        .batch_execute(
            "INSERT INTO t (g, n) VALUES (9, 1.50), (9, 1); DELETE FROM t WHERE n = 1.50",
        )
        .unwrap();
    let list: Vec<(&str, &str)> = views.iter().map(|(v, q)| (v.as_str(), *q)).collect();
    check_all(&mut client, &list, &["g"], "UTC", "scale of a deleted row");
    client
        .batch_execute("INSERT INTO t (g, n) VALUES (9, 'NaN'); DELETE FROM t WHERE n = 'NaN'")
        .unwrap();
    check_all(&mut client, &list, &["g"], "UTC", "NaN deleted");
    let seed = seed();
    eprintln!("numeric: seed {seed} (BEACON_TEST_SEED to replay)");
    random_rounds(
        &mut client,
        seed,
        |rng| {
            let n = pick(
                rng,
                &[
                    "1.50",
                    "1",
                    "0.333",
                    "-2.5",
                    "12345678901234567890.123456789",
                    "0.0001",
                    "'NaN'",
                    "NULL",
                    "7",
                ],
            );
            format!("NULL, NULL, NULL, {n}, NULL, NULL, NULL")
        },
        &views,
        24,
    );
}

#[test]
fn types_floating_point_specials_and_cancellation() {
    let mut client = database("float");
    let queries = [
        "SELECT g, sum(f) AS s, avg(f) AS a, var_samp(f) AS v, stddev_pop(f) AS d FROM t GROUP BY g",
        "SELECT g, sum(r) AS s, avg(r) AS a, var_pop(r) AS v, stddev_samp(r) AS d FROM t GROUP BY g",
    ];
    let views = both_modes(&mut client, "flt", &queries);
    let list: Vec<(&str, &str)> = views.iter().map(|(v, q)| (v.as_str(), *q)).collect();
    // cancellation: {1e20, 1, 2} without 1e20 sums to 3
    client
        .batch_execute(
            "INSERT INTO t (g, f, r) VALUES (7, 1e20, 1e20), (7, 1, 1), (7, 2, 2); DELETE FROM t WHERE f = 1e20",
        )
        .unwrap();
    check_all(&mut client, &list, &["g"], "UTC", "cancellation");
    // the naive sum of squares gives 0 here; PostgreSQL (and the view) 1
    client
        .batch_execute("INSERT INTO t (g, f) VALUES (8, 1e9 + 1), (8, 1e9 + 2), (8, 1e9 + 3)")
        .unwrap();
    check_all(&mut client, &list, &["g"], "UTC", "nearly equal values");
    // NaN and infinities leave with their rows
    client
        .batch_execute(
            "INSERT INTO t (g, f, r) VALUES (6, 'NaN', 'NaN'), (6, 'Infinity', '-Infinity'), (6, 5, 0.1000000015), (6, '-0', '-0');
             DELETE FROM t WHERE f = 'NaN'; DELETE FROM t WHERE f = 'Infinity'",
        )
        .unwrap();
    check_all(&mut client, &list, &["g"], "UTC", "specials deleted");
    client.batch_execute("DELETE FROM t").unwrap();
    let seed = seed();
    eprintln!("float: seed {seed} (BEACON_TEST_SEED to replay)");
    random_rounds(
        &mut client,
        seed,
        |rng| {
            // exactly representable values: sums do not depend on their order
            let f = pick(
                rng,
                &[
                    "0.25",
                    "-1.5",
                    "3",
                    "'NaN'",
                    "'Infinity'",
                    "'-Infinity'",
                    "'-0'",
                    "NULL",
                    "1024.75",
                ],
            );
            let r = pick(rng, &["0.5", "-2", "'NaN'", "'Infinity'", "NULL", "8.25"]);
            format!("NULL, NULL, NULL, NULL, {r}, {f}, NULL")
        },
        &views,
        24,
    );
}

#[test]
fn types_interval_sums_and_averages() {
    let mut client = database("interval");
    let queries = ["SELECT g, sum(iv) AS s, avg(iv) AS a, min(iv) AS lo, max(iv) AS hi, count(iv) AS c FROM t GROUP BY g"];
    let views = both_modes(&mut client, "ivl", &queries);
    let seed = seed();
    eprintln!("interval: seed {seed} (BEACON_TEST_SEED to replay)");
    random_rounds(
        &mut client,
        seed,
        |rng| {
            let iv = pick(
                rng,
                &[
                    "'1 day'",
                    "'25 hours'",
                    "'1 mon 3 days'",
                    "'-5 minutes'",
                    "'1.5 seconds'",
                    "NULL",
                ],
            );
            format!("NULL, NULL, NULL, NULL, NULL, NULL, {iv}")
        },
        &views,
        18,
    );
}

/// Keys computed from text output and time zones: one value, one group, whoever writes
/// (any DateStyle, extra_float_digits, IntervalStyle, TimeZone), and reads and
/// compaction recompute dirty groups under the query's settings, not their own.
#[test]
fn types_session_settings_never_change_a_key() {
    let mut client = database("settings");
    client
        .batch_execute("SET TimeZone = 'Asia/Kathmandu'")
        .unwrap();
    let queries = [
        "SELECT d::text AS day, f::text AS num, iv::text AS span, count(*) AS n, max(f) AS top FROM t GROUP BY 1, 2, 3",
        "SELECT date_trunc('day', ts) AS day, count(*) AS n, max(f) AS top, min(ts) AS first, beacon.approx_count_distinct(d) AS days FROM t GROUP BY 1",
    ];
    let views = both_modes(&mut client, "set", &queries);
    client.batch_execute("RESET TimeZone").unwrap();
    let writers = [
        "SET DateStyle = 'German, DMY'; SET extra_float_digits = 3; SET IntervalStyle = sql_standard; SET TimeZone = 'America/New_York'",
        "SET DateStyle = 'SQL, MDY'; SET extra_float_digits = -5; SET IntervalStyle = iso_8601; SET TimeZone = 'UTC'",
        "SET DateStyle = 'Postgres, DMY'; SET extra_float_digits = 0; SET IntervalStyle = postgres_verbose; SET TimeZone = 'Pacific/Auckland'",
    ];
    let list: Vec<(&str, &str)> = views.iter().map(|(v, q)| (v.as_str(), *q)).collect();
    for (round, settings) in writers.iter().enumerate() {
        let mut writer = connect(&mut client);
        writer.batch_execute(settings).unwrap();
        writer
            .batch_execute(
                "INSERT INTO t (d, f, iv, ts) VALUES
                   ('2026-03-04', 0.1, '1 day 2 hours', '2026-03-04 23:30:00+00'),
                   ('2026-03-05', 1.0 / 3, '-3 minutes', '2026-03-05 00:30:00+00'),
                   ('2026-03-04', 2.5e-7, '1 mon', '2026-03-04 18:20:00+00')",
            )
            .unwrap();
        writer
            .batch_execute("DELETE FROM t WHERE id % 4 = 1")
            .unwrap();
        // a reader in yet another zone and style reads the dirty groups
        client
            .batch_execute("SET TimeZone = 'America/Los_Angeles'; SET DateStyle = 'SQL, DMY'; SET extra_float_digits = 0")
            .unwrap();
        for (view, _) in &list {
            client.query(&format!("SELECT * FROM {view}"), &[]).unwrap();
        }
        client
            .batch_execute("RESET TimeZone; RESET DateStyle; RESET extra_float_digits")
            .unwrap();
        check_all(
            &mut client,
            &list,
            &["day", "num", "span"],
            "Asia/Kathmandu",
            &format!("writer {round}"),
        );
    }
    // three distinct text forms of each key, written under three settings: three groups
    let groups: i64 = client
        .query_one(&format!("SELECT count(*) FROM {}", list[0].0), &[])
        .unwrap()
        .get(0);
    let want: i64 = client
        .query_one("SELECT count(DISTINCT (d, f, iv)) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(groups, want, "one group per value, whoever wrote it");
}
