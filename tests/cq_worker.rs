//! The background scheduler of continuous queries: one per database with pg_beacon, started
//! by the launcher (also for databases created later), restarted after SIGTERM, compacting
//! by itself.

mod common;

use common::{eventually, server};
use postgres::Client;

const SOURCE: &str = "(id bigserial PRIMARY KEY, country text, qty bigint, amount numeric)";
/// Only exactly comparable aggregates, so the oracle check is a plain EXCEPT ALL.
const QUERY: &str = "SELECT country, count(*) AS n, sum(qty) AS qty, sum(amount) AS amount, \
                     min(qty) AS min_qty, max(amount) AS max_amount FROM src GROUP BY country";

/// (pid, backend_start) of the schedulers connected to `db`; backend_start tells a
/// restarted scheduler apart even if the OS reuses the pid.
fn schedulers(admin: &mut Client, db: &str) -> Vec<(i32, String)> {
    admin
        .query(
            "SELECT pid, backend_start::text FROM pg_stat_activity \
             WHERE backend_type = 'pg_beacon scheduler' AND datname = $1",
            &[&db],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn create_async_query(client: &mut Client, project: &str) {
    client
        .batch_execute(&format!(
            "SET TimeZone TO 'UTC'; SELECT beacon.create_project('{project}'); CREATE TABLE {project}.src {SOURCE}"
        ))
        .unwrap();
    client
        .execute(
            "SELECT beacon.create_continuous_query($1, 'by_country', $2, 'async')",
            &[&project, &QUERY],
        )
        .unwrap();
}

/// Deterministic rows over a few countries (one of them NULL), then a delete, so the
/// scheduler has inserts and deletes to apply.
fn write_batch(client: &mut Client, project: &str, seed: i32) {
    client
        .execute(
            &format!(
                "INSERT INTO {project}.src (country, qty, amount)
                 SELECT (ARRAY['us', 'de', NULL, 'fr'])[1 + (g + $1::int) % 4], (g * 7 + $1::int) % 11,
                        ((g * 13 + $1::int) % 1000) / 100.0
                   FROM generate_series(1, 200) g"
            ),
            &[&seed],
        )
        .unwrap();
    client
        .execute(
            &format!("DELETE FROM {project}.src WHERE id % 9 = $1::int % 9"),
            &[&seed],
        )
        .unwrap();
}

/// (pending deltas, rows applied) over the project's queries.
fn progress(client: &mut Client, project: &str) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT coalesce(sum(pending_deltas), 0)::bigint, coalesce(sum(rows_applied), 0)::bigint \
             FROM beacon.continuous_queries WHERE project = $1",
            &[&project],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

fn differences_from_oracle(client: &mut Client, project: &str) -> i64 {
    client
        .batch_execute(&format!(
            "SET search_path TO {project}, public; SET TimeZone TO 'UTC'"
        ))
        .unwrap();
    let view = format!("{project}.by_country");
    let differences: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM ((TABLE {view} EXCEPT ALL ({QUERY}))
                                       UNION ALL (({QUERY}) EXCEPT ALL TABLE {view})) d"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    client.batch_execute("RESET search_path").unwrap();
    differences
}

/// Waits for the scheduler to apply every delta on its own: nobody calls beacon.compact().
fn wait_for_compaction(client: &mut Client, project: &str) {
    eventually(&format!("the scheduler to compact {project}"), || {
        let (pending, applied) = progress(client, project);
        pending == 0 && applied > 0
    });
    assert_eq!(
        differences_from_oracle(client, project),
        0,
        "{project}.by_country equals its query"
    );
}

#[test]
fn scheduler_starts_for_new_database_and_compacts() {
    let mut admin = server().connect("postgres");
    let mut client = server().fresh_db("late_db");
    eventually("a scheduler for late_db, created after start-up", || {
        !schedulers(&mut admin, "late_db").is_empty()
    });
    create_async_query(&mut client, "late");
    write_batch(&mut client, "late", 1);
    write_batch(&mut client, "late", 2);
    wait_for_compaction(&mut client, "late");
}

#[test]
fn one_scheduler_per_database_and_sigterm() {
    let db = "solo_db";
    let mut admin = server().connect("postgres");
    let mut client = server().fresh_db(db);
    create_async_query(&mut client, "solo");
    eventually("exactly one scheduler for solo_db", || {
        schedulers(&mut admin, db).len() == 1
    });
    let mut samples = 0;
    eventually("a few samples of the scheduler count", || {
        let count = schedulers(&mut admin, db).len();
        assert!(count <= 1, "{count} schedulers for {db}");
        samples += 1;
        samples >= 20
    });
    // a scheduler that died abnormally would make the postmaster restart every backend,
    // this idle session included
    let mut bystander = server().connect(db);
    let old = schedulers(&mut admin, db);
    assert_eq!(old.len(), 1, "one scheduler for {db}");
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&old[0].0])
        .unwrap()
        .get(0);
    assert!(terminated, "pg_terminate_backend({})", old[0].0);

    write_batch(&mut client, "solo", 3);
    eventually("the launcher to start a new scheduler for solo_db", || {
        let now = schedulers(&mut admin, db);
        assert!(now.len() <= 1, "{} schedulers for {db}: {now:?}", now.len());
        now.len() == 1 && now[0] != old[0]
    });
    let mut samples = 0;
    eventually("a few samples after the restart", || {
        let count = schedulers(&mut admin, db).len();
        assert!(count <= 1, "{count} schedulers for {db} after the restart");
        samples += 1;
        samples >= 20
    });
    let alive: i32 = bystander
        .query_one("SELECT 1", &[])
        .expect("SIGTERM stopped the scheduler cleanly, without a crash restart")
        .get(0);
    assert_eq!(alive, 1);
    wait_for_compaction(&mut client, "solo");
}

