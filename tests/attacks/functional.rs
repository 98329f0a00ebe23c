//! Class 4: functional notation. PostgreSQL reads `(x).f` as `f(x)` when x's type has no
//! field f, so a "field access" names any one-argument function — one the allow-lists
//! never see. Tried through every surface that takes user SQL; each attempt must be
//! refused before anything runs, and `beacon.query` must leave the caller's session as
//! it found it (settings, advisory locks, LISTENs, notifications sent).

use crate::common::attack::*;
use postgres::fallible_iterator::FallibleIterator;
use std::time::{Duration, Instant};

/// Expressions over `events e`; `{canary}` is a canary call in the attacker's schema.
const NOTATIONS: &[&str] = &[
    "('select 1'::text).ts_stat",
    "('PG_VERSION'::text).pg_read_file",
    "(('PG_VERSION'::text).pg_stat_file).size",
    "('server_version'::text).current_setting",
    "('data_directory'::text).current_setting",
    "('x'::text).current_setting",
    "e.row_to_json",
    "(e).row_to_json",
    "(1).pg_sleep",
    "('beacon_mb_x'::text).pg_notify",
    "(4242::bigint).pg_advisory_lock",
    "('alpha.events'::text).to_regclass",
    "(('select pg_catalog.to_tsvector(note) from beta.secret'::text).ts_stat).word",
    "(('select pg_catalog.to_tsvector(({canary})::text)'::text).ts_stat).word",
    "(url).pg_read_file",
    "(e.url).quote_ident",
];

/// Refused before running: by the surface's own check, or because PostgreSQL found no
/// such field or function. A permission error *from running* the function is not a
/// refusal of the allow-list.
fn refused_up_front(outcome: &Outcome, policy: &[&str]) -> bool {
    match &outcome.error {
        // the policy's refusals, not a permission PostgreSQL denied while running something
        Some((state, message)) if state == "42501" => {
            message.starts_with("query refused") || message.starts_with("invalid filter")
        }
        Some((state, _)) => {
            policy.contains(&state.as_str())
                || ["42883", "42703", "42809"].contains(&state.as_str())
        }
        None => false,
    }
}

