use pgrx::prelude::*;

#[pg_schema]
mod tests {
    const RELATIONS: &str = "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class c \
                             JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'shop'";
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec(
            "CREATE TABLE shop.src (id bigserial PRIMARY KEY, ts timestamptz, country text,
                                    product int, price double precision, qty bigint, flag boolean)",
        );
    }

    /// Rows in the view but not in the defining query, plus the reverse.
    fn differences(view: &str, query: &str) -> i64 {
        count(&format!(
            "(SELECT * FROM {view} EXCEPT ALL ({query})) UNION ALL (({query}) EXCEPT ALL SELECT * FROM {view})"
        ))
    }

    fn workload() {
        exec(
            "INSERT INTO shop.src (ts, country, product, price, qty, flag)
             SELECT timestamptz '2026-01-01 00:00+00' + i * interval '17 minutes',
                    CASE WHEN i % 7 = 0 THEN NULL ELSE 'c' || (i % 5) END, i % 13,
                    CASE WHEN i % 11 = 0 THEN NULL ELSE (i % 100) * 1.5 END, i % 9, i % 3 = 0
               FROM generate_series(1, 400) i",
        );
        exec("UPDATE shop.src SET price = price + 1000, country = 'c9' WHERE id % 10 = 3");
        exec("DELETE FROM shop.src WHERE id % 6 = 1");
        exec("UPDATE shop.src SET qty = NULL, flag = NULL WHERE id % 17 = 0");
        exec("INSERT INTO shop.src (ts, country, product, price, qty, flag) VALUES (now(), NULL, NULL, NULL, NULL, NULL)");
        exec("DELETE FROM shop.src WHERE price = (SELECT max(price) FROM shop.src)");
    }

    // integer-valued prices keep float sums exact, so EXCEPT can compare them exactly here;
    // the out-of-process oracle compares floats with a tolerance
    const SHAPES: [&str; 8] = [
        "SELECT country, count(*) AS n, sum(price) AS revenue FROM src GROUP BY country",
        "SELECT product, count(price), min(price), max(price), avg(qty) FROM src GROUP BY product",
        "SELECT date_trunc('hour', ts) AS hour, count(*) AS n, max(ts) AS last FROM src GROUP BY 1",
        "SELECT lower(country) AS c, bool_and(flag), bool_or(flag), sum(qty) AS q FROM src WHERE product > 2 GROUP BY lower(country)",
        "SELECT count(*) AS n, sum(qty) AS q, min(country) AS first FROM src",
        "SELECT product % 4 AS bucket, beacon.approx_count_distinct(country) AS countries FROM src GROUP BY product % 4",
        "SELECT count(*) AS n FROM src GROUP BY country, flag",
        "SELECT country, count(DISTINCT product) AS products, count(DISTINCT flag) AS flags FROM src GROUP BY country",
    ];

    fn check_all_shapes(mode: &str) {
        setup();
        // half the queries exist before the data (captured), half after (backfilled)
        for (i, shape) in SHAPES.iter().enumerate().take(5) {
            exec(&format!(
                "SELECT beacon.create_continuous_query('shop', 'q{i}', $q${shape}$q$, '{mode}')"
            ));
        }
        workload();
        for (i, shape) in SHAPES.iter().enumerate().skip(5) {
            exec(&format!(
                "SELECT beacon.create_continuous_query('shop', 'q{i}', $q${shape}$q$, '{mode}')"
            ));
        }
        exec("INSERT INTO shop.src (ts, country, product, price, qty, flag) SELECT now(), 'c1', 5, 3, 4, true FROM generate_series(1, 5)");
        exec("SET LOCAL search_path = shop, public");
        for (i, shape) in SHAPES.iter().enumerate() {
            assert_eq!(
                differences(&format!("shop.q{i}"), shape),
                0,
                "{mode} before compaction: {shape}"
            );
        }
        exec("SELECT beacon.compact()");
        for (i, shape) in SHAPES.iter().enumerate() {
            assert_eq!(
                differences(&format!("shop.q{i}"), shape),
                0,
                "{mode} after compaction: {shape}"
            );
        }
        exec("TRUNCATE shop.src");
        exec("INSERT INTO shop.src (country, price) VALUES ('z', 1)");
        for (i, shape) in SHAPES.iter().enumerate() {
            assert_eq!(
                differences(&format!("shop.q{i}"), shape),
                0,
                "{mode} after truncate: {shape}"
            );
        }
    }

    #[pg_test]
    fn views_equal_their_query_async() {
        check_all_shapes("async");
        // the last insert left one delta per query, except q3 whose WHERE excludes the row
        // (and its product and flag are NULL: no distinct value changed)
        assert_eq!(
            one::<i64>("SELECT sum(pending_deltas)::bigint FROM beacon.continuous_queries"),
            Some(7)
        );
        exec("SELECT beacon.compact()");
        assert_eq!(
            one::<i64>("SELECT sum(pending_deltas)::bigint FROM beacon.continuous_queries"),
            Some(0)
        );
    }

    #[pg_test]
    fn views_equal_their_query_immediate() {
        check_all_shapes("immediate");
    }

    #[pg_test]
    fn view_has_the_query_columns_and_types() {
        setup();
        exec("SELECT beacon.create_continuous_query('shop', 'v', 'SELECT country, count(*), sum(qty) AS q, avg(price), stddev(price) FROM src GROUP BY country')");
        assert_eq!(
            one::<String>("SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'shop.v'::regclass AND attnum > 0").as_deref(),
            Some("country text, count bigint, q numeric, avg double precision, stddev double precision")
        );
        assert_eq!(count("SELECT 1 FROM pg_trigger WHERE tgrelid = 'shop.src'::regclass AND NOT tgisinternal"), 4);
        exec("SELECT beacon.create_continuous_query('shop', 'w', 'SELECT product, max(price) FROM src GROUP BY product', 'immediate')");
        assert_eq!(count("SELECT 1 FROM pg_trigger WHERE tgrelid = 'shop.src'::regclass AND NOT tgisinternal"), 4, "one trigger per event serves every query");
        exec("SELECT beacon.drop_continuous_query('shop', 'v')");
        exec("SELECT beacon.drop_continuous_query('shop', 'w')");
        assert_eq!(count("SELECT 1 FROM pg_trigger WHERE tgrelid = 'shop.src'::regclass AND NOT tgisinternal"), 0);
        assert_eq!(count("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'shop' AND relname LIKE '\\_cq\\_%'"), 0);
        assert_eq!(
            count("SELECT 1 FROM pg_proc WHERE proname LIKE '\\_cq\\_capture%'"),
            0
        );
    }

    #[pg_test]
    fn unsupported_queries_are_refused_and_leave_nothing() {
        setup();
        let cases = [
            (
                "SELECT country, count(*) FROM src JOIN src s2 USING (id) GROUP BY country",
                "0A000",
            ),
            (
                "SELECT country, count(*) FROM src GROUP BY country LIMIT 5",
                "0A000",
            ),
            (
                "SELECT country, count(*) FROM src GROUP BY country HAVING count(*) > 1",
                "0A000",
            ),
            (
                "SELECT random() > 0.5 AS r, count(*) FROM src GROUP BY 1",
                "0A000",
            ),
            (
                "SELECT country, count(*) FROM src WHERE ts > now() GROUP BY country",
                "0A000",
            ),
            (
                "SELECT country, string_agg(country, ',') FROM src GROUP BY country",
                "0A000",
            ),
            (
                "SELECT country, sum(price) + 1 FROM src GROUP BY country",
                "0A000",
            ),
            ("SELECT country, row_number() OVER () FROM src", "0A000"),
            ("SELECT * FROM src", "0A000"),
            (
                "SELECT country, count(*) FROM public.t GROUP BY country",
                "0A000",
            ),
            (
                "SELECT country, count(*) FROM nope GROUP BY country",
                "42P01",
            ),
            (
                "SELECT country, count(*) FROM src; DROP TABLE shop.src",
                "0A000",
            ),
            ("SELECT nosuchcolumn, count(*) FROM src GROUP BY 1", "42703"),
        ];
        let relations_before = one::<String>(RELATIONS);
        for (query, state) in cases {
            let sql = format!(
                "SELECT beacon.create_continuous_query('shop', 'bad', {})",
                crate::names::quote_literal(query)
            );
            assert_eq!(sqlstate_of(&sql).as_deref(), Some(state), "{query}");
        }
        assert_eq!(
            sqlstate_of("SELECT beacon.create_continuous_query('shop', 'bad', 'SELECT count(*) FROM src', 'sometimes')").as_deref(),
            Some("22023")
        );
        assert_eq!(
            sqlstate_of(
                "SELECT beacon.create_continuous_query('shop', 'src', 'SELECT count(*) FROM src')"
            )
            .as_deref(),
            Some("42710")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.create_continuous_query('shop', 'Bad Name', 'SELECT count(*) FROM src')").as_deref(),
            Some("42602")
        );
        assert_eq!(count("SELECT 1 FROM pg_trigger WHERE tgrelid = 'shop.src'::regclass AND NOT tgisinternal"), 0);
        assert_eq!(one::<String>(RELATIONS), relations_before);
        assert_eq!(count("SELECT 1 FROM beacon.continuous_queries"), 0);
    }

    #[pg_test]
    fn source_columns_in_use_cannot_be_dropped() {
        setup();
        exec("SELECT beacon.create_continuous_query('shop', 'v', 'SELECT country, sum(price) FROM src GROUP BY country')");
        assert_eq!(
            sqlstate_of("ALTER TABLE shop.src DROP COLUMN price").as_deref(),
            Some("2BP01")
        );
        assert_eq!(sqlstate_of("DROP TABLE shop.src").as_deref(), Some("2BP01"));
        exec("ALTER TABLE shop.src DROP COLUMN qty");
        // CASCADE drops the source anyway, and the query with it (src/lifecycle)
        exec("DROP TABLE shop.src CASCADE");
        assert_eq!(
            sqlstate_of("SELECT beacon.drop_continuous_query('shop', 'v')").as_deref(),
            Some("42704")
        );
        assert_eq!(count("SELECT 1 FROM beacon.continuous_queries"), 0);
        assert_eq!(count("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE nspname = 'shop' AND relname LIKE '\\_cq\\_%'"), 0);
        assert_eq!(
            count("SELECT 1 FROM pg_proc WHERE proname LIKE '\\_cq\\_capture%'"),
            0
        );
    }

    #[pg_test]
    fn keys_use_the_time_zone_fixed_at_creation() {
        setup();
        exec("SET LOCAL TimeZone = 'America/New_York'");
        exec("SELECT beacon.create_continuous_query('shop', 'days', 'SELECT date_trunc(''day'', ts) AS day, count(*) FROM src GROUP BY 1', 'immediate')");
        exec("SET LOCAL TimeZone = 'Asia/Kolkata'");
        exec("INSERT INTO shop.src (ts) VALUES ('2026-03-01 03:00+00'), ('2026-03-01 06:00+00')");
        assert_eq!(
            one::<String>("SELECT current_setting('TimeZone')").as_deref(),
            Some("Asia/Kolkata"),
            "the writer's setting is untouched"
        );
        exec("SET LOCAL TimeZone = 'America/New_York'");
        assert_eq!(
            differences(
                "shop.days",
                "SELECT date_trunc('day', ts) AS day, count(*) FROM shop.src GROUP BY 1"
            ),
            0
        );
        assert_eq!(
            count("SELECT 1 FROM shop.days"),
            2,
            "03:00 UTC is still Feb 28 in New York"
        );
        assert_eq!(
            one::<String>("SELECT time_zone FROM beacon.continuous_queries WHERE name = 'days'")
                .as_deref(),
            Some("America/New_York")
        );
    }

    #[pg_test]
    fn events_from_collect_reach_queries_in_both_modes() {
        exec("SELECT beacon.create_project('shop')");
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"url": "/first"}')"#);
        exec("SELECT beacon.create_continuous_query('shop', 'now_urls', 'SELECT url, count(*) AS n FROM pageview GROUP BY url', 'immediate')");
        exec("SELECT beacon.create_continuous_query('shop', 'later_urls', 'SELECT url, count(*) AS n FROM pageview GROUP BY url', 'async')");
        // single events go through INSERT … RETURNING, batches through a plain INSERT
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"url": "/single"}')"#);
        exec(
            r#"SELECT beacon.collect_batch('shop', '[{"collection": "pageview", "properties": {"url": "/single"}}]')"#,
        );
        for view in ["shop.now_urls", "shop.later_urls"] {
            assert_eq!(
                differences(
                    view,
                    "SELECT url, count(*) AS n FROM shop.pageview GROUP BY url"
                ),
                0,
                "{view}"
            );
            assert_eq!(
                one::<i64>(&format!("SELECT n FROM {view} WHERE url = '/single'")),
                Some(2),
                "{view}"
            );
        }
    }

    /// Merging deltas recomputes only groups a delete made dirty: after inserts alone the
    /// merge reads no row of the source, even for a key that is an expression (whose
    /// groups cannot be looked up through an index); after a delete it is exact.
    #[pg_test]
    fn pg_merging_inserts_reads_no_source_row() {
        setup();
        let query = "SELECT date_trunc('hour', ts) AS hour, count(*) AS n, max(price) AS top, \
                     sum(price) AS revenue FROM src GROUP BY 1";
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'hourly', $q${query}$q$, 'async')"
        ));
        exec(
            "INSERT INTO shop.src (ts, price) SELECT timestamptz '2026-01-01 00:00+00' + i * interval '7 minutes', i
               FROM generate_series(1, 300) i",
        );
        let read = || {
            one::<i64>(
                "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_catalog.pg_stat_xact_user_tables
                  WHERE relid = 'shop.src'::regclass",
            )
            .unwrap_or(0)
        };
        let before = read();
        assert!(one::<i64>("SELECT beacon.compact('shop', 'hourly')").unwrap_or(0) > 0);
        assert_eq!(read(), before, "a merge of inserts read the source");
        let expected = query.replace("FROM src", "FROM shop.src");
        assert_eq!(differences("shop.hourly", &expected), 0);
        // the counter does see this transaction's reads: the check above read the source
        assert!(read() > before, "pg_stat_xact_user_tables counts no read");
        exec("DELETE FROM shop.src WHERE price IN (300, 150, 7)");
        exec("SELECT beacon.compact('shop', 'hourly')");
        assert_eq!(differences("shop.hourly", &expected), 0);
        assert_eq!(
            one::<f64>("SELECT top FROM shop.hourly ORDER BY hour DESC LIMIT 1"),
            Some(299.0)
        );
    }
}
