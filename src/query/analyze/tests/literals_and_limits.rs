use super::*;

#[test]
fn literals_print_back_safely() {
    // sqlparser reads `'\''` as PostgreSQL does (a backslash, then an
    // escaped quote) but prints the value as `'\', pg_sleep(10) --'`,
    // which PostgreSQL would run as a call to pg_sleep.
    assert_eq!(
        accepted("SELECT '\\'', pg_sleep(10) --'"),
        "SELECT E'\\\\'', pg_sleep(10) --'"
    );
    // `- -1` would print as `--1`, commenting out the rest of the line,
    // so the string on the next line would become SQL.
    assert_eq!(
        accepted("SELECT - -1 AS a, '\npg_sleep(10) --'"),
        "SELECT -(-1) AS a, '\npg_sleep(10) --'"
    );
    assert_eq!(
        accepted("SELECT @ -1, |/ -4, ~ -1"),
        "SELECT @(-1), |/(-4), ~(-1)"
    );
    assert_eq!(
        accepted("SELECT @ -1 * 2, - x ^ 2, - (x), - ceil(x), -'1'"),
        r#"SELECT @(-1 * 2), -x ^ 2, -(x), -pg_catalog."ceil"(x), -'1'"#
    );
    // PostgreSQL reads `$1` as a parameter, not a dollar-quote tag.
    assert_eq!(accepted("SELECT $1$ x $1$"), "SELECT ' x '");
    assert_eq!(
        accepted("select 'it''s', E'a\\\\b', 'a\\b', $$x$$"),
        "SELECT 'it''s', E'a\\\\b', E'a\\\\b', 'x'"
    );
    // Dollar quotes become one of the two forms, whatever tags they held.
    assert_eq!(
        accepted("select $a$'$q$'$a$, $a$'$q$a$, $a$\\$q$a$"),
        "SELECT '''$q$''', '''$q', E'\\\\$q'"
    );
    assert_eq!(accepted("select E'\\x41\\n'"), "SELECT 'A\n'");
    refused("select $1", "placeholder");
    refused("select * from events where x = $2", "placeholder");
    refused("select X'ff'", "literal");
    refused("select B'0101'", "literal");
    refused("select N'x'", "literal");
    refused("select 'a\0b'", "NUL");
}

#[test]
fn the_test_lexer_sees_what_postgresql_sees() {
    // What sqlparser prints for `SELECT '\'', pg_sleep(10) --'`.
    assert!(lexemes("SELECT '\\', pg_sleep(10) --'", true).is_err());
    assert!(lexemes("SELECT --1, x", true).is_err());
    // the renderer never prints dollar quotes
    assert!(lexemes("SELECT $q$e'$q$", true).is_err());
    for standard_conforming_strings in [true, false] {
        assert_eq!(
            lexemes(
                r#"SELECT 'a''b', "c""d", x$y, E'\\'''"#,
                standard_conforming_strings
            ),
            Ok(vec![
                "'a'b".to_string(),
                "\"c\"d".to_string(),
                "'\\'".to_string()
            ])
        );
    }
    // a backslash in '...' escapes the quote only with standard_conforming_strings
    // off: on, the comment is outside the literal
    assert!(lexemes("SELECT 'a\\', 1 --'", true).is_err());
    assert!(lexemes("SELECT 'a\\', 1 --'", false).is_ok());
}

