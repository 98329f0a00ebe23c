//! Class 2: the caller's search_path inside code that runs as the extension owner. The
//! attacker plants domains named like built-in types in pg_temp (searched first for types
//! whatever search_path says), or operators and domains in a schema it owns with
//! `SET search_path = mine, pg_catalog`, each calling a canary; then it calls every entry
//! point its level allows (and some it does not). Whatever pg_beacon runs as the owner
//! must resolve to pg_catalog's objects, never the caller's.

use crate::common::attack::*;
use crate::common::server;

/// Runs each call as `role`: first, when marked legitimate, in a clean session (where it
/// must succeed, so the attack below is the same statement), then in one session after
/// `prepare` planted its objects. `{n}` in a call becomes `legit_<tag>` or `atk_<tag>`, so
/// that every run creates distinct objects. Collects every call after which the canary left a trace,
/// the session's settings changed, or something of beta (or, for `alpha_too`, of alpha)
/// was seen, and fails with all of them.
pub(crate) fn barrage(
    role: &str,
    canary: &Canary,
    prepare: &str,
    calls: &[(&str, bool)],
    alpha_too: bool,
) {
    for (sql, legit) in calls {
        if *legit {
            Session::connect(role).ok(&sql.replace("{n}", &format!("legit_{}", canary.tag)));
        }
    }
    assert_eq!(canary.traces(), 0, "legitimate calls leave no trace");
    let mut attacker = Session::connect(role);
    attacker.ok(prepare);
    let before = attacker.state();
    let mut findings = Vec::new();
    for (sql, _) in calls {
        let sql = sql.replace("{n}", &format!("atk_{}", canary.tag));
        let outcome = attacker.run(&sql);
        if canary.traces() > 0 {
            findings.push(format!(
                "{sql}\n    -> the canary ran as {} ({:?})",
                canary.who(),
                outcome.error
            ));
            canary.reset();
        }
        let after = attacker.state();
        if after != before {
            findings.push(format!(
                "{sql}\n    -> session changed: {before:?} -> {after:?}"
            ));
        }
        if leaked(&outcome, alpha_too).is_some() {
            findings.push(format!("{sql}\n    -> leaked: {}", outcome.seen()));
        }
    }
    assert!(
        findings.is_empty(),
        "{role}: {} of {} calls ran attacker code with elevated privileges or leaked:\n{}",
        findings.len(),
        calls.len(),
        findings.join("\n")
    );
}

const NO_CHANNEL: &str = "beacon_00000000000000000000000000000000";

fn prepare_sources() {
    server()
        .connect(DB)
        .batch_execute(
            r#"SELECT beacon.collect('alpha', 'sp_src', '{"url": "/a", "price": 2.5, "n": 1}');
               SELECT beacon.collect('alpha', 'sp_sub', '{"url": "/a", "price": 2.5}');
               SELECT beacon.create_materialized_view('alpha', 'sp_mv', 'SELECT count(*) AS n FROM sp_src', '1 hour');"#,
        )
        .unwrap_or(());
}

fn reader_calls() -> Vec<(&'static str, bool)> {
    vec![
        ("SELECT beacon.subscribe('alpha', 'sp_sub', 'price > 1', false)", true),
        ("SELECT beacon.subscribe('alpha', 'sp_sub', 'url = ''/a'' OR url IS NULL', false)", true),
        ("SELECT beacon.subscribe('alpha', 'sp_sub', NULL, true)", true),
        ("SELECT * FROM beacon.query('alpha', 'SELECT url, count(*) AS n FROM sp_src WHERE url = ''/a'' GROUP BY url')", true),
        ("SELECT * FROM beacon.query('alpha', 'SELECT url || ''x'' AS u, n + 1 AS m FROM sp_src')", true),
        ("SELECT beacon.mailbox_channel('alpha', 'u1')", true),
        ("SELECT beacon.mailbox_channel('alpha')", true),
        ("SELECT * FROM beacon.mailbox('alpha', 'u1')", true),
        ("SELECT count(*) FROM beacon.continuous_queries", true),
        ("SELECT count(*) FROM beacon.subscriptions", true),
        ("SELECT * FROM beacon.query('beta', 'SELECT 1 AS x')", false),
        ("SELECT beacon.subscribe('beta', 'secret')", false),
    ]
}

