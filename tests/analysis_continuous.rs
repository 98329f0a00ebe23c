//! Continuous funnels and retention against the on-demand functions over the same data,
//! after random concurrent writers: inserts in and out of time order, deletes, updates
//! of times and users, one writer in REPEATABLE READ transactions of several
//! statements. Immediate analyses must agree as soon as the writers are done; async ones
//! after the worker's refresh (polled, never a fixed sleep). Seeds are printed on failure.

mod common;

use common::{eventually, server, Rng};
use postgres::{Client, IsolationLevel};

const STEPS: &str =
    r#"[{"collection": "a"}, {"collection": "b", "where": "price > 20"}, {"collection": "c"}]"#;
const REPEATED: &str = r#"[{"collection": "a"}, {"collection": "a"}, {"collection": "b"}]"#;
const FIRST: &str = r#"{"collection": "a"}"#;
const RETURNING: &str = r#"{"collection": "c"}"#;
const BASE: &str = "2024-03-28 00:00+00";
const RANGES: &[(&str, &str)] = &[
    ("2024-01-01 00:00+00", "2024-12-01 00:00+00"),
    ("2024-03-29 00:00+00", "2024-04-01 12:00+00"),
    ("2024-03-30 06:00+00", "2024-03-30 18:00+00"),
    ("2024-03-31 00:00+00", "2024-04-10 00:00+00"),
];

/// (name, continuous reader, on-demand call with `{from}` / `{to}` placeholders)
fn analyses() -> Vec<(&'static str, String)> {
    vec![
        (
            "fa",
            format!("beacon.funnel('cc', '{STEPS}', interval '3 hours', '{{from}}', '{{to}}', 'country')"),
        ),
        (
            "fi",
            format!("beacon.funnel('cc', '{REPEATED}', interval '1 day', '{{from}}', '{{to}}', NULL, 'Europe/Paris')"),
        ),
        (
            "ra",
            format!("beacon.retention('cc', '{FIRST}', '{RETURNING}', 'day', '{{from}}', '{{to}}', 'country', 'Europe/Paris')"),
        ),
        (
            "ri",
            format!("beacon.retention('cc', '{FIRST}', '{RETURNING}', 'week', '{{from}}', '{{to}}')"),
        ),
    ]
}

/// Project `project` (roles are the cluster's: tests running at once use different names)
/// with its collections and analyses.
fn setup(client: &mut Client, project: &str) {
    client
        .batch_execute(&format!("SELECT beacon.create_project('{project}')"))
        .unwrap();
    for c in ["a", "b", "c"] {
        client
            .batch_execute(&format!(
                "SELECT beacon.define_collection('{project}', '{c}', '{{\"price\": \"bigint\", \"country\": \"text\"}}')"
            ))
            .unwrap();
    }
    client
        .batch_execute(&format!(
            "SELECT beacon.create_continuous_funnel('{project}', 'fa', '{STEPS}', interval '3 hours', 'country');
             SELECT beacon.create_continuous_funnel('{project}', 'fi', '{REPEATED}', interval '1 day', NULL, 'immediate', 'Europe/Paris');
             SELECT beacon.create_continuous_retention('{project}', 'ra', '{FIRST}', '{RETURNING}', 'day', 'country', 'async', 'Europe/Paris');
             SELECT beacon.create_continuous_retention('{project}', 'ri', '{FIRST}', '{RETURNING}', 'week', mode => 'immediate');"
        ))
        .unwrap();
}

