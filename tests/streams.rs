//! Event streams, customer profiles and the mailbox against a real server, with real
//! LISTEN clients: what arrives, on which channel, in which order, and what never does.

mod common;

use common::{eventually, server};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Notification};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Project roles are cluster-wide, so tests that each make project "shop" take turns; a
/// dropped database leaves its roles free for the next test's project.
static TURN: Mutex<()> = Mutex::new(());
const DATABASES: [&str; 7] = [
    "stream_filter",
    "stream_large",
    "stream_fifty",
    "stream_temporary",
    "stream_roles",
    "users_concurrent",
    "mailbox_channels",
];

fn setup(db: &str) -> (MutexGuard<'static, ()>, Client) {
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for other in DATABASES {
        server().drop_db(other);
    }
    let mut client = server().fresh_db(db);
    client
        .batch_execute(
            r#"SELECT beacon.create_project('shop');
               SELECT beacon.define_collection('shop', 'pageview',
                   '{"url": "text", "price": "double precision", "n": "bigint", "note": "text"}');"#,
        )
        .unwrap();
    (turn, client)
}

fn subscribe(client: &mut Client, filter: Option<&str>, temporary: bool) -> String {
    client
        .query_one(
            "SELECT beacon.subscribe('shop', 'pageview', $1, $2)",
            &[&filter, &temporary],
        )
        .unwrap()
        .get(0)
}

fn collect(client: &mut Client, properties: Value) -> i64 {
    client
        .query_one(
            "SELECT beacon.collect('shop', 'pageview', $1)",
            &[&properties],
        )
        .unwrap()
        .get(0)
}

/// Receives notifications until `done` says the list is complete, or fails after 30 s.
fn receive_until(
    listener: &mut Client,
    mut done: impl FnMut(&[Notification]) -> bool,
) -> Vec<Notification> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut received = Vec::new();
    while !done(&received) {
        assert!(
            Instant::now() < deadline,
            "timed out after 30 s; received so far: {:?}",
            received
                .iter()
                .map(|n: &Notification| (n.channel().to_string(), n.payload().to_string()))
                .collect::<Vec<_>>()
        );
        let mut notifications = listener.notifications();
        let mut pending = notifications.timeout_iter(Duration::from_millis(200));
        while let Some(n) = pending.next().unwrap() {
            received.push(n);
        }
    }
    received
}

fn payload(n: &Notification) -> Value {
    serde_json::from_str(n.payload()).unwrap_or_else(|e| panic!("{}: {e}", n.payload()))
}