fn writer_calls() -> Vec<(&'static str, bool)> {
    vec![
        (
            r#"SELECT beacon.collect('alpha', 'sp_{n}_w', '{"s": "x", "i": 1, "f": 1.5, "b": true, "t": "2024-01-01T00:00:00Z", "j": {"a": 1}, "a": [1, 2], "ta": ["x"], "big": 123456789012345678901234567890}')"#,
            true,
        ),
        (
            r#"SELECT beacon.collect('alpha', 'sp_{n}_w', '{"s2": "y", "i": "not a number"}')"#,
            true,
        ),
        (
            r#"SELECT beacon.collect_batch('alpha', '[{"collection": "sp_{n}_wb", "properties": {"s": "x", "i": 2}}, {"collection": "sp_{n}_w", "properties": {"s": "z"}}]')"#,
            true,
        ),
        (
            r#"SELECT beacon.define_collection('alpha', 'sp_{n}_wd', '{"price": "double precision", "tags": "text[]", "at": "timestamptz", "doc": "jsonb", "n": "numeric", "k": "bigint", "ok": "boolean"}')"#,
            true,
        ),
        (
            r#"SELECT beacon.set_user('alpha', 'u_{n}', '{"plan": "pro", "seats": 3, "since": "2024-01-01T00:00:00Z"}')"#,
            true,
        ),
        (
            r#"SELECT beacon.set_user_once('alpha', 'u_{n}', '{"plan": "free", "first": "x"}')"#,
            true,
        ),
        (
            "SELECT beacon.increment_user('alpha', 'u_{n}', 'seats', 2)",
            true,
        ),
        (
            "SELECT beacon.unset_user('alpha', 'u_{n}', ARRAY['plan'])",
            true,
        ),
        (
            "SELECT beacon.send_message('alpha', 'u_{n}', 'u2', 'hello')",
            true,
        ),
        (
            "SELECT beacon.mark_read('alpha', 'u2', ARRAY[1]::bigint[])",
            true,
        ),
        (
            "SELECT beacon.refresh_materialized_view('alpha', 'sp_mv')",
            true,
        ),
        (
            r#"SELECT beacon.collect('beta', 'secret', '{"note": "x"}')"#,
            false,
        ),
    ]
}

fn admin_calls() -> Vec<(&'static str, bool)> {
    vec![
        ("SELECT beacon.create_continuous_query('alpha', 'sp_{n}_cq', 'SELECT url, count(*) AS n, sum(price) AS s, max(n) AS m FROM sp_src GROUP BY url')", true),
        ("SELECT beacon.create_continuous_query('alpha', 'sp_{n}_cqi', 'SELECT url, count(*) AS n FROM sp_src WHERE url <> ''x'' GROUP BY url', 'immediate')", true),
        ("SELECT beacon.compact('alpha')", true),
        ("SELECT beacon.create_materialized_view('alpha', 'sp_{n}_mv', 'SELECT url, count(*) AS n FROM sp_src WHERE url = ''/a'' GROUP BY url', '1 hour')", true),
        ("SELECT beacon.refresh_materialized_view('alpha', 'sp_{n}_mv')", true),
        ("SELECT beacon.grant('alpha', 'schemer', 'read')", true),
        ("SELECT beacon.revoke('alpha', 'schemer', 'read')", true),
        ("SELECT beacon.drop_materialized_view('alpha', 'sp_{n}_mv')", true),
        ("SELECT beacon.drop_continuous_query('alpha', 'sp_{n}_cqi')", true),
        ("SELECT beacon.create_continuous_query('beta', 'x', 'SELECT count(*) AS n FROM secret')", false),
    ]
}

