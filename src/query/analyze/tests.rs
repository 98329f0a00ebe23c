use super::*;
use crate::sql_policy::text::render::tests::lexemes;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

const PROJECT: &str = "shop";

fn sqlparser_lexemes(sql: &str) -> Vec<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .unwrap();
    tokens
        .into_iter()
        .filter_map(|token| match token {
            Token::SingleQuotedString(value) | Token::EscapedStringLiteral(value) => {
                Some(format!("'{value}"))
            }
            Token::DollarQuotedString(DollarQuotedString { value, .. }) => {
                Some(format!("'{value}"))
            }
            Token::Word(word) if word.quote_style == Some('"') => Some(format!("\"{}", word.value)),
            _ => None,
        })
        .collect()
}

fn accepted(sql: &str) -> String {
    let rewritten = check_query(sql, PROJECT).unwrap_or_else(|e| panic!("refused {sql:?}: {e}"));
    // PostgreSQL must read the literals and quoted names exactly as they
    // were checked, and find no comment.
    for standard_conforming_strings in [true, false] {
        assert_eq!(
            lexemes(&rewritten, standard_conforming_strings),
            Ok(sqlparser_lexemes(&rewritten)),
            "{rewritten:?} reads differently in PostgreSQL \
             (standard_conforming_strings {standard_conforming_strings})"
        );
    }
    // The rewritten text must re-parse, pass again and come out unchanged.
    let again = check_query(&rewritten, PROJECT)
        .unwrap_or_else(|e| panic!("rewritten {rewritten:?} refused: {e}"));
    assert_eq!(again, rewritten, "not idempotent for {sql:?}");
    rewritten
}

fn refused(sql: &str, needle: &str) {
    let shown = excerpt(&sql);
    match check_query(sql, PROJECT) {
        Ok(rewritten) => panic!("accepted {shown:?} as {:?}", excerpt(&rewritten)),
        Err(Refusal { message, .. }) => assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "refusal of {shown:?} does not mention {needle:?}: {message}"
        ),
    }
}

fn refused_all(cases: &[(&str, &str)]) {
    for (sql, needle) in cases {
        refused(sql, needle);
    }
}

#[test]
fn exactly_one_query_statement() {
    refused_all(&[
        ("select 1; select 2", "multiple statements"),
        ("select 1; drop table events", "multiple statements"),
        ("", "no statement"),
        ("drop table events", "DROP"),
        ("delete from events", "DELETE"),
        ("insert into events values (1)", "INSERT"),
        ("update events set x = 1", "UPDATE"),
        ("copy events to stdout", "COPY"),
        ("copy (select 1) to '/tmp/x'", "COPY"),
        ("explain select 1", "EXPLAIN"),
        ("explain analyze select 1", "EXPLAIN"),
        ("set role postgres", "SET"),
        ("show search_path", "SHOW"),
        ("do $$ begin perform pg_sleep(1); end $$", "parse"),
        ("call f()", "CALL"),
        ("prepare p as select 1", "PREPARE"),
        ("execute p", "EXECUTE"),
        ("listen channel", "LISTEN"),
        ("notify channel", "NOTIFY"),
        ("begin", "BEGIN"),
        ("TABLE events", "parse"),
        ("select 1 union table events", "TABLE"),
    ]);
    assert_eq!(accepted("select 1;"), "SELECT 1");
    // An empty statement is no statement to sqlparser.
    assert_eq!(accepted("select 1;;"), "SELECT 1");
}