#[test]
fn casts_are_limited_to_plain_types() {
    refused_all(&[
        ("select 'pg_authid'::regclass", "regclass"),
        ("select '1'::oid", "oid"),
        ("select CAST('x' AS regproc)", "regproc"),
        ("select 'now()'::regprocedure", "regprocedure"),
        ("select '+'::regoper", "regoper"),
        ("select 'int4'::regtype", "regtype"),
        ("select 'postgres'::regrole", "regrole"),
        ("select 'pg_catalog'::regnamespace", "regnamespace"),
        ("select 'english'::regconfig", "regconfig"),
        ("select 'simple'::regdictionary", "regdictionary"),
        ("select 'C'::regcollation", "regcollation"),
        ("select regclass 'pg_authid'", "regclass"),
        ("select x::bytea from events", "bytea"),
        ("select x::pg_catalog.int4 from events", "pg_catalog.int4"),
        (r#"select x::"int4" from events"#, "int4"),
        ("select '{}'::oid[]", "oid"),
        ("select x::xml from events", "xml"),
        ("select x collate \"C\" from events", "COLLATE"),
        ("select try_cast(x as int) from events", "try_cast"),
    ]);
    assert_eq!(
        accepted(
            "select 1::int4, 1::bigint, x::numeric(12, 2), x::double precision, x::text[], \
             x::timestamptz, x::timestamp with time zone, x::varchar(10), x::jsonb, \
             x::uuid, date '2024-01-01', interval '1 day' from events"
        ),
        r#"SELECT 1::INT4, 1::BIGINT, x::NUMERIC(12,2), x::DOUBLE PRECISION, x::TEXT[], x::TIMESTAMPTZ, x::TIMESTAMP WITH TIME ZONE, x::VARCHAR(10), x::JSONB, x::UUID, DATE '2024-01-01', INTERVAL '1 day' FROM "shop"."events""#
    );
}

#[test]
fn write_lock_and_dialect_clauses_are_refused() {
    refused_all(&[
        ("select x from events for update", "FOR UPDATE"),
        ("select x from events for share", "FOR UPDATE / FOR SHARE"),
        (
            "select * from (select x from events for update) s",
            "FOR UPDATE",
        ),
        ("select x into newtable from events", "INTO"),
        (
            "with x as (delete from events returning *) select * from x",
            "DELETE",
        ),
        (
            "with x as (insert into events values (1) returning *) select * from x",
            "INSERT",
        ),
        (
            "with x as (update events set a = 1 returning *) select * from x",
            "UPDATE",
        ),
        (
            "select * from events tablesample system (10)",
            "TABLESAMPLE",
        ),
        (
            "select * from events tablesample bernoulli (10)",
            "TABLESAMPLE",
        ),
        ("select 1 minus select 2", "MINUS"),
        ("select top 5 x from events", "dialect"),
        ("select x from events qualify x > 1", "dialect"),
        ("select * from events limit 1, 2", "parse"),
        (
            "select x from events e left semi join users u on true",
            "join",
        ),
        ("select * from events where x like any ('a')", "like"),
    ]);
}

#[test]
fn oversized_and_deeply_nested_input_is_refused() {
    let long = format!("select 1 as x{}", " ".repeat(LIMITS.max_bytes));
    refused(&long, "too long");
    // None of these may panic or overflow the stack.
    refused(&"(".repeat(100_000), "nested too deeply");
    refused(
        &format!("select {}1", "(".repeat(99_990)),
        "nested too deeply",
    );
    refused(
        &format!("select {}1{}", "(".repeat(200), ")".repeat(200)),
        "nested too deeply",
    );
    refused(
        &format!("{}select 1{}", "select (".repeat(60), ")".repeat(60)),
        "nested too deeply",
    );
    refused(
        &format!(
            "{}select 1{}",
            "select * from (".repeat(60),
            ") s".repeat(60)
        ),
        "nested too deeply",
    );
    refused(
        &format!("select {}true", "not ".repeat(20_000)),
        "nested too deeply",
    );
    refused(
        &format!("select {}1", "- ".repeat(45_000)),
        "nested too deeply",
    );
    refused(
        &format!("select {}1{}", "array[".repeat(12_000), "]".repeat(12_000)),
        "nested too deeply",
    );
    // Left-deep chains are built without recursion in the parser but
    // dropped and printed recursively.
    refused(
        &format!("select 1{}", "+1".repeat(30_000)),
        "chains too many",
    );
    refused(
        &format!("select x{}", "::int".repeat(15_000)),
        "chains too many",
    );
    refused(
        &format!("select x::int{}", "[]".repeat(30_000)),
        "chains too many",
    );
    refused(
        &format!("select 1, 2{}", " union select 1, 2".repeat(5_000)),
        "chains too many",
    );
    refused(
        &format!("select 1{} +", "+1".repeat(30_000)),
        "chains too many",
    );
    assert_eq!(unique_output_key(&"(".repeat(100_000)), None);
    assert_eq!(
        unique_output_key(&format!("select 1{}", "+1".repeat(30_000))),
        None
    );
}

#[test]
fn nesting_within_the_limits_is_accepted() {
    let parens = format!("select {}1{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(accepted(&parens), parens.to_uppercase());
    let subqueries = format!("{}select 1{}", "select (".repeat(30), ")".repeat(30));
    accepted(&subqueries);
    // The deepest chain allowed: walked, printed and dropped at ~990
    // levels on a test thread's stack.
    let chain = format!("select 1{}", "+1".repeat(LIMITS.max_nesting_cost - 10));
    let rewritten = accepted(&chain);
    assert_eq!(
        rewritten.matches(" + 1").count(),
        LIMITS.max_nesting_cost - 10
    );
    accepted(&format!(
        "select 1, 2{}",
        " union select 1, 2".repeat(LIMITS.max_nesting_cost - 10)
    ));
    // A long but flat query: 12,000 values in an IN list.
    let values: Vec<String> = (0..12_000).map(|i| i.to_string()).collect();
    let long = format!("select x from events where x in ({})", values.join(", "));
    assert!(long.len() > 70_000 && long.len() < LIMITS.max_bytes);
    let rewritten = accepted(&long);
    assert!(rewritten.starts_with(r#"SELECT x FROM "shop"."events" WHERE x IN (0, 1, 2"#));
    // A large CASE counts its WHENs but stays well below the limit.
    let whens: String = (0..200)
        .map(|i| format!(" when kind = 'k{i}' then {i}"))
        .collect();
    accepted(&format!("select case{whens} else -1 end as k from events"));
}
