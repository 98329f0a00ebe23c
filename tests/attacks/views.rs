//! Class 6: leaky views. The `beacon.*` catalog views filter rows by the caller's access;
//! without security_barrier the planner may run a cheaper qual of the caller's first, on
//! every row, so a function that RAISEs its arguments as a NOTICE sees what the view
//! hides. Every view, every column, several ways to get a function into the plan.

use crate::common::attack::*;

/// The views of schema beacon and, for each, its columns.
fn views() -> Vec<(String, Vec<String>)> {
    let rows = Session::connect("postgres").ok(
        "SELECT c.relname::text, string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
           FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
          WHERE c.relnamespace = 'beacon'::regnamespace AND c.relkind = 'v'
          GROUP BY 1 ORDER BY 1",
    );
    rows.rows
        .into_iter()
        .map(|r| {
            let columns = r[1]
                .clone()
                .unwrap()
                .split(',')
                .map(str::to_string)
                .collect();
            (r[0].clone().unwrap(), columns)
        })
        .collect()
}

/// Queries that put `leak` (and, with an own schema, a leaky operator) on the view's rows.
fn probes(view: &str, columns: &[String], own: Option<&str>) -> Vec<String> {
    let args = columns
        .iter()
        .map(|c| format!("{c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut probes = vec![
        format!("SELECT count(*) FROM beacon.{view} WHERE pg_temp.leak({args})"),
        format!("SELECT count(*) FROM beacon.{view} v WHERE pg_temp.leak(v::text)"),
        format!("SELECT count(*) FROM beacon.{view} v WHERE EXISTS (SELECT 1 WHERE pg_temp.leak(v::text))"),
        format!("SELECT count(*) FROM beacon.{view} v JOIN (SELECT 1 AS one) o ON pg_temp.leak(v::text)"),
    ];
    // one column at a time: the cheapest qual the planner can push below the view's own
    for column in columns {
        probes.push(format!(
            "SELECT count(*) FROM beacon.{view} WHERE pg_temp.leak({column}::text)"
        ));
        probes.push(format!(
            "SELECT count(*) FROM beacon.{view} WHERE NOT pg_temp.leak({column}::text) IS NULL"
        ));
        if let Some(schema) = own {
            probes.push(format!(
                "SELECT count(*) FROM beacon.{view} WHERE {column}::text OPERATOR({schema}.===) 'x'"
            ));
        }
    }
    probes
}

/// Whether a leak NOTICE shows a row of `project`: its name as the first value leaked (a
/// row or a project column), or one of the names its objects have. Texts of alpha's own
/// objects may mention beta ("... FROM beta.secret") without that being a leak.
fn shows_project(notice: &str, project: &str) -> bool {
    let names = [
        format!("{project}_cq"),
        format!("{project}_mv"),
        format!("{project}_marker"),
    ];
    notice.contains(&format!("leak: {{{project}"))
        || notice.contains(&format!("leak: {{\"({project},"))
        || notice.contains(&format!("leak: {project} "))
        || names.iter().any(|n| notice.contains(n.as_str()))
}

const LEAK: &str = "CREATE FUNCTION pg_temp.leak(VARIADIC a text[]) RETURNS boolean
    LANGUAGE plpgsql COST 0.0000001 AS $l$ BEGIN RAISE NOTICE 'leak: %', a; RETURN true; END $l$";

fn leaky_operator(schema: &str) -> String {
    format!(
        "CREATE FUNCTION {schema}.leak_op(a text, b text) RETURNS boolean
           LANGUAGE plpgsql COST 0.0000001 AS $l$ BEGIN RAISE NOTICE 'leak: %', a; RETURN true; END $l$;
         CREATE OPERATOR {schema}.=== (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.leak_op)"
    )
}

fn attack_views(role: &str, own: Option<&str>, alpha_too: bool) {
    world();
    let mut attacker = Session::connect(role);
    attacker.ok(LEAK);
    if let Some(schema) = own {
        attacker.ok(&leaky_operator(schema));
    }
    // control: the leak works on what the attacker may see
    attacker.ok("SELECT count(*) FROM (VALUES ('visible')) v (x) WHERE pg_temp.leak(x)");
    let control =
        attacker.run("SELECT count(*) FROM (VALUES ('visible')) v (x) WHERE pg_temp.leak(x)");
    assert!(control.seen().contains("leak: {visible}"), "{control:?}");
    let mut findings = Vec::new();
    let all = views();
    assert!(all.len() >= 6, "{all:?}");
    for (view, columns) in &all {
        let honest: String = attacker.value(&format!("SELECT count(*) FROM beacon.{view}"));
        for probe in probes(view, columns, own) {
            let outcome = attacker.run(&probe);
            if leaked(&outcome, alpha_too).is_some() {
                let leaked: Vec<&String> = outcome
                    .notices
                    .iter()
                    .filter(|n| {
                        shows_project(n, "beta") || (alpha_too && shows_project(n, "alpha"))
                    })
                    .take(3)
                    .collect();
                findings.push(format!("{probe}\n    -> {leaked:?}"));
            } else if alpha_too {
                // an outsider must learn no project name at all
                if outcome
                    .notices
                    .iter()
                    .any(|n| shows_project(n, "alpha") || shows_project(n, "beta"))
                {
                    findings.push(format!(
                        "{probe}\n    -> saw project names: {:?}",
                        outcome.notices
                    ));
                }
            } else if outcome.notices.iter().any(|n| shows_project(n, "beta")) {
                findings.push(format!(
                    "{probe}\n    -> saw beta's rows: {:?}",
                    outcome.notices
                ));
            }
            if let Some(rows) = outcome.rows.first() {
                assert_eq!(
                    rows[0].as_deref(),
                    Some(honest.as_str()),
                    "{probe}: the count itself changed"
                );
            }
        }
    }
    if let Some(schema) = own {
        drop(attacker);
        reset_own_schema(schema, role);
    }
    assert!(
        findings.is_empty(),
        "{role}: {} probes leaked:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

#[test]
fn attacks_views_leak_nothing_to_outsiders() {
    let _turn = turn();
    attack_views("outsider", None, true);
}

#[test]
fn attacks_views_leak_nothing_to_monitoring_roles() {
    let _turn = turn();
    attack_views("monitor", None, true);
}

#[test]
fn attacks_views_leak_nothing_to_schema_owners() {
    let _turn = turn();
    attack_views("schemer", Some("own_schemer"), true);
}

#[test]
fn attacks_views_leak_nothing_of_beta_to_alpha_readers() {
    let _turn = turn();
    // legitimate: the reader sees alpha's own rows
    let mut reader = Session::connect("reader");
    assert_eq!(
        reader.value("SELECT count(*) > 0 FROM beacon.continuous_queries WHERE project = 'alpha'"),
        "t"
    );
    assert_eq!(
        reader.value("SELECT count(*) > 0 FROM beacon.subscriptions WHERE project = 'alpha'"),
        "t"
    );
    drop(reader);
    attack_views("reader", Some("own_reader"), false);
}

#[test]
fn attacks_views_leak_nothing_of_beta_to_alpha_admins() {
    let _turn = turn();
    attack_views("boss", Some("own_boss"), false);
}