fn through(
    role: &str,
    tag: &str,
    policy: &[&str],
    call: impl Fn(&str, usize) -> String,
    content: Option<&dyn Fn(usize) -> String>,
) {
    let canary = Canary::new(tag);
    canary.control(role);
    let schema = format!("own_{role}");
    let mut attacker = Session::connect(role);
    attacker.ok(&canary.plant_sql(&schema));
    let before = attacker.state();
    let mut findings = Vec::new();
    for (i, notation) in NOTATIONS.iter().enumerate() {
        let expr = notation.replace("{canary}", &canary.call(&schema));
        let sql = call(&expr, i);
        let outcome = attacker.run(&sql);
        if !refused_up_front(&outcome, policy) {
            findings.push(format!(
                "{sql}\n    -> not refused: {:?} {:?}",
                outcome.error, outcome.rows
            ));
        }
        if canary.traces() > 0 {
            findings.push(format!("{sql}\n    -> the canary ran as {}", canary.who()));
            canary.reset();
        }
        let after = attacker.state();
        if after != before {
            findings.push(format!(
                "{sql}\n    -> session changed: {before:?} -> {after:?}"
            ));
            attacker.ok("SELECT pg_advisory_unlock_all()");
        }
        if leaked(&outcome, false).is_some() {
            findings.push(format!(
                "{sql}\n    -> leaked to the caller: {}",
                outcome.seen()
            ));
        }
        if let Some(content) = content {
            let stored = Session::connect("postgres").run(&content(i));
            // ts_stat lowercases the words it found: beta's row shows as "secret"
            if leaked(&stored, false).is_some() || stored.seen().contains("secret") {
                findings.push(format!(
                    "{sql}\n    -> stored for alpha's readers: {}",
                    stored.seen()
                ));
            }
        }
    }
    reset_own_schema(&schema, role);
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

#[test]
fn attacks_functional_notation_in_query() {
    let _turn = turn();
    // legitimate: a plain column and an allowed function
    let mut reader = Session::connect("reader");
    reader.ok("SELECT * FROM beacon.query('alpha', 'SELECT e.url, md5(e.url) AS h FROM events e')");
    through(
        "reader",
        "fn_query",
        &[],
        |expr, _| {
            format!(
                "SELECT * FROM beacon.query('alpha', {})",
                dq(&format!("SELECT {expr} AS x FROM events e LIMIT 1"))
            )
        },
        None,
    );
}

#[test]
fn attacks_functional_notation_in_materialized_views() {
    let _turn = turn();
    Session::connect("boss").ok(
        "SELECT beacon.create_materialized_view('alpha', 'fn_legit', 'SELECT e.url, count(*) AS n FROM events e GROUP BY e.url', '1 hour')",
    );
    let content = |i: usize| format!("SELECT * FROM alpha.fn_mv_{i}");
    through(
        "boss",
        "fn_mv",
        &[],
        |expr, i| {
            format!(
                "SELECT beacon.create_materialized_view('alpha', 'fn_mv_{i}', {}, '1 hour')",
                dq(&format!("SELECT {expr} AS x FROM events e LIMIT 1"))
            )
        },
        Some(&content),
    );
}

#[test]
fn attacks_functional_notation_in_continuous_queries() {
    let _turn = turn();
    Session::connect("boss").ok(
        "SELECT beacon.create_continuous_query('alpha', 'fn_legit_cq', 'SELECT e.url, count(*) AS n FROM events e GROUP BY e.url')",
    );
    let content = |i: usize| format!("SELECT * FROM alpha.fn_cq_{i}");
    through(
        "boss",
        "fn_cq",
        &["0A000"],
        |expr, i| {
            format!(
                "SELECT beacon.create_continuous_query('alpha', 'fn_cq_{i}', {})",
                dq(&format!(
                    "SELECT {expr} AS k, count(*) AS n FROM events e GROUP BY 1"
                ))
            )
        },
        Some(&content),
    );
}

#[test]
fn attacks_functional_notation_in_filters() {
    let _turn = turn();
    Session::connect("reader")
        .ok("SELECT beacon.subscribe('alpha', 'events', 'lower(url) = ''/a''', false)");
    through(
        "reader",
        "fn_filter",
        &["42501", "42601"],
        |expr, _| {
            let expr = expr
                .replace("(e.url)", "(url)")
                .replace("(e)", "(url)")
                .replace("e.", "");
            format!(
                "SELECT beacon.subscribe('alpha', 'events', {}, false)",
                dq(&format!("{expr} IS NOT NULL"))
            )
        },
        None,
    );
}

/// What ts_stat (reached through functional notation) could run inside beacon.query.
const SESSION_ATTACKS: &[&str] = &[
    "pg_catalog.set_config('search_path', 'pg_temp, public', false)",
    "pg_catalog.set_config('statement_timeout', '1234', false)",
    "pg_catalog.set_config('lock_timeout', '1234', false)",
    "pg_catalog.set_config('default_transaction_read_only', 'on', false)",
    "pg_catalog.set_config('beacon.max_fields', '3', false)",
    "pg_catalog.set_config('TimeZone', 'Asia/Tokyo', false)",
    "pg_catalog.set_config('standard_conforming_strings', 'off', false)",
    "pg_catalog.pg_advisory_lock(4243)::text",
    "pg_catalog.pg_try_advisory_lock(4244)::text",
    "(SELECT 'x' FROM pg_catalog.pg_notify('atk_leak', 'stolen'))",
];

#[test]
fn attacks_functional_query_leaves_the_session_unchanged() {
    let _turn = turn();
    let mut listener = Session::connect("outsider");
    listener.ok("LISTEN atk_leak");
    let mut reader = Session::connect("reader");
    let before = reader.state();
    // legitimate use changes nothing
    reader.ok("SELECT * FROM beacon.query('alpha', 'SELECT url FROM events')");
    assert_eq!(reader.state(), before);
    let mut findings = Vec::new();
    for attack in SESSION_ATTACKS {
        let inner = format!("select pg_catalog.to_tsvector({attack})");
        let sql = format!(
            "SELECT * FROM beacon.query('alpha', {})",
            dq(&format!(
                "SELECT (({}::text).ts_stat).word AS w",
                lit(&inner)
            ))
        );
        let outcome = reader.run(&sql);
        let after = reader.state();
        if after != before {
            findings.push(format!(
                "{attack}: session changed: {before:?} -> {after:?} ({:?})",
                outcome.error
            ));
            reader = Session::connect("reader");
        }
        // notifications arrive in commit order: the sentinel comes after anything sent
        reader.ok("NOTIFY atk_leak, 'sentinel'");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while Instant::now() < deadline && !seen.contains(&"sentinel".to_string()) {
            let mut notifications = listener.client.notifications();
            let mut iter = notifications.timeout_iter(Duration::from_millis(200));
            while let Ok(Some(n)) = iter.next() {
                seen.push(n.payload().to_string());
            }
        }
        assert!(
            seen.contains(&"sentinel".to_string()),
            "the sentinel notification never came"
        );
        seen.retain(|p| p != "sentinel");
        if !seen.is_empty() {
            findings.push(format!("{attack}: notified others: {seen:?}"));
        }
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}
