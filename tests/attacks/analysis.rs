//! Class 11: the analysis functions' arguments. Funnels, retention and segmentation take
//! conditions (SQL text), names (collections, properties, breakdowns), a time zone and a
//! measure, and the continuous versions keep those conditions in triggers that run as
//! the project's owner on every later write. Each hostile argument must be refused before
//! anything runs, leave no canary trace, show nothing of beta and change nothing; each
//! entry point must resolve only pg_catalog's objects whatever the caller planted.

use crate::common::attack::*;
use crate::search_path::barrage;

/// Conditions over alpha's `events` (url text, price numeric, n numeric); `{canary}` is a
/// canary call in the attacker's own schema.
const CONDITIONS: &[&str] = &[
    "{canary}",
    "price > 0 AND {canary}",
    "price > 0) UNION SELECT 1 --",
    "price > 0) OR (true",
    "url = 'x'; DROP TABLE alpha.events; --",
    "(SELECT count(*) FROM beta.secret) > 0",
    "EXISTS (SELECT 1 FROM beta.secret WHERE note LIKE 'TOP%')",
    "_user IN (SELECT _user FROM beta._users)",
    "url IN (SELECT usename::text FROM pg_catalog.pg_user)",
    "pg_read_file('PG_VERSION') IS NOT NULL",
    "pg_catalog.pg_read_file('PG_VERSION') IS NOT NULL",
    "(url).pg_read_file IS NOT NULL",
    "('PG_VERSION'::text).pg_read_file IS NOT NULL",
    "pg_sleep(5) IS NOT NULL",
    "set_config('search_path', 'own_reader', false) IS NOT NULL",
    "current_setting('data_directory') IS NOT NULL",
    "pg_notify('beacon_x', url) IS NULL",
    "nextval('canary.an_analysis') > 0",
    "'beta.secret'::regclass IS NOT NULL",
    "url::regclass IS NOT NULL",
    "note = 'x'",
    "price > 0 FOR UPDATE",
    "price OPERATOR(own_reader.>) 0",
];

/// Each condition-taking argument, as the statement `role` would run; `{c}` is the
/// condition as a JSON string, `{w}` the condition as an SQL literal, `{i}` a unique suffix.
const CONDITION_SURFACES: &[(&str, &str)] = &[
    (
        "reader",
        r#"SELECT * FROM beacon.funnel('alpha', '[{"collection": "events", "where": {c}}, {"collection": "events"}]', '1 day', '-infinity', 'infinity')"#,
    ),
    (
        "reader",
        r#"SELECT * FROM beacon.funnel('alpha', '[{"collection": "events"}, {"collection": "events", "where": {c}}]', '1 day', '-infinity', 'infinity')"#,
    ),
    (
        "reader",
        r#"SELECT * FROM beacon.retention('alpha', '{"collection": "events", "where": {c}}', '{"collection": "events"}', 'day', '-infinity', 'infinity')"#,
    ),
    (
        "reader",
        r#"SELECT * FROM beacon.retention('alpha', '{"collection": "events"}', '{"collection": "events", "where": {c}}', 'week', '-infinity', 'infinity')"#,
    ),
    (
        "reader",
        r#"SELECT * FROM beacon.segmentation('alpha', 'events', '"count"', 'day', '-infinity', 'infinity', NULL, {w})"#,
    ),
    (
        "boss",
        r#"SELECT beacon.create_continuous_funnel('alpha', 'an_f{i}', '[{"collection": "events", "where": {c}}, {"collection": "events"}]', '1 day', mode => 'immediate')"#,
    ),
    (
        "boss",
        r#"SELECT beacon.create_continuous_retention('alpha', 'an_r{i}', '{"collection": "events"}', '{"collection": "events", "where": {c}}', 'day')"#,
    ),
];

/// A JSON string literal of `text`, ready to sit inside a single-quoted SQL literal.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap().replace('\'', "''")
}

fn surface_sql(template: &str, condition: &str, i: usize) -> String {
    template
        .replace("{c}", &json_string(condition))
        .replace("{w}", &lit(condition))
        .replace("{i}", &i.to_string())
}