#[test]
fn tables_outside_the_project_are_refused() {
    refused_all(&[
        ("select * from pg_catalog.pg_authid", "pg_catalog.pg_authid"),
        ("select * from PG_CATALOG.PG_AUTHID", "pg_catalog.pg_authid"),
        (
            r#"select * from "pg_catalog"."pg_authid""#,
            "pg_catalog.pg_authid",
        ),
        (
            "select * from pg_catalog/**/.pg_authid",
            "pg_catalog.pg_authid",
        ),
        (
            "select * from information_schema.tables",
            "information_schema.tables",
        ),
        ("select * from otherproject.events", "otherproject.events"),
        ("select * from beacon.project", "beacon.project"),
        ("select * from public.events", "public.events"),
        ("select * from db.shop.events", "db.shop.events"),
        // Quoted, the schema keeps its case and is another schema.
        (r#"select * from "Shop".events"#, "Shop.events"),
        (
            "select * from events e join pg_catalog.pg_user u on true",
            "pg_catalog.pg_user",
        ),
        (
            "select * from (events join pg_catalog.pg_roles r on true)",
            "pg_catalog.pg_roles",
        ),
        (
            "select count(*) from events, pg_catalog.pg_stat_activity",
            "pg_stat_activity",
        ),
        ("select * from only events", "ONLY"),
    ]);
}

#[test]
fn project_tables_are_qualified() {
    assert_eq!(
        accepted("select count(*) from events"),
        r#"SELECT pg_catalog."count"(*) FROM "shop"."events""#
    );
    assert_eq!(
        accepted("select x from shop.events, SHOP.Users, \"shop\".\"Mixed\""),
        r#"SELECT x FROM "shop"."events", "shop"."users", "shop"."Mixed""#
    );
    // Catalogs named without a schema are looked up in the project,
    // where they do not exist.
    assert_eq!(
        accepted("select * from pg_class, pg_authid, pg_settings"),
        r#"SELECT * FROM "shop"."pg_class", "shop"."pg_authid", "shop"."pg_settings""#
    );
    assert_eq!(
        accepted("select * from pg_stat_activity"),
        r#"SELECT * FROM "shop"."pg_stat_activity""#
    );
}

#[test]
fn cte_names_shadow_only_unqualified_references() {
    refused(
        "WITH pg_authid AS (SELECT 1) SELECT * FROM pg_catalog.pg_authid",
        "pg_catalog.pg_authid",
    );
    refused(
        "WITH t AS (SELECT 1) SELECT * FROM t, pg_catalog.pg_shadow",
        "pg_catalog.pg_shadow",
    );
    assert_eq!(
        accepted("WITH t AS (SELECT 1) SELECT * FROM t"),
        "WITH t AS (SELECT 1) SELECT * FROM t"
    );
    assert_eq!(
        accepted("WITH pg_authid AS (SELECT 1 AS a) SELECT a FROM pg_authid"),
        "WITH pg_authid AS (SELECT 1 AS a) SELECT a FROM pg_authid"
    );
    // A qualified reference is the project's table, not the CTE.
    assert_eq!(
        accepted("WITH t AS (SELECT 1) SELECT * FROM shop.t"),
        r#"WITH t AS (SELECT 1) SELECT * FROM "shop"."t""#
    );
    // A non-recursive CTE does not see itself: inside, t is the table.
    assert_eq!(
        accepted("with t as (select * from t) select * from t"),
        r#"WITH t AS (SELECT * FROM "shop"."t") SELECT * FROM t"#
    );
    // Later CTEs see earlier ones, not the other way round.
    assert_eq!(
        accepted("with a as (select * from b), b as (select * from a) select * from b"),
        r#"WITH a AS (SELECT * FROM "shop"."b"), b AS (SELECT * FROM a) SELECT * FROM b"#
    );
    // A CTE is not visible outside the subquery defining it.
    assert_eq!(
        accepted("select * from (with t as (select 1) select * from t) s, t"),
        r#"SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, "shop"."t""#
    );
    assert_eq!(
        accepted(
            "with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) \
             select * from r"
        ),
        "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) \
         SELECT * FROM r"
    );
    refused(
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < \
         pg_backend_pid()) select * from r",
        "pg_backend_pid",
    );
}

