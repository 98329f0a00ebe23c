use super::*;

#[test]
fn refuses_other_statements_and_statement_counts() {
    refused("DELETE FROM t", &["must be a SELECT", "DELETE"]);
    refused("UPDATE t SET a = 1", &["must be a SELECT", "UPDATE"]);
    refused(
        "SELECT count(*) FROM t; SELECT count(*) FROM u",
        &["exactly one SELECT", "2 statements"],
    );
    refused("", &["no statement"]);
    refused("SELECT count(* FROM t", &["could not parse"]);
}

#[test]
fn refuses_query_level_clauses() {
    let base = "SELECT a, count(*) FROM t GROUP BY a";
    refused(&format!("{base} ORDER BY a"), &["ORDER BY"]);
    refused(&format!("{base} LIMIT 10"), &["LIMIT"]);
    refused(&format!("{base} OFFSET 10"), &["OFFSET"]);
    refused(&format!("{base} FETCH FIRST 5 ROWS ONLY"), &["FETCH"]);
    refused(&format!("{base} FOR UPDATE"), &["FOR UPDATE"]);
    refused(&format!("{base} HAVING count(*) > 1"), &["HAVING"]);
    refused(&format!("{base} WINDOW w AS (PARTITION BY a)"), &["WINDOW"]);
    refused(&format!("{base} UNION {base}"), &["UNION"]);
    refused(&format!("{base} EXCEPT {base}"), &["EXCEPT"]);
    refused(&format!("WITH x AS (SELECT 1) {base}"), &["WITH"]);
    refused(&format!("({base})"), &["parenthesized"]);
}

#[test]
fn refuses_select_level_clauses() {
    refused(
        "SELECT DISTINCT a, count(*) FROM t GROUP BY a",
        &["DISTINCT"],
    );
    refused(
        "SELECT DISTINCT ON (a) a, count(*) FROM t GROUP BY a",
        &["DISTINCT ON"],
    );
    refused(
        "SELECT a, count(*) INTO x FROM t GROUP BY a",
        &["SELECT INTO"],
    );
    refused("SELECT a, count(*) FROM t GROUP BY ROLLUP (a)", &["ROLLUP"]);
    refused("SELECT a, count(*) FROM t GROUP BY CUBE (a)", &["CUBE"]);
    refused(
        "SELECT a, count(*) FROM t GROUP BY GROUPING SETS ((a), ())",
        &["GROUPING SETS"],
    );
    refused("SELECT a, count(*) FROM t GROUP BY ALL", &["GROUP BY ALL"]);
    refused(
        "SELECT a, count(*) FROM t GROUP BY 'a'",
        &["non-integer constant 'a'"],
    );
    refused(
        "SELECT a, count(*) FROM t GROUP BY 3",
        &["GROUP BY position 3"],
    );
}

#[test]
fn accepts_harmless_clauses() {
    let query = ok("SELECT ALL a, count(*) FROM t GROUP BY a LIMIT ALL");
    assert_eq!(query.keys, strings(&["a"]));
}

#[test]
fn refuses_anything_but_plain_tables() {
    refused(
        "SELECT t.a, count(*) FROM t LEFT JOIN u USING (id) GROUP BY t.a",
        &["USING is not supported"],
    );
    refused(
        "SELECT a, count(*) FROM t, u GROUP BY a",
        &["comma joins", "not supported"],
    );
    refused(
        "SELECT a, count(*) FROM (SELECT a FROM t) s GROUP BY a",
        &["subqueries are not supported", "in FROM"],
    );
    refused(
        "SELECT a, count(*) FROM LATERAL (SELECT 1 AS a) s GROUP BY a",
        &["LATERAL"],
    );
    refused(
        "SELECT a, count(*) FROM generate_series(1, 10) AS a GROUP BY a",
        &["table functions are not supported", "generate_series"],
    );
    refused(
        "SELECT a, count(*) FROM t TABLESAMPLE SYSTEM (10) GROUP BY a",
        &["TABLESAMPLE"],
    );
    refused("SELECT a, count(*) FROM ONLY t GROUP BY a", &["FROM ONLY"]);
    refused(
        "SELECT x, count(*) FROM t AS s(x) GROUP BY x",
        &["table alias", "column names"],
    );
    refused("SELECT count(*)", &["needs a source table"]);
    refused(
        "SELECT a, count(*) FROM db.s.t GROUP BY a",
        &["db.s.t", "too many parts"],
    );
}

