use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec("SELECT beacon.create_project('other')");
        exec(
            r#"SELECT beacon.collect_batch('shop', '[
            {"collection": "pageview", "properties": {"url": "/a", "price": 5}},
            {"collection": "pageview", "properties": {"url": "/a", "price": 7}},
            {"collection": "pageview", "properties": {"url": "/b", "price": 1}}]')"#,
        );
        exec(r#"SELECT beacon.collect('other', 'secret', '{"x": 1}')"#);
    }

    #[pg_test]
    fn rows_come_back_as_jsonb() {
        setup();
        assert_eq!(
            one::<String>(
                "SELECT string_agg(r::text, '|') FROM beacon.query('shop',
                   'SELECT url, sum(price) AS total FROM pageview GROUP BY url ORDER BY url') r"
            )
            .as_deref(),
            Some(r#"{"url": "/a", "total": 12}|{"url": "/b", "total": 1}"#)
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.query('shop', 'SELECT * FROM shop.pageview', 2)"),
            2,
            "row_limit cuts the result"
        );
    }

    #[pg_test]
    fn the_callers_transaction_is_untouched_afterwards() {
        setup();
        let before = one::<String>("SELECT current_user::text");
        assert_eq!(
            count("SELECT 1 FROM beacon.query('shop', 'SELECT 1 AS one')"),
            1
        );
        assert_eq!(one::<String>("SELECT current_user::text"), before);
        assert_eq!(
            one::<String>("SELECT current_setting('transaction_read_only')").as_deref(),
            Some("off")
        );
        assert_eq!(
            one::<String>("SELECT current_setting('search_path')"),
            one::<String>("SELECT reset_val FROM pg_settings WHERE name = 'search_path'")
        );
        // still writable: the read-only flag was the query's alone
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"url": "/c"}')"#);
        // and a failing query restores everything too
        assert!(sqlstate_of("SELECT * FROM beacon.query('shop', 'SELECT 1/0')").is_some());
        assert_eq!(one::<String>("SELECT current_user::text"), before);
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"url": "/d"}')"#);
    }

    #[pg_test]
    fn refusals_and_bad_arguments() {
        setup();
        let cases = [
            ("SELECT * FROM other.secret", "42501"),
            ("SELECT * FROM pg_catalog.pg_authid", "42501"),
            ("SELECT pg_sleep(1)", "42501"),
            ("DELETE FROM pageview", "42501"),
            ("SELECT 1; SELECT 2", "42501"),
        ];
        for (sql, state) in cases {
            assert_eq!(
                sqlstate_of(&format!("SELECT * FROM beacon.query('shop', $q${sql}$q$)")).as_deref(),
                Some(state),
                "{sql}"
            );
        }
        assert_eq!(
            sqlstate_of("SELECT * FROM beacon.query('shop', 'SELECT 1', 0)").as_deref(),
            Some("22023")
        );
        assert_eq!(
            sqlstate_of("SELECT * FROM beacon.query('nope', 'SELECT 1')").as_deref(),
            Some("3F000")
        );
        // a table that does not exist in the project is PostgreSQL's own error
        assert_eq!(
            sqlstate_of("SELECT * FROM beacon.query('shop', 'SELECT * FROM secret')").as_deref(),
            Some("42P01")
        );
    }

    /// Results are bounded in bytes as well as rows, and the caller's session settings are
    /// what they were once the call returns.
    #[pg_test]
    fn results_are_bounded_in_bytes_and_settings_come_back() {
        setup();
        exec(r#"SELECT beacon.collect('shop', 'notes', '{"body": "x"}')"#);
        exec("UPDATE shop.notes SET body = pg_catalog.repeat('x', 5000)");
        exec("SET beacon.query_max_bytes = 4096");
        assert_eq!(
            sqlstate_of("SELECT count(*) FROM beacon.query('shop', 'SELECT body FROM notes')")
                .as_deref(),
            Some("54000")
        );
        exec("RESET beacon.query_max_bytes");
        exec("SET search_path = public, pg_catalog");
        exec("SET standard_conforming_strings = off");
        assert_eq!(
            count("SELECT 1 FROM beacon.query('shop', 'SELECT body FROM notes')"),
            1
        );
        assert_eq!(
            one::<String>("SELECT current_setting('search_path') || ' ' || current_setting('standard_conforming_strings')")
                .as_deref(),
            Some("public, pg_catalog off")
        );
    }
}