#[test]
fn attacks_analysis_conditions_are_refused_before_anything_runs() {
    let _turn = turn();
    let canary = Canary::new("an_cond");
    canary.control("reader");
    canary.control("boss");
    admin()
        .batch_execute(
            "DROP SEQUENCE IF EXISTS canary.an_analysis; CREATE SEQUENCE canary.an_analysis",
        )
        .unwrap();
    // a continuous analysis indexes its sources by (_user, _time), and the index stays
    // after it is dropped: made once before the fingerprint
    Session::connect("boss").ok(
        r#"SELECT beacon.create_continuous_funnel('alpha', 'an_index', '[{"collection": "events"}]', '1 day');
           SELECT beacon.drop_continuous_analysis('alpha', 'an_index')"#,
    );
    let before = fingerprint();
    let mut findings = Vec::new();
    for role in ["reader", "boss"] {
        let schema = format!("own_{role}");
        let mut attacker = Session::connect(role);
        attacker.ok(&plant_operators_sql(&schema, &canary));
        // the legitimate form of every surface works for this role, so refusals below are
        // the hostile condition's doing
        for (i, (owner, template)) in CONDITION_SURFACES.iter().enumerate() {
            if *owner == role {
                attacker.ok(&surface_sql(template, "price > 1", 900 + i));
            }
        }
        let state = attacker.state();
        for (i, (owner, template)) in CONDITION_SURFACES.iter().enumerate() {
            if *owner != role {
                continue;
            }
            for (j, condition) in CONDITIONS.iter().enumerate() {
                let condition = condition
                    .replace("{canary}", &canary.call(&schema))
                    .replace("own_reader", &schema);
                let sql = surface_sql(template, &condition, i * 100 + j);
                let outcome = attacker.run(&sql);
                match outcome.state() {
                    None => findings.push(format!("{sql}\n    -> accepted: {:?}", outcome.rows)),
                    Some("XX000") => {
                        findings.push(format!("{sql}\n    -> internal error: {:?}", outcome.error))
                    }
                    Some(_) => {}
                }
                if canary.traces() > 0 {
                    findings.push(format!("{sql}\n    -> the canary ran as {}", canary.who()));
                    canary.reset();
                }
                if leaked(&outcome, false).is_some() {
                    findings.push(format!("{sql}\n    -> leaked: {}", outcome.seen()));
                }
                if attacker.state() != state {
                    findings.push(format!("{sql}\n    -> the session changed"));
                }
            }
        }
        reset_own_schema(&schema, role);
    }
    // the legitimate continuous analyses go again; the refused ones left nothing behind
    let mut boss = Session::connect("boss");
    for (i, (owner, template)) in CONDITION_SURFACES.iter().enumerate() {
        if *owner == "boss" {
            let kind = if template.contains("funnel") {
                "f"
            } else {
                "r"
            };
            boss.ok(&format!(
                "SELECT beacon.drop_continuous_analysis('alpha', 'an_{kind}{}')",
                900 + i
            ));
        }
    }
    let moved: String = admin()
        .query_one("SELECT is_called::text FROM canary.an_analysis", &[])
        .unwrap()
        .get(0);
    assert_eq!(moved, "false", "nextval ran through a condition");
    assert_clean(&findings, &before);
}

