//! A LISTEN client of `beacon.subscribe_documents`, and what it must receive: the
//! documents that changed between two oracle snapshots (tests/common/documents.rs), each
//! once, with the payload `{"view", "key", "op", "doc"}` (without `doc` for deletes, and
//! key-only with `"truncated": true` when the full payload would pass 7999 bytes).
//!
//! Absence is checked without sleeping: after the changes, a sentinel document (a row no
//! change touches) is changed in a transaction of its own, committed after them; its
//! notification arrives after theirs (notifications are delivered in commit order, and an
//! async view's refresh takes every pending key it sees), so everything received before it
//! is everything the changes sent.
#![allow(dead_code)]

use crate::documents::{self, jsonb_text, DocView, Docs};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// NOTIFY's payload limit (the feature keeps payloads under it).
pub const LIMIT: usize = 7999;

/// One subscription as the test sees it.
pub struct Channel {
    pub channel: String,
    pub view: String,
    /// Which documents it wants (the subscription's filter, applied to the new document
    /// of an upsert and to the old one of a delete).
    pub wants: fn(&Value) -> bool,
}

/// What a channel must receive for the change from `before` to `after`: key text →
/// (op, payload text), the payload exactly as the feature should write it.
pub fn expected(
    channel: &Channel,
    key_column: &str,
    before: &Docs,
    after: &Docs,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let payload = |k: &str, op: &str, doc: Option<&str>| -> Value {
        let key: Value = serde_json::from_str(k).unwrap();
        let key = json!({ key_column: key[0] });
        let mut full = json!({"view": channel.view, "key": key, "op": op});
        if let Some(d) = doc {
            full["doc"] = serde_json::from_str(d).unwrap();
            if jsonb_text(&full).len() > LIMIT {
                full = json!({"view": channel.view, "key": key, "op": op, "truncated": true});
            }
        }
        full
    };
    for (k, doc) in after {
        if before.get(k) != Some(doc) && (channel.wants)(&serde_json::from_str(doc).unwrap()) {
            out.insert(k.clone(), payload(k, "upsert", Some(doc)));
        }
    }
    for (k, doc) in before {
        if !after.contains_key(k) && (channel.wants)(&serde_json::from_str(doc).unwrap()) {
            out.insert(k.clone(), payload(k, "delete", None));
        }
    }
    out
}

/// A session that LISTENs on channels and keeps what arrives, per channel.
pub struct Listener {
    pub client: Client,
    pub received: Vec<(String, String)>,
}

impl Listener {
    pub fn new(mut client: Client, channels: &[&Channel]) -> Listener {
        for c in channels {
            client
                .batch_execute(&format!("LISTEN {}", c.channel))
                .unwrap();
        }
        Listener {
            client,
            received: Vec::new(),
        }
    }