#[test]
fn subqueries_are_checked_everywhere() {
    refused_all(&[
        ("SELECT (SELECT pg_sleep(1))", "pg_sleep"),
        (
            "SELECT * FROM events WHERE x IN (SELECT usename FROM pg_catalog.pg_user)",
            "pg_catalog.pg_user",
        ),
        (
            "select * from events where exists (select 1 from pg_catalog.pg_shadow)",
            "pg_catalog.pg_shadow",
        ),
        (
            "select * from events e, lateral (select pg_sleep(1)) s",
            "pg_sleep",
        ),
        (
            "select * from (select * from information_schema.columns) c",
            "information_schema.columns",
        ),
        ("values ((select pg_sleep(1)))", "pg_sleep"),
        ("select 1 union select pg_sleep(1)", "pg_sleep"),
        (
            "select 1 from events where x = any(select oid from pg_catalog.pg_class)",
            "pg_catalog.pg_class",
        ),
        (
            "select array(select rolname from pg_catalog.pg_roles)",
            "pg_catalog.pg_roles",
        ),
        (
            "select count(*) filter (where pg_sleep(1) is null) from events",
            "pg_sleep",
        ),
        (
            "select string_agg(x, ',' order by pg_backend_pid()) from events",
            "pg_backend_pid",
        ),
        (
            "select percentile_cont(0.5) within group (order by pg_backend_pid()) from events",
            "pg_backend_pid",
        ),
        (
            "select * from events order by pg_backend_pid()",
            "pg_backend_pid",
        ),
        (
            "select * from events limit (select pg_backend_pid())",
            "pg_backend_pid",
        ),
        (
            "select x from events group by pg_backend_pid()",
            "pg_backend_pid",
        ),
        (
            "select x from events group by x having max(pg_backend_pid()) > 0",
            "pg_backend_pid",
        ),
        (
            "select lag(x) over (order by pg_backend_pid()) from events",
            "pg_backend_pid",
        ),
        (
            "select sum(x) over w from events window w as (partition by pg_backend_pid())",
            "pg_backend_pid",
        ),
        (
            "select * from events e join users u on pg_sleep(1) is null",
            "pg_sleep",
        ),
        ("select case when true then pg_sleep(1) end", "pg_sleep"),
        ("select coalesce(pg_sleep(1), 1)", "pg_sleep"),
        ("select row(pg_sleep(1))", "pg_sleep"),
        ("select (1, pg_sleep(1))", "pg_sleep"),
        ("select array[pg_sleep(1)]", "pg_sleep"),
        (
            "select x from events where x between 1 and pg_backend_pid()",
            "pg_backend_pid",
        ),
        ("select cast(pg_backend_pid() as text)", "pg_backend_pid"),
        (
            "select extract(year from pg_postmaster_start_time())",
            "pg_postmaster_start_time",
        ),
        (
            "select x from events e, generate_series(1, pg_backend_pid()) g",
            "pg_backend_pid",
        ),
    ]);
}

