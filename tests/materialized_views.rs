//! Scheduled materialized views against a real server: the worker refreshes each view when
//! it is due, records a failing one without stopping the others, and skips a view whose
//! refresh is already running rather than running two at once.

mod common;

use common::{eventually, server};
use postgres::Client;

fn setup(db: &str, project: &str) -> Client {
    let mut client = server().fresh_db(db);
    client
        .batch_execute(&format!(
            r#"SELECT beacon.create_project('{project}');
               SELECT beacon.collect_batch('{project}', '[
                 {{"collection": "pageview", "properties": {{"url": "/a"}}}},
                 {{"collection": "pageview", "properties": {{"url": "/b"}}}}]');"#
        ))
        .unwrap();
    client
}

fn rows(client: &mut Client, view: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {view}"), &[])
        .unwrap()
        .get(0)
}

fn last_error(client: &mut Client, name: &str) -> Option<String> {
    client
        .query_one(
            "SELECT last_error FROM beacon.materialized_views WHERE name = $1",
            &[&name],
        )
        .unwrap()
        .get(0)
}

#[test]
fn the_worker_refreshes_due_views_and_a_failing_one_stops_no_other() {
    let mut client = setup("mv_schedule", "mvs");
    client
        .batch_execute(
            "SELECT beacon.create_materialized_view('mvs', 'by_url',
                 'SELECT url, count(*) AS n FROM pageview GROUP BY url', '1 second');
             SELECT beacon.create_materialized_view('mvs', 'fragile',
                 'SELECT url, 10 / (3 - count(*)) AS r FROM pageview GROUP BY url', '1 second');
             SELECT beacon.create_materialized_view('mvs', 'hourly',
                 'SELECT count(*) AS n FROM pageview', '1 hour');",
        )
        .unwrap();
    // /a three times: fragile now divides by zero at every refresh
    client
        .batch_execute(
            r#"SELECT beacon.collect_batch('mvs', '[
                 {"collection": "pageview", "properties": {"url": "/a"}},
                 {"collection": "pageview", "properties": {"url": "/a"}},
                 {"collection": "pageview", "properties": {"url": "/c"}}]');"#,
        )
        .unwrap();
    eventually("the worker refreshes by_url", || {
        rows(&mut client, "mvs.by_url") == 3
    });
    eventually("the failure of fragile is recorded", || {
        last_error(&mut client, "fragile").as_deref() == Some("division by zero")
    });
    // later data still reaches the good view: the failing one did not stop the schedule
    client
        .batch_execute(r#"SELECT beacon.collect('mvs', 'pageview', '{"url": "/d"}')"#)
        .unwrap();
    eventually("by_url keeps being refreshed", || {
        rows(&mut client, "mvs.by_url") == 4
    });
    assert_eq!(
        rows(&mut client, "mvs.fragile"),
        2,
        "the last good contents stay"
    );
    let hourly: i64 = client
        .query_one("SELECT n FROM mvs.hourly", &[])
        .unwrap()
        .get(0);
    assert_eq!(hourly, 2, "not due yet");
    let (concurrent, refreshed): (bool, bool) = {
        let row = client
            .query_one(
                "SELECT concurrent, last_refresh > created_at AND last_duration IS NOT NULL
                   FROM beacon.materialized_views WHERE name = 'by_url'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(concurrent && refreshed);
    // the failure clears once the data allows a refresh again
    client
        .batch_execute("DELETE FROM mvs.pageview WHERE url = '/a'")
        .unwrap();
    eventually("fragile recovers", || {
        last_error(&mut client, "fragile").is_none() && rows(&mut client, "mvs.fragile") == 3
    });
}

#[test]
fn a_view_being_refreshed_is_skipped_not_refreshed_twice() {
    let mut client = setup("mv_lock", "mvl");
    client
        .batch_execute(
            "SELECT beacon.create_materialized_view('mvl', 'by_url',
                 'SELECT url, count(*) AS n FROM pageview GROUP BY url', '1 second');",
        )
        .unwrap();
    // hold the view's refresh lock as a refresh in progress would
    let mut holder = server().connect("mv_lock");
    holder
        .batch_execute(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('beacon.mv mvl.by_url', 0));",
        )
        .unwrap();
    client
        .batch_execute(r#"SELECT beacon.collect('mvl', 'pageview', '{"url": "/new"}')"#)
        .unwrap();
    let refreshed_at = |client: &mut Client| -> String {
        client
            .query_one(
                "SELECT last_refresh::text FROM beacon.materialized_views WHERE name = 'by_url'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let before = refreshed_at(&mut client);
    // the worker comes by every second; wait until it has certainly passed a few times
    eventually("the view is overdue", || {
        client
            .query_one(
                "SELECT next_refresh < now() - interval '3 seconds' FROM beacon.materialized_views WHERE name = 'by_url'",
                &[],
            )
            .unwrap()
            .get(0)
    });
    assert_eq!(refreshed_at(&mut client), before, "skipped while locked");
    assert_eq!(rows(&mut client, "mvl.by_url"), 2);
    holder.batch_execute("COMMIT").unwrap();
    eventually("refreshed once the lock is free", || {
        rows(&mut client, "mvl.by_url") == 3
    });
}
