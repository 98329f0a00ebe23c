//! Operations: every database is maintained when worker slots are short, `beacon.workers`
//! and `beacon.status()` tell the truth, and counts are true in every mode.

mod common;

use common::{eventually, eventually_within, server, Server};
use postgres::{Client, Config, NoTls};
use std::sync::{Arc, Mutex};

/// A client that keeps the notices (WARNINGs included) it receives.
fn noticing(server: &Server, db: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config: Config = server.dsn(db, "postgres").parse().unwrap();
    config.notice_callback(move |n| {
        sink.lock().unwrap().push(format!(
            "{}: {} {}",
            n.severity(),
            n.message(),
            n.detail().unwrap_or("")
        ))
    });
    (config.connect(NoTls).unwrap(), notices)
}

/// Project names are the cluster's (their roles are): each database has its own.
fn setup_project(client: &mut Client, p: &str) {
    client
        .batch_execute(&format!(
            "SELECT beacon.create_project('{p}');
             SELECT beacon.define_collection('{p}', 'hit', '{{\"country\": \"text\", \"n\": \"bigint\"}}');
             SELECT beacon.create_continuous_query('{p}', 'by_country',
               'SELECT country, count(*) AS hits, sum(n) AS total FROM hit GROUP BY country', 'async');
             SELECT beacon.create_materialized_view('{p}', 'totals',
               'SELECT country, count(*) AS hits FROM hit GROUP BY country', interval '1 second');"
        ))
        .unwrap();
}

fn pending(client: &mut Client, p: &str) -> i64 {
    client
        .query_one(
            "SELECT pending_deltas FROM beacon.continuous_queries WHERE project = $1",
            &[&p],
        )
        .unwrap()
        .get(0)
}

/// Whether the materialized view equals its query now.
fn refreshed(client: &mut Client, p: &str) -> bool {
    client
        .query_one(
            &format!(
                "SELECT NOT EXISTS (
                   (SELECT country, hits FROM {p}.totals
                    EXCEPT ALL SELECT country, count(*) FROM {p}.hit GROUP BY country)
                   UNION ALL
                   (SELECT country, count(*) FROM {p}.hit GROUP BY country
                    EXCEPT ALL SELECT country, hits FROM {p}.totals))"
            ),
            &[],
        )
        .unwrap()
        .get(0)
}

/// With three slots for schedulers and five databases, every database is compacted and its
/// materialized view refreshed, again and again, and the ones waiting say so.
#[test]
fn ops_databases_take_turns_when_worker_slots_are_short() {
    // the launcher takes one slot of four and logical replication none: three schedulers
    // would fit, so two more databases than that
    let server = Server::start_with(
        &[],
        "max_worker_processes = 4\nmax_logical_replication_workers = 0\n\
         max_parallel_workers = 0\nmax_parallel_workers_per_gather = 0\n",
    );
    let names: Vec<String> = (0..5).map(|i| format!("turn{i}")).collect();
    let mut warned = Vec::new();
    for name in &names {
        server.plain_db(name);
        let (mut client, notices) = noticing(&server, name);
        client.batch_execute("CREATE EXTENSION pg_beacon").unwrap();
        setup_project(&mut client, name);
        if notices
            .lock()
            .unwrap()
            .iter()
            .any(|n| n.contains("no background worker slot is free"))
        {
            warned.push(name.clone());
        }
        // wait for this database's scheduler before the next one, so that the slots are
        // taken when the later databases are created
        eventually_within(120, &format!("a first round in {name}"), || {
            client
                .query_one(
                    "SELECT last_maintained IS NOT NULL FROM beacon.workers WHERE current",
                    &[],
                )
                .unwrap()
                .get(0)
        });
    }
    assert!(
        warned.contains(&"turn4".to_string()),
        "CREATE EXTENSION warns when no slot is free: warned in {warned:?}"
    );
    let mut clients: Vec<Client> = names.iter().map(|n| server.connect(n)).collect();
    let mut seen_waiting = false;
    for round in 0..2 {
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .execute(
                    &format!(
                        "INSERT INTO turn{i}.hit (country, n) SELECT c, g FROM generate_series(1, 20) g,
                           unnest(ARRAY['fr', 'de', $1]) c"
                    ),
                    &[&format!("x{round}{i}")],
                )
                .unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            eventually_within(
                180,
                &format!("round {round}: turn{i} compacted and refreshed"),
                || {
                    if !seen_waiting {
                        seen_waiting = client
                            .query_one(
                                "SELECT count(*) > 0 FROM beacon.status()
                              WHERE component = 'worker' AND problem LIKE 'no scheduler: waiting%'",
                                &[],
                            )
                            .unwrap()
                            .get(0);
                    }
                    let p = format!("turn{i}");
                    pending(client, &p) == 0 && refreshed(client, &p)
                },
            );
            let differ: i64 = client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM (
                           (SELECT country, hits, total FROM turn{i}.by_country
                            EXCEPT ALL SELECT country, count(*), sum(n) FROM turn{i}.hit GROUP BY country)
                           UNION ALL
                           (SELECT country, count(*), sum(n) FROM turn{i}.hit GROUP BY country
                            EXCEPT ALL SELECT country, hits, total FROM turn{i}.by_country)) d"
                    ),
                    &[],
                )
                .unwrap()
                .get(0);
            assert_eq!(differ, 0, "turn{i}: the view equals its query");
        }
    }
    assert!(
        seen_waiting,
        "beacon.status() reported a database waiting for a slot"
    );
    // every database appears in the view of every other one
    let listed: i64 = clients[0]
        .query_one(
            "SELECT count(*) FROM beacon.workers
              WHERE database LIKE 'turn%' AND last_maintained IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 5);
    drop(clients);
    server.stop_and_remove();
}

