use super::*;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

const MAX_FILTER_BYTES: usize = LIMITS.max_bytes;

const COLUMNS: &[&str] = &[
    "price",
    "qty",
    "name",
    "flag",
    "data",
    "_id",
    "_time",
    "_user",
    "Mixed Case",
    "Price",
    "note\"q",
];

/// Accepts `filter` and checks what every accepted filter must satisfy:
/// the rendering reads back, through sqlparser and the checker, as itself.
fn ok(filter: &str) -> String {
    let rendered = check_filter(filter, COLUMNS)
        .unwrap_or_else(|e| panic!("{} was refused: {e}", excerpt(filter)));
    // (a rendering longer than a filter may be is read back by the renderer only)
    if rendered.len() <= MAX_FILTER_BYTES {
        assert_eq!(
            check_filter(&rendered, COLUMNS).as_ref(),
            Ok(&rendered),
            "{}",
            excerpt(filter)
        );
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, &rendered)
        .tokenize()
        .unwrap_or_else(|e| panic!("{rendered}: {e}"));
    assert!(
        !tokens.iter().any(|token| matches!(
            token,
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)
            )
        )),
        "{} rendered with a comment: {rendered}",
        excerpt(filter)
    );
    rendered
}

fn renders(filter: &str, expected: &str) {
    assert_eq!(ok(filter), expected, "{filter:?}");
}

fn refused(filter: &str, needles: &[&str]) {
    let message = match check_filter(filter, COLUMNS) {
        Ok(rendered) => panic!("{filter:?} was accepted as {rendered:?}"),
        Err(Refusal { message, .. }) => message,
    };
    for needle in needles {
        assert!(
            message.contains(needle),
            "refusal of {filter:?} should mention {needle:?}: {message}"
        );
    }
}

#[test]
fn renders_comparisons_with_quoted_columns() {
    renders("price = 1", "\"price\" = 1");
    renders("price <> 1", "\"price\" <> 1");
    renders("price != 1", "\"price\" <> 1");
    renders("price < 1", "\"price\" < 1");
    renders("price <= 1.5", "\"price\" <= 1.5");
    renders("price > 1e5", "\"price\" > 1e5");
    renders("price >= .5", "\"price\" >= .5");
    renders("_id = _user", "\"_id\" = \"_user\"");
}

#[test]
fn renders_arithmetic_and_concatenation() {
    renders(
        "price * qty + 1 > 10 - qty / 2 % 3",
        "\"price\" * \"qty\" + 1 > 10 - \"qty\" / 2 % 3",
    );
    renders("name || '!' = 'a!'", "\"name\" || '!' = 'a!'");
    renders("-price < +qty", "-\"price\" < +\"qty\"");
    renders("(price + 1) * 2 = 4", "(\"price\" + 1) * 2 = 4");
}

#[test]
fn renders_boolean_logic() {
    renders(
        "price > 1 AND (qty < 2 OR NOT flag)",
        "\"price\" > 1 AND (\"qty\" < 2 OR NOT \"flag\")",
    );
    renders("flag", "\"flag\"");
    renders("NOT flag", "NOT \"flag\"");
    renders("true", "true");
    renders("FALSE", "false");
    renders(
        "flag = true OR flag = false",
        "\"flag\" = true OR \"flag\" = false",
    );
}

#[test]
fn renders_in_between_and_like() {
    renders("qty IN (1, 2, 3)", "\"qty\" IN (1, 2, 3)");
    renders(
        "name NOT IN ('a', lower(name))",
        "\"name\" NOT IN ('a', pg_catalog.lower(\"name\"))",
    );
    renders("price BETWEEN 1 AND qty", "\"price\" BETWEEN 1 AND \"qty\"");
    renders("price NOT BETWEEN 1 AND 2", "\"price\" NOT BETWEEN 1 AND 2");
    renders("name LIKE 'a%'", "\"name\" LIKE 'a%'");
    renders("name NOT LIKE 'a%'", "\"name\" NOT LIKE 'a%'");
    renders("name ILIKE 'a%'", "\"name\" ILIKE 'a%'");
    renders("name NOT ILIKE 'a%'", "\"name\" NOT ILIKE 'a%'");
    renders(
        "name LIKE 'a!%%' ESCAPE '!'",
        "\"name\" LIKE 'a!%%' ESCAPE '!'",
    );
}

