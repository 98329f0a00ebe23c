//! Class 5: types and operators an admin (or a subscriber) names inside code that runs
//! as the owner in every writer's session: continuous-query keys cast to the admin's
//! temporary or own domain whose CHECK calls a canary, filters casting to caller-made
//! types, caller-made operators. Afterwards the attacker disconnects and a writer inserts
//! single events and a 100-event batch: no canary may fire, every insert must succeed and
//! store every event, and no project column may be left typed outside pg_catalog.

use crate::common::attack::*;

/// The attacker's objects: canary, domains `my_domain` (text) and `my_int` (bigint) in
/// pg_temp and in its own schema, and an operator `=` (text, text) in its own schema.
fn plant(schema: &str, canary: &Canary) -> String {
    let mut sql = canary.plant_sql("pg_temp") + ";\n";
    sql.push_str(&plant_operators_sql(schema, canary));
    for place in ["pg_temp", schema] {
        sql.push_str(&format!(
            "CREATE DOMAIN {place}.my_domain AS pg_catalog.text CHECK ({});
             CREATE DOMAIN {place}.my_int AS pg_catalog.int8 CHECK ({});\n",
            canary.call(place),
            canary.call(place)
        ));
    }
    sql
}

fn source(name: &str) {
    Session::connect("postgres").ok(&format!(
        r#"SELECT beacon.collect('alpha', '{name}', '{{"url": "/a", "n": 1}}')"#
    ));
}

fn count(table: &str) -> i64 {
    Session::connect("postgres")
        .value(&format!("SELECT count(*) FROM alpha.{table}"))
        .parse()
        .unwrap()
}