fn outsider_calls() -> Vec<(String, bool)> {
    let alpha = lit(&world().alpha_channel);
    [
        format!("SELECT beacon.unsubscribe('{NO_CHANNEL}')"),
        format!("SELECT beacon.unsubscribe(reverse({alpha}))"),
        "SELECT * FROM beacon.query('alpha', 'SELECT 1 AS x')".into(),
        "SELECT beacon.subscribe('alpha', 'sp_sub')".into(),
        r#"SELECT beacon.collect('alpha', 'sp_sub', '{"url": "/x"}')"#.into(),
        "SELECT beacon.create_continuous_query('alpha', 'x', 'SELECT count(*) AS n FROM sp_src')"
            .into(),
        "SELECT beacon.mailbox_channel('alpha')".into(),
        "SELECT beacon.grant('alpha', 'outsider', 'admin')".into(),
        "SELECT beacon.compact()".into(),
        "SELECT count(*) FROM beacon.continuous_queries".into(),
        "SELECT count(*) FROM beacon.subscriptions".into(),
    ]
    .into_iter()
    .map(|sql| (sql, false))
    .collect()
}

fn borrowed(calls: &[(String, bool)]) -> Vec<(&str, bool)> {
    calls.iter().map(|(s, l)| (s.as_str(), *l)).collect()
}