#[test]
fn renders_is_forms() {
    renders("name IS NULL", "\"name\" IS NULL");
    renders("name IS NOT NULL", "\"name\" IS NOT NULL");
    renders("flag IS TRUE", "\"flag\" IS TRUE");
    renders("flag IS NOT TRUE", "\"flag\" IS NOT TRUE");
    renders("flag IS FALSE", "\"flag\" IS FALSE");
    renders("flag IS NOT FALSE", "\"flag\" IS NOT FALSE");
    renders("flag IS UNKNOWN", "\"flag\" IS UNKNOWN");
    renders("name IS DISTINCT FROM 'a'", "\"name\" IS DISTINCT FROM 'a'");
    renders(
        "name IS NOT DISTINCT FROM NULL",
        "\"name\" IS NOT DISTINCT FROM NULL",
    );
}

#[test]
fn renders_literals() {
    renders("name = 'it''s'", "\"name\" = 'it''s'");
    renders("name = ''", "\"name\" = ''");
    renders("name = NULL", "\"name\" = NULL");
    renders("qty = 1_000", "\"qty\" = 1000");
    // Other spellings of a string become plain literals.
    renders("e'\\x41' = name", "'A' = \"name\"");
    renders("$$x$$ = name", "'x' = \"name\"");
    renders("$tag$it's$tag$ = name", "'it''s' = \"name\"");
    // sqlparser does not decode U&'...' as PostgreSQL does (UESCAPE): refused, as
    // everywhere.
    refused(
        "U&'\\0041' = name",
        &["U&'...' string literals are not allowed"],
    );
}

#[test]
fn renders_backslashes_so_they_survive_standard_conforming_strings_off() {
    renders("name LIKE '100\\%'", "\"name\" LIKE E'100\\\\%'");
    renders("name = E'a\\\\b''c'", "\"name\" = E'a\\\\b''c'");
    // The classic escape: with standard_conforming_strings off, '\'' would
    // end the string early. Rendered as E'...', it stays one literal.
    renders(
        "name = '\\'' OR pg_sleep(1) IS NULL --'",
        "\"name\" = E'\\\\'' OR pg_sleep(1) IS NULL --'",
    );
}

#[test]
fn renders_typed_literals_and_casts() {
    renders(
        "_time > timestamptz '2024-01-01'",
        "\"_time\" > '2024-01-01'::TIMESTAMP WITH TIME ZONE",
    );
    renders(
        "_time > timestamp '2024-01-01'",
        "\"_time\" > '2024-01-01'::TIMESTAMP",
    );
    renders(
        "_time > date '2024-01-01'",
        "\"_time\" > '2024-01-01'::pg_catalog.date",
    );
    renders(
        "_time > now_col - interval '1 day'"
            .replace("now_col", "_time")
            .as_str(),
        "\"_time\" > \"_time\" - INTERVAL '1 day'",
    );
    renders(
        "data = jsonb '{\"a\": 1}'",
        "\"data\" = '{\"a\": 1}'::pg_catalog.jsonb",
    );
    renders("qty::text = '1'", "\"qty\"::pg_catalog.text = '1'");
    renders("CAST(qty AS int) = 1", "CAST(\"qty\" AS INTEGER) = 1");
    for (written, rendered) in [
        ("text", "pg_catalog.text"),
        ("varchar", "VARCHAR"),
        ("varchar(10)", "VARCHAR(10)"),
        ("character varying(3)", "VARCHAR(3)"),
        ("int", "INTEGER"),
        ("integer", "INTEGER"),
        ("int4", "INTEGER"),
        ("bigint", "BIGINT"),
        ("int8", "BIGINT"),
        ("smallint", "SMALLINT"),
        ("int2", "SMALLINT"),
        ("numeric", "NUMERIC"),
        ("numeric(10,2)", "NUMERIC(10,2)"),
        ("decimal(5)", "NUMERIC(5)"),
        ("real", "REAL"),
        ("float4", "REAL"),
        ("double precision", "DOUBLE PRECISION"),
        ("float8", "DOUBLE PRECISION"),
        ("boolean", "BOOLEAN"),
        ("bool", "BOOLEAN"),
        ("date", "pg_catalog.date"),
        ("timestamp", "TIMESTAMP"),
        ("timestamp without time zone", "TIMESTAMP"),
        ("timestamp(3)", "TIMESTAMP(3)"),
        ("timestamptz", "TIMESTAMP WITH TIME ZONE"),
        ("timestamp with time zone", "TIMESTAMP WITH TIME ZONE"),
        ("interval", "INTERVAL"),
        ("json", "pg_catalog.json"),
        ("jsonb", "pg_catalog.jsonb"),
        ("\"text\"", "pg_catalog.text"),
        ("pg_catalog.int4", "INTEGER"),
        ("pg_catalog.timestamptz", "TIMESTAMP WITH TIME ZONE"),
    ] {
        renders(
            &format!("name::{written} IS NULL"),
            &format!("\"name\"::{rendered} IS NULL"),
        );
    }
    renders("name::boolean", "\"name\"::BOOLEAN");
    renders("boolean 'true'", "'true'::BOOLEAN");
}