#[test]
fn database_without_extension_gets_no_lasting_scheduler() {
    let mut admin = server().connect("postgres");
    server().plain_db("noext");
    // a database with the extension created after "noext": once its scheduler runs, the
    // launcher has looked at the list of databases since "noext" existed
    server().fresh_db("seen_db");
    eventually("a scheduler for seen_db", || {
        !schedulers(&mut admin, "seen_db").is_empty()
    });
    for db in ["noext", "postgres"] {
        // a scheduler may look at a database and leave; it must not stay
        let mut absent_in_a_row = 0;
        eventually(
            &format!("no scheduler for {db}, 20 samples in a row"),
            || {
                if schedulers(&mut admin, db).is_empty() {
                    absent_in_a_row += 1;
                } else {
                    absent_in_a_row = 0;
                }
                absent_in_a_row >= 20
            },
        );
    }
    let mut noext = server().connect("noext");
    let installed: i64 = noext
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_beacon'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        installed, 0,
        "the launcher does not install pg_beacon anywhere"
    );
}

/// DROP DATABASE refuses while another session is connected; the scheduler must not
/// count as one.
#[test]
fn drop_database_with_a_running_scheduler() {
    let mut admin = server().connect("postgres");
    drop(server().fresh_db("dropme"));
    eventually("a scheduler for dropme", || {
        !schedulers(&mut admin, "dropme").is_empty()
    });
    if let Err(e) = admin.batch_execute("DROP DATABASE dropme") {
        let sessions: Vec<String> = admin
            .query(
                "SELECT format('%s %s %s %s', pid, backend_type, backend_start, state)
                   FROM pg_stat_activity WHERE datname = 'dropme'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        panic!("DROP DATABASE without FORCE while the scheduler runs: {e}; sessions: {sessions:?}");
    }
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'dropme'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

/// pg_reload_conf() sends SIGHUP to every process: the scheduler rereads its settings and
/// goes on, same process, still compacting.
#[test]
fn sighup_reloads_settings_without_a_restart() {
    let mut admin = server().connect("postgres");
    let mut client = server().fresh_db("hup_db");
    create_async_query(&mut client, "hup");
    eventually("a scheduler for hup_db", || {
        schedulers(&mut admin, "hup_db").len() == 1
    });
    let before = schedulers(&mut admin, "hup_db");
    admin
        .batch_execute("ALTER SYSTEM SET beacon.compact_interval = '200ms'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    write_batch(&mut client, "hup", 3);
    wait_for_compaction(&mut client, "hup");
    assert_eq!(
        schedulers(&mut admin, "hup_db"),
        before,
        "SIGHUP does not restart the scheduler"
    );
    admin
        .batch_execute("ALTER SYSTEM RESET beacon.compact_interval")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
}
