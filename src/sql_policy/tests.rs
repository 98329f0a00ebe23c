use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::sql_policy::{check, filter_statement, Policy, RefusalKind};
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    /// SQL access to the check, so that tests can see the SQLSTATE of errors PostgreSQL
    /// raises inside it (through `sqlstate_of`, in a subtransaction). NULL when allowed,
    /// else `<SQLSTATE> <message>`.
    #[pg_extern]
    fn policy_check(surface: &str, project: &str, sql: &str) -> Option<String> {
        let policy = match surface.split_once(':') {
            Some(("filter", collection)) => Policy::stream_filter(project, collection),
            _ => match surface {
                "query" => Policy::query(project),
                "materialized view" => Policy::materialized_view(project),
                "continuous query" => Policy::continuous_query(project),
                other => panic!("no surface {other}"),
            },
        };
        check(sql, &policy).err().map(|refusal| {
            let state = match refusal.kind {
                RefusalKind::Object => "42501",
                RefusalKind::Limit => "54001",
                RefusalKind::Unsupported => "0A000",
                RefusalKind::Syntax => "42601",
                RefusalKind::Internal => "XX000",
                RefusalKind::Ambiguous => "42702",
            };
            format!("{state} {}", refusal.message)
        })
    }

    fn verdict(surface: &str, sql: &str) -> Option<String> {
        Spi::get_one_with_args::<String>(
            "SELECT tests.policy_check($1, 'alpha', $2)",
            &[surface.into(), sql.into()],
        )
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn allowed(surface: &str, sql: &str) {
        assert_eq!(verdict(surface, sql), None, "{surface}: {sql}");
    }

    /// Refused with 42501 (or `state`), the message naming `what`.
    fn refused_as(surface: &str, sql: &str, state: &str, what: &str) {
        let verdict = verdict(surface, sql).unwrap_or_else(|| panic!("allowed: {sql}"));
        assert!(verdict.starts_with(state), "{sql}: {verdict}");
        assert!(
            verdict.contains(what),
            "{sql}: {verdict} does not name {what}"
        );
    }

    fn refused(sql: &str, what: &str) {
        refused_as("query", sql, "42501", what);
    }

    /// The SQLSTATE the check fails with when PostgreSQL itself raises the error.
    fn raised(sql: &str) -> Option<String> {
        sqlstate_of(&format!(
            "SELECT tests.policy_check('query', 'alpha', $sql${sql}$sql$)"
        ))
    }

    /// `<SQLSTATE> <message>` of the error `sql` fails with, None if it succeeds. Its
    /// helper names pg_catalog.text, so that a pg_temp type named text cannot capture it.
    fn error_of(sql: &str) -> Option<String> {
        exec(
            "CREATE OR REPLACE FUNCTION pg_temp.error_of(stmt pg_catalog.text)
               RETURNS pg_catalog.text LANGUAGE plpgsql AS $$
               BEGIN EXECUTE stmt; RETURN NULL;
               EXCEPTION WHEN others THEN RETURN SQLSTATE || ' ' || SQLERRM; END $$",
        );
        Spi::get_one_with_args::<String>("SELECT pg_temp.error_of($1)", &[sql.into()]).unwrap()
    }

    fn setup() {
        exec("SELECT beacon.create_project('alpha')");
        exec("SELECT beacon.create_project('beta')");
        exec(
            r#"SELECT beacon.collect_batch('alpha', '[
            {"collection": "events", "properties": {"url": "/a", "price": 3, "meta": {"k": [1, 2]}, "_user": "u1"}},
            {"collection": "events", "properties": {"url": "/b", "price": 5, "tags": ["x"]}}]')"#,
        );
        exec(r#"SELECT beacon.set_user('alpha', 'u1', '{"plan": "pro"}')"#);
        exec(r#"SELECT beacon.collect('beta', 'secret', '{"note": "TOP SECRET"}')"#);
        exec(
            "SELECT beacon.create_continuous_query('alpha', 'x',
               'SELECT url, count(*) AS n FROM events GROUP BY url')",
        );
        // a function that shows whether anything ran it
        exec(
            "CREATE FUNCTION pg_temp.boom(text) RETURNS boolean LANGUAGE plpgsql
               AS $$ BEGIN RAISE EXCEPTION USING ERRCODE = '38000', MESSAGE = 'boom ran'; END $$",
        );
    }

    #[pg_test]
    fn analysis_queries_pass() {
        setup();
        for sql in [
            "SELECT url, count(*) AS n, sum(price), avg(price) FROM alpha.events GROUP BY url ORDER BY 2 DESC",
            "SELECT DISTINCT url FROM alpha.events WHERE url LIKE '/%' AND price BETWEEN 1 AND 10",
            "SELECT e.url, u.plan FROM alpha.events e JOIN alpha._users u ON u.id = e._user",
            "SELECT e FROM alpha.events e",
            "SELECT pg_catalog.to_jsonb(e) FROM alpha.events e",
            "SELECT url, row_number() OVER (PARTITION BY url ORDER BY _time) FROM alpha.events",
            "SELECT sum(price) OVER (ORDER BY _time RANGE BETWEEN '1 day'::interval PRECEDING AND CURRENT ROW) FROM alpha.events",
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY price) FROM alpha.events",
            "SELECT string_agg(url, ',' ORDER BY url), count(*) FILTER (WHERE price > 3) FROM alpha.events",
            "SELECT beacon.approx_count_distinct(url) FROM alpha.events",
            "WITH t AS (SELECT url FROM alpha.events) SELECT url FROM t UNION SELECT 'x'",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
            "SELECT url FROM alpha.events WHERE url IN (SELECT url FROM alpha.events WHERE price > 4)",
            "SELECT url FROM alpha.events WHERE EXISTS (SELECT 1 FROM alpha._users)",
            "SELECT ARRAY(SELECT url FROM alpha.events), (SELECT max(price) FROM alpha.events)",
            "SELECT k, v FROM alpha.events, LATERAL pg_catalog.jsonb_each(meta) AS j(k, v)",
            "SELECT * FROM pg_catalog.generate_series(1, 3) WITH ORDINALITY",
            "SELECT * FROM pg_catalog.jsonb_to_record('{\"a\": 1}') AS r(a int, b text[])",
            "SELECT extract(epoch FROM _time), _time AT TIME ZONE 'UTC', date_trunc('day', _time) FROM alpha.events",
            "SELECT CASE WHEN price > 3 THEN 'big' ELSE 'small' END, coalesce(url, '?'), nullif(url, ''), greatest(price, 1) FROM alpha.events",
            "SELECT price::int, price::numeric(10, 2), url::varchar(3), _id::text, '1'::bigint, meta->'k'->>0 FROM alpha.events",
            "SELECT meta @> '{\"k\": [1]}', meta ? 'k', meta['k'], tags[1], url ~ '^/' FROM alpha.events",
            "SELECT url COLLATE \"C\" FROM alpha.events ORDER BY 1",
            "SELECT current_date, current_timestamp, now() - interval '1 hour' FROM alpha.events",
            "SELECT (url, price) < ('/b', 1), url IS DISTINCT FROM 'x', price = ANY (ARRAY[1, 2]) FROM alpha.events",
            "SELECT url, count(*) FROM alpha.events GROUP BY ROLLUP (url)",
            "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(n, s)",
            "SELECT url, n FROM alpha.x",
            "SELECT tableoid, ctid, xmin FROM alpha.events",
            "SELECT url FROM alpha.events TABLESAMPLE bernoulli (50) REPEATABLE (1)",
            "SELECT * FROM alpha._rejected, alpha._user_mailbox",
            "SELECT url SIMILAR TO '/%', url ILIKE '/A%' ESCAPE '!', position('a' IN url), substring(url FROM 2) FROM alpha.events",
        ] {
            allowed("query", sql);
        }
    }

    #[pg_test]
    fn what_the_first_barrier_renders_passes_the_second() {
        setup();
        // through beacon.query itself: sqlparser's rewrite, wrapped, checked, run
        for sql in [
            "SELECT url, count(*) AS n FROM events GROUP BY url",
            "SELECT e.url, u.plan FROM events e LEFT JOIN _users u ON u.id = e._user",
            "SELECT date_trunc('day', _time) AS d, approx_count_distinct(url) FROM events GROUP BY 1",
            "SELECT url, lag(price) OVER (ORDER BY _id) FROM events WHERE url IN ('/a', '/b')",
            "WITH t AS (SELECT * FROM events) SELECT count(*) FROM t",
            "SELECT * FROM x",
            "SELECT CAST(price AS integer) AS p, meta->>'k' AS k FROM events",
        ] {
            assert!(
                count(&format!("SELECT * FROM beacon.query('alpha', $q${sql}$q$)")) > 0,
                "{sql}"
            );
        }
    }

    #[pg_test]
    fn functional_notation_is_the_function_it_calls() {
        setup();
        refused(
            "SELECT ('PG_VERSION'::text).pg_read_file FROM alpha.events",
            "function pg_catalog.pg_read_file(text)",
        );
        refused(
            "SELECT (url).current_setting FROM alpha.events",
            "function pg_catalog.current_setting(text)",
        );
        refused(
            "SELECT ('select 1'::text).ts_stat",
            "function pg_catalog.ts_stat(text)",
        );
        // row_to_json(e): harmless (to_json(e) does the same), but not on the allow-list
        refused(
            "SELECT e.row_to_json FROM alpha.events e",
            "function pg_catalog.row_to_json(record)",
        );
        // and what beacon.query's first barrier lets through as a column reference
        assert_eq!(
            error_of("SELECT * FROM beacon.query('alpha', 'SELECT e.row_to_json FROM events e')")
                .as_deref(),
            Some(
                "42501 query refused: function pg_catalog.row_to_json(record) is not allowed in a query"
            )
        );
    }

    #[pg_test]
    fn caller_made_types_operators_and_collations_are_refused() {
        setup();
        exec("CREATE DOMAIN pg_temp.my_domain AS text CHECK (pg_temp.boom(VALUE))");
        refused(
            "SELECT url::pg_temp.my_domain FROM alpha.events",
            "type pg_temp.my_domain (a domain)",
        );
        // a composite literal runs its domain columns' CHECKs while it is parsed: the
        // type is judged before PostgreSQL analyzes anything
        exec("CREATE TYPE pg_temp.boxed AS (d pg_temp.my_domain)");
        refused("SELECT '(x)'::pg_temp.boxed", ".boxed");
        // so does a literal argument of a function taking that type
        exec("CREATE FUNCTION pg_temp.takes(pg_temp.boxed) RETURNS int LANGUAGE sql AS 'SELECT 1'");
        refused("SELECT pg_temp.takes('(x)')", "function pg_temp.takes");
        refused(
            "SELECT * FROM pg_catalog.jsonb_to_record('{}') AS r(a pg_temp.my_domain)",
            ".my_domain",
        );
        // continuous-query keys are the same check on another surface
        refused_as(
            "continuous query",
            "SELECT url::pg_temp.my_domain AS k, count(*) AS n FROM alpha.events GROUP BY 1",
            "42501",
            ".my_domain",
        );
        // an operator in a schema on the caller's search_path
        exec("CREATE SCHEMA mine");
        exec("CREATE FUNCTION mine.f(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false'");
        exec("CREATE OPERATOR mine.= (leftarg = text, rightarg = text, function = mine.f)");
        exec("CREATE COLLATION mine.c (locale = 'C')");
        exec("SET LOCAL search_path = mine, pg_catalog");
        refused(
            "SELECT 1 FROM alpha.events WHERE url = 'x'",
            "operator mine.=(text, text)",
        );
        refused("SELECT url COLLATE c FROM alpha.events", "collation mine.c");
        refused("SELECT 'a' OPERATOR(mine.=) 'b'", "operator mine.=");
        refused(
            "SELECT 'a' OPERATOR(mine.=) ANY (SELECT url FROM alpha.events)",
            "operator mine.=",
        );
        refused("SELECT mine.f('a', 'b')", "function mine.f");
        // beacon.query analyzes and runs under its own search_path, where = is
        // pg_catalog's again (mine.= would find nothing)
        assert_eq!(
            one::<String>(
                "SELECT r::text FROM beacon.query('alpha', 'SELECT count(*) AS n FROM events WHERE url = ''/a''') r"
            )
            .as_deref(),
            Some(r#"{"n": 1}"#)
        );
        exec("RESET search_path");
        // a pg_temp type named like a built-in shadows it wherever pg_temp is searched
        // implicitly (first, for types)...
        exec("CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.boom(VALUE))");
        refused("SELECT 'x'::text", ".text (a domain)");
        // ...but beacon.query runs under `pg_catalog, <project>, pg_temp`, where `text` is
        // pg_catalog's: the query runs, and the domain's CHECK never does
        let error =
            error_of("SELECT * FROM beacon.query('alpha', 'SELECT url::text AS u FROM events')");
        exec("DROP DOMAIN pg_temp.text");
        assert_eq!(error.as_deref(), None);
    }

    #[pg_test]
    fn relations_are_the_projects_visible_tables() {
        setup();
        refused(
            "SELECT * FROM beta.secret",
            "relation beta.secret is outside project alpha",
        );
        refused(
            "SELECT * FROM pg_catalog.pg_authid",
            "relation pg_catalog.pg_authid is outside",
        );
        refused(
            "SELECT * FROM alpha._cq_x_state",
            "relation alpha._cq_x_state, one of pg_beacon's hidden tables",
        );
        refused(
            "SELECT * FROM alpha.events__id_seq",
            "relation alpha.events__id_seq, not a table or view",
        );
        // beacon.query's first barrier takes any name in the project; this one does not
        assert_eq!(
            error_of("SELECT * FROM beacon.query('alpha', 'SELECT * FROM _cq_x_state')").as_deref(),
            Some(
                "42501 query refused: relation alpha._cq_x_state, one of pg_beacon's hidden \
                 tables, is not allowed in a query"
            )
        );
        refused("SELECT NULL::beta.secret", "relation beta.secret");
        refused("SELECT 'beta.secret'::regclass", "type pg_catalog.regclass");
        // unqualified names resolve through search_path too: a temporary table
        exec("CREATE TEMP TABLE events (x int)");
        exec("SET LOCAL search_path = alpha");
        refused("SELECT * FROM events", "relation pg_temp_");
    }

    #[pg_test]
    fn only_one_plain_select() {
        setup();
        refused(
            "SELECT pg_sleep(1)",
            "function pg_catalog.pg_sleep(double precision)",
        );
        refused(
            "WITH x AS (DELETE FROM alpha.events RETURNING *) SELECT * FROM x",
            "data-modifying",
        );
        refused("SELECT * FROM alpha.events FOR UPDATE", "FOR UPDATE");
        refused(
            "SELECT * FROM (SELECT * FROM alpha.events FOR SHARE) s",
            "FOR UPDATE",
        );
        refused("SELECT 1 INTO pg_temp.stolen", "SELECT … INTO");
        refused(
            "SELECT 1; SELECT 2",
            "exactly one statement is allowed, found 2",
        );
        refused("", "no statement found");
        refused(
            "DELETE FROM alpha.events",
            "only SELECT is allowed in a query, not DELETE",
        );
        refused("EXPLAIN SELECT 1", "not EXPLAIN");
        refused(
            "SELECT nextval('alpha.events__id_seq')",
            "function pg_catalog.nextval(regclass)",
        );
        // a server built without libxml fails at parse analysis already
        let xml = "SELECT xmlelement(name x)";
        match error_of(&format!(
            "SELECT tests.policy_check('query', 'alpha', '{xml}')"
        )) {
            Some(error) => assert!(error.starts_with("0A000"), "{error}"),
            None => refused(xml, "XmlExpr"),
        }
        refused("SELECT current_user", "");
        refused(
            "SELECT pg_catalog.set_config('a.b', 'c', true)",
            "function pg_catalog.set_config",
        );
        // nothing was run, locked or changed by any of it
        assert_eq!(count("SELECT * FROM alpha.events"), 2);
    }

    #[pg_test]
    fn refusals_before_analysis_take_no_locks() {
        setup();
        let locks = || {
            one::<i64>(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()
                   AND relation = 'pg_catalog.pg_seclabel'::regclass",
            )
        };
        assert_eq!(locks(), Some(0));
        for sql in [
            "SELECT * FROM pg_catalog.pg_seclabel",
            "SELECT * FROM pg_catalog.pg_seclabel FOR UPDATE",
            "WITH d AS (DELETE FROM pg_catalog.pg_seclabel RETURNING 1) SELECT 1",
            "DELETE FROM pg_catalog.pg_seclabel",
        ] {
            assert!(verdict("query", sql).is_some(), "{sql}");
        }
        assert_eq!(locks(), Some(0));
    }

    #[pg_test]
    fn errors_of_postgresql_stay_its_own_and_limits_hold() {
        setup();
        assert_eq!(
            raised("SELECT nope FROM alpha.events").as_deref(),
            Some("42703")
        );
        assert_eq!(raised("SELECT * FROM alpha.nope").as_deref(), Some("42P01"));
        assert_eq!(raised("SELECT lower(1, 2, 3)").as_deref(), Some("42883"));
        assert_eq!(raised("SELECT $1").as_deref(), Some("42P02"));
        assert_eq!(raised("SELEC 1").as_deref(), Some("42601"));
        assert_eq!(raised("SELECT 1::no_such_type").as_deref(), Some("42704"));
        // deep trees end in PostgreSQL's stack check or the parser's own limit, never a crash
        let parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let state = raised(&parens);
        assert!(
            matches!(state.as_deref(), Some("54001" | "42601")),
            "{state:?}"
        );
        // PostgreSQL's stack check or the walk's own bound, whichever comes first
        let chain = format!("SELECT 1{} FROM alpha.events", " + 1".repeat(30_000));
        match raised(&chain) {
            Some(state) => assert_eq!(state, "54001"),
            None => refused_as("query", &chain, "54001", "nested too deeply"),
        }
        refused_as("query", &"x".repeat(2 << 20), "54001", "too long");
        assert!(check("SELECT 'a\0'", &Policy::query("alpha")).is_err());
        // and the session goes on checking
        allowed("query", "SELECT 1");
    }

    #[pg_test]
    fn filters_are_conditions_on_one_collection() {
        setup();
        let filter = |f: &str| filter_statement("alpha", "events", f);
        let surface = "filter:events";
        for ok in [
            "price > 3",
            "lower(url) = '/a' AND _user IS NOT NULL",
            "url LIKE '/a%' OR url IN ('/b', '/c')",
            "coalesce(price, 0) BETWEEN 1 AND 5",
            "meta->>'k' = '1'",
        ] {
            allowed(surface, &filter(ok));
        }
        refused_as(
            surface,
            &filter("md5(url) = 'x'"),
            "42501",
            "function pg_catalog.md5(text)",
        );
        refused_as(
            surface,
            &filter("price > (SELECT 1)"),
            "42501",
            "a subquery",
        );
        refused_as(
            surface,
            &filter("EXISTS (SELECT 1 FROM beta.secret)"),
            "42501",
            "beta.secret",
        );
        refused_as(
            surface,
            &filter("url ~ 'a'"),
            "42501",
            "operator pg_catalog.~(text, text)",
        );
        refused_as(
            surface,
            &filter("now() > _time"),
            "42501",
            "function pg_catalog.now()",
        );
        refused_as(
            surface,
            &filter("true) UNION SELECT 1 FROM alpha.events WHERE (true"),
            "42501",
            "condition on the collection's rows",
        );
        refused_as(
            surface,
            &filter("true) ORDER BY (1"),
            "42501",
            "condition on the collection's rows",
        );
        refused_as(
            surface,
            "SELECT 1 FROM alpha._users WHERE true",
            "42501",
            "a filter reads only alpha.events",
        );
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT tests.policy_check('filter:events', 'alpha', $f${}$f$)",
                filter("url")
            ))
            .as_deref(),
            Some("42804"),
            "PostgreSQL wants a boolean"
        );
    }

    #[pg_test]
    fn continuous_queries_and_materialized_views() {
        setup();
        let cq = "continuous query";
        allowed(cq, "SELECT url, count(*) AS n, sum(price) AS s, beacon.approx_count_distinct(_user) AS u FROM alpha.events GROUP BY url");
        allowed(cq, "SELECT date_trunc('day', _time AT TIME ZONE 'UTC') AS d, max(price) AS m FROM alpha.events WHERE url <> '/x' GROUP BY 1");
        refused_as(
            cq,
            "SELECT now() AS t, count(*) AS n FROM alpha.events GROUP BY 1",
            "42501",
            "function pg_catalog.now()",
        );
        refused_as(
            cq,
            "SELECT url, row_number() OVER () AS r FROM alpha.events",
            "42501",
            "a window function",
        );
        refused_as(
            cq,
            "SELECT url, count(*) AS n FROM alpha.events WHERE price > (SELECT 1) GROUP BY url",
            "42501",
            "a subquery",
        );
        refused_as(
            cq,
            "SELECT current_date AS d, count(*) AS n FROM alpha.events GROUP BY 1",
            "42501",
            "clock",
        );
        // a transition table has no system columns: every capture would fail
        for column in ["ctid", "xmin", "tableoid", "cmax"] {
            refused_as(
                cq,
                &format!("SELECT {column} AS k, count(*) AS n FROM alpha.events GROUP BY 1"),
                "0A000",
                "a system column",
            );
        }
        // (xid and cid have no ordering, which count(DISTINCT) needs)
        for column in ["ctid", "tableoid"] {
            refused_as(
                cq,
                &format!("SELECT url, count(DISTINCT {column}) AS n FROM alpha.events GROUP BY 1"),
                "0A000",
                "a system column",
            );
        }
        refused_as(
            cq,
            "SELECT url, count(*) AS n FROM alpha.events WHERE xmin IS NOT NULL GROUP BY 1",
            "0A000",
            "a system column",
        );
        allowed("query", "SELECT ctid, xmin FROM alpha.events");
        let mv = "materialized view";
        allowed(
            mv,
            "SELECT url, count(*) AS n FROM alpha.events GROUP BY url",
        );
        refused_as(
            mv,
            "SELECT * FROM beta.secret",
            "42501",
            "is outside project alpha",
        );
    }
}
