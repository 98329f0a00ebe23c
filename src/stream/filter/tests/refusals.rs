use super::*;

#[test]
fn refuses_unknown_columns() {
    refused(
        "pricee > 1",
        &["\"pricee\" is not a column of the collection"],
    );
    refused(
        "price > 1 AND secret = 'x'",
        &["\"secret\" is not a column"],
    );
    refused("lower(nope) = 'a'", &["\"nope\" is not a column"]);
    assert_eq!(
        check_filter("price > 1", &["qty"]),
        Err(Refusal::object(
            "\"price\" is not a column of the collection"
        ))
    );
}

#[test]
fn refuses_qualified_column_references() {
    refused("t.price > 1", &["qualified column references", "t.price"]);
    refused("public.t.price > 1", &["qualified", "public.t.price"]);
    // sqlparser cannot read a qualified type before a string at all.
    refused(
        "pg_catalog.date '2024-01-01' IS NULL",
        &["unexpected text after the filter: '2024-01-01' IS NULL"],
    );
}

#[test]
fn refuses_trailing_statements() {
    refused(
        "1=1); DROP TABLE x; --",
        &["unexpected text after the filter: ); DROP TABLE x; --"],
    );
    refused(
        "price > 1; DROP TABLE x",
        &["unexpected text after the filter: ; DROP TABLE x"],
    );
    refused("1=1; DROP TABLE x", &["unexpected text", "DROP TABLE x"]);
    refused(
        "price > 1\n  OR qty > 1 garbage",
        &["unexpected text after the filter: garbage"],
    );
    refused("price > 1 )", &["unexpected text", ")"]);
    refused("price ISNULL", &["unexpected text", "ISNULL"]);
}

#[test]
fn refuses_disallowed_functions() {
    for (filter, label) in [
        ("pg_sleep(10) IS NULL", "pg_sleep()"),
        ("pg_catalog.pg_sleep(1) IS NULL", "pg_catalog.pg_sleep()"),
        (
            "\"pg_catalog\".\"pg_sleep\"(1) is null",
            "pg_catalog.pg_sleep()",
        ),
        ("set_config('x','y',false) = 'y'", "set_config()"),
        (
            "current_setting('is_superuser') = 'on'",
            "current_setting()",
        ),
        ("now() > _time", "now()"),
        ("random() < 0.5", "random()"),
        ("dblink('x', 'y') IS NULL", "dblink()"),
        (
            "query_to_xml('select 1', true, true, '') IS NULL",
            "query_to_xml()",
        ),
        ("public.lower(name) = 'a'", "public.lower()"),
        (
            "other.pg_catalog.lower(name) = 'a'",
            "other.pg_catalog.lower()",
        ),
        ("\"LOWER\"(name) = 'a'", "LOWER()"),
        ("concat(name, 'x') = 'a'", "concat()"),
        ("lower(pg_sleep(1)) = 'a'", "pg_sleep()"),
    ] {
        refused(
            filter,
            &[
                &format!("function {label} is not allowed in a filter"),
                "allowed: lower",
            ],
        );
    }
}

#[test]
fn refuses_session_keywords() {
    for (filter, keyword) in [
        ("name = current_user", "current_user"),
        ("name = USER", "user"),
        ("_time < current_timestamp", "current_timestamp"),
        ("name = session_user", "session_user"),
        ("name = current_role", "current_role"),
        ("name = current_schema", "current_schema"),
    ] {
        refused(
            filter,
            &[&format!("{keyword} is not allowed"), "double-quote"],
        );
    }
    let rendered = check_filter("\"user\" = 'bob'", &["user"]);
    assert_eq!(rendered, Ok("\"user\" = 'bob'".to_string()));
}

#[test]
fn refuses_function_call_forms_other_than_plain() {
    refused("lower(DISTINCT name) = 'a'", &["plain call"]);
    refused("lower(name ORDER BY name) = 'a'", &["plain call"]);
    refused("lower(name) OVER () = 'a'", &["plain call"]);
    refused("lower(name) FILTER (WHERE flag) = 'a'", &["plain call"]);
    refused(
        "date_trunc(field => 'day', source => _time) IS NULL",
        &["named arguments"],
    );
    refused("coalesce(*) IS NULL", &["cannot take *"]);
    refused(
        "lower(name, name) = 'a'",
        &["lower() takes 1 argument(s), not 2"],
    );
    refused("abs() = 1", &["abs() takes 1 argument(s), not 0"]);
    refused("date_trunc('day') IS NULL", &["takes 2 to 3"]);
    refused("coalesce() IS NULL", &["at least 1"]);
}