/// One random statement of a writer.
fn statement(rng: &mut Rng) -> String {
    let c = ["a", "b", "c"][rng.below(3) as usize];
    let user = format!("u{}", rng.below(12));
    match rng.below(10) {
        0..=5 => {
            let n = 1 + rng.below(4);
            let rows: Vec<String> = (0..n)
                .map(|_| {
                    // in and out of order: anywhere in 8 days, on whole minutes (ties)
                    format!(
                        "('{user}', timestamptz '{BASE}' + interval '1 minute' * {}, {}, '{}')",
                        rng.below(8 * 24 * 60),
                        rng.below(50),
                        ["fr", "de"][rng.below(2) as usize]
                    )
                })
                .collect();
            format!(
                "INSERT INTO cc.{c} (_user, _time, price, country) VALUES {}",
                rows.join(", ")
            )
        }
        6 | 7 => format!(
            "DELETE FROM cc.{c} WHERE _id IN (SELECT _id FROM cc.{c} WHERE _user = '{user}' ORDER BY random() LIMIT 2)"
        ),
        8 => format!(
            "UPDATE cc.{c} SET _time = _time - interval '5 hours' WHERE _id IN (SELECT _id FROM cc.{c} WHERE _user = '{user}' LIMIT 1)"
        ),
        _ => format!(
            "UPDATE cc.{c} SET _user = 'u{}' WHERE _id IN (SELECT _id FROM cc.{c} WHERE _user = '{user}' LIMIT 1)",
            rng.below(12)
        ),
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(e.code().map(|c| c.code()), Some("40001") | Some("40P01"))
}

fn writer(dsn: String, seed: u64, repeatable_read: bool) {
    let mut client = Client::connect(&dsn, postgres::NoTls).unwrap();
    let mut rng = Rng::new(seed);
    for _ in 0..60 {
        let statements: Vec<String> = (0..if repeatable_read { 3 } else { 1 })
            .map(|_| statement(&mut rng))
            .collect();
        loop {
            let result = (|| {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(if repeatable_read {
                        IsolationLevel::RepeatableRead
                    } else {
                        IsolationLevel::ReadCommitted
                    })
                    .start()?;
                for s in &statements {
                    tx.batch_execute(s)?;
                }
                tx.commit()
            })();
            match result {
                Ok(()) => break,
                Err(e) if retryable(&e) => continue,
                Err(e) => panic!("seed {seed}: {e:?}"),
            }
        }
    }
}

fn rows(client: &mut Client, sql: &str) -> String {
    client
        .query_one(
            &format!("SELECT coalesce(string_agg(r::text, ';'), '') FROM {sql} AS r"),
            &[],
        )
        .unwrap()
        .get(0)
}

/// The differences of the analysis from its on-demand function, over all ranges.
fn differences(client: &mut Client, name: &str, on_demand: &str) -> Vec<String> {
    let reader = if name.starts_with('f') {
        "continuous_funnel"
    } else {
        "continuous_retention"
    };
    let mut out = Vec::new();
    for (from, to) in RANGES {
        let continuous = rows(
            client,
            &format!("beacon.{reader}('cc', '{name}', '{from}', '{to}')"),
        );
        let expected = rows(
            client,
            &on_demand.replace("{from}", from).replace("{to}", to),
        );
        if continuous != expected {
            out.push(format!(
                "{name} [{from}, {to}):\n  continuous {continuous}\n  on demand  {expected}"
            ));
        }
    }
    out
}

#[test]
fn analysis_continuous_equals_on_demand_after_concurrent_writers() {
    let server = server();
    for seed in [11u64, 23, 37] {
        let db = format!("ca_conc_{seed}");
        let mut client = server.fresh_db(&db);
        setup(&mut client, "cc");
        let dsn = server.dsn(&db, "postgres");
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let dsn = dsn.clone();
                std::thread::spawn(move || writer(dsn, seed * 100 + i, i == 3))
            })
            .collect();
        for w in writers {
            w.join()
                .unwrap_or_else(|_| panic!("seed {seed}: a writer failed"));
        }
        // immediate: current at commit
        for (name, on_demand) in analyses() {
            if name.ends_with('i') {
                let d = differences(&mut client, name, &on_demand);
                assert!(d.is_empty(), "seed {seed}:\n{}", d.join("\n"));
            }
        }
        // async: after the worker's next refresh
        let mut last = Vec::new();
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            eventually("the worker refreshes the async analyses", || {
                let pending: i64 = client
                    .query_one(
                        "SELECT coalesce(sum(pending), 0)::int8 FROM beacon.continuous_analyses",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                if pending > 0 {
                    return false;
                }
                last = analyses()
                    .iter()
                    .filter(|(n, _)| n.ends_with('a'))
                    .flat_map(|(n, q)| differences(&mut client, n, q))
                    .collect();
                last.is_empty()
            })
        }));
        assert!(done.is_ok(), "seed {seed}:\n{}", last.join("\n"));
        // not vacuous: every analysis keeps entering events of many users
        let thin: i64 = client
            .query_one(
                "SELECT count(*) FROM beacon.continuous_analyses WHERE project = 'cc' AND (users < 8 OR entries < 20)",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(thin, 0, "seed {seed}: too few users or entries");
        // an explicit refresh has nothing left, and the status says so
        let left: i64 = client
            .query_one("SELECT beacon.refresh_continuous_analysis('cc')", &[])
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "seed {seed}");
        drop(client);
        server.drop_db(&db);
    }
}

/// Readers read, others are refused; writers cannot create or drop; the hidden tables are
/// out of everyone's reach.
#[test]
fn analysis_continuous_needs_the_right_levels() {
    let server = server();
    let mut client = server.fresh_db("ca_access");
    setup(&mut client, "cx");
    client
        .batch_execute(
            "DROP ROLE IF EXISTS ca_outsider; DROP ROLE IF EXISTS ca_reader; DROP ROLE IF EXISTS ca_writer;
             CREATE ROLE ca_outsider LOGIN; CREATE ROLE ca_reader LOGIN; CREATE ROLE ca_writer LOGIN;
             SELECT beacon.grant('cx', 'ca_reader', 'read'); SELECT beacon.grant('cx', 'ca_writer', 'write');",
        )
        .unwrap();
    let read =
        "SELECT count(*) FROM beacon.continuous_funnel('cx', 'fa', '2024-01-01', '2025-01-01')";
    let code = |c: &mut Client, sql: &str| {
        c.batch_execute(sql)
            .err()
            .and_then(|e| e.code().map(|c| c.code().to_string()))
    };
    let mut outsider = server.connect_as("ca_access", "ca_outsider");
    assert_eq!(code(&mut outsider, read).as_deref(), Some("42501"));
    let mut reader = server.connect_as("ca_access", "ca_reader");
    assert_eq!(code(&mut reader, read), None);
    assert_eq!(
        code(&mut reader, "SELECT count(*) FROM cx._ca_fa").as_deref(),
        Some("42501")
    );
    let mut writer = server.connect_as("ca_access", "ca_writer");
    assert_eq!(
        code(
            &mut writer,
            "SELECT beacon.drop_continuous_analysis('cx', 'fa')"
        )
        .as_deref(),
        Some("42501")
    );
    assert_eq!(
        code(
            &mut writer,
            &format!(
                "SELECT beacon.create_continuous_funnel('cx', 'w', '{STEPS}', interval '1 hour')"
            )
        )
        .as_deref(),
        Some("42501")
    );
    // writers write through the immediate analyses' captures
    assert_eq!(
        code(
            &mut writer,
            r#"SELECT beacon.collect('cx', 'a', '{"_user": "u1"}')"#
        ),
        None
    );
    assert_eq!(
        code(
            &mut writer,
            "SELECT beacon.refresh_continuous_analysis('cx')"
        ),
        None
    );
    drop((outsider, reader, writer));
    // the project goes with its analyses
    client
        .batch_execute("SELECT beacon.drop_project('cx')")
        .unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) FROM beacon.continuous_analysis", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    drop(client);
    server.drop_db("ca_access");
}
