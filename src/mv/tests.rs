use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec(
            r#"SELECT beacon.collect_batch('shop', '[
            {"collection": "pageview", "properties": {"url": "/a", "price": 5}},
            {"collection": "pageview", "properties": {"url": "/b", "price": 1}}]')"#,
        );
    }

    #[pg_test]
    fn create_refresh_drop() {
        setup();
        exec("SELECT beacon.create_materialized_view('shop', 'by_url', 'SELECT url, count(*) AS n FROM pageview GROUP BY url', '1 minute')");
        assert_eq!(count("SELECT 1 FROM shop.by_url"), 2);
        assert_eq!(
            one::<bool>("SELECT concurrent AND last_refresh IS NOT NULL AND last_error IS NULL FROM beacon.materialized_views WHERE name = 'by_url'"),
            Some(true),
            "GROUP BY keys give a unique index, so refreshes run concurrently"
        );
        assert_eq!(
            count(
                "SELECT 1 FROM pg_index WHERE indrelid = 'shop.by_url'::regclass AND indisunique"
            ),
            1
        );
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"url": "/c"}')"#);
        exec("SELECT beacon.refresh_materialized_view('shop', 'by_url')");
        assert_eq!(count("SELECT 1 FROM shop.by_url"), 3);
        exec(
            "SELECT beacon.create_materialized_view('shop', 'all_rows', 'SELECT url FROM pageview')",
        );
        assert_eq!(
            one::<bool>(
                "SELECT NOT concurrent FROM beacon.materialized_views WHERE name = 'all_rows'"
            ),
            Some(true)
        );
        exec("SELECT beacon.refresh_materialized_view('shop', 'all_rows')");
        exec("SELECT beacon.drop_materialized_view('shop', 'by_url')");
        assert_eq!(
            one::<bool>("SELECT to_regclass('shop.by_url') IS NULL"),
            Some(true)
        );
        assert_eq!(count("SELECT 1 FROM beacon.materialized_views"), 1);
    }

    #[pg_test]
    fn refusals_leave_nothing_behind() {
        setup();
        exec("SELECT beacon.create_project('other')");
        let cases = [
            (
                "SELECT beacon.create_materialized_view('shop', 'v', 'SELECT * FROM other._users')",
                "42501",
            ),
            (
                "SELECT beacon.create_materialized_view('shop', 'v', 'SELECT pg_sleep(1)')",
                "42501",
            ),
            (
                "SELECT beacon.create_materialized_view('shop', 'pageview', 'SELECT 1 AS x')",
                "42710",
            ),
            (
                "SELECT beacon.create_materialized_view('shop', 'Bad Name', 'SELECT 1 AS x')",
                "42602",
            ),
            (
                "SELECT beacon.create_materialized_view('shop', 'v', 'SELECT 1 AS x', '0 seconds')",
                "22023",
            ),
            (
                "SELECT beacon.create_materialized_view('shop', 'v', 'SELECT nosuch FROM pageview')",
                "42703",
            ),
            (
                "SELECT beacon.refresh_materialized_view('shop', 'nosuch')",
                "42704",
            ),
            (
                "SELECT beacon.drop_materialized_view('shop', 'nosuch')",
                "42704",
            ),
        ];
        for (sql, state) in cases {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        assert_eq!(
            one::<bool>("SELECT to_regclass('shop.v') IS NULL"),
            Some(true)
        );
        assert_eq!(count("SELECT 1 FROM beacon.materialized_view"), 0);
    }

    #[pg_test]
    fn a_failing_refresh_is_recorded_on_the_scheduler_path_and_raised_on_demand() {
        setup();
        exec("SELECT beacon.create_materialized_view('shop', 'fragile', 'SELECT url, 10 / (3 - count(*)) AS r FROM pageview GROUP BY url')");
        exec(
            r#"SELECT beacon.collect_batch('shop', '[
            {"collection": "pageview", "properties": {"url": "/a"}},
            {"collection": "pageview", "properties": {"url": "/a"}}]')"#,
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.refresh_materialized_view('shop', 'fragile')").as_deref(),
            Some("22012")
        );
        assert_eq!(
            one::<bool>("SELECT beacon._refresh_materialized_view('shop', 'fragile', false, true)"),
            Some(true)
        );
        assert_eq!(
            one::<String>(
                "SELECT last_error FROM beacon.materialized_views WHERE name = 'fragile'"
            )
            .as_deref(),
            Some("division by zero")
        );
        assert_eq!(
            count("SELECT 1 FROM shop.fragile"),
            2,
            "the last good contents stay"
        );
        exec("DELETE FROM shop.pageview WHERE url = '/a'");
        exec("SELECT beacon._refresh_materialized_view('shop', 'fragile', false, true)");
        assert_eq!(
            one::<bool>(
                "SELECT last_error IS NULL FROM beacon.materialized_views WHERE name = 'fragile'"
            ),
            Some(true),
            "a good refresh clears the error"
        );
        assert_eq!(count("SELECT 1 FROM shop.fragile"), 1);
    }

    /// A stored query that the running policy refuses (a catalog row tampered with, or
    /// written by a more permissive version) stops regenerate, naming the view, and is
    /// not rebuilt.
    #[pg_test]
    fn regenerate_rechecks_stored_queries() {
        setup();
        exec("SELECT beacon.create_materialized_view('shop', 'by_url', 'SELECT url, count(*) AS n FROM pageview GROUP BY url', '1 minute')");
        exec(
            "UPDATE beacon.materialized_view SET query = 'SELECT (''PG_VERSION''::text).pg_read_file AS v FROM shop.pageview'
              WHERE name = 'by_url'",
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.regenerate()").as_deref(),
            Some("42501")
        );
        assert_eq!(
            count("SELECT 1 FROM pg_attribute WHERE attrelid = 'shop.by_url'::regclass AND attname = 'v'"),
            0,
            "the refused query was not materialized"
        );
    }
}