#[test]
fn renders_allowed_functions_pinned_to_pg_catalog() {
    renders("lower(name) = 'a'", "pg_catalog.lower(\"name\") = 'a'");
    renders("UPPER(name) = 'A'", "pg_catalog.upper(\"name\") = 'A'");
    renders("length(name) > 3", "pg_catalog.length(\"name\") > 3");
    renders("abs(price) < 1", "pg_catalog.abs(\"price\") < 1");
    renders(
        "coalesce(price, qty, 0) > 0",
        "COALESCE(\"price\", \"qty\", 0) > 0",
    );
    renders(
        "date_trunc('day', _time) = date_trunc('day', _time, 'UTC')",
        "pg_catalog.date_trunc('day', \"_time\") = \
         pg_catalog.date_trunc('day', \"_time\", 'UTC')",
    );
    renders(
        "pg_catalog.lower(name) = 'a'",
        "pg_catalog.lower(\"name\") = 'a'",
    );
    renders(
        "\"pg_catalog\".\"upper\"(name) = 'A'",
        "pg_catalog.upper(\"name\") = 'A'",
    );
    renders(
        "PG_CATALOG.COALESCE(name, 'x') = 'x'",
        "COALESCE(\"name\", 'x') = 'x'",
    );
    renders(
        "lower(upper(lower(name))) = 'a'",
        "pg_catalog.lower(pg_catalog.upper(pg_catalog.lower(\"name\"))) = 'a'",
    );
}

#[test]
fn renders_jsonb_accessors() {
    renders("data -> 'a' ->> 'b' = 'x'", "\"data\" -> 'a' ->> 'b' = 'x'");
    renders("data ->> 0 = 'x'", "\"data\" ->> 0 = 'x'");
    renders(
        "(data -> 'n')::numeric > 1",
        "(\"data\" -> 'n')::NUMERIC > 1",
    );
}

#[test]
fn strips_outer_parentheses_only() {
    renders("((price > 1))", "\"price\" > 1");
    renders(
        "(price > 1) AND (qty > 1)",
        "(\"price\" > 1) AND (\"qty\" > 1)",
    );
}

#[test]
fn folds_unquoted_names_and_keeps_quoted_ones() {
    renders("Price > 1", "\"price\" > 1");
    renders("PRICE > 1", "\"price\" > 1");
    renders("\"Price\" > 1", "\"Price\" > 1");
    renders("\"Mixed Case\" = 1", "\"Mixed Case\" = 1");
    renders("\"note\"\"q\" = 'x'", "\"note\"\"q\" = 'x'");
    refused(
        "\"PRICE\" > 1",
        &[
            "\"PRICE\" is not a column of the collection",
            "did you mean",
        ],
    );
    refused(
        "\"mixed case\" = 1",
        &[
            "\"mixed case\" is not a column",
            "did you mean \"Mixed Case\"",
        ],
    );
    refused(
        "Mixed = 1",
        &["\"mixed\" is not a column of the collection"],
    );
}

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