/// Names, time zones, periods and measures: quoted when they are used, looked up in
/// alpha's catalog, never reaching beta.
#[test]
fn attacks_analysis_names_reach_only_the_project() {
    let _turn = turn();
    let before = fingerprint();
    let tricky_names = [
        "secret",
        "beta.secret",
        "\"beta\".\"secret\"",
        "events\"; DROP TABLE alpha.events; --",
        "events' OR '1'='1",
        "../beta/secret",
        "pg_catalog.pg_authid",
        "_users",
        "",
    ];
    let mut calls = Vec::new();
    for name in tricky_names {
        let json = json_string(name);
        calls.push(format!(
            r#"SELECT * FROM beacon.funnel('alpha', '[{{"collection": {json}}}]', '1 day', '-infinity', 'infinity')"#
        ));
        calls.push(format!(
            r#"SELECT * FROM beacon.retention('alpha', '{{"collection": "events"}}', '{{"collection": {json}}}', 'day', '-infinity', 'infinity')"#
        ));
        calls.push(format!(
            "SELECT * FROM beacon.segmentation('alpha', {}, '\"count\"', 'day', '-infinity', 'infinity')",
            lit(name)
        ));
        calls.push(format!(
            r#"SELECT * FROM beacon.segmentation('alpha', 'events', '{{"aggregate": "sum", "property": {json}}}', 'day', '-infinity', 'infinity')"#
        ));
    }
    let breakdowns = [
        "note",
        "_users.card",
        "_users.card\"; --",
        "url) FROM beta.secret --",
        "(SELECT note FROM beta.secret)",
        "pg_read_file",
        "_users.",
        "_users._user\" FROM beta._users --",
    ];
    for b in breakdowns {
        calls.push(format!(
            r#"SELECT * FROM beacon.funnel('alpha', '[{{"collection": "events"}}]', '1 day', '-infinity', 'infinity', {})"#,
            lit(b)
        ));
        calls.push(format!(
            "SELECT * FROM beacon.segmentation('alpha', 'events', '\"count\"', 'day', '-infinity', 'infinity', {})",
            lit(b)
        ));
        calls.push(format!(
            r#"SELECT * FROM beacon.retention('alpha', '{{"collection": "events"}}', '{{"collection": "events"}}', 'day', '-infinity', 'infinity', {})"#,
            lit(b)
        ));
    }
    for zone in [
        "UTC'; DROP TABLE alpha.events; --",
        "' || pg_read_file('PG_VERSION') || '",
        "Nowhere/Land",
        "UTC\\",
        &"A".repeat(10_000),
    ] {
        calls.push(format!(
            r#"SELECT * FROM beacon.funnel('alpha', '[{{"collection": "events"}}]', '1 day', '-infinity', 'infinity', NULL, {})"#,
            lit(zone)
        ));
        calls.push(format!(
            "SELECT * FROM beacon.segmentation('alpha', 'events', '\"count\"', 'day', '-infinity', 'infinity', NULL, NULL, {})",
            lit(zone)
        ));
    }
    for measure in [
        r#"{"aggregate": "pg_sleep", "property": "price"}"#,
        r#"{"aggregate": "sum", "property": "price", "where": "true"}"#,
        r#"{"aggregate": "count", "property": "url) FROM beta.secret --"}"#,
        r#""count(*) FROM beta.secret --""#,
        r#"[]"#,
    ] {
        calls.push(format!(
            "SELECT * FROM beacon.segmentation('alpha', 'events', {}, 'day', '-infinity', 'infinity')",
            lit(measure)
        ));
    }
    for period in ["day; DROP TABLE alpha.events", "fortnight", "'day'", ""] {
        calls.push(format!(
            r#"SELECT * FROM beacon.retention('alpha', '{{"collection": "events"}}', '{{"collection": "events"}}', {}, '-infinity', 'infinity')"#,
            lit(period)
        ));
        calls.push(format!(
            "SELECT * FROM beacon.segmentation('alpha', 'events', '\"count\"', {}, '-infinity', 'infinity')",
            lit(period)
        ));
    }
    let mut reader = Session::connect("reader");
    let mut findings = Vec::new();
    for sql in &calls {
        let outcome = reader.run(sql);
        match outcome.state() {
            // a name that is none of alpha's
            Some(state) if state != "XX000" => {}
            _ => findings.push(format!(
                "{sql}\n    -> {:?} {:?}",
                outcome.error, outcome.rows
            )),
        }
        if leaked(&outcome, false).is_some() {
            findings.push(format!("{sql}\n    -> leaked: {}", outcome.seen()));
        }
    }
    // beta is out of reach whatever the arguments, for alpha's reader and for an outsider
    for role in ["reader", "outsider"] {
        let mut attacker = Session::connect(role);
        for sql in [
            r#"SELECT * FROM beacon.funnel('beta', '[{"collection": "secret"}]', '1 day', '-infinity', 'infinity')"#,
            r#"SELECT * FROM beacon.retention('beta', '{"collection": "secret"}', '{"collection": "secret"}', 'day', '-infinity', 'infinity')"#,
            r#"SELECT * FROM beacon.segmentation('beta', 'secret', '"count"', 'day', '-infinity', 'infinity', '_users.card')"#,
            "SELECT * FROM beacon.user_timeline('beta', 'vip')",
            r#"SELECT beacon.create_continuous_funnel('beta', 'x', '[{"collection": "secret"}]', '1 day')"#,
            "SELECT * FROM beacon.continuous_funnel('beta', 'x', '-infinity', 'infinity')",
        ] {
            let outcome = attacker.run(sql);
            if outcome.state() != Some("42501") {
                findings.push(format!(
                    "{role}: {sql}\n    -> {:?} {:?}",
                    outcome.error, outcome.rows
                ));
            }
            assert_nothing_leaked(&outcome, role == "outsider", sql);
        }
    }
    // refreshing applies only what the caller may see: of beta, nothing
    for role in ["reader", "outsider"] {
        let outcome =
            Session::connect(role).run("SELECT beacon.refresh_continuous_analysis('beta')");
        assert_eq!(
            outcome.rows,
            vec![vec![Some("0".to_string())]],
            "{role}: {outcome:?}"
        );
    }
    // a reader neither creates nor drops continuous analyses
    for sql in [
        r#"SELECT beacon.create_continuous_funnel('alpha', 'an_reader', '[{"collection": "events"}]', '1 day')"#,
        r#"SELECT beacon.create_continuous_retention('alpha', 'an_reader', '{"collection": "events"}', '{"collection": "events"}', 'day')"#,
        "SELECT beacon.drop_continuous_analysis('alpha', 'an_none')",
    ] {
        let outcome = reader.run(sql);
        if outcome.state() != Some("42501") {
            findings.push(format!("reader: {sql}\n    -> {:?}", outcome.error));
        }
    }
    assert_clean(&findings, &before);
}

