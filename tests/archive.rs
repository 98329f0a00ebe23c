//! Retention and the Parquet archive (issue 16), end to end: the worker archives and drops
//! old partitions while continuous queries keep their history; `archived_events`, pyarrow
//! and DuckDB read back exactly the rows that were archived, type for type; a crash at each
//! step of the archive leaves the partition or a complete recorded file, and rerunning
//! finishes without archiving anything twice.

mod common;

use common::sql::{differences, one_i64, run};
use common::{eventually, server, Server};
use postgres::Client;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIELDS: &str = r#"{"n": "bigint", "d": "double precision", "m": "numeric", "flag": "boolean",
    "at": "timestamptz", "s": "text", "j": "jsonb", "tags": "text[]", "nums": "bigint[]", "ms": "numeric[]"}"#;

/// A day-partitioned collection with events on each of the last `days` days (and today),
/// with every type a collection holds and the values readers get wrong: NULLs, NaN,
/// ±Infinity, numerics of mixed scales and a NaN numeric, time zones, empty and unicode
/// text, nested jsonb, arrays with NULL elements.
fn populate(client: &mut Client, days: i64) {
    run(client, "SELECT beacon.create_project('shop')");
    run(
        client,
        "SELECT beacon.partition_collection('shop', 'events', 'day')",
    );
    run(
        client,
        &format!("SELECT beacon.define_collection('shop', 'events', $f${FIELDS}$f$)"),
    );
    run(
        client,
        &format!(
            "SELECT beacon.create_partitions('shop', 'events', now() - interval '{days} days' - interval '1 day', now());
             INSERT INTO shop.events (_time, _user, n, d, m, flag, at, s, j, tags, nums, ms)
             SELECT date_trunc('day', now()) - (i % ({days} + 1)) * interval '1 day' + (i % 1440) * interval '1 minute',
                    CASE WHEN i % 9 = 0 THEN NULL ELSE 'u' || (i % 37) END,
                    CASE WHEN i % 13 = 0 THEN NULL ELSE i::bigint * 1000003 - 5000000000 END,
                    (ARRAY[1.5, 'NaN', 'Infinity', '-Infinity', -0.0, 1e300, NULL]::float8[])[1 + i % 7] * CASE WHEN i % 7 = 0 THEN i ELSE 1 END,
                    (ARRAY[12.5, 0.001, 123456789012345678901234567890.12345, -7, NULL, 3.14159265358979323846]::numeric[])[1 + i % 6],
                    CASE i % 3 WHEN 0 THEN true WHEN 1 THEN false END,
                    timestamptz '2026-03-29 01:30:00+01' + i * interval '17 minutes 3.25 seconds',
                    (ARRAY['', 'plain', 'ünïcødé ✓', 'quote '' and \" and \\ backslash', NULL])[1 + i % 5],
                    CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('k', i, 'nested', jsonb_build_object('a', ARRAY[i, i + 1]), 'f', 1.25) END,
                    CASE WHEN i % 5 = 0 THEN NULL ELSE ARRAY['x' || i, NULL, ''] END,
                    ARRAY[i, NULL, -i]::bigint[],
                    ARRAY[i / 3.0, NULL]::numeric[]
               FROM generate_series(1, 3000) i"
        ),
    );
}

fn archive_dir(server: &Server) -> PathBuf {
    server.data.join("pg_beacon_archive")
}