#[test]
fn dangerous_functions_are_refused() {
    refused_all(&[
        ("select repeat('x', 1000000000)", "repeat"),
        ("select lpad('x', 1000000000)", "lpad"),
        ("select dblink('host=x', 'select 1')", "dblink"),
        (
            "select dblink_exec('host=x', 'drop table t')",
            "dblink_exec",
        ),
        (
            "select query_to_xml('select 1', true, true, '')",
            "query_to_xml",
        ),
        (
            "select query_to_xml_and_xmlschema('select 1', true, true, '')",
            "query_to_xml_and_xmlschema",
        ),
        (
            "select table_to_xml('events', true, true, '')",
            "table_to_xml",
        ),
        (
            "select cursor_to_xml('c', 1, true, true, '')",
            "cursor_to_xml",
        ),
        ("select xpath('/a', '<a/>')", "xpath"),
        ("select pg_read_file('/etc/passwd')", "pg_read_file"),
        (
            "select pg_read_binary_file('/etc/passwd')",
            "pg_read_binary_file",
        ),
        ("select pg_ls_dir('.')", "pg_ls_dir"),
        ("select pg_stat_file('postgresql.conf')", "pg_stat_file"),
        ("select lo_import('/etc/passwd')", "lo_import"),
        ("select lo_export(1, '/tmp/x')", "lo_export"),
        ("select lo_get(1)", "lo_get"),
        ("select lo_open(1, 262144)", "lo_open"),
        ("select pg_sleep(10)", "pg_sleep"),
        ("select pg_sleep_for('1 minute')", "pg_sleep_for"),
        ("select pg_sleep_until('tomorrow')", "pg_sleep_until"),
        ("select set_config('role', 'postgres', false)", "set_config"),
        (
            "select current_setting('data_directory')",
            "current_setting",
        ),
        ("select pg_advisory_lock(1)", "pg_advisory_lock"),
        ("select pg_try_advisory_lock(1)", "pg_try_advisory_lock"),
        ("select pg_advisory_xact_lock(1)", "pg_advisory_xact_lock"),
        ("select pg_notify('channel', 'x')", "pg_notify"),
        ("select pg_cancel_backend(1)", "pg_cancel_backend"),
        ("select pg_terminate_backend(1)", "pg_terminate_backend"),
        ("select pg_reload_conf()", "pg_reload_conf"),
        ("select txid_current()", "txid_current"),
        ("select nextval('s')", "nextval"),
        ("select setval('s', 1)", "setval"),
        ("select currval('s')", "currval"),
        ("select version()", "version"),
        ("select pg_backend_pid()", "pg_backend_pid"),
        ("select pg_size_pretty(1)", "pg_size_pretty"),
        ("select setseed(0.5)", "setseed"),
        ("select age(ts) from events", "age"),
        (
            "select jsonb_path_query(x, '$.a') from events",
            "jsonb_path_query",
        ),
        ("select myfunc(x) from events", "myfunc"),
        // Qualified with anything but pg_catalog (or beacon for its one
        // function), even the project's own schema.
        ("select shop.myfunc(x) from events", "shop.myfunc"),
        ("select public.lower(x) from events", "public.lower"),
        ("select beacon.project_id()", "beacon.project_id"),
        (
            "select pg_catalog.approx_count_distinct(x) from events",
            "approx_count_distinct",
        ),
        // Grammar constructs have no pg_catalog function behind them.
        ("select pg_catalog.coalesce(1, 2)", "pg_catalog.coalesce"),
        (r#"select "coalesce"(1, 2)"#, "coalesce"),
        ("select * from pg_ls_dir('.')", "pg_ls_dir"),
        ("select * from pg_catalog.pg_ls_dir('.') f", "pg_ls_dir"),
        (
            "select * from events e cross join lateral dblink('x', 'y') as t(a int)",
            "dblink",
        ),
        (
            "select * from events e, lateral pg_ls_dir('.') d",
            "pg_ls_dir",
        ),
        (
            "select * from json_to_recordset('[]') as x(a int, b regclass)",
            "regclass",
        ),
    ]);
}

#[test]
fn session_keywords_are_refused() {
    refused_all(&[
        ("select current_user", "current_user"),
        ("select session_user", "session_user"),
        ("select user", "user"),
        ("select current_role", "current_role"),
        ("select current_schema", "current_schema"),
        ("select current_catalog", "current_catalog"),
        (
            "select x from events where x = current_user",
            "current_user",
        ),
        ("select x from events group by current_user", "current_user"),
    ]);
    assert_eq!(
        accepted("select current_date, current_timestamp(3), localtimestamp, now()"),
        r#"SELECT current_date, current_timestamp(3), localtimestamp, pg_catalog."now"()"#
    );
}

#[test]
fn quoting_and_comment_tricks_are_refused() {
    refused_all(&[
        (
            r#"select "pg_catalog"."pg_read_file"('/etc/passwd')"#,
            "pg_read_file",
        ),
        ("SELECT PG_CATALOG.PG_SLEEP(1)", "pg_catalog.pg_sleep"),
        (r#"SELECT U&"pg_sleep"(1)"#, "U&"),
        (r#"SELECT U&"\0070g_sleep"(1)"#, "U&"),
        ("SELECT U&'\\0070'", "U&"),
        ("select pg_catalog/**/.pg_sleep(1)", "pg_catalog.pg_sleep"),
        ("select pg_catalog . pg_sleep(1)", "pg_catalog.pg_sleep"),
        ("select pg_catalog--\n.pg_sleep(1)", "pg_catalog.pg_sleep"),
        (r#"select "pg_sleep "(1)"#, "pg_sleep "),
        (r#"select "PG_SLEEP"(1)"#, "PG_SLEEP"),
        (r#"select pg_catalog."pg_sleep"(1)"#, "pg_sleep"),
        ("select pg_sle/**/ep(1)", "parse"),
        ("select /* */ pg_sleep(1)", "pg_sleep"),
        // sqlparser would print this identifier back as `"x\"`, ending it
        // early and leaving `, pg_sleep(1)` as SQL.
        (
            r#"SELECT "x\"", pg_sleep(1) --" FROM events"#,
            "double quotes",
        ),
        (r#"select 1 as "a""b""#, "double quotes"),
        // Single-quoted aliases are no identifiers; `oid '1'` and
        // `regproc 'now'` are typed literals to PostgreSQL.
        ("select 1 as 'x'", "not an identifier"),
        ("select oid '1'", "not an identifier"),
        ("select regproc 'now'", "not an identifier"),
        ("select * from events 'e'", "not an identifier"),
        ("select 1 + operator(pg_catalog.+) 2", "parse"),
        (
            "select extract('ep''och' from ts) from events",
            "not an identifier",
        ),
        ("select 1 operator(+) 2", "OPERATOR"),
    ]);
}

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

#[test]
fn realistic_queries_are_accepted_and_rewritten() {
    let cases: &[(&str, &str)] = &[
        (
            "select date_trunc('day', ts) as day, count(*) from events group by 1 order by 1",
            r#"SELECT pg_catalog."date_trunc"('day', ts) AS day, pg_catalog."count"(*) FROM "shop"."events" GROUP BY 1 ORDER BY 1"#,
        ),
        (
            "select u.country, count(distinct e.user_id) from events e join users as u \
             on u.id = e.user_id group by u.country",
            r#"SELECT u.country, pg_catalog."count"(DISTINCT e.user_id) FROM "shop"."events" e JOIN "shop"."users" AS u ON u.id = e.user_id GROUP BY u.country"#,
        ),
        (
            "select user_id, ts, row_number() over (partition by user_id order by ts) as n \
             from events",
            r#"SELECT user_id, ts, pg_catalog."row_number"() OVER (PARTITION BY user_id ORDER BY ts) AS n FROM "shop"."events""#,
        ),
        (
            "with daily as (select date_trunc('day', ts) as day, count(*) as n from events \
             group by 1) select day, n, avg(n) over (order by day rows between 6 preceding \
             and current row) from daily",
            r#"WITH daily AS (SELECT pg_catalog."date_trunc"('day', ts) AS day, pg_catalog."count"(*) AS n FROM "shop"."events" GROUP BY 1) SELECT day, n, pg_catalog."avg"(n) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) FROM daily"#,
        ),
        (
            "select name from users union select name from admins order by 1",
            r#"SELECT name FROM "shop"."users" UNION SELECT name FROM "shop"."admins" ORDER BY 1"#,
        ),
        (
            "select props->>'plan' as plan, count(*) filter (where kind = 'signup') as \
             signups from events where props ? 'plan' group by 1",
            r#"SELECT props ->> 'plan' AS plan, pg_catalog."count"(*) FILTER (WHERE kind = 'signup') AS signups FROM "shop"."events" WHERE props ? 'plan' GROUP BY 1"#,
        ),
        (
            "select percentile_cont(0.5) within group (order by amount) as median from orders",
            r#"SELECT pg_catalog."percentile_cont"(0.5) WITHIN GROUP (ORDER BY amount) AS median FROM "shop"."orders""#,
        ),
        (
            "select e.id, item->>'sku' from events e cross join lateral \
             jsonb_array_elements(e.props->'items') as item",
            r#"SELECT e.id, item ->> 'sku' FROM "shop"."events" e CROSS JOIN LATERAL pg_catalog."jsonb_array_elements"(e.props -> 'items') AS item"#,
        ),
        (
            "select substring(name from 1 for 3), trim(both ' ' from name), position('a' in \
             name), substr(name, 2, 3), ceil(x), floor(x), coalesce(a, 1), greatest(a, b) \
             from users",
            r#"SELECT SUBSTRING(name FROM 1 FOR 3), TRIM(BOTH ' ' FROM name), POSITION('a' IN name), pg_catalog."substr"(name, 2, 3), pg_catalog."ceil"(x), pg_catalog."floor"(x), coalesce(a, 1), greatest(a, b) FROM "shop"."users""#,
        ),
        (
            "select approx_count_distinct(user_id), beacon.approx_count_distinct(x) from events",
            r#"SELECT beacon."approx_count_distinct"(user_id), beacon."approx_count_distinct"(x) FROM "shop"."events""#,
        ),
        (
            "select * from unnest(array[1,2]) with ordinality u(a, n)",
            r#"SELECT * FROM pg_catalog."unnest"(ARRAY[1, 2]) WITH ORDINALITY u (a, n)"#,
        ),
        (
            "select * from json_to_recordset('[]') as x(a int, b text)",
            r#"SELECT * FROM pg_catalog."json_to_recordset"('[]') AS x (a INT, b TEXT)"#,
        ),
        (
            "SELECT Lower(Name) FROM Users",
            r#"SELECT pg_catalog."lower"(Name) FROM "shop"."users""#,
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(&accepted(sql), expected, "for {sql:?}");
    }
    for sql in [
        "select d::date as day, count(e.ts) from generate_series(now() - interval '30 days', \
         now(), interval '1 day') as d left join events e on date_trunc('day', e.ts) = d \
         group by 1 order by 1",
        "select * from users u where exists (select 1 from events e where e.user_id = u.id) \
         and u.id in (select user_id from orders) and u.id not in (1, 2, 3)",
        "select extract(hour from ts) as h, extract(epoch from ts)::bigint, count(*) from \
         events group by 1, 2",
        "select extract('epoch' from ts), extract(\"epoch\" from ts), extract(isodow from ts) \
         from events",
        "select case when amount > 100 then 'big' when amount > 10 then 'medium' else \
         'small' end as size, count(*), sum(amount), avg(amount)::numeric(10, 2) from orders \
         group by 1 having count(*) > 5 order by 2 desc",
        "select * from events where ts >= current_date - interval '7 days' and ts < now()",
        "select * from events order by ts desc nulls last limit 10 offset 5",
        "select * from events fetch first 10 rows only",
        "select distinct country from users",
        "select distinct on (user_id) user_id, ts from events order by user_id, ts desc",
        "values (1, 'a'), (2, 'b')",
        "select * from (values (1), (2)) as v(x)",
        "select ntile(4) over (order by amount), lag(amount, 1) over w, \
         first_value(amount) over w from orders window w as (order by ts)",
        "select to_char(ts, 'YYYY-MM') as month, sum(amount) from orders group by 1",
        "select string_agg(name, ', ' order by name), array_agg(distinct id), \
         jsonb_agg(props) from users",
        "select * from events where kind like 'sign%' and name ilike '%x%' and name not \
         similar to 'a%' and name ~* '^a'",
        "select * from events where id = any(array[1, 2, 3]) and id <> all(array[4])",
        "select a, b, count(*) from t group by rollup(a, b)",
        "select a, b, count(*) from t group by grouping sets ((a), (b), ())",
        "select (props->'a')::int, props #>> '{a,b}', props @> '{\"a\": 1}' from events",
        "select x from events where ts at time zone 'UTC' > '2024-01-01'",
        "select jsonb_build_object('a', 1, 'b', x), to_jsonb(e) from events e",
        "select count(*) from events e natural join users u",
        "select * from events e left join users u using (user_id) full join orders o on \
         o.user_id = e.user_id",
        "select 1 except select 2 intersect select 3",
        "select x from events where x is not distinct from 1 and y is null and z is true",
        "select make_interval(days => 1), round(x, 2), mod(a, b), power(2, 3) from t",
        "select make_interval(days => 1, hours => 2)",
        "select width_bucket(amount, 0, 100, 10) as bucket, count(*) from orders group by 1",
        "select lead(x, 2, 0) over (partition by a order by b range between unbounded \
         preceding and unbounded following) from t",
        "select split_part(email, '@', 2) as domain, count(*) from users group by 1",
        "select cardinality(tags), array_length(tags, 1), tags[1], tags[2:3] from t",
        "select date_bin('15 minutes', ts, timestamp '2024-01-01'), age(a, b) from t",
        "select u.name, o.total from users u join lateral (select sum(amount) as total \
         from orders where orders.user_id = u.id) o on true",
        "select * from events e, generate_series(1, 3) with ordinality as g(i, n)",
        "select x from events where x in (select x from events)",
        "select count(*) as n, count(t.*) from t",
        "select e.* from events e",
        "select row_number() over () from t",
        "select array(select id from users)",
        "select row(1, 'a')",
        "select ctid, xmin from events",
        "select md5('a'), format('%s-%s', a, b) from t",
        "select /* a comment */ 1 -- and another",
    ] {
        accepted(sql);
    }
}

#[test]
fn accepted_queries_carry_no_comment_or_raw_name() {
    assert_eq!(
        accepted("/* /* */ select pg_sleep(1) */ select 1"),
        "SELECT 1"
    );
    assert_eq!(accepted("select 1 -- ; drop table events"), "SELECT 1");
    assert_eq!(
        accepted("select /* ; */ x from events"),
        r#"SELECT x FROM "shop"."events""#
    );
}

#[test]
fn unique_output_key_cases() {
    let key = |sql: &str| unique_output_key(sql);
    let names = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
    assert_eq!(
        key("select date_trunc('day', ts) as day, count(*) as n from events group by 1"),
        names(&["day"])
    );
    assert_eq!(
        key("select country, count(*) from users group by country"),
        names(&["country"])
    );
    assert_eq!(
        key("select u.country, count(*) from users u group by u.country"),
        names(&["country"])
    );
    assert_eq!(
        key("select u.country, count(*) from users u group by country"),
        names(&["country"])
    );
    assert_eq!(
        key(
            "select date_trunc('day', ts) as day, count(*) from events group by \
             date_trunc('day', ts)"
        ),
        names(&["day"])
    );
    assert_eq!(
        key("select date_trunc('day', ts) as day, count(*) from events group by day"),
        names(&["day"])
    );
    assert_eq!(
        key("select country as c, count(*) from users group by country"),
        names(&["c"])
    );
    assert_eq!(
        key("select a, b, count(*) from t group by b, a, 1"),
        names(&["b", "a"])
    );
    assert_eq!(
        key(r#"select "Country", count(*) from users group by 1"#),
        names(&["Country"])
    );
    assert_eq!(
        key("select Country, count(*) from users group by 1"),
        names(&["country"])
    );
    assert_eq!(
        key("select a, count(*) from t group by 1 having count(*) > 1 order by 2 limit 5"),
        names(&["a"])
    );
    assert_eq!(
        key("with d as (select * from events) select kind, count(*) from d group by kind"),
        names(&["kind"])
    );
    assert_eq!(key("select distinct a, b as c from t"), names(&["a", "c"]));
    assert_eq!(
        key("select distinct a, count(*) as n from t group by a"),
        names(&["a"])
    );
    // The key of the rewritten query is the same.
    let sql = "select date_trunc('day', ts) as day, count(*) from events group by \
               date_trunc('day', ts)";
    assert_eq!(key(&check_query(sql, PROJECT).unwrap()), names(&["day"]));

    // No GROUP BY, or keys that are not (named) outputs.
    assert_eq!(key("select count(*) from events"), None);
    assert_eq!(key("select a from t"), None);
    assert_eq!(
        key("select date_trunc('day', ts), count(*) from events group by 1"),
        None
    );
    assert_eq!(key("select a, count(*) from t group by a, b"), None);
    assert_eq!(key("select a, count(*) from t group by 3"), None);
    assert_eq!(key("select a, count(*) from t group by lower(a)"), None);
    // `day` is also a column here, which PostgreSQL groups by instead.
    assert_eq!(
        key("select date_trunc('day', day) as day, count(*) from events group by day"),
        None
    );
    assert_eq!(
        key("select lower(name) as name, count(*) from users group by name"),
        None
    );
    // Ambiguous output names.
    assert_eq!(key("select a, a, count(*) from t group by 1"), None);
    assert_eq!(key("select a as x, b as x from t group by 1, 2"), None);
    assert_eq!(key("select a, a::text, count(*) from t group by a"), None);
    // Several rows per group, or no single SELECT.
    assert_eq!(
        key("select a, generate_series(1, 3) as g from t group by a"),
        None
    );
    assert_eq!(key("select a, count(*) from t group by rollup(a)"), None);
    assert_eq!(key("select a from t union select a from u"), None);
    assert_eq!(key("select * from t group by a"), None);
    assert_eq!(key("select distinct a, lower(b) from t"), None);
    assert_eq!(key("select distinct * from t"), None);
    assert_eq!(key("values (1)"), None);
    assert_eq!(
        key("select a, count(*) from pg_catalog.pg_class group by a; select 1"),
        None
    );
    assert_eq!(key("select pg_sleep(1) as a group by 1"), None);
    assert_eq!(key("not sql"), None);
}

#[test]
fn allow_lists_hold_no_dangerous_names() {
    let lists = [
        AGGREGATE_FUNCTIONS,
        WINDOW_FUNCTIONS,
        SCALAR_FUNCTIONS,
        SET_RETURNING_FUNCTIONS,
        RECORD_FUNCTIONS,
        BEACON_FUNCTIONS,
        KEYWORD_CONSTRUCTS,
        CLOCK_KEYWORDS,
    ];
    for name in lists.iter().flat_map(|list| list.iter()) {
        assert!(!name.starts_with("pg_"), "{name}");
        assert!(!name.contains("xml") && !name.contains("lo_"), "{name}");
        assert!(
            ![
                "dblink",
                "setval",
                "nextval",
                "currval",
                "set_config",
                "current_setting"
            ]
            .contains(name),
            "{name}"
        );
        assert!(!SESSION_KEYWORDS.contains(name), "{name}");
        assert_eq!(name.to_ascii_lowercase(), **name);
    }
}

#[test]
fn a_bad_project_name_is_refused() {
    assert!(check_query("select 1", "").is_err());
    assert!(check_query("select 1", "a\"b").is_err());
    assert_eq!(
        check_query("select * from t", "other").unwrap(),
        r#"SELECT * FROM "other"."t""#
    );
    assert!(check_query("select * from shop.t", "other").is_err());
}

#[test]
fn refusal_displays_its_message() {
    let refusal = check_query("select pg_sleep(1)", PROJECT).unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "the function pg_sleep() is not allowed: only built-in functions from the \
         allow-list can be called"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(refusal.clone());
    assert_eq!(boxed.to_string(), refusal.message);
}