fn event_url(n: &Notification) -> String {
    payload(n)["event"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn has_url(url: &'static str) -> impl FnMut(&[Notification]) -> bool {
    move |received| received.iter().any(|n| event_url(n) == url)
}

#[test]
fn matching_events_arrive_once_in_commit_order_and_others_never() {
    let (_turn, mut client) = setup("stream_filter");
    let channel = subscribe(&mut client, Some("price > 10 AND url LIKE '/p%'"), true);
    let mut listener = server().connect("stream_filter");
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .unwrap();

    for (i, price) in [5.0, 20.0, 30.0, 11.0, 10.0].iter().enumerate() {
        collect(
            &mut client,
            serde_json::json!({"url": format!("/p{i}"), "price": price}),
        );
    }
    collect(&mut client, serde_json::json!({"url": "/x", "price": 99}));
    // rolled back: never sent
    client
        .batch_execute(
            r#"BEGIN; SELECT beacon.collect('shop', 'pageview', '{"url": "/rolled-back", "price": 50}'); ROLLBACK;"#,
        )
        .unwrap();
    // a 300-row statement: one notification per matching row, in _id order
    client
        .batch_execute(
            r#"INSERT INTO shop.pageview (url, price, n) SELECT '/pbatch', 100, g FROM generate_series(1, 300) g;
               SELECT beacon.collect('shop', 'pageview', '{"url": "/pend", "price": 12}');"#,
        )
        .unwrap();

    let received = receive_until(&mut listener, has_url("/pend"));
    let urls: Vec<String> = received.iter().map(event_url).collect();
    let mut expected = vec!["/p1".to_string(), "/p2".into(), "/p3".into()];
    expected.extend(std::iter::repeat_n("/pbatch".to_string(), 300));
    expected.push("/pend".into());
    assert_eq!(urls, expected);
    let batch: Vec<i64> = received
        .iter()
        .filter(|n| event_url(n) == "/pbatch")
        .map(|n| payload(n)["event"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        batch,
        (1..=300).collect::<Vec<i64>>(),
        "statement rows in order"
    );
    let first = payload(&received[0]);
    assert_eq!(first["collection"], "pageview");
    assert_eq!(first["event"]["price"], 20.0);
    assert!(first["event"]["_id"].as_i64().is_some());
    assert!(
        first["event"].get("note").is_none(),
        "unset properties are left out"
    );

    let sent: i64 = client
        .query_one(
            "SELECT events_sent FROM beacon.subscriptions WHERE channel = $1",
            &[&channel],
        )
        .unwrap()
        .get(0);
    assert_eq!(sent, 304);
}

#[test]
fn oversized_events_arrive_truncated_and_are_stored_whole() {
    let (_turn, mut client) = setup("stream_large");
    let channel = subscribe(&mut client, None, true);
    let mut listener = server().connect("stream_large");
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .unwrap();
    let big = "é".repeat(6000);
    let id = collect(&mut client, serde_json::json!({"url": "/big", "note": big}));
    collect(&mut client, serde_json::json!({"url": "/small"}));
    let received = receive_until(&mut listener, has_url("/small"));
    assert_eq!(received.len(), 2);
    assert_eq!(
        payload(&received[0]),
        serde_json::json!({"collection": "pageview", "_id": id, "truncated": true})
    );
    let stored: i32 = client
        .query_one(
            "SELECT length(note) FROM shop.pageview WHERE _id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 6000);
}

#[test]
fn fifty_subscriptions_share_one_trigger_and_each_gets_its_events() {
    let (_turn, mut client) = setup("stream_fifty");
    let channels: Vec<String> = (0..50)
        .map(|i| {
            subscribe(
                &mut client,
                Some(&format!("n = {i} OR n = {}", i + 50)),
                true,
            )
        })
        .collect();
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.pageview'::regclass AND NOT tgisinternal",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(triggers, 1);
    let mut listener = server().connect("stream_fifty");
    for channel in &channels {
        listener
            .batch_execute(&format!("LISTEN {channel}"))
            .unwrap();
    }
    // 0..100 in one statement, then a marker on channel 0
    client
        .batch_execute(
            "INSERT INTO shop.pageview (url, n) SELECT '/n', g FROM generate_series(0, 99) g;
             INSERT INTO shop.pageview (url, n) VALUES ('/end', 0);",
        )
        .unwrap();
    let received = receive_until(&mut listener, has_url("/end"));
    let mut by_channel: HashMap<&str, Vec<i64>> = HashMap::new();
    for n in &received {
        by_channel
            .entry(n.channel())
            .or_default()
            .push(payload(n)["event"]["n"].as_i64().unwrap());
    }
    for (i, channel) in channels.iter().enumerate() {
        let mut expected = vec![i as i64, i as i64 + 50];
        if i == 0 {
            expected.push(0);
        }
        assert_eq!(
            by_channel.get(channel.as_str()),
            Some(&expected),
            "channel {i}"
        );
    }
}

#[test]
fn temporary_subscriptions_end_with_their_session() {
    let (_turn, mut client) = setup("stream_temporary");
    let lasting = subscribe(&mut client, Some("n > 0"), false);
    let mut session = server().connect("stream_temporary");
    let temporary = subscribe(&mut session, Some("n < 0"), true);
    let listed = |client: &mut Client, channel: &str| -> bool {
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM beacon.subscriptions WHERE channel = $1)",
                &[&channel],
            )
            .unwrap()
            .get(0)
    };
    assert!(listed(&mut client, &temporary));
    drop(session);
    eventually("the worker ends the temporary subscription", || {
        !listed(&mut client, &temporary)
    });
    assert!(listed(&mut client, &lasting), "a lasting one stays");
    // the trigger function now serves only the lasting subscription
    let body: String = client
        .query_one(
            "SELECT prosrc FROM pg_proc WHERE proname = '_stream_pageview'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(body.contains(&lasting) && !body.contains(&temporary));
    client
        .execute("SELECT beacon.unsubscribe($1)", &[&lasting])
        .unwrap();
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.pageview'::regclass AND NOT tgisinternal",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0, "no subscription, no trigger");
}

#[test]
fn only_readers_may_subscribe_or_end_others_subscriptions() {
    let (_turn, mut client) = setup("stream_roles");
    client
        .batch_execute(
            "DROP ROLE IF EXISTS stream_reader; DROP ROLE IF EXISTS stream_writer;
             CREATE ROLE stream_reader LOGIN; CREATE ROLE stream_writer LOGIN;
             SELECT beacon.grant('shop', 'stream_reader', 'read');
             SELECT beacon.grant('shop', 'stream_writer', 'write');",
        )
        .unwrap();
    let mut writer = server().connect_as("stream_roles", "stream_writer");
    let refused = writer
        .query_one("SELECT beacon.subscribe('shop', 'pageview')", &[])
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"));
    let mut reader = server().connect_as("stream_roles", "stream_reader");
    let channel = subscribe(&mut reader, Some("price > 1"), false);
    // counted once the subscription exists: the writer must not see its channel
    let hidden: i64 = writer
        .query_one("SELECT count(*) FROM beacon.subscriptions", &[])
        .unwrap()
        .get(0);
    let visible: i64 = reader
        .query_one("SELECT count(*) FROM beacon.subscriptions", &[])
        .unwrap()
        .get(0);
    assert_eq!((hidden, visible), (0, 1));
    let refused = writer
        .execute("SELECT beacon.unsubscribe($1)", &[&channel])
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some("42501"));
    reader
        .execute("SELECT beacon.unsubscribe($1)", &[&channel])
        .unwrap();
    drop((reader, writer));
    // memberships would keep the project's roles in use for the next test
    client
        .batch_execute("DROP ROLE stream_reader; DROP ROLE stream_writer;")
        .unwrap();
}

#[test]
fn concurrent_increments_add_up_exactly() {
    let (_turn, mut client) = setup("users_concurrent");
    client
        .batch_execute(r#"SELECT beacon.set_user('shop', 'other', '{"visits": 7}')"#)
        .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = server().connect("users_concurrent");
                for i in 0..150 {
                    c.execute("SELECT beacon.increment_user('shop', 'u1', 'visits')", &[])
                        .unwrap();
                    c.execute(
                        "SELECT beacon.increment_user('shop', 'u1', 'spent', $1)",
                        // always fractional: the first increment decides the column type
                        &[&(0.25 * f64::from(2 * w + 1))],
                    )
                    .unwrap();
                    // a new user appearing concurrently, with a new property
                    c.execute(
                        "SELECT beacon.increment_user('shop', $1, 'logins')",
                        &[&format!("new{}", i % 10)],
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let row = client
        .query_one("SELECT visits, spent FROM shop._users WHERE id = 'u1'", &[])
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 600);
    assert_eq!(row.get::<_, f64>(1), 150.0 * (0.25 + 0.75 + 1.25 + 1.75));
    let logins: i64 = client
        .query_one(
            "SELECT sum(logins)::bigint FROM shop._users WHERE id LIKE 'new%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(logins, 600);
    let other: i64 = client
        .query_one("SELECT visits FROM shop._users WHERE id = 'other'", &[])
        .unwrap()
        .get(0);
    assert_eq!(other, 7, "other users untouched");
}

#[test]
fn mailbox_messages_reach_exactly_their_channels_after_commit() {
    let (_turn, mut client) = setup("mailbox_channels");
    let channel = |client: &mut Client, user: Option<&str>| -> String {
        client
            .query_one("SELECT beacon.mailbox_channel('shop', $1)", &[&user])
            .unwrap()
            .get(0)
    };
    let ann = channel(&mut client, Some("ann"));
    let bob = channel(&mut client, Some("bob"));
    let carol = channel(&mut client, Some("carol"));
    let all = channel(&mut client, None);
    let mut listener = server().connect("mailbox_channels");
    for c in [&ann, &bob, &carol, &all] {
        listener.batch_execute(&format!("LISTEN {c}")).unwrap();
    }
    client
        .batch_execute(
            "BEGIN; SELECT beacon.send_message('shop', 'ann', 'carol', 'rolled back'); ROLLBACK;",
        )
        .unwrap();
    let first: i64 = client
        .query_one(
            "SELECT beacon.send_message('shop', 'ann', 'bob', 'hello')",
            &[],
        )
        .unwrap()
        .get(0);
    let second: i64 = client
        .query_one(
            "SELECT beacon.send_message('shop', NULL, 'carol', 'welcome')",
            &[],
        )
        .unwrap()
        .get(0);
    let received = receive_until(&mut listener, |r| {
        r.iter()
            .filter(|n| payload(n)["message"]["id"].as_i64() == Some(second))
            .count()
            == 2
    });
    let mut by_channel: HashMap<String, Vec<i64>> = HashMap::new();
    for n in &received {
        let message = payload(n);
        assert_eq!(message["project"], "shop");
        by_channel
            .entry(n.channel().to_string())
            .or_default()
            .push(message["message"]["id"].as_i64().unwrap());
    }
    assert_eq!(by_channel.get(&ann), Some(&vec![first]));
    assert_eq!(by_channel.get(&bob), Some(&vec![first]));
    assert_eq!(by_channel.get(&carol), Some(&vec![second]));
    assert_eq!(by_channel.get(&all), Some(&vec![first, second]));
    let hello = received
        .iter()
        .find(|n| n.channel() == bob)
        .map(payload)
        .unwrap();
    assert_eq!(hello["message"]["content"], "hello");
    assert_eq!(hello["message"]["from_user"], "ann");
    assert_eq!(hello["message"]["seen"], false);
}
