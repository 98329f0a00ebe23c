//! The body of a collection's stream trigger.
//!
//! The common case is one pass over the inserted rows with every filter OR-ed together.
//! A filter can still fail on some value (`1/n`, a cast, an overflow): that must never
//! fail the writer's insert, nor cost the other subscriptions their events. So the pass
//! runs in a block of its own, and when it fails the trigger falls back to each
//! subscription on its own and, for a subscription that fails, to each event on its own:
//! events its filter fails on are not sent on it and are counted in
//! `beacon.subscription_failure` with the error. The fallback's subtransactions are only
//! paid for statements that need it.

use crate::names::quote_literal;

/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
pub const MAX_PAYLOAD_BYTES: usize = 8000;

pub struct Subscription {
    pub channel: String,
    pub condition: Option<String>,
}

fn condition(s: &Subscription) -> String {
    s.condition.clone().unwrap_or_else(|| "true".into())
}

/// The payload sent for `m` (a row with `_id` and `payload`), cut to the `_id` when NOTIFY
/// would refuse it.
fn sized_payload(collection: &str) -> String {
    format!(
        "CASE WHEN pg_catalog.octet_length(m.payload) < {MAX_PAYLOAD_BYTES} THEN m.payload
                         ELSE pg_catalog.json_build_object('collection', {collection}, '_id', m._id,
                                                           'truncated', true)::text END"
    )
}

fn payload(collection: &str) -> String {
    format!(
        "pg_catalog.json_build_object('collection', {collection},
                    'event', pg_catalog.jsonb_strip_nulls(pg_catalog.to_jsonb(beacon_row.*)))::text"
    )
}

/// One subscription's events, in `_id` order, optionally only the event `only`.
fn one_subscription(collection: &str, s: &Subscription, only: Option<&str>) -> String {
    let channel = quote_literal(&s.channel);
    let only = only
        .map(|id| format!(" AND beacon_row._id = {id}"))
        .unwrap_or_default();
    format!(
        "WITH m AS (SELECT beacon_row._id, {} AS payload
                      FROM beacon_new AS beacon_row
                     WHERE ({}){only}
                     ORDER BY beacon_row._id),
           sent AS MATERIALIZED (SELECT pg_catalog.pg_notify({channel}, {}) FROM m)
      INSERT INTO beacon.subscription_sent (channel, sent)
      SELECT {channel}, count(*) FROM sent HAVING count(*) > 0",
        payload(collection),
        condition(s),
        sized_payload(collection)
    )
}

/// The trigger function's body: NOTIFYs per matching (row, subscription) in `_id` order,
/// and one counter row per channel. Filters name columns unqualified; the row itself is
/// only ever named as `beacon_row.*` and the function's variables as `beacon_vars.*`,
/// which no column name can shadow.
pub fn trigger_body(collection: &str, subscriptions: &[Subscription]) -> String {
    let name = quote_literal(collection);
    let any_match = subscriptions
        .iter()
        .map(|s| format!("({})", condition(s)))
        .collect::<Vec<_>>()
        .join("\n                 OR ");
    let channels = subscriptions
        .iter()
        .map(|s| {
            format!(
                "CASE WHEN ({}) THEN {} END",
                condition(s),
                quote_literal(&s.channel)
            )
        })
        .collect::<Vec<_>>()
        .join(",\n                        ");
    let fallback: String = subscriptions
        .iter()
        .map(|s| {
            format!(
                "
      BEGIN
        {};
      EXCEPTION WHEN OTHERS THEN
        beacon_vars.failed := 0;
        FOR beacon_vars.event IN SELECT beacon_row._id FROM beacon_new AS beacon_row ORDER BY 1 LOOP
          BEGIN
            {};
          EXCEPTION WHEN OTHERS THEN
            beacon_vars.failed := beacon_vars.failed + 1;
            beacon_vars.error := SQLERRM;
          END;
        END LOOP;
        INSERT INTO beacon.subscription_failure (channel, failed, error)
        VALUES ({}, beacon_vars.failed, beacon_vars.error);
      END;",
                one_subscription(&name, s, None),
                one_subscription(&name, s, Some("beacon_vars.event")),
                quote_literal(&s.channel)
            )
        })
        .collect();
    format!(
        "#variable_conflict use_column
<<beacon_vars>>
DECLARE
  failed bigint;
  error text;
  event bigint;
BEGIN
  BEGIN
    WITH matched AS (
           SELECT beacon_row._id,
                  {} AS payload,
                  ARRAY[{channels}]::text[] AS channels
             FROM beacon_new AS beacon_row
            WHERE {any_match}
            ORDER BY beacon_row._id),
         sent AS MATERIALIZED (
           SELECT c.channel, pg_catalog.pg_notify(c.channel, {})
             FROM matched m
            CROSS JOIN LATERAL pg_catalog.unnest(m.channels) AS c (channel)
            WHERE c.channel IS NOT NULL)
    INSERT INTO beacon.subscription_sent (channel, sent)
    SELECT channel, count(*) FROM sent GROUP BY channel;
  EXCEPTION WHEN OTHERS THEN
    -- a filter failed on some event: what it sent is undone, each subscription goes alone{fallback}
  END;
  RETURN NULL;
END",
        payload(&name),
        sized_payload(&name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_body_scans_once_and_falls_back_per_subscription() {
        let body = trigger_body(
            "page'view",
            &[
                Subscription {
                    channel: "beacon_a".into(),
                    condition: Some("\"price\" > 10".into()),
                },
                Subscription {
                    channel: "beacon_b".into(),
                    condition: None,
                },
            ],
        );
        // one pass, then one statement per subscription and one per event of each
        assert_eq!(
            body.matches("FROM beacon_new AS beacon_row").count(),
            1 + 2 * 3
        );
        assert!(body.contains("WHERE (\"price\" > 10)\n                 OR (true)"));
        assert!(body.contains("CASE WHEN (\"price\" > 10) THEN 'beacon_a' END"));
        assert!(body.contains("CASE WHEN (true) THEN 'beacon_b' END"));
        assert!(body.contains("'page''view'"), "collection name quoted");
        assert!(body.contains("< 8000"));
        assert_eq!(body.matches("EXCEPTION WHEN OTHERS").count(), 1 + 2 * 2);
        assert!(body.contains("VALUES ('beacon_b', beacon_vars.failed, beacon_vars.error)"));
    }
}
