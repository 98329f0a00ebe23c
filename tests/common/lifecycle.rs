//! A project with one object of every kind pg_beacon makes, and the checks that a copy of
//! it works or that nothing of it is left: for the extension-lifecycle and dump/restore
//! tests.

use postgres::{Client, Config, NoTls};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Continuous queries over `pageview`, both modes, with integer aggregates only, so that a
/// view equals its query exactly.
pub const QUERIES: [(&str, &str, &str); 2] = [
    (
        "by_page",
        "SELECT page, count(*) AS hits, sum(ms) AS total_ms FROM pageview GROUP BY page",
        "async",
    ),
    (
        "by_user",
        "SELECT _user AS who, count(*) AS n, max(ms) AS slowest FROM pageview GROUP BY _user",
        "immediate",
    ),
];
pub const MV_QUERY: &str = "SELECT page, count(*) AS hits FROM pageview GROUP BY page";

/// `n` pageviews, spread over a few pages and users, from `seed`.
pub fn collect(client: &mut Client, project: &str, seed: u64, n: u64) {
    let events: Vec<String> = (0..n)
        .map(|i| {
            let k = seed.wrapping_mul(31).wrapping_add(i * 7);
            format!(
                r#"{{"collection": "pageview", "properties": {{"page": "/p{}", "ms": {}, "_user": "u{}"}}}}"#,
                k % 5,
                k % 97,
                k % 4
            )
        })
        .collect();
    client
        .execute(
            "SELECT beacon.collect_batch($1, $2::text::jsonb)",
            &[&project, &format!("[{}]", events.join(","))],
        )
        .unwrap();
}

/// Creates `project` with collections, continuous queries in both modes, a persistent
/// subscription, a materialized view, a user and a message. Returns the subscription's
/// channel.
pub fn populate(client: &mut Client, project: &str) -> String {
    client
        .execute("SELECT beacon.create_project($1)", &[&project])
        .unwrap();
    collect(client, project, 1, 40);
    client
        .execute(
            r#"SELECT beacon.define_collection($1, 'orders', '{"amount": "numeric"}')"#,
            &[&project],
        )
        .unwrap();
    for (name, query, mode) in QUERIES {
        client
            .execute(
                "SELECT beacon.create_continuous_query($1, $2, $3, $4)",
                &[&project, &name, &query, &mode],
            )
            .unwrap();
    }
    let channel: String = client
        .query_one(
            "SELECT beacon.subscribe($1, 'pageview', 'ms > 50', false)",
            &[&project],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "SELECT beacon.create_materialized_view($1, 'pages', $2, interval '1 hour')",
            &[&project, &MV_QUERY],
        )
        .unwrap();
    client
        .execute(
            r#"SELECT beacon.set_user($1, 'u1', '{"plan": "pro"}')"#,
            &[&project],
        )
        .unwrap();
    client
        .execute(
            "SELECT beacon.send_message($1, 'u1', 'u2', 'hello')",
            &[&project],
        )
        .unwrap();
    collect(client, project, 2, 40);
    channel
}

/// Rows in which `a` and `b` differ (both ways, as multisets).
fn differing(client: &mut Client, project: &str, a: &str, b: &str) -> i64 {
    client
        .batch_execute(&format!("SET search_path = \"{project}\", pg_catalog"))
        .unwrap();
    let n: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM (({a}) EXCEPT ALL ({b})
                                       UNION ALL (({b}) EXCEPT ALL ({a}))) d"
            ),
            &[],
        )
        .unwrap()
        .get(0);
    client.batch_execute("RESET search_path").unwrap();
    n
}

/// Every continuous query equals its defining query (the async one read through its view,
/// which merges pending deltas, and again after compaction), and the materialized view its
/// query after a refresh.
pub fn assert_exact(client: &mut Client, project: &str) {
    for (name, query, mode) in QUERIES {
        let view = format!("SELECT * FROM \"{project}\".{name}");
        assert_eq!(
            differing(client, project, &view, query),
            0,
            "{project}.{name} ({mode})"
        );
    }
    client
        .execute("SELECT beacon.compact($1)", &[&project])
        .unwrap();
    for (name, query, mode) in QUERIES {
        let view = format!("SELECT * FROM \"{project}\".{name}");
        assert_eq!(
            differing(client, project, &view, query),
            0,
            "{project}.{name} ({mode}) after compaction"
        );
    }
    client
        .execute(
            "SELECT beacon.refresh_materialized_view($1, 'pages')",
            &[&project],
        )
        .unwrap();
    let mv = format!("SELECT * FROM \"{project}\".pages");
    assert_eq!(
        differing(client, project, &mv, MV_QUERY),
        0,
        "{project}.pages"
    );
}