#[test]
fn refuses_subqueries_in_expressions() {
    refused(
        "SELECT a, count(*) FROM t WHERE b IN (SELECT b FROM u) GROUP BY a",
        &["subqueries are not supported", "b IN (SELECT b FROM u)"],
    );
    refused(
        "SELECT a, count(*) FROM t WHERE EXISTS (SELECT 1 FROM u) GROUP BY a",
        &["subqueries are not supported", "EXISTS"],
    );
    refused(
        "SELECT a, (SELECT max(b) FROM u) AS m, count(*) FROM t GROUP BY a",
        &["subqueries are not supported", "(SELECT max(b) FROM u)"],
    );
    refused(
        "SELECT a, sum((SELECT 1)) FROM t GROUP BY a",
        &["subqueries are not supported"],
    );
}

#[test]
fn refuses_window_functions() {
    refused(
        "SELECT a, row_number() OVER (ORDER BY a) AS rn, count(*) FROM t GROUP BY a",
        &["window functions are not supported (row_number() OVER ...)"],
    );
    refused(
        "SELECT a, sum(x) OVER (PARTITION BY a) FROM t",
        &["window functions are not supported (sum(x) OVER ...)"],
    );
}

#[test]
fn refuses_star() {
    refused("SELECT *, count(*) FROM t", &["SELECT *"]);
    refused("SELECT t.*, count(*) FROM t", &["SELECT t.*"]);
}

#[test]
fn refuses_unsupported_aggregates_by_name() {
    for call in [
        "array_agg(b)",
        "string_agg(b, ',')",
        "json_agg(b)",
        "jsonb_agg(b)",
        "mode() WITHIN GROUP (ORDER BY b)",
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY b)",
        "bit_or(b)",
    ] {
        let name = call.split('(').next().unwrap();
        refused(
            &format!("SELECT a, {call} AS x FROM t GROUP BY a"),
            &[&format!("aggregate {name}() is not supported")],
        );
    }
}

#[test]
fn refuses_aggregate_call_forms_that_cannot_be_maintained() {
    refused(
        "SELECT a, count(*) FILTER (WHERE b > 0) FROM t GROUP BY a",
        &["FILTER", "count(*) FILTER (WHERE b > 0)"],
    );
    refused(
        "SELECT a, sum(DISTINCT b) FROM t GROUP BY a",
        &["DISTINCT is only supported in count", "sum(DISTINCT b)"],
    );
    refused(
        "SELECT a, max(b ORDER BY c) FROM t GROUP BY a",
        &["ORDER BY", "max(b ORDER BY c)"],
    );
    refused(
        "SELECT a, max(b) WITHIN GROUP (ORDER BY c) FROM t GROUP BY a",
        &["WITHIN GROUP"],
    );
    refused(
        "SELECT a, count() FROM t GROUP BY a",
        &["count()", "exactly one argument"],
    );
    refused(
        "SELECT a, avg(b, c) FROM t GROUP BY a",
        &["avg(b, c)", "exactly one argument"],
    );
    refused("SELECT a, sum(*) FROM t GROUP BY a", &["sum(*)"]);
    refused(
        "SELECT a, count(DISTINCT *) FROM t GROUP BY a",
        &["count(DISTINCT *)"],
    );
}