    /// Receives until `done` holds for what arrived so far (30 s deadline).
    pub fn until(&mut self, what: &str, mut done: impl FnMut(&[(String, String)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(&self.received) {
            assert!(
                Instant::now() < deadline,
                "timed out after 30 s waiting for {what}; received: {:?}",
                self.received
            );
            let mut notifications = self.client.notifications();
            let mut batch = notifications.timeout_iter(Duration::from_millis(100));
            while let Some(n) = batch.next().unwrap() {
                self.received
                    .push((n.channel().to_string(), n.payload().to_string()));
            }
        }
    }

    /// Takes what arrived.
    pub fn take(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.received)
    }
}

/// Whether a payload is the sentinel's, with the sentinel document of round `round`.
pub fn is_sentinel(payload: &str, key: &str, round: u64) -> bool {
    let v: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    v["key"].as_object().and_then(|k| k.values().next()) == Some(&Value::String(key.into()))
        && v["doc"]["order_estimated_delivery_date"]
            .as_str()
            .is_some_and(|d| d.starts_with(&sentinel_date(round)))
}

/// The estimated delivery date the sentinel order has in round `round`.
pub fn sentinel_date(round: u64) -> String {
    format!(
        "2031-01-{:02}T{:02}:{:02}",
        1 + round / 1440 % 28,
        round / 60 % 24,
        round % 60
    )
}

/// The differences between what a channel received (payload texts, sentinel excluded)
/// and what it should have; empty when right.
pub fn check(
    channel: &Channel,
    received: &[(String, String)],
    expected: &BTreeMap<String, Value>,
    sentinel: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (c, payload) in received {
        if *c != channel.channel {
            continue;
        }
        let v: Value = match serde_json::from_str(payload) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("not JSON ({e}): {payload}"));
                continue;
            }
        };
        if payload.len() > LIMIT {
            problems.push(format!("a payload of {} bytes", payload.len()));
        }
        let key = v["key"]
            .as_object()
            .and_then(|k| k.values().next())
            .cloned();
        let Some(key) = key else {
            problems.push(format!("no key: {payload}"));
            continue;
        };
        if key == Value::String(sentinel.into()) {
            continue;
        }
        got.entry(jsonb_text(&Value::Array(vec![key])))
            .or_default()
            .push(v);
    }
    for (k, want) in expected {
        match got.get(k).map(Vec::as_slice) {
            None => problems.push(format!("missing {k}: expected {}", short(want))),
            Some([one]) if one == want => {}
            Some([one]) => problems.push(format!(
                "{k}: received {}\n    expected {}",
                short(one),
                short(want)
            )),
            Some(many) => problems.push(format!(
                "{k}: received {} times: {:?}",
                many.len(),
                many.iter().map(short).collect::<Vec<_>>()
            )),
        }
    }
    for (k, v) in &got {
        if !expected.contains_key(k) {
            problems.push(format!(
                "unexpected {k}: {:?}",
                v.iter().map(short).collect::<Vec<_>>()
            ));
        }
    }
    problems
        .into_iter()
        .map(|p| format!("channel of {} ({}): {p}", channel.view, channel.channel))
        .collect()
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    let mut end = text.len().min(300);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}… ({} bytes)", &text[..end], text.len())
    } else {
        text
    }
}

/// The listener test's setting: the views, their subscriptions, a LISTEN session, and the
/// sentinel round.
pub struct Scene {
    pub client: Client,
    pub listener: Listener,
    pub views: Vec<DocView>,
    pub channels: Vec<Channel>,
    pub round: u64,
    pub problems: Vec<String>,
    /// notifications checked (not counting sentinels)
    pub checked: usize,
    pub truncated: usize,
}

impl Scene {
    pub fn oracles(&mut self) -> Vec<documents::Docs> {
        self.views
            .iter()
            .map(|v| documents::oracle(&mut self.client, v))
            .collect()
    }

    /// Changes the sentinel document and receives until its notification arrived on every
    /// channel; returns what arrived.
    pub fn sentinel(&mut self) -> Vec<(String, String)> {
        self.round += 1;
        let round = self.round;
        self.client
            .batch_execute(&format!(
                "UPDATE orders SET order_estimated_delivery_date = timestamptz '2031-01-01 00:00+00' + {round} * interval '1 minute' \
                 WHERE order_id = 'SENTINEL'"
            ))
            .unwrap();
        let channels: Vec<String> = self.channels.iter().map(|c| c.channel.clone()).collect();
        self.listener
            .until(&format!("sentinel round {round}"), |received| {
                channels.iter().all(|c| {
                    received
                        .iter()
                        .any(|(rc, p)| rc == c && is_sentinel(p, "SENTINEL", round))
                })
            });
        self.listener.take()
    }

    /// Checks what arrived against the change from `before` to the documents now.
    pub fn check(&mut self, what: &str, before: &[documents::Docs], received: &[(String, String)]) {
        let after = self.oracles();
        for c in &self.channels {
            let i = self.views.iter().position(|v| v.name == c.view).unwrap();
            let mut want = expected(c, "order_id", &before[i], &after[i]);
            want.remove("[\"SENTINEL\"]");
            self.checked += want.len();
            self.truncated += want
                .values()
                .filter(|v| v.get("truncated").is_some())
                .count();
            for p in check(c, received, &want, "SENTINEL") {
                self.problems.push(format!("{what}: {p}"));
            }
        }
    }

    /// A committed change (any SQL), then the check of what every channel received.
    pub fn step(&mut self, what: &str, sql: &str) {
        let before = self.oracles();
        documents::run_retrying(&mut self.client, sql);
        let received = self.sentinel();
        self.check(what, &before, &received);
    }
}