/// What pyarrow and DuckDB read from `path`, as canonical JSON lines (tests/common/parquet_read.py).
fn external_read(path: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/parquet_read.py");
    let python = std::env::var("BEACON_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(script)
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "parquet_read.py {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn retention_archives_through_the_worker_and_views_keep_their_history() {
    let db = "archive_retention";
    let mut client = server().fresh_db(db);
    run(&mut client, "SET TimeZone = 'UTC'");
    populate(&mut client, 6);
    run(
        &mut client,
        "SELECT beacon.create_continuous_query('shop', 'daily', 'SELECT date_trunc(''day'', _time) AS day, count(*) AS n, sum(n) AS total, avg(m) AS mean, max(at) AS latest FROM events GROUP BY 1', 'async');
         SELECT beacon.create_continuous_query('shop', 'users', 'SELECT _user AS who, count(*) AS n, count(DISTINCT s) AS texts FROM events GROUP BY 1', 'immediate');
         SELECT beacon.compact('shop', 'daily');
         CREATE TABLE history AS SELECT * FROM shop.daily UNION ALL SELECT NULL, n, NULL, NULL, NULL FROM shop.users;
         CREATE TABLE cold AS
           SELECT _id, _time, _user, to_jsonb(e) - '_id' - '_time' - '_user' AS properties
             FROM shop.events e WHERE _time < date_trunc('day', now()) - interval '2 days';",
    );
    let cold = one_i64(&mut client, "SELECT count(*) FROM cold");
    let cold_days = one_i64(
        &mut client,
        "SELECT count(DISTINCT date_trunc('day', _time)) FROM cold",
    );
    assert!(
        cold > 0 && cold_days == 4,
        "{cold} events over {cold_days} days"
    );
    run(
        &mut client,
        "SELECT beacon.set_retention('shop', 'events', interval '2 days', archive => true)",
    );
    eventually("the worker archives the cold days", || {
        one_i64(&mut client, "SELECT count(*) FROM beacon.archives WHERE project = 'shop'") == cold_days
            && one_i64(
                &mut client,
                "SELECT count(*) FROM beacon.partitions WHERE project = 'shop' AND upper <= now() - interval '2 days'",
            ) == 0
    });
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT sum(rows)::bigint FROM beacon.archives WHERE project = 'shop'"
        ),
        cold
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM shop.events WHERE _time < date_trunc('day', now()) - interval '2 days'"),
        0
    );
    run(&mut client, "SELECT beacon.compact('shop', 'daily')");
    assert_eq!(
        differences(
            &mut client,
            "SELECT * FROM history",
            "SELECT * FROM shop.daily UNION ALL SELECT NULL, n, NULL, NULL, NULL FROM shop.users"
        ),
        0,
        "continuous queries keep the history retention dropped"
    );
    assert_eq!(
        differences(
            &mut client,
            "SELECT * FROM cold",
            "SELECT * FROM beacon.archived_events('shop', 'events')"
        ),
        0,
        "archived_events gives back exactly the archived rows"
    );
    let cutoff = "date_trunc('day', now()) - interval '4 days'";
    assert_eq!(
        differences(
            &mut client,
            &format!("SELECT * FROM cold WHERE _time >= {cutoff} - interval '1 hour' AND _time < {cutoff} + interval '1 day'"),
            &format!("SELECT * FROM beacon.archived_events('shop', 'events', {cutoff} - interval '1 hour', {cutoff} + interval '1 day')"),
        ),
        0,
        "archived_events by range"
    );
    // every file, read by pyarrow and DuckDB, holds the rows of its day, type for type
    let files: Vec<(String, String)> = client
        .query(
            "SELECT file, to_char(lower AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM beacon.archives WHERE project = 'shop' ORDER BY file",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (file, day) in &files {
        assert!(
            file.starts_with(&format!("shop/events/date={day}/part-0")),
            "{file}"
        );
        let path = archive_dir(server()).join(file);
        let read = external_read(&path);
        let expected: String = client
            .query_one(
                &format!(
                    "SELECT string_agg((jsonb_build_object('_id', _id, '_time', _time, '_user', _user) || properties)::text, E'\\n' ORDER BY _id)
                       FROM cold WHERE to_char(_time AT TIME ZONE 'UTC', 'YYYY-MM-DD') = '{day}'"
                ),
                &[],
            )
            .unwrap()
            .get(0);
        compare_external(&read, &expected, file);
    }
    let hive = external_read(&archive_dir(server()).join("shop/events"));
    assert!(
        hive.contains("\"date\""),
        "DuckDB's hive_partitioning sees the date partitions"
    );
    server().drop_db(db);
}

/// Compares the readers' rows (tests/common/parquet_read.py: `reader<TAB>{row}` lines)
/// with PostgreSQL's `to_jsonb` of the archived rows, both in `_id` order.
fn compare_external(read: &str, expected: &str, file: &str) {
    let by_id = |rows: &mut Vec<serde_json::Value>| rows.sort_by_key(|r| r["_id"].as_i64());
    let mut expected: Vec<serde_json::Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    by_id(&mut expected);
    for reader in ["pyarrow", "duckdb"] {
        let mut rows: Vec<serde_json::Value> = read
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{reader}\t")))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{file}: {e}: {l}")))
            .collect();
        by_id(&mut rows);
        assert_eq!(rows.len(), expected.len(), "{file}: {reader} row count");
        for (got, want) in rows.iter().zip(&expected) {
            assert_eq!(&as_archived(got, want), want, "{file}: {reader}");
        }
    }
}