#[test]
fn refuses_nested_and_misplaced_aggregates() {
    refused(
        "SELECT a, sum(x) + 1 AS s FROM t GROUP BY a",
        &["aggregates must be top-level select items", "sum(x) + 1"],
    );
    refused(
        "SELECT a, round(avg(x)) AS r FROM t GROUP BY a",
        &["aggregates must be top-level select items", "round(avg(x))"],
    );
    refused(
        "SELECT a, avg(sum(x)) AS r FROM t GROUP BY a",
        &[
            "aggregates must be top-level select items",
            "found sum(x) in avg(sum(x))",
        ],
    );
    refused(
        "SELECT a, count(*) FROM t WHERE sum(x) > 0 GROUP BY a",
        &["not allowed in WHERE", "sum(x)"],
    );
    refused(
        "SELECT count(*) FROM t GROUP BY max(x)",
        &["not allowed in GROUP BY", "max(x)"],
    );
    refused(
        "SELECT a, count(*) AS n FROM t GROUP BY a, 2",
        &["not allowed in GROUP BY", "GROUP BY 2"],
    );
    refused(
        "SELECT a, count(*) AS n FROM t GROUP BY a, n",
        &["not allowed in GROUP BY", "GROUP BY n"],
    );
}

#[test]
fn parenthesized_top_level_aggregate_is_still_top_level() {
    let query = ok("SELECT a, (count(*)) FROM t GROUP BY a");
    assert_eq!(query.outputs[1], agg("count", AggKind::CountStar, None));
}

#[test]
fn refuses_volatile_and_unknown_functions() {
    for (expr, label) in [
        ("now()", "now()"),
        ("current_timestamp", "current_timestamp"),
        ("CURRENT_DATE", "current_date"),
        ("current_time", "current_time"),
        ("localtimestamp", "localtimestamp"),
        ("clock_timestamp()", "clock_timestamp()"),
        ("statement_timestamp()", "statement_timestamp()"),
        ("transaction_timestamp()", "transaction_timestamp()"),
        ("random()", "random()"),
        ("setseed(0.5)", "setseed()"),
        ("nextval('s')", "nextval()"),
        ("currval('s')", "currval()"),
        ("gen_random_uuid()", "gen_random_uuid()"),
        ("pg_sleep(1)", "pg_sleep()"),
        ("txid_current()", "txid_current()"),
        ("current_setting('x')", "current_setting()"),
        ("set_config('x', 'y', false)", "set_config()"),
        ("my_udf(b)", "my_udf()"),
        ("pg_catalog.lower(b)", "pg_catalog.lower()"),
        ("beacon.sum(b)", "beacon.sum()"),
    ] {
        let message = [
            format!("function {label} is not allowed"),
            "deterministic".into(),
        ];
        let needles: Vec<&str> = message.iter().map(String::as_str).collect();
        refused(
            &format!("SELECT a, count(*) FROM t WHERE b < {expr} GROUP BY a"),
            &needles,
        );
        refused(
            &format!("SELECT a, sum({expr}) FROM t GROUP BY a"),
            &needles,
        );
        refused(
            &format!("SELECT {expr} AS k, count(*) FROM t GROUP BY 1"),
            &needles,
        );
    }
}

#[test]
fn refuses_keywords_that_read_the_session_state() {
    for keyword in ["current_role", "CURRENT_SCHEMA", "current_user", "user"] {
        refused(
            &format!("SELECT a, count(*) FROM t WHERE owner = {keyword} GROUP BY a"),
            &[&format!(
                "function {} is not allowed",
                keyword.to_ascii_lowercase()
            )],
        );
    }
    let query = ok("SELECT \"current_role\", count(*) FROM t GROUP BY 1");
    assert_eq!(query.keys, strings(&["\"current_role\""]));
}