#[test]
fn ops_workers_view_shows_this_database_running() {
    let mut client = server().fresh_db("ops_view");
    eventually(
        "this database's scheduler runs and has done a round",
        || {
            let row = client
                .query_one(
                    "SELECT state, pid IS NOT NULL AND rounds >= 1 AND last_maintained IS NOT NULL
                   FROM beacon.workers WHERE current",
                    &[],
                )
                .unwrap();
            row.get::<_, String>(0) == "running" && row.get::<_, bool>(1)
        },
    );
    let pid_matches: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity a JOIN beacon.workers w ON w.pid = a.pid
                             WHERE w.current AND a.backend_type = 'pg_beacon scheduler'
                               AND a.datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(pid_matches, "the view's pid is this database's scheduler");
    server().plain_db("ops_plain");
    eventually("a database without pg_beacon is shown as such", || {
        client
            .query_opt(
                "SELECT state FROM beacon.workers WHERE database = 'ops_plain'
                    AND state = 'no pg_beacon'",
                &[],
            )
            .unwrap()
            .is_some()
    });
    let problems: i64 = client
        .query_one(
            "SELECT count(*) FROM beacon.status() WHERE name = current_database()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(problems, 0, "a maintained database has no worker problem");
}

/// Immediate queries merge at commit: each commit's partials count, from any number of
/// concurrent writers.
#[test]
fn ops_rows_applied_counts_immediate_merges() {
    let mut client = server().fresh_db("ops_applied");
    client
        .batch_execute(
            "SELECT beacon.create_project('ops_a');
             SELECT beacon.define_collection('ops_a', 'hit', '{\"country\": \"text\", \"n\": \"bigint\"}');
             SELECT beacon.create_continuous_query('ops_a', 'now',
               'SELECT country, count(*) AS hits FROM hit GROUP BY country', 'immediate');",
        )
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = server().connect("ops_applied");
                for i in 0..25 {
                    // one group per statement: one partial per commit
                    c.execute(
                        "INSERT INTO ops_a.hit (country, n) SELECT $1, g FROM generate_series(1, 3) g",
                        &[&format!("c{}", (w + i) % 3)],
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let row = client
        .query_one(
            "SELECT rows_applied, pending_deltas FROM beacon.continuous_queries
              WHERE project = 'ops_a' AND name = 'now'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 100);
    assert_eq!(row.get::<_, i64>(1), 0);
    let total: i64 = client
        .query_one("SELECT sum(hits)::bigint FROM ops_a.now", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 300);
    // dropping the query drops its counters
    client
        .batch_execute("SELECT beacon.drop_continuous_query('ops_a', 'now')")
        .unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) FROM beacon.cq_applied", &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// Problems a monitoring system must see: a failing refresh, a failing filter.
#[test]
fn ops_status_reports_failures() {
    let mut client = server().fresh_db("ops_status");
    client
        .batch_execute(
            "SELECT beacon.create_project('ops_s');
             SELECT beacon.define_collection('ops_s', 'hit', '{\"country\": \"text\", \"n\": \"bigint\"}');
             SELECT beacon.collect('ops_s', 'hit', '{\"country\": \"fr\", \"n\": 1}');
             SELECT beacon.create_materialized_view('ops_s', 'inverse',
               'SELECT country, sum(1 / n) AS s FROM hit GROUP BY country', interval '1 second');
             SELECT beacon.subscribe('ops_s', 'hit', '10 / n > 1');",
        )
        .unwrap();
    let none: i64 = client
        .query_one(
            "SELECT count(*) FROM beacon.status() WHERE project = 'ops_s'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(none, 0, "nothing wrong yet");
    client
        .batch_execute("SELECT beacon.collect('ops_s', 'hit', '{\"country\": \"de\", \"n\": 0}')")
        .unwrap();
    eventually(
        "status reports the failing refresh and the failing filter",
        || {
            let rows = client
            .query(
                "SELECT component, severity, problem FROM beacon.status() WHERE project = 'ops_s'",
                &[],
            )
            .unwrap();
            let has = |component: &str, severity: &str, word: &str| {
                rows.iter().any(|r| {
                    r.get::<_, String>(0) == component
                        && r.get::<_, String>(1) == severity
                        && r.get::<_, String>(2).contains(word)
                })
            };
            has("materialized view", "error", "division by zero")
                && has("subscription", "warning", "division by zero")
        },
    );
}