#[test]
fn refuses_subqueries() {
    for filter in [
        "(SELECT count(*) FROM pg_authid) > 0",
        "EXISTS (SELECT 1)",
        "NOT EXISTS (SELECT 1)",
        "price IN (SELECT 1)",
        "price = ANY(SELECT 1)",
        "price > ALL(SELECT 1)",
        "lower(name) = (SELECT 'a')",
        "ARRAY(SELECT 1) IS NULL",
    ] {
        refused(
            filter,
            &["subqueries are not allowed in a filter", "SELECT"],
        );
    }
}

#[test]
fn refuses_casts_outside_the_allow_list() {
    for (filter, type_name) in [
        ("'pg_authid'::regclass IS NOT NULL", "regclass"),
        ("'pg_sleep'::regproc IS NOT NULL", "regproc"),
        ("'int4'::regtype IS NOT NULL", "regtype"),
        ("'x'::regnamespace IS NOT NULL", "regnamespace"),
        ("price::oid = 1", "oid"),
        ("CAST('pg_authid' AS regclass) IS NOT NULL", "regclass"),
        (
            "'pg_authid'::pg_catalog.regclass IS NOT NULL",
            "pg_catalog.regclass",
        ),
        ("name::\"regclass\" IS NULL", "\"regclass\""),
        ("name::public.text = 'a'", "public.text"),
        ("name::text[] IS NULL", "text[]"),
        ("name::char(3) = 'a'", "char(3)"),
        ("name::uuid IS NULL", "uuid"),
        ("regclass 'pg_authid' IS NOT NULL", "regclass"),
        ("name::interval day IS NULL", "interval day"),
    ] {
        refused(
            filter,
            &[
                &format!("the type {type_name} is not allowed"),
                "allowed: text",
            ],
        );
    }
    refused("TRY_CAST(name AS text) = 'a'", &["TRY_CAST"]);
}

#[test]
fn refuses_other_expression_forms() {
    refused("name COLLATE \"C\" = 'a'", &["COLLATE"]);
    refused("ARRAY[1, 2] IS NULL", &["arrays"]);
    refused("data[1] = 1", &["subscripts"]);
    refused("(data).x = 1", &["field access"]);
    refused("price = ANY(ARRAY[1, 2])", &["ANY and ALL", "use IN"]);
    refused("name SIMILAR TO 'a%'", &["SIMILAR TO", "not allowed"]);
    refused("name ~ 'a'", &["operator ~ is not allowed"]);
    refused("qty & 1 = 1", &["operator & is not allowed"]);
    refused("qty ^ 2 = 1", &["operator ^ is not allowed"]);
    refused("|/ qty = 1", &["not allowed"]);
    refused("name LIKE ANY ('a', 'b')", &["LIKE ANY"]);
    refused("CASE WHEN flag THEN true END", &["CASE", "not allowed"]);
    refused(
        "EXTRACT(YEAR FROM _time) = 2024",
        &["EXTRACT", "not allowed"],
    );
    refused(
        "SUBSTRING(name FROM 1) = 'a'",
        &["SUBSTRING", "not allowed"],
    );
    refused("CEIL(price) = 1", &["CEIL", "not allowed"]);
    refused("_time AT TIME ZONE 'UTC' > '2024-01-01'", &["AT TIME ZONE"]);
    refused(
        "(price, qty) = (1, 2)",
        &["the expression (price, qty) is not allowed"],
    );
    refused("interval '1' day IS NULL", &["intervals"]);
    refused("name = N'x'", &["literal N'x' is not allowed"]);
    refused("name = X'1F'", &["literal X'1F' is not allowed"]);
    refused("U&'\\0000' = name", &["U&'...'"]);
    refused("price = *", &["could not parse"]);
}

#[test]
fn refuses_parameters() {
    refused("$1 = 1", &["parameters ($1) are not allowed"]);
    refused("price = $2", &["parameters ($2)"]);
}

#[test]
fn refuses_non_boolean_top_level() {
    for filter in [
        "price + 1",
        "'abc'",
        "42",
        "NULL",
        "lower(name)",
        "data -> 'a'",
        "-price",
        "name::text",
        "(price * 2)",
    ] {
        refused(filter, &[BOOLEAN_REQUIRED]);
    }
}

#[test]
fn refuses_empty_filters() {
    for filter in ["", "   ", "\n\t", "-- just a comment", "/* nothing */"] {
        refused(filter, &["the filter is empty"]);
    }
}

#[test]
fn comments_are_dropped_from_the_rendering() {
    renders(
        "lower(name) = 'a' -- comment",
        "pg_catalog.lower(\"name\") = 'a'",
    );
    renders("name = 'a' /* x */ OR true", "\"name\" = 'a' OR true");
    renders(
        "name = 'a' /* nested /* comment */ still */ OR flag",
        "\"name\" = 'a' OR \"flag\"",
    );
    // Comment markers inside a string stay inside the string.
    renders("name = '-- x /* y'", "\"name\" = '-- x /* y'");
}