#[test]
fn refuses_literals_that_mean_the_current_time() {
    for sql in [
        "SELECT a, count(*) FROM t WHERE ts > 'today'::date GROUP BY a",
        "SELECT a, count(*) FROM t WHERE ts > date 'Today' GROUP BY a",
        "SELECT a, count(*) FROM t WHERE ts >= 'now' GROUP BY a",
        "SELECT a, count(*) FROM t WHERE ts BETWEEN 'yesterday' AND 'tomorrow 10:00' GROUP BY a",
        "SELECT a, count(*) FROM t WHERE day IN ('today') GROUP BY a",
        "SELECT a, max(coalesce(closed_at, 'now')) FROM t GROUP BY a",
        "SELECT date_trunc('day', ' NOW ') AS d, count(*) FROM t GROUP BY 1",
    ] {
        refused(sql, &["is not allowed", "current time"]);
    }
    let query = ok(
        "SELECT CASE WHEN ts > x THEN 'today' ELSE 'older' END AS age, \
         count(*) FROM t WHERE note LIKE '%today%' AND lower(kind) <> 'now-ish' GROUP BY 1",
    );
    assert_eq!(
        query.keys,
        strings(&["CASE WHEN ts > x THEN 'today' ELSE 'older' END"])
    );
}

#[test]
fn refuses_unsupported_expression_forms() {
    refused(
        "SELECT a, count(*) FROM t WHERE b = $1 GROUP BY a",
        &["placeholders ($1)"],
    );
    refused(
        "SELECT a, count(*) FROM t WHERE b ~ 'x' GROUP BY a",
        &["operator ~"],
    );
    refused(
        "SELECT a, count(*) FROM t WHERE lower(DISTINCT b) = 'x' GROUP BY a",
        &["lower() is not an aggregate"],
    );
}

#[test]
fn refuses_non_key_select_items() {
    refused(
        "SELECT a, b, count(*) FROM t GROUP BY a",
        &["column \"b\" must appear in GROUP BY"],
    );
    refused(
        "SELECT b, count(*) FROM t",
        &["column \"b\" must appear in GROUP BY"],
    );
    refused(
        "SELECT lower(a), count(*) FROM t GROUP BY a",
        &["lower(a) must appear in GROUP BY"],
    );
}

#[test]
fn refuses_queries_without_aggregates() {
    refused("SELECT a FROM t GROUP BY a", &["at least one aggregate"]);
    refused("SELECT a, lower(b) FROM t", &["at least one aggregate"]);
}

#[test]
fn refuses_bad_output_names() {
    refused(
        "SELECT count(*), count(x) FROM t",
        &["output column name \"count\" appears twice", "AS"],
    );
    refused(
        "SELECT a AS n, count(*) AS n FROM t GROUP BY a",
        &["\"n\" appears twice"],
    );
    refused(
        "SELECT a AS _a, count(*) FROM t GROUP BY a",
        &["\"_a\"", "reserves"],
    );
    refused(
        "SELECT _a, count(*) FROM t GROUP BY _a",
        &["\"_a\"", "reserves"],
    );
    refused(
        "SELECT a + 1, count(*) FROM t GROUP BY a + 1",
        &["a + 1 has no name", "alias"],
    );
    refused(
        "SELECT a::text || 'x', count(*) FROM t GROUP BY 1",
        &["has no name"],
    );
}

#[test]
fn refuses_columns_of_other_tables() {
    refused(
        "SELECT u.a, count(*) FROM t GROUP BY u.a",
        &[
            "u.a does not refer to the source table",
            "qualify columns with t",
        ],
    );
    refused(
        "SELECT a, count(*) FROM t AS x WHERE t.b > 0 GROUP BY a",
        &[
            "t.b does not refer to the source table",
            "qualify columns with x",
        ],
    );
    refused(
        "SELECT a, count(*) FROM s.t WHERE other.t.b > 0 GROUP BY a",
        &["other.t.b"],
    );
    refused(
        "SELECT a, sum(u.b) FROM t GROUP BY a",
        &["u.b does not refer to the source table"],
    );
}

#[test]
fn at_time_zone_keys_are_allowed() {
    let q = analyze(
        "SELECT date_trunc('minute', _time AT TIME ZONE 'UTC') AS minute, count(*) AS n FROM events GROUP BY 1",
    )
    .unwrap();
    assert_eq!(
        q.keys,
        vec!["date_trunc('minute', _time AT TIME ZONE 'UTC')".to_string()]
    );
    assert_eq!(q.columns, vec!["_time".to_string()]);
}