/// Every analysis entry point, and the capture of an immediate continuous funnel that a
/// writer's insert runs, resolve pg_catalog's operators and types, never the caller's.
#[test]
fn attacks_analysis_search_path_and_temp_types() {
    let _turn = turn();
    // its own collection, so that alpha's events stay as the other attacks expect them
    Session::connect("boss").ok(
        r#"SELECT beacon.define_collection('alpha', 'an_src', '{"url": "text", "price": "numeric", "n": "numeric"}');
           SELECT beacon.create_continuous_funnel('alpha', 'an_sp', '[{"collection": "an_src", "where": "price > 1"}, {"collection": "an_src", "where": "url = ''/a''"}]', '1 hour', mode => 'immediate')"#,
    );
    let reader_calls: Vec<(&str, bool)> = vec![
        (
            r#"SELECT * FROM beacon.funnel('alpha', '[{"collection": "events", "where": "price > 1"}, {"collection": "events"}]', '1 day', '2000-01-01', '2100-01-01', 'url', 'Europe/Paris')"#,
            true,
        ),
        (
            r#"SELECT * FROM beacon.retention('alpha', '{"collection": "events", "where": "url = ''/a''"}', '{"collection": "events"}', 'week', '2000-01-01', '2100-01-01', 'url')"#,
            true,
        ),
        (
            r#"SELECT * FROM beacon.segmentation('alpha', 'events', '{"aggregate": "avg", "property": "price"}', 'hour', '2000-01-01', '2100-01-01', 'url', 'n > 0')"#,
            true,
        ),
        ("SELECT * FROM beacon.user_timeline('alpha', 'u1')", true),
        (
            "SELECT * FROM beacon.continuous_funnel('alpha', 'an_sp', '2000-01-01', '2100-01-01')",
            true,
        ),
        ("SELECT count(*) FROM beacon.continuous_analyses", true),
    ];
    let writer_calls: Vec<(&str, bool)> = vec![
        (
            r#"SELECT beacon.collect('alpha', 'an_src', '{"url": "/a", "price": 3, "n": 1, "_user": "u_an"}')"#,
            true,
        ),
        (
            r#"SELECT beacon.collect_batch('alpha', '[{"collection": "an_src", "properties": {"url": "/b", "price": 5, "_user": "u_an"}}]')"#,
            true,
        ),
    ];
    let mut outcome = Ok(());
    for (role, calls) in [("reader", &reader_calls), ("writer", &writer_calls)] {
        for (tag, in_temp) in [
            (format!("an_tt_{role}"), true),
            (format!("an_op_{role}"), false),
        ] {
            let canary = Canary::new(&tag);
            canary.control(role);
            let schema = format!("own_{role}");
            let prepare = if in_temp {
                shadow_types_sql("pg_temp", &canary, true)
            } else {
                format!(
                    "{}{}SET search_path = {schema}, pg_catalog;",
                    plant_operators_sql(&schema, &canary),
                    shadow_types_sql(&schema, &canary, false)
                )
            };
            let result = std::panic::catch_unwind(|| {
                barrage(role, &canary, &prepare, calls, role != "reader")
            });
            if !in_temp {
                reset_own_schema(&schema, role);
            }
            if let Err(panic) = result {
                outcome = Err(panic);
            }
        }
    }
    Session::connect("boss").ok(
        "SELECT beacon.drop_continuous_analysis('alpha', 'an_sp'); SELECT beacon.drop_collection('alpha', 'an_src')",
    );
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Panics with every finding, or with the parts of the fingerprint that differ from `before`.
fn assert_clean(findings: &[String], before: &str) {
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
    let after = fingerprint();
    let changed: Vec<String> = before
        .split(" | ")
        .zip(after.split(" | "))
        .filter(|(b, a)| b != a)
        .map(|(b, a)| {
            let (b, a): (Vec<&str>, Vec<&str>) = (b.split(',').collect(), a.split(',').collect());
            let gone: Vec<&&str> = b.iter().filter(|x| !a.contains(x)).collect();
            let new: Vec<&&str> = a.iter().filter(|x| !b.contains(x)).collect();
            format!("gone {gone:?}, new {new:?}")
        })
        .collect();
    assert!(
        changed.is_empty(),
        "the attempts changed the database: {changed:#?}"
    );
}