/// pg_temp domains named like built-in types.
fn temp_types(role: &str, tag: &str, calls: &[(&str, bool)]) {
    let _turn = turn();
    prepare_sources();
    let canary = Canary::new(tag);
    canary.control(role);
    let prepare = shadow_types_sql("pg_temp", &canary, true);
    let result = std::panic::catch_unwind(|| {
        barrage(
            role,
            &canary,
            &prepare,
            calls,
            role != "reader" && role != "boss",
        )
    });
    cleanup(tag);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Removes what the attack runs created, however broken: a continuous query whose hidden
/// tables lost columns typed with the attacker's temporary types would otherwise break
/// `beacon.continuous_queries` for the next test.
fn cleanup(tag: &str) {
    let mut admin = Session::connect("postgres");
    for name in [format!("sp_atk_{tag}_cq"), format!("sp_atk_{tag}_cqi")] {
        let dropped = admin.run(&format!(
            "SELECT beacon.drop_continuous_query('alpha', '{name}')"
        ));
        if dropped.error.is_some() {
            admin.run(&format!(
                "DELETE FROM beacon.continuous_query WHERE project = 'alpha' AND name = '{name}';
                 DROP VIEW IF EXISTS alpha.{name}, alpha._cq_{name}_columns CASCADE;
                 DROP TABLE IF EXISTS alpha._cq_{name}_state, alpha._cq_{name}_delta CASCADE;"
            ));
        }
    }
    admin.run(&format!(
        "SELECT beacon.drop_materialized_view('alpha', 'sp_atk_{tag}_mv')"
    ));
}

/// Operators and domains in the role's own schema, first in its search_path.
fn own_operators(role: &str, tag: &str, calls: &[(&str, bool)]) {
    let _turn = turn();
    prepare_sources();
    let canary = Canary::new(tag);
    canary.control(role);
    let schema = format!("own_{role}");
    let prepare = format!(
        "{}{}SET search_path = {schema}, pg_catalog;",
        plant_operators_sql(&schema, &canary),
        shadow_types_sql(&schema, &canary, false)
    );
    let result = std::panic::catch_unwind(|| {
        barrage(
            role,
            &canary,
            &prepare,
            calls,
            role != "reader" && role != "boss",
        )
    });
    reset_own_schema(&schema, role);
    cleanup(tag);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn attacks_search_path_temp_types_reader() {
    temp_types("reader", "sp_tt_reader", &reader_calls());
}

#[test]
fn attacks_search_path_temp_types_writer() {
    temp_types("writer", "sp_tt_writer", &writer_calls());
}

#[test]
fn attacks_search_path_temp_types_admin() {
    temp_types("boss", "sp_tt_boss", &admin_calls());
}

#[test]
fn attacks_search_path_temp_types_outsider_and_monitor() {
    let calls = outsider_calls();
    temp_types("outsider", "sp_tt_outsider", &borrowed(&calls));
    temp_types("monitor", "sp_tt_monitor", &borrowed(&calls));
}

#[test]
fn attacks_search_path_own_operators_reader() {
    own_operators("reader", "sp_op_reader", &reader_calls());
}

#[test]
fn attacks_search_path_own_operators_writer() {
    own_operators("writer", "sp_op_writer", &writer_calls());
}

#[test]
fn attacks_search_path_own_operators_admin() {
    own_operators("boss", "sp_op_boss", &admin_calls());
}

#[test]
fn attacks_search_path_own_operators_schemer() {
    let calls = outsider_calls();
    own_operators("schemer", "sp_op_schemer", &borrowed(&calls));
}

/// Columns of project tables whose type lives outside pg_catalog (the row types of
/// pg_beacon's own hidden tables aside).
fn foreign_column_types(admin: &mut Session) -> Vec<String> {
    admin
        .ok(
            "SELECT c.relname || '.' || a.attname || ': ' || n.nspname || '.' || t.typname
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE c.relnamespace = 'alpha'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
                AND n.nspname <> 'pg_catalog'
                AND NOT (n.nspname = 'alpha' AND t.typname LIKE '\\_\\_cq\\_%')
              ORDER BY 1",
        )
        .rows
        .into_iter()
        .flatten()
        .flatten()
        .collect()
}

#[test]
fn attacks_search_path_collection_columns_stay_in_pg_catalog() {
    let _turn = turn();
    let canary = Canary::new("sp_columns");
    let event = r#"{"s": "x", "i": 1, "f": 1.5, "b": true, "t": "2024-01-01T00:00:00Z", "j": {"a": 1}, "a": [1, 2], "ta": ["x"], "ja": [{"a": 1}], "big": 123456789012345678901234567890}"#;
    // legitimate: the same event, from a clean session, gets pg_catalog types only
    let mut writer = Session::connect("writer");
    writer.ok(&format!(
        "SELECT beacon.collect('alpha', 'sp_cols_legit', {})",
        lit(event)
    ));
    let mut admin = Session::connect("postgres");
    assert_eq!(foreign_column_types(&mut admin), Vec::<String>::new());
    let mut findings = Vec::new();
    for (role, schema) in [("writer", "pg_temp"), ("writer", "own_writer")] {
        let mut attacker = Session::connect(role);
        attacker.ok(&shadow_types_sql(schema, &canary, true));
        if schema != "pg_temp" {
            attacker.ok(&format!("SET search_path = {schema}, pg_catalog"));
        }
        let collection = format!("sp_cols_{}", schema.replace('_', ""));
        let calls = [
            format!("SELECT beacon.collect('alpha', {}, {})", lit(&collection), lit(event)),
            format!(
                "SELECT beacon.define_collection('alpha', {}, '{{\"d\": \"numeric\", \"e\": \"text[]\", \"g\": \"jsonb\"}}')",
                lit(&collection)
            ),
            format!("SELECT beacon.set_user('alpha', 'u_cols', {})", lit(event)),
        ];
        for sql in &calls {
            attacker.run(sql);
        }
        // while the attacker is connected, and after it left
        let alive = foreign_column_types(&mut admin);
        if !alive.is_empty() {
            findings.push(format!(
                "{role} with types in {schema}: columns typed outside pg_catalog: {alive:?}"
            ));
        }
        drop(attacker);
        let missing = admin.ok(&format!(
            "SELECT f.collection || '.' || f.column_name FROM beacon.field f
              WHERE f.project = 'alpha' AND f.collection IN ({}, '_users')
                AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                                 WHERE a.attrelid = format('alpha.%I', f.collection)::regclass
                                   AND a.attname = f.column_name AND NOT a.attisdropped)",
            lit(&collection)
        ));
        if !missing.rows.is_empty() {
            findings.push(format!(
                "after {role} left, catalogued columns are gone: {:?}",
                missing.rows
            ));
        }
        if canary.traces() > 0 {
            findings.push(format!(
                "{role} with types in {schema}: canary ran as {}",
                canary.who()
            ));
            canary.reset();
        }
        if schema != "pg_temp" {
            reset_own_schema(schema, role);
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}