/// A numeric column whose values do not all fit DECIMAL(38, s) is archived as the text
/// PostgreSQL writes (the documented fallback), which readers see as strings: those
/// compare with the number's text. Numbers compare by value (a reader prints a double
/// as `1e+300` or `0.0` where jsonb's numeric prints `1000…0` or `0`).
fn as_archived(got: &serde_json::Value, want: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => Value::Object(
            g.iter()
                .map(|(k, v)| (k.clone(), w.get(k).map_or(v.clone(), |w| as_archived(v, w))))
                .collect(),
        ),
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            Value::Array(g.iter().zip(w).map(|(g, w)| as_archived(g, w)).collect())
        }
        (Value::String(text), Value::Number(n)) if *text == n.to_string() => want.clone(),
        // a double as readers print it (1e+300, 0.0 for -0) and as jsonb's numeric does
        // (1000…0, 0)
        (Value::Number(g), Value::Number(w))
            if g.to_string().parse::<f64>().ok() == w.to_string().parse::<f64>().ok() =>
        {
            want.clone()
        }
        _ => got.clone(),
    }
}

/// The archive killed at each of its steps (the server crashes and restarts): afterwards
/// the partition is there and no record, or the record and no partition; rerunning
/// archives what is left, once.
#[test]
fn archive_survives_a_crash_at_each_step() {
    // commits must survive the crash: the harness's servers run with synchronous_commit off
    let own = Server::start_with(
        &[],
        "beacon.compact_interval = '1h'\nsynchronous_commit = on\n",
    );
    let db = "archive_crash";
    let mut client = own.fresh_db(db);
    populate(&mut client, 3);
    let total = one_i64(&mut client, "SELECT count(*) FROM shop.events");
    let old = "date_trunc('day', now()) - interval '1 day'";
    let cold = one_i64(
        &mut client,
        &format!("SELECT count(*) FROM shop.events WHERE _time < {old}"),
    );
    for step in ["written", "dropped"] {
        let crashed = client.batch_execute(&format!(
            "SET pg_beacon.archive_crash_point = '{step}'; SELECT beacon.archive_now('shop', 'events', {old})"
        ));
        assert!(crashed.is_err(), "the server crashed at {step}");
        let mut reconnect = None;
        // a connection made before the postmaster has noticed the crash is ended by its
        // restart: back means a connection that answers
        eventually("the server is back after the crash", || {
            reconnect = Client::connect(&own.dsn(db, "postgres"), postgres::NoTls).ok();
            reconnect
                .as_mut()
                .is_some_and(|c| c.simple_query("SELECT 1").is_ok())
        });
        client = reconnect.unwrap();
        assert_eq!(
            one_i64(&mut client, "SELECT count(*) FROM beacon.archives"),
            0,
            "{step}"
        );
        assert_eq!(
            one_i64(&mut client, "SELECT count(*) FROM shop.events"),
            total,
            "{step}"
        );
    }
    assert_eq!(
        one_i64(
            &mut client,
            &format!("SELECT beacon.archive_now('shop', 'events', {old})")
        ),
        cold
    );
    let files = one_i64(&mut client, "SELECT count(*) FROM beacon.archives");
    assert_eq!(files, 2, "one file per day before yesterday");
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM beacon.archives WHERE file !~ '/part-0[.]parquet$'"
        ),
        0,
        "the crashed attempts' files were written over, not added to"
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM shop.events"),
        total - cold
    );
    assert_eq!(
        one_i64(
            &mut client,
            "SELECT count(*) FROM beacon.archived_events('shop', 'events')"
        ),
        cold
    );
    // nothing is archived twice
    assert_eq!(
        one_i64(
            &mut client,
            &format!("SELECT beacon.archive_now('shop', 'events', {old})")
        ),
        0
    );
    assert_eq!(
        one_i64(&mut client, "SELECT count(*) FROM beacon.archives"),
        files
    );
    // the files on disk are the recorded ones, and match their records
    let recorded: Vec<(String, i64)> = client
        .query("SELECT file, bytes FROM beacon.archives ORDER BY file", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (file, bytes) in recorded {
        let meta = std::fs::metadata(archive_dir(&own).join(&file)).unwrap();
        assert_eq!(meta.len() as i64, bytes, "{file}");
    }
    own.stop_and_remove();
}
