//! Class 11 (limits): user SQL of absurd depth or length (30,000 chained `+1`, 10,000
//! nested parentheses, and relatives) in continuous queries, filters, `beacon.query` and
//! materialized views is refused with an error, and the server survives (a fresh
//! connection answers, the postmaster did not restart). `beacon.query`'s result is
//! bounded in bytes, not only in rows.
//!
//! The depth attacks run on a server of their own: a crash restarts every backend.

use crate::common::attack::*;
use crate::common::{server, Server};
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

struct OwnServer(Server);

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.0.stop_and_remove();
    }
}

/// Connects, waiting out a crash recovery.
fn connect_eventually(server: &Server, role: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(&server.dsn("limits", role), NoTls) {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => panic!("the server did not come back: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The first value of `sql`, retried through a crash and its recovery (a connection made
/// just before the postmaster ends every backend fails on first use).
fn query_eventually(server: &Server, sql: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = connect_eventually(server, "postgres").query_one(sql, &[]);
        match result {
            Ok(row) => return row.get(0),
            Err(e) if Instant::now() > deadline => panic!("the server does not answer: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn start_time(server: &Server) -> String {
    query_eventually(server, "SELECT pg_postmaster_start_time()::text")
}

/// (role, statement, whether it must be refused: the sizes the issue names must be; the
/// moderate ones that fit a surface's size limit must only leave the server up).
fn deep_attacks() -> Vec<(&'static str, String, bool)> {
    let chain = |op: &str, n: usize| vec!["1"; n].join(op);
    let parens = |n: usize, inner: &str| format!("{}{inner}{}", "(".repeat(n), ")".repeat(n));
    let cq = |q: String| {
        format!(
            "SELECT beacon.create_continuous_query('alpha', 'deep', {})",
            dq(&q)
        )
    };
    let filter = |f: String| {
        format!(
            "SELECT beacon.subscribe('alpha', 'events', {}, false)",
            dq(&f)
        )
    };
    let query = |q: String| format!("SELECT * FROM beacon.query('alpha', {})", dq(&q));
    let mv = |q: String| {
        format!(
            "SELECT beacon.create_materialized_view('alpha', 'deep', {})",
            dq(&q)
        )
    };
    let mut attacks = vec![
        (
            "boss",
            cq(format!(
                "SELECT url, sum(n + {}) AS s FROM events GROUP BY url",
                chain(" + ", 30_000)
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, sum(n{}) AS s FROM events GROUP BY url",
                "+1".repeat(30_000)
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, count(*) AS c FROM events WHERE n{} > 0 GROUP BY url",
                "+1".repeat(30_000)
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url || {} AS k, count(*) AS c FROM events GROUP BY 1",
                chain(" || ", 20_000).replace('1', "'x'")
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, count(*) AS c FROM events WHERE {} GROUP BY url",
                vec!["url = 'a'"; 10_000].join(" OR ")
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, count(*) AS c FROM events WHERE {} GROUP BY url",
                vec!["n > 0"; 10_000].join(" AND ")
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, sum({}) AS s FROM events GROUP BY url",
                parens(10_000, "n")
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, sum(n{}) AS s FROM events GROUP BY url",
                "::bigint".repeat(10_000)
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, count(*) AS c FROM events WHERE {}true GROUP BY url",
                "NOT ".repeat(10_000)
            )),
            true,
        ),
        (
            "boss",
            cq(format!(
                "SELECT url, sum({}n) AS s FROM events GROUP BY url",
                "- ".repeat(10_000)
            )),
            true,
        ),
        (
            "reader",
            filter(format!("n{} > 0", "+1".repeat(4_000))),
            false,
        ),
        (
            "reader",
            filter(format!("{}true", "NOT ".repeat(2_000))),
            false,
        ),
        (
            "reader",
            filter(format!("{} > 0", parens(4_000, "n"))),
            false,
        ),
        (
            "reader",
            filter(format!("{}n > 0", "- ".repeat(4_000))),
            false,
        ),
        ("reader", filter(vec!["n > 0"; 1_300].join(" OR ")), false),
        (
            "reader",
            filter(format!("n{} > 0", "::bigint".repeat(900))),
            false,
        ),
    ];
    for (role, wrap) in [
        ("reader", &query as &dyn Fn(String) -> String),
        ("boss", &mv),
    ] {
        attacks.push((
            role,
            wrap(format!("SELECT {} AS x", chain("+", 30_000))),
            true,
        ));
        attacks.push((
            role,
            wrap(format!("SELECT {} AS x", parens(10_000, "1"))),
            true,
        ));
        attacks.push((
            role,
            wrap(format!("SELECT 1{} AS x", "::int".repeat(15_000))),
            true,
        ));
        attacks.push((
            role,
            wrap(format!("SELECT {}true AS x", "NOT ".repeat(20_000))),
            true,
        ));
        attacks.push((
            role,
            wrap(format!("SELECT {}1 AS x", "- ".repeat(30_000))),
            true,
        ));
        attacks.push((
            role,
            wrap(format!(
                "SELECT {}1{} AS x",
                "ARRAY[".repeat(5_000),
                "]".repeat(5_000)
            )),
            true,
        ));
        attacks.push((
            role,
            wrap(format!(
                "SELECT {} AS x",
                vec!["1 = 1"; 15_000].join(" OR ")
            )),
            true,
        ));
        attacks.push((
            role,
            wrap(format!(
                "SELECT {}1{} AS x",
                "CASE WHEN true THEN ".repeat(3_000),
                " END".repeat(3_000)
            )),
            true,
        ));
    }
    attacks
}

#[test]
fn attacks_limits_deep_sql_is_refused_without_crashing_the_server() {
    let own = OwnServer(Server::start_with_env(&[]));
    own.0.plain_db("limits");
    let mut admin = connect_eventually(&own.0, "postgres");
    admin
        .batch_execute(
            r#"CREATE EXTENSION pg_beacon;
               CREATE ROLE reader LOGIN; CREATE ROLE boss LOGIN;
               SELECT beacon.create_project('alpha');
               SELECT beacon.grant('alpha', 'reader', 'read'); SELECT beacon.grant('alpha', 'boss', 'admin');
               SELECT beacon.collect('alpha', 'events', '{"url": "/a", "n": 1}');"#,
        )
        .unwrap();
    // legitimate: modest nesting works on every surface
    let mut boss = connect_eventually(&own.0, "boss");
    boss.batch_execute("SELECT beacon.create_continuous_query('alpha', 'modest', 'SELECT url, sum(((n + 1) + 1)) AS s FROM events GROUP BY url')").unwrap();
    let mut reader = connect_eventually(&own.0, "reader");
    reader
        .batch_execute("SELECT * FROM beacon.query('alpha', 'SELECT ((1 + 1) + 1) AS x')")
        .unwrap();
    reader
        .batch_execute("SELECT beacon.subscribe('alpha', 'events', '((n + 1) + 1) > 0', false)")
        .unwrap();
    drop((boss, reader));
    let started = start_time(&own.0);
    // a session that outlives every attack unless the server crashes
    let mut witness = connect_eventually(&own.0, "postgres");
    let mut findings = Vec::new();
    for (role, sql, must_refuse) in deep_attacks() {
        let shown: String = sql.chars().take(110).collect();
        let mut client = connect_eventually(&own.0, role);
        let result = client.batch_execute(&sql);
        drop(client);
        match result {
            Ok(()) if must_refuse => findings.push(format!("{role}: {shown}... was accepted")),
            Ok(()) => {}
            Err(e) => match e.as_db_error() {
                None => findings.push(format!("{role}: {shown}... lost the connection: {e}")),
                Some(db) if db.code().code() == "XX000" => findings.push(format!(
                    "{role}: {shown}... internal error: {}",
                    db.message()
                )),
                Some(_) => {}
            },
        }
        // a fresh connection answers
        assert_eq!(query_eventually(&own.0, "SELECT 1::text"), "1");
        if witness.batch_execute("SELECT 1").is_err() {
            findings.push(format!(
                "{role}: {shown}... CRASHED the server: every session was terminated"
            ));
            witness = connect_eventually(&own.0, "postgres");
        }
        let now = start_time(&own.0);
        if now != started {
            findings.push(format!(
                "{role}: {shown}... CRASHED the server (postmaster restarted at {now})"
            ));
            break;
        }
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

/// What a result may weigh at most; every attack below asks for 250 MB.
const RESULT_BOUND: i64 = 100 * 1024 * 1024;

#[test]
fn attacks_limits_query_results_are_bounded_in_bytes() {
    let _turn = turn();
    let mut reader = Session::connect("reader");
    // legitimate: an ordinary result comes back whole
    assert_eq!(
        reader.value("SELECT count(*) FROM beacon.query('alpha', 'SELECT url FROM events')"),
        "1"
    );
    let attacks = [
        "SELECT format('%25000000s', 'x') AS big FROM generate_series(1, 10)",
        "SELECT string_agg(format('%1000000s', i::text), '') AS big FROM generate_series(1, 250) AS g (i)",
        "SELECT jsonb_agg(format('%1000000s', i::text)) AS big FROM generate_series(1, 250) AS g (i)",
    ];
    let mut findings = Vec::new();
    for attack in attacks {
        let outcome = reader.run(&format!(
            "SELECT count(*), coalesce(sum(octet_length(r::text)), 0) FROM beacon.query('alpha', {}) r",
            lit(attack)
        ));
        match (&outcome.error, outcome.rows.first()) {
            (Some(_), _) => {}
            (None, Some(row)) => {
                let bytes: i64 = row[1].clone().unwrap().parse().unwrap();
                if bytes > RESULT_BOUND {
                    findings.push(format!(
                        "{attack}: returned {bytes} bytes in {} rows",
                        row[0].clone().unwrap()
                    ));
                }
            }
            (None, None) => panic!("no row"),
        }
    }
    // the server and the session are still fine
    assert_eq!(reader.value("SELECT 1"), "1");
    assert_eq!(
        server()
            .connect(DB)
            .query_one("SELECT 1", &[])
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}