/// After the attacker left: one event, then a batch of 100, as the writer.
fn writer_inserts(table: &str, what: &str, findings: &mut Vec<String>) {
    let before = count(table);
    let mut writer = Session::connect("writer");
    let batch: Vec<String> = (0..100)
        .map(|i| {
            format!(r#"{{"collection": "{table}", "properties": {{"url": "/b{i}", "n": {i}}}}}"#)
        })
        .collect();
    for sql in [
        format!(r#"SELECT beacon.collect('alpha', '{table}', '{{"url": "/b", "n": 5}}')"#),
        format!(
            "SELECT beacon.collect_batch('alpha', '[{}]')",
            batch.join(", ")
        ),
        format!("INSERT INTO alpha.{table} (url, n) VALUES ('/c', 7)"),
    ] {
        if let Some(error) = writer.run(&sql).error {
            findings.push(format!(
                "{what}: then the writer's {sql:.60}... failed: {error:?}"
            ));
        }
    }
    let stored = count(table) - before;
    if stored != 102 {
        findings.push(format!("{what}: the writer stored {stored} of 102 events"));
    }
}

fn foreign_types(findings: &mut Vec<String>, what: &str) {
    let rows = Session::connect("postgres").ok(
        "SELECT c.relname || '.' || a.attname || ': ' || t.typnamespace::regnamespace::text || '.' || t.typname
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_type t ON t.oid = a.atttypid
          WHERE c.relnamespace = 'alpha'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
            AND t.typnamespace <> 'pg_catalog'::regnamespace
            AND NOT (t.typnamespace = 'alpha'::regnamespace AND t.typname LIKE '\\_\\_cq\\_%')",
    );
    if !rows.rows.is_empty() {
        findings.push(format!(
            "{what}: columns typed outside pg_catalog: {:?}",
            rows.rows
        ));
    }
}

#[test]
fn attacks_types_admin_names_in_continuous_queries() {
    let _turn = turn();
    let canary = Canary::new("types_cq");
    canary.control("boss");
    let queries = [
        "SELECT url::my_domain AS k, count(*) AS n FROM {t} GROUP BY 1",
        "SELECT url::pg_temp.my_domain AS k, count(*) AS n FROM {t} GROUP BY 1",
        "SELECT url::own_boss.my_domain AS k, count(*) AS n FROM {t} GROUP BY 1",
        "SELECT (url::own_boss.my_domain)::text AS k, count(*) AS n FROM {t} GROUP BY 1",
        "SELECT url, sum(n::own_boss.my_int) AS s FROM {t} GROUP BY url",
        "SELECT url, max(n::my_int) AS m FROM {t} GROUP BY url",
        "SELECT url, count(*) AS n FROM {t} WHERE url::own_boss.my_domain = '/a' GROUP BY url",
        "SELECT url, count(*) AS n FROM {t} WHERE url OPERATOR(own_boss.=) '/a' GROUP BY url",
        "SELECT url OPERATOR(own_boss.||) 'x' AS k, count(*) AS n FROM {t} GROUP BY 1",
        "SELECT url, count(*) AS n FROM {t} WHERE n OPERATOR(own_boss.>) 0::bigint GROUP BY url",
        "SELECT CAST(url AS own_boss.my_domain) AS k, count(*) AS n FROM {t} GROUP BY 1",
    ];
    // legitimate: the same shape with pg_catalog's types and operators
    source("types_cq_legit");
    Session::connect("boss").ok(
        "SELECT beacon.create_continuous_query('alpha', 'types_cq_legit_q', 'SELECT url::text AS k, sum(n::bigint) AS s FROM types_cq_legit WHERE url = ''/a'' GROUP BY 1')",
    );
    let mut findings = Vec::new();
    writer_inserts("types_cq_legit", "legitimate", &mut findings);
    assert!(findings.is_empty(), "{findings:?}");
    for (mode, modes) in [("async", 0), ("immediate", 1)] {
        for (i, query) in queries.iter().enumerate() {
            let table = format!("types_cq_{modes}_{i}");
            source(&table);
            let query = query.replace("{t}", &table);
            let mut boss = Session::connect("boss");
            boss.ok(&plant("own_boss", &canary));
            let outcome = boss.run(&format!(
                "SELECT beacon.create_continuous_query('alpha', '{table}_q', {}, '{mode}')",
                dq(&query)
            ));
            let what = format!(
                "{mode} {query} ({:?})",
                outcome.error.as_ref().map(|e| &e.0)
            );
            if canary.traces() > 0 {
                findings.push(format!(
                    "{what}: creating it ran the canary as {}",
                    canary.who()
                ));
                canary.reset();
            }
            foreign_types(&mut findings, &what);
            drop(boss);
            writer_inserts(&table, &what, &mut findings);
            if canary.traces() > 0 {
                findings.push(format!(
                    "{what}: the writer's inserts ran the canary as {}",
                    canary.who()
                ));
                canary.reset();
            }
            reset_own_schema("own_boss", "boss");
        }
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

#[test]
fn attacks_types_subscriber_names_in_filters() {
    let _turn = turn();
    let canary = Canary::new("types_filter");
    canary.control("reader");
    let filters = [
        "url::my_domain = '/a'",
        "url::pg_temp.my_domain = '/a'",
        "url::own_reader.my_domain = '/a'",
        "CAST(url AS own_reader.my_domain) IS NOT NULL",
        "n::own_reader.my_int > 0",
        "url OPERATOR(own_reader.=) '/a'",
        "n OPERATOR(own_reader.>) 0",
        "lower(url)::own_reader.my_domain = '/a'",
    ];
    source("types_f_legit");
    Session::connect("reader").ok("SELECT beacon.subscribe('alpha', 'types_f_legit', 'url::text = ''/a'' AND n::bigint > 0', false)");
    let mut findings = Vec::new();
    writer_inserts("types_f_legit", "legitimate", &mut findings);
    assert!(findings.is_empty(), "{findings:?}");
    for (i, filter) in filters.iter().enumerate() {
        let table = format!("types_f_{i}");
        source(&table);
        let mut reader = Session::connect("reader");
        reader.ok(&plant("own_reader", &canary));
        let outcome = reader.run(&format!(
            "SELECT beacon.subscribe('alpha', '{table}', {}, false)",
            dq(filter)
        ));
        let what = format!("{filter} ({:?})", outcome.error.as_ref().map(|e| &e.0));
        if canary.traces() > 0 {
            findings.push(format!(
                "{what}: subscribing ran the canary as {}",
                canary.who()
            ));
            canary.reset();
        }
        drop(reader);
        writer_inserts(&table, &what, &mut findings);
        if canary.traces() > 0 {
            findings.push(format!(
                "{what}: the writer's inserts ran the canary as {}",
                canary.who()
            ));
            canary.reset();
        }
        reset_own_schema("own_reader", "reader");
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

#[test]
fn attacks_types_admin_names_in_materialized_views() {
    let _turn = turn();
    let canary = Canary::new("types_mv");
    canary.control("boss");
    source("types_mv_src");
    let queries = [
        "SELECT url::my_domain AS u FROM types_mv_src",
        "SELECT url::own_boss.my_domain AS u FROM types_mv_src",
        "SELECT count(*) AS n FROM types_mv_src WHERE url OPERATOR(own_boss.=) '/a'",
        "SELECT count(*) AS n FROM types_mv_src WHERE url = '/a'",
        "SELECT url || 'x' AS u, n + 1 AS m FROM types_mv_src",
    ];
    let mut findings = Vec::new();
    for (i, query) in queries.iter().enumerate() {
        let mut boss = Session::connect("boss");
        boss.ok(&plant("own_boss", &canary));
        boss.ok("SET search_path = own_boss, pg_catalog");
        let name = format!("types_mv_{i}");
        let outcome = boss.run(&format!(
            "SELECT beacon.create_materialized_view('alpha', '{name}', {}, '1 hour')",
            dq(query)
        ));
        drop(boss);
        // the refresh runs as the owner, as the scheduler's would
        let refresh = Session::connect("writer").run(&format!(
            "SELECT beacon.refresh_materialized_view('alpha', '{name}')"
        ));
        if canary.traces() > 0 {
            findings.push(format!(
                "{query} ({:?}, refresh {:?}): ran the canary as {}",
                outcome.error,
                refresh.error,
                canary.who()
            ));
            canary.reset();
        }
        reset_own_schema("own_boss", "boss");
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}
