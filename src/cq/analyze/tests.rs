use super::*;

fn ok(sql: &str) -> ContinuousQuery {
    analyze(sql).unwrap_or_else(|refusal| panic!("{sql}\nwas refused: {refusal}"))
}

/// Asserts that `sql` is refused with a message containing every needle.
fn refused(sql: &str, needles: &[&str]) {
    let message = match analyze(sql) {
        Ok(query) => panic!("{sql}\nwas accepted: {query:?}"),
        Err(refusal) => refusal.to_string(),
    };
    for needle in needles {
        assert!(
            message.contains(needle),
            "{sql}\nrefused with {message:?}, which does not mention {needle:?}"
        );
    }
}

#[test]
fn casts_name_built_in_types_only() {
    ok("SELECT url::text AS u, count(*) FROM t GROUP BY 1");
    ok("SELECT count(*), sum(price::numeric(10, 2)) FROM t");
    for cast in [
        "url::my_domain",
        "url::pg_temp.my_domain",
        "CAST(url AS public.t)",
        "url::regclass",
    ] {
        refused(
            &format!("SELECT {cast} AS u, count(*) FROM t GROUP BY 1"),
            &["is not allowed", "continuous query"],
        );
    }
}

/// Whatever the caller's text, every string reaches PostgreSQL as the value that was
/// checked, and reads as that value under either standard_conforming_strings.
#[test]
fn string_literals_are_printed_so_they_read_the_same_under_any_setting() {
    use crate::sql_policy::text::render::tests::read_literal;
    let mut refused = 0;
    for (sql, value) in [
        (
            r"SELECT url, count(*) FROM t WHERE url = '\'') GROUP BY url; COPY t TO PROGRAM 'id'; --' GROUP BY url",
            None,
        ),
        (
            r"SELECT url, count(*) FROM t WHERE url = E'\'' GROUP BY url",
            Some("'"),
        ),
        (
            r"SELECT url, count(*) FROM t WHERE url = $x$'\$x$ GROUP BY url",
            Some(r"'\"),
        ),
        (
            r"SELECT url, count(*) FROM t WHERE url = 'it''s' GROUP BY url",
            Some("it's"),
        ),
    ] {
        let Ok(query) = analyze(sql) else {
            refused += 1;
            continue;
        };
        let filter = query.filter.expect("a filter");
        let literal = filter.strip_prefix("url = ").expect("url = literal");
        let on = read_literal(literal, true);
        assert!(on.is_some(), "{sql}: {filter} is not one literal");
        assert_eq!(on, read_literal(literal, false), "{sql}: {filter}");
        if let Some(value) = value {
            assert_eq!(on.as_deref(), Some(value), "{sql}: {filter}");
        }
    }
    assert!(refused <= 1, "the plain literals are accepted");
}

#[test]
fn deep_or_long_queries_are_refused_without_overflowing_the_stack() {
    let chained = format!("SELECT count(*), sum(1{}) FROM t", "+1".repeat(30_000));
    refused(&chained, &["deep"]);
    let nested = format!(
        "SELECT count(*), sum({}1{}) FROM t",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    refused(&nested, &["deep"]);
    let long = format!(
        "SELECT count(*) FROM t WHERE url = '{}'",
        "x".repeat(200_000)
    );
    refused(&long, &["too long"]);
}

fn key(name: &str, key: usize) -> Output {
    Output::Key {
        name: name.to_string(),
        key,
    }
}

fn agg(name: &str, kind: AggKind, arg: Option<&str>) -> Output {
    Output::Aggregate {
        name: name.to_string(),
        kind,
        arg: arg.map(str::to_string),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn full_query_is_described() {
    let query = ok("SELECT country, count(*), sum(amount) AS revenue \
         FROM orders WHERE status = 'paid' GROUP BY country");
    assert_eq!(
        query,
        ContinuousQuery {
            source_schema: None,
            source_table: "orders".to_string(),
            filter: Some("status = 'paid'".to_string()),
            keys: strings(&["country"]),
            outputs: vec![
                key("country", 0),
                agg("count", AggKind::CountStar, None),
                agg("revenue", AggKind::Sum, Some("amount")),
            ],
            columns: strings(&["amount", "country", "status"]),
            source_alias: None,
            joins: Vec::new(),
        }
    );
}

#[test]
fn every_aggregate_kind_is_recognized() {
    let cases = [
        ("count(*)", "count", AggKind::CountStar, None),
        ("COUNT(*)", "count", AggKind::CountStar, None),
        ("count(x)", "count", AggKind::Count, Some("x")),
        ("count(ALL x)", "count", AggKind::Count, Some("x")),
        (
            "count(DISTINCT x)",
            "count",
            AggKind::CountDistinct,
            Some("x"),
        ),
        (
            "beacon.approx_count_distinct(x)",
            "approx_count_distinct",
            AggKind::ApproxCountDistinct,
            Some("x"),
        ),
        (
            "approx_count_distinct(x)",
            "approx_count_distinct",
            AggKind::ApproxCountDistinct,
            Some("x"),
        ),
        ("sum(x)", "sum", AggKind::Sum, Some("x")),
        ("Sum(x * 2)", "sum", AggKind::Sum, Some("x * 2")),
        ("avg(x)", "avg", AggKind::Avg, Some("x")),
        ("min(x)", "min", AggKind::Min, Some("x")),
        ("max(x)", "max", AggKind::Max, Some("x")),
        ("stddev(x)", "stddev", AggKind::StddevSamp, Some("x")),
        (
            "stddev_samp(x)",
            "stddev_samp",
            AggKind::StddevSamp,
            Some("x"),
        ),
        ("stddev_pop(x)", "stddev_pop", AggKind::StddevPop, Some("x")),
        ("variance(x)", "variance", AggKind::VarSamp, Some("x")),
        ("var_samp(x)", "var_samp", AggKind::VarSamp, Some("x")),
        ("var_pop(x)", "var_pop", AggKind::VarPop, Some("x")),
        (
            "bool_and(x > 0)",
            "bool_and",
            AggKind::BoolAnd,
            Some("x > 0"),
        ),
        ("every(x)", "every", AggKind::BoolAnd, Some("x")),
        ("bool_or(x)", "bool_or", AggKind::BoolOr, Some("x")),
    ];
    for (call, name, kind, arg) in cases {
        let query = ok(&format!("SELECT g, {call} FROM t GROUP BY g"));
        assert_eq!(query.outputs[1], agg(name, kind, arg), "{call}");
    }
}

#[test]
fn expression_keys() {
    let query = ok("SELECT date_trunc('hour', _time) AS hour, lower(country), \
         price > 10 AS expensive, count(*) \
         FROM events GROUP BY date_trunc('hour', _time), lower(country), price > 10");
    assert_eq!(
        query.keys,
        strings(&["date_trunc('hour', _time)", "lower(country)", "price > 10"])
    );
    assert_eq!(
        query.outputs,
        vec![
            key("hour", 0),
            key("lower", 1),
            key("expensive", 2),
            agg("count", AggKind::CountStar, None),
        ]
    );
    assert_eq!(query.columns, strings(&["_time", "country", "price"]));
}

#[test]
fn group_by_position_resolves_to_the_select_item() {
    let query = ok("SELECT date_trunc('day', ts) AS day, sum(x) FROM t GROUP BY 1");
    assert_eq!(query.keys, strings(&["date_trunc('day', ts)"]));
    assert_eq!(query.outputs[0], key("day", 0));
}

#[test]
fn group_by_alias_resolves_to_the_select_item() {
    let query = ok("SELECT lower(country) AS c, count(*) FROM t GROUP BY c");
    assert_eq!(query.keys, strings(&["lower(country)"]));
    assert_eq!(query.outputs[0], key("c", 0));
    assert_eq!(query.columns, strings(&["country"]));
}

#[test]
fn group_by_default_output_name_of_a_column_is_that_column() {
    let query = ok("SELECT t.region, count(*) FROM t GROUP BY region");
    assert_eq!(query.keys, strings(&["region"]));
    assert_eq!(query.outputs[0], key("region", 0));
}

#[test]
fn group_by_name_used_as_column_elsewhere_is_ambiguous() {
    refused(
        "SELECT date_trunc('hour', ts) AS ts, count(*) FROM t GROUP BY ts",
        &["GROUP BY ts is ambiguous", "date_trunc('hour', ts)"],
    );
    refused(
        "SELECT lower(name) AS n, count(*) FROM t WHERE n <> '' GROUP BY n",
        &["GROUP BY n is ambiguous"],
    );
}

#[test]
fn group_by_name_of_an_aggregate_that_is_also_a_column_is_the_column() {
    let query = ok("SELECT g, sum(x) AS x FROM t GROUP BY g, x");
    assert_eq!(query.keys, strings(&["g", "x"]));
    assert_eq!(query.outputs[1], agg("x", AggKind::Sum, Some("x")));
}

#[test]
fn hidden_keys_stay_in_keys() {
    let query = ok("SELECT region, count(*) FROM t GROUP BY region, shop_id");
    assert_eq!(query.keys, strings(&["region", "shop_id"]));
    assert_eq!(
        query.outputs,
        vec![key("region", 0), agg("count", AggKind::CountStar, None)]
    );
    assert_eq!(query.columns, strings(&["region", "shop_id"]));
}

#[test]
fn keys_that_render_identically_are_one_key() {
    let query = ok("SELECT a AS first, t.a AS second, count(*) FROM t GROUP BY a, t.a, (A), 1");
    assert_eq!(query.keys, strings(&["a"]));
    assert_eq!(query.outputs[..2], [key("first", 0), key("second", 0)]);
}

#[test]
fn no_group_by_is_one_global_group() {
    let query = ok("SELECT count(*), max(ts) AS latest FROM t");
    assert!(query.keys.is_empty());
    assert_eq!(
        query.outputs,
        vec![
            agg("count", AggKind::CountStar, None),
            agg("latest", AggKind::Max, Some("ts")),
        ]
    );
    assert_eq!(query.columns, strings(&["ts"]));
}

#[test]
fn qualified_columns_are_rendered_unqualified() {
    let query = ok(
        "SELECT o.country, sum(o.amount * o.qty) AS total FROM shop.orders AS o \
         WHERE o.status IN ('paid', 'shipped') AND o.amount BETWEEN 1 AND 100 \
         AND o.note IS NOT NULL GROUP BY o.country",
    );
    assert_eq!(
        query.filter.as_deref(),
        Some("status IN ('paid', 'shipped') AND amount BETWEEN 1 AND 100 AND note IS NOT NULL")
    );
    assert_eq!(
        query.outputs[1],
        agg("total", AggKind::Sum, Some("amount * qty"))
    );
    assert_eq!(
        query.columns,
        strings(&["amount", "country", "note", "qty", "status"])
    );
}

#[test]
fn table_name_and_schema_qualified_table_name_may_qualify_columns() {
    let query = ok(
        "SELECT shop.orders.country, count(orders.id) FROM Shop.Orders \
         GROUP BY orders.country",
    );
    assert_eq!(query.source_schema.as_deref(), Some("shop"));
    assert_eq!(query.source_table, "orders");
    assert_eq!(query.keys, strings(&["country"]));
    assert_eq!(query.outputs[1], agg("count", AggKind::Count, Some("id")));
}

#[test]
fn schema_qualified_source_with_alias() {
    let query = ok("SELECT e.kind, count(*) FROM analytics.events e GROUP BY e.kind");
    assert_eq!(query.source_schema.as_deref(), Some("analytics"));
    assert_eq!(query.source_table, "events");
    assert_eq!(query.keys, strings(&["kind"]));
}

#[test]
fn quoted_identifiers_keep_case_and_quotes() {
    let query = ok("SELECT \"Country\", Region, sum(\"Amount\") AS \"Total\" \
         FROM \"Sales\".\"Orders\" AS \"O\" WHERE \"O\".\"Amount\" > 0 \
         GROUP BY \"Country\", REGION");
    assert_eq!(query.source_schema.as_deref(), Some("Sales"));
    assert_eq!(query.source_table, "Orders");
    assert_eq!(query.filter.as_deref(), Some("\"Amount\" > 0"));
    assert_eq!(query.keys, strings(&["\"Country\"", "region"]));
    assert_eq!(
        query.outputs,
        vec![
            key("Country", 0),
            key("region", 1),
            agg("Total", AggKind::Sum, Some("\"Amount\"")),
        ]
    );
    assert_eq!(query.columns, strings(&["Amount", "Country", "region"]));
}

#[test]
fn unquoted_identifiers_and_function_names_are_case_folded() {
    let query = ok("SELECT LOWER(Country) AS C, COUNT(*) FROM T GROUP BY lower(country)");
    assert_eq!(query.source_table, "t");
    assert_eq!(query.keys, strings(&["lower(country)"]));
    assert_eq!(query.outputs[0], key("c", 0));
}

#[test]
fn default_output_names_follow_postgres() {
    let query = ok("SELECT t.a, b::text, CAST(c AS int), lower(d), \
         CASE WHEN e THEN 'x' ELSE f END, CASE WHEN g THEN 1 END, trim(h), \
         substring(i from 1 for 2), extract(hour from j), (k), count(*) \
         FROM t GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10");
    let names: Vec<&str> = query
        .outputs
        .iter()
        .map(|output| match output {
            Output::Key { name, .. } | Output::Aggregate { name, .. } => name.as_str(),
        })
        .collect();
    assert_eq!(
        names,
        [
            "a",
            "b",
            "c",
            "lower",
            "f",
            "case",
            "btrim",
            "substring",
            "extract",
            "k",
            "count"
        ]
    );
}

#[test]
fn aliases_are_folded_like_identifiers() {
    let query = ok("SELECT a AS Region, count(*) AS \"N\" FROM t GROUP BY a");
    assert_eq!(
        query.outputs,
        vec![key("region", 0), agg("N", AggKind::CountStar, None)]
    );
}

#[test]
fn allowed_expression_forms_render_back_to_sql() {
    let query = ok("SELECT payload->>'country' AS country, \
         coalesce(nullif(trim(both ' ' from name), ''), 'unknown') AS name, \
         CASE WHEN amount >= 100 THEN 'big' ELSE 'small' END AS size, \
         sum(round(amount::numeric, 2)) AS total \
         FROM t \
         WHERE ts >= timestamptz '2024-01-01' - interval '1 hour' \
         AND NOT (kind ILIKE 'test%' OR kind LIKE '%tmp') \
         AND ref IS DISTINCT FROM 'x' AND flag IS TRUE \
         GROUP BY 1, 2, 3");
    assert_eq!(
        query.keys,
        strings(&[
            "payload ->> 'country'",
            "coalesce(nullif(TRIM(BOTH ' ' FROM name), ''), 'unknown')",
            "CASE WHEN amount >= 100 THEN 'big' ELSE 'small' END",
        ])
    );
    assert_eq!(
        query.outputs[3],
        agg("total", AggKind::Sum, Some("round(amount::NUMERIC, 2)"))
    );
    assert_eq!(
        query.filter.as_deref(),
        Some(
            "ts >= TIMESTAMPTZ '2024-01-01' - INTERVAL '1 hour' \
             AND NOT (kind ILIKE 'test%' OR kind LIKE '%tmp') \
             AND ref IS DISTINCT FROM 'x' AND flag IS TRUE"
        )
    );
    assert_eq!(
        query.columns,
        strings(&["amount", "flag", "kind", "name", "payload", "ref", "ts"])
    );
}

#[test]
fn refusal_displays_its_message() {
    let refusal = analyze("SELECT a, count(*) FROM t GROUP BY a LIMIT 5").unwrap_err();
    assert_eq!(refusal.to_string(), refusal.message);
    assert_eq!(
        refusal.message,
        "LIMIT is not supported in a continuous query"
    );
}

mod joins;
mod refusals;
