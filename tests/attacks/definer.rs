//! Class 1: functions of schema `beacon` that run with the owner's privileges and that
//! PUBLIC may execute, called with names the caller chose: a "project" that is the
//! caller's temporary schema or a schema it owns, holding a view whose column runs the
//! caller's function. Every `_`-prefixed function must either not be executable by an
//! outsider or be harmless whatever it is passed.

use crate::common::attack::*;

/// `_cq_x_delta` in `schema`: what `_backlog(schema, 'x')` counts, with a column `_at`
/// that runs the canary.
fn delta_view_sql(schema: &str, canary: &Canary) -> String {
    format!(
        "CREATE VIEW {schema}._cq_x_delta AS
           SELECT CASE WHEN {} THEN pg_catalog.now() END AS _at",
        canary.call(schema)
    )
}

#[test]
fn attacks_definer_backlog_does_not_run_views_of_the_callers_schemas() {
    let _turn = turn();
    let canary = Canary::new("backlog");
    canary.control("outsider");
    // legitimate use: the monitoring view calls _backlog for every visible query
    let mut reader = Session::connect("reader");
    let pending = reader.value(
        "SELECT count(*) FROM beacon.continuous_queries WHERE name = 'alpha_cq' AND pending_deltas >= 0",
    );
    assert_eq!(pending, "1");
    let mut findings = Vec::new();
    // (attacker, schema to plant in; None: its temporary schema)
    for (role, own) in [
        ("outsider", None),
        ("monitor", None),
        ("reader", None),
        ("reader", Some("own_reader")),
        ("writer", Some("own_writer")),
        ("boss", Some("own_boss")),
        ("schemer", Some("own_schemer")),
        ("schemer", None),
    ] {
        let mut attacker = Session::connect(role);
        let schema = match own {
            Some(schema) => schema.to_string(),
            None => attacker.temp_schema(),
        };
        let plant_in = own.unwrap_or("pg_temp");
        attacker.ok(&canary.plant_sql(plant_in));
        attacker.ok(&delta_view_sql(plant_in, &canary));
        for name in ["x", "X", "x\"", "../x"] {
            let sql = format!(
                "SELECT * FROM beacon._backlog({}, {})",
                lit(&schema),
                lit(name)
            );
            let outcome = attacker.run(&sql);
            if canary.traces() > 0 {
                findings.push(format!("{role}: {sql} ran the canary as {}", canary.who()));
                canary.reset();
            }
            assert_nothing_leaked(&outcome, true, &sql);
        }
        if own.is_some() {
            attacker.ok(&format!("DROP VIEW {plant_in}._cq_x_delta"));
            attacker.ok(&format!("DROP FUNCTION {}", canary.call(plant_in)));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

#[test]
fn attacks_definer_stream_housekeeping_is_no_entry_point() {
    let _turn = turn();
    let canary = Canary::new("housekeeping");
    canary.control("schemer");
    // a live temporary subscription, so that housekeeping has rows to look at
    let mut reader = Session::connect("reader");
    let channel = reader.value("SELECT beacon.subscribe('alpha', 'events', 'price > 0', true)");
    let mut findings = Vec::new();
    for (role, schema) in [
        ("schemer", "own_schemer"),
        ("reader", "own_reader"),
        ("writer", "own_writer"),
        ("boss", "own_boss"),
    ] {
        let mut attacker = Session::connect(role);
        attacker.ok(&plant_operators_sql(schema, &canary));
        attacker.ok(&shadow_types_sql("pg_temp", &canary, true));
        attacker.ok(&format!("SET search_path = {schema}, pg_catalog"));
        let before = attacker.state();
        let outcome = attacker.run("SELECT beacon._stream_housekeeping()");
        if canary.traces() > 0 {
            findings.push(format!(
                "{role}: beacon._stream_housekeeping() ran the canary as {} ({:?})",
                canary.who(),
                outcome.error
            ));
            canary.reset();
        }
        assert_eq!(attacker.state(), before);
        assert_nothing_leaked(&outcome, true, "housekeeping");
        drop(attacker);
        reset_own_schema(schema, role);
    }
    // the reader's subscription survived whatever housekeeping ran
    let alive = reader.value(&format!(
        "SELECT count(*) FROM beacon.subscriptions WHERE channel = {}",
        lit(&channel)
    ));
    assert_eq!(alive, "1");
    reader.ok(&format!("SELECT beacon.unsubscribe({})", lit(&channel)));
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// Candidate values for an argument of type `ty`, for calling functions blindly.
fn candidates(ty: &str, temp: &str) -> Vec<String> {
    match ty {
        "text" | "name" | "character varying" => [
            temp,
            "own_schemer",
            "alpha",
            "beta",
            "x",
            "alpha_cq",
            "beta_cq",
        ]
        .iter()
        .map(|s| lit(s))
        .collect(),
        "oid" | "regrole" => vec![
            "'outsider'::regrole::oid".into(),
            "'postgres'::regrole::oid".into(),
        ],
        "boolean" => vec!["true".into(), "false".into()],
        "integer" | "bigint" | "smallint" => vec!["1".into(), "0".into()],
        "bigint[]" => vec!["ARRAY[1]::bigint[]".into()],
        "jsonb" => vec!["'{}'::jsonb".into()],
        "interval" => vec!["'1 second'::interval".into()],
        _ => vec!["NULL".into()],
    }
}

#[test]
fn attacks_definer_every_underscore_function_is_closed_or_harmless_to_outsiders() {
    let _turn = turn();
    let canary = Canary::new("underscore");
    canary.control("outsider");
    let mut admin = Session::connect("postgres");
    // functions taking `internal` cannot be called from SQL at all
    let functions = admin.ok("SELECT p.oid::regprocedure::text, p.proname::text,
                coalesce((SELECT string_agg(pg_catalog.format_type(t, NULL), ',' ORDER BY o)
                            FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a (t, o)), '')
           FROM pg_proc p
          WHERE p.pronamespace = 'beacon'::regnamespace AND p.proname LIKE '\\_%'
            AND p.prokind = 'f'
            AND has_function_privilege('outsider', p.oid, 'EXECUTE')
            AND NOT 'internal'::regtype = ANY (p.proargtypes::oid[])
          ORDER BY 1");
    let before = fingerprint();
    let mut findings = Vec::new();
    let mut calls = 0;
    for (role, own) in [
        ("outsider", None),
        ("monitor", None),
        ("schemer", Some("own_schemer")),
    ] {
        let mut attacker = Session::connect(role);
        let temp = attacker.temp_schema();
        attacker.ok(&canary.plant_sql("pg_temp"));
        attacker.ok(&delta_view_sql("pg_temp", &canary));
        if let Some(schema) = own {
            attacker.ok(&plant_operators_sql(schema, &canary));
            attacker.ok(&delta_view_sql(schema, &canary));
            attacker.ok(&format!("SET search_path = {schema}, pg_catalog"));
        }
        attacker.ok(&shadow_types_sql("pg_temp", &canary, false));
        let state = attacker.state();
        for row in &functions.rows {
            let (signature, name) = (row[0].clone().unwrap(), row[1].clone().unwrap());
            let types: Vec<String> = row[2]
                .clone()
                .unwrap()
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            // every combination of candidates, capped: enough to name every schema
            let mut combos: Vec<Vec<String>> = vec![vec![]];
            for ty in &types {
                let values = candidates(ty, &temp);
                combos = combos
                    .iter()
                    .flat_map(|c| {
                        values
                            .iter()
                            .map(move |v| [c.clone(), vec![v.clone()]].concat())
                    })
                    .take(64)
                    .collect();
            }
            for args in combos {
                let sql = format!("SELECT beacon.{name}({})", args.join(", "));
                calls += 1;
                let outcome = attacker.run(&sql);
                if canary.traces() > 0 {
                    findings.push(format!(
                        "{role}: {signature}: {sql} ran the canary as {}",
                        canary.who()
                    ));
                    canary.reset();
                }
                if attacker.state() != state {
                    findings.push(format!("{role}: {sql} changed the session"));
                }
                if leaked(&outcome, true).is_some() {
                    findings.push(format!("{role}: {sql} leaked {}", outcome.seen()));
                }
            }
        }
        drop(attacker);
        if let Some(schema) = own {
            reset_own_schema(schema, role);
        }
    }
    assert!(calls > 0, "no function was called");
    assert!(
        findings.is_empty(),
        "executable by PUBLIC: {:?}\nfindings ({} calls):\n{}",
        functions
            .rows
            .iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>(),
        calls,
        findings.join("\n")
    );
    assert_eq!(fingerprint(), before);
}