/// Collects more, receives the subscription's events for it, adds a user and a message,
/// and checks every query and the view: what a working project does.
pub fn assert_works(client: &mut Client, listener: &mut Client, project: &str, channel: &str) {
    listener
        .batch_execute(&format!("LISTEN \"{channel}\""))
        .unwrap();
    // ms = 96 passes the subscription's filter (ms > 50)
    client
        .execute(
            r#"SELECT beacon.collect($1, 'pageview', '{"page": "/new", "ms": 96, "_user": "u9"}')"#,
            &[&project],
        )
        .unwrap();
    collect(client, project, 3, 30);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while !got.iter().any(|p: &String| p.contains("/new")) {
        assert!(
            Instant::now() < deadline,
            "no event on {channel} of {project} after 30 s: {got:?}"
        );
        let mut notifications = listener.notifications();
        let mut pending = notifications.timeout_iter(Duration::from_millis(200));
        while let Some(n) = pending.next().unwrap() {
            got.push(n.payload().to_string());
        }
    }
    listener.batch_execute("UNLISTEN *").unwrap();
    client
        .execute(
            r#"SELECT beacon.set_user($1, 'u2', '{"plan": "free"}')"#,
            &[&project],
        )
        .unwrap();
    let sent: i64 = client
        .query_one(
            "SELECT beacon.send_message($1, 'u2', 'u1', 'hi back')",
            &[&project],
        )
        .unwrap()
        .get(0);
    let inbox: i64 = client
        .query_one("SELECT count(*) FROM beacon.mailbox($1, 'u1')", &[&project])
        .unwrap()
        .get(0);
    assert!(sent > 0 && inbox >= 2, "mailbox of {project}: {inbox}");
    assert_exact(client, project);
}

use postgres::fallible_iterator::FallibleIterator;

/// Whatever of `project` or of pg_beacon is left in the database `client` is connected to,
/// as descriptions: schemas, triggers and functions that are pg_beacon's or call into it,
/// event triggers; empty when nothing is.
pub fn leftovers(client: &mut Client, project: &str) -> Vec<String> {
    client
        .query(
            "SELECT 'schema ' || nspname FROM pg_catalog.pg_namespace WHERE nspname = $1
             UNION ALL
             SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass::text
               FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
              WHERE NOT t.tgisinternal
                AND (t.tgname ~ 'beacon' OR p.proname ~ '^_(cq|beacon|stream)' OR p.prosrc ~ 'beacon')
             UNION ALL
             SELECT 'function ' || p.oid::regprocedure::text FROM pg_catalog.pg_proc p
              WHERE p.prosrc ~ 'beacon' OR p.probin ~ 'pg_beacon'
                 OR p.pronamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'beacon')
             UNION ALL
             SELECT 'relation ' || c.oid::regclass::text FROM pg_catalog.pg_class c
              WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'beacon')
             UNION ALL
             SELECT 'event trigger ' || evtname FROM pg_catalog.pg_event_trigger WHERE evtname ~ 'beacon'
             UNION ALL
             SELECT 'extension ' || extname FROM pg_catalog.pg_extension WHERE extname = 'pg_beacon'",
            &[&project],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The project's roles that exist in the cluster.
pub fn roles(client: &mut Client, project: &str) -> Vec<String> {
    client
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles
              WHERE rolname IN (format('beacon_%s_read', $1::text), format('beacon_%s_write', $1::text),
                                format('beacon_%s_admin', $1::text), format('beacon_%s_owner', $1::text))
              ORDER BY 1",
            &[&project],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The SQLSTATE, message and hint of the error `sql` raises, or `None` when it succeeds.
pub fn error_of(client: &mut Client, sql: &str) -> Option<(String, String, String)> {
    match client.batch_execute(sql) {
        Ok(()) => None,
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: not a server error: {e}"));
            Some((
                db.code().code().to_string(),
                db.message().to_string(),
                db.hint().unwrap_or_default().to_string(),
            ))
        }
    }
}

/// A session whose NOTICEs are kept, for what the server said it did.
pub fn connect_with_notices(dsn: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config: Config = dsn.parse().unwrap();
    config.notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()));
    (config.connect(NoTls).unwrap(), notices)
}
