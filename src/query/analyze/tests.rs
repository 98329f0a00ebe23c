use super::*;
use crate::sql_policy::lists::{
    AGGREGATE_FUNCTIONS, BEACON_FUNCTIONS, SCALAR_FUNCTIONS, WINDOW_FUNCTIONS,
};
use crate::sql_policy::text::render::tests::lexemes;
use crate::sql_policy::text::walk::{CLOCK_KEYWORDS, KEYWORD_CONSTRUCTS, SESSION_KEYWORDS};
use sqlparser::ast::DollarQuotedString;
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

mod accepted;
mod literals_and_limits;
