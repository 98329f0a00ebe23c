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

mod refusals;