#[test]
fn double_minus_never_renders_as_a_comment() {
    renders("price = - -1", "\"price\" = -(-1)");
    renders("- - price > 0", "-(-\"price\") > 0");
    renders("price = - +1", "\"price\" = -(+1)");
    renders("price - -1 > 0", "\"price\" - -1 > 0");
    renders("price = -(-1)", "\"price\" = -(-1)");
}

#[test]
fn unicode_escape_identifiers_cannot_smuggle_names() {
    // sqlparser reads U&"..." as `U & "..."`; either way nothing runs.
    refused("U&\"pg_sleep\"(1) IS NULL", &["not allowed"]);
    refused("U&\"price\" > 1", &["not allowed"]);
}

#[test]
fn refuses_long_filters() {
    let long = format!("name = '{}'", "x".repeat(MAX_FILTER_BYTES));
    refused(&long, &["the filter is too long", "8192"]);
    let just_fits = format!("name = '{}'", "x".repeat(MAX_FILTER_BYTES - 9));
    assert_eq!(just_fits.len(), MAX_FILTER_BYTES);
    assert!(ok(&just_fits).starts_with("\"name\" = 'xxx"));
}

#[test]
fn refuses_deep_nesting_without_overflowing_the_stack() {
    let deep = format!("{}price > 1{}", "(".repeat(10_000), ")".repeat(10_000));
    refused(&deep, &["too long"]);
    // Past the length check, sqlparser's recursion limit must hold.
    let unbounded = Limits {
        max_bytes: usize::MAX,
        ..LIMITS
    };
    assert_eq!(
        text::parse::expression(&deep, &unbounded),
        Err(LIMITS.too_deep())
    );
    let parens = format!("{}price > 1{}", "(".repeat(4000), ")".repeat(4000));
    refused(&parens, &["nested too deeply"]);
    refused(
        &format!("{}price > 0", "- ".repeat(4000)),
        &["nested too deeply"],
    );
    refused(
        &format!("{}name{} = 'a'", "lower(".repeat(1000), ")".repeat(1000)),
        &["nested too deeply"],
    );
    // Past its recursion limit sqlparser reads the innermost NOT as a name
    // and stops there, leaving the rest as trailing text: refused anyway.
    assert!(check_filter(&format!("{}flag", "NOT ".repeat(2000)), COLUMNS).is_err());
    // Below the parser's limit, the checker's own limit applies.
    refused(
        &format!("{}flag", "NOT ".repeat(100)),
        &["nested too deeply (at most 64 levels)"],
    );
    refused(
        &format!("{}price > 0", "- ".repeat(100)),
        &["nested too deeply"],
    );
    // Postfix forms nest without recursing in the parser at all.
    refused(
        &format!("name{} IS NULL", "::text".repeat(MAX_FILTER_DEPTH)),
        &["nested too deeply (at most 64 levels)"],
    );
    renders(
        &format!("name{} IS NULL", "::text".repeat(10)),
        &format!("\"name\"{} IS NULL", "::pg_catalog.text".repeat(10)),
    );
    // Outer parentheses are dropped before the depth is counted.
    renders(
        &format!("{}price > 1{}", "(".repeat(100), ")".repeat(100)),
        "\"price\" > 1",
    );
    let nested = |n: usize| format!("{}flag{}", "(NOT ".repeat(n), ")".repeat(n));
    renders(
        &nested(32),
        &format!("NOT {}\"flag\"{}", "(NOT ".repeat(31), ")".repeat(31)),
    );
    refused(&nested(33), &["nested too deeply (at most 64 levels)"]);
}

#[test]
fn long_chains_are_not_nesting() {
    let ors = vec!["qty = 1"; 500].join(" OR ");
    assert_eq!(ok(&ors), vec!["\"qty\" = 1"; 500].join(" OR "));
    // As long as the length limit allows.
    let sum = format!("price = 1{}", "+1".repeat((MAX_FILTER_BYTES - 9) / 2));
    assert!(ok(&sum).starts_with("\"price\" = 1 + 1 + 1"));
}

#[test]
fn refusal_is_an_error_with_the_message() {
    let error = check_filter("pg_sleep(1) IS NULL", COLUMNS).unwrap_err();
    assert_eq!(error.to_string(), error.message);
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert!(boxed.to_string().contains("pg_sleep()"));
}

#[test]
fn long_offending_parts_are_shortened_in_messages() {
    let filter = format!("x{} > 1", "y".repeat(500));
    let message = check_filter(&filter, COLUMNS).unwrap_err().message;
    assert!(message.contains("..."), "{message}");
    assert!(message.len() < 200, "{message}");
}
