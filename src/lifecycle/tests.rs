use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    const QUERY: &str = "SELECT a, count(*) AS n, sum(b) AS total FROM pageview GROUP BY a";

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec(
            r#"SELECT beacon.collect_batch('shop', '[{"collection": "pageview", "properties": {"a": "x", "b": 1, "c": true}},
                                                      {"collection": "pageview", "properties": {"a": "y", "b": 2, "c": false}}]')"#,
        );
    }

    /// Catalog rows, generated objects and relations pg_beacon keeps for shop.pageview.
    fn traces() -> i64 {
        count(
            "SELECT 1 FROM beacon.collection WHERE project = 'shop' AND name = 'pageview'
             UNION ALL SELECT 1 FROM beacon.field WHERE project = 'shop' AND collection = 'pageview'
             UNION ALL SELECT 1 FROM beacon.continuous_query WHERE project = 'shop'
             UNION ALL SELECT 1 FROM beacon.subscription WHERE project = 'shop'
             UNION ALL SELECT 1 FROM beacon.materialized_view WHERE project = 'shop'
             UNION ALL SELECT 1 FROM beacon.generated_object WHERE project = 'shop'
             UNION ALL SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                        WHERE n.nspname = 'shop' AND p.proname ~ '^_(cq|stream)_'
             UNION ALL SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'shop' AND (c.relname ~ '^_cq_' OR c.relname IN ('pageview', 'v', 'mv'))",
        )
    }

    fn differences(view: &str, query: &str) -> i64 {
        exec("SET LOCAL search_path = shop, public");
        let n = count(&format!(
            "(SELECT * FROM {view} EXCEPT ALL ({query})) UNION ALL (({query}) EXCEPT ALL SELECT * FROM {view})"
        ));
        exec("SET LOCAL search_path = pg_catalog, public");
        n
    }

    fn with_everything() {
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{QUERY}', 'async')"
        ));
        exec("SELECT beacon.subscribe('shop', 'pageview', 'b > 1')");
        exec("SELECT beacon.create_materialized_view('shop', 'mv', 'SELECT a, count(*) FROM pageview GROUP BY a')");
    }

    #[pg_test]
    fn drop_collection_refuses_while_used_and_cascades_on_request() {
        setup();
        with_everything();
        let before = traces();
        assert_eq!(
            sqlstate_of("SELECT beacon.drop_collection('shop', 'pageview')").as_deref(),
            Some("2BP01")
        );
        assert_eq!(traces(), before, "a refusal changes nothing");
        exec("SELECT beacon.drop_collection('shop', 'pageview', cascade => true)");
        assert_eq!(traces(), 0, "nothing of the collection is left");
        assert_eq!(
            count("SELECT 1 FROM beacon.projects WHERE name = 'shop' AND collections > 0"),
            0
        );
        // the name is free: collect, define and new queries and subscriptions work
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": 5, "d": "new"}')"#);
        assert_eq!(
            one::<String>("SELECT string_agg(property || ':' || type, ',' ORDER BY property) FROM beacon.fields WHERE project = 'shop' AND collection = 'pageview' AND NOT system"),
            Some("a:bigint,d:text".into())
        );
        exec(r#"SELECT beacon.define_collection('shop', 'pageview', '{"b": "bigint"}')"#);
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{QUERY}', 'immediate')"
        ));
        exec("SELECT beacon.subscribe('shop', 'pageview', 'b > 1')");
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": 5, "b": 7}')"#);
        assert_eq!(differences("shop.v", QUERY), 0);
        assert_eq!(one::<i64>("SELECT sum(n)::bigint FROM shop.v"), Some(2));
    }

    #[pg_test]
    fn drop_collection_without_dependents_and_its_refusals() {
        setup();
        exec(r#"SELECT beacon.collect('shop', 'other', '{"z": 1}')"#);
        for (sql, state) in [
            ("SELECT beacon.drop_collection('shop', 'missing')", "42P01"),
            ("SELECT beacon.drop_collection('shop', 'Bad Name')", "42602"),
            (
                "SELECT beacon.drop_collection('shop', '_rejected')",
                "42602",
            ),
            ("SELECT beacon.drop_collection('nope', 'pageview')", "3F000"),
        ] {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        exec("CREATE ROLE lc_writer");
        exec("CREATE ROLE lc_outsider");
        exec("SELECT beacon.grant('shop', 'lc_writer', 'write')");
        for role in ["lc_writer", "lc_outsider"] {
            exec(&format!("SET ROLE {role}"));
            assert_eq!(
                sqlstate_of("SELECT beacon.drop_collection('shop', 'pageview')").as_deref(),
                Some("42501"),
                "{role}"
            );
            exec("RESET ROLE");
        }
        exec("SELECT beacon.drop_collection('shop', 'pageview')");
        assert_eq!(
            count("SELECT 1 FROM beacon.fields WHERE collection = 'pageview'"),
            0
        );
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname = 'pageview'"),
            0
        );
        // the other collection is untouched
        assert_eq!(
            count("SELECT 1 FROM beacon.fields WHERE collection = 'other' AND NOT system"),
            1
        );
        assert_eq!(count("SELECT 1 FROM shop.other"), 1);
    }

    #[pg_test]
    fn a_table_dropped_by_hand_leaves_no_catalog_behind() {
        setup();
        exec("SELECT beacon.subscribe('shop', 'pageview', 'b > 1')");
        exec("DROP TABLE shop.pageview");
        assert_eq!(traces(), 0);
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"b": "now text"}')"#);
        assert_eq!(
            one::<String>("SELECT string_agg(property || ':' || type, ',') FROM beacon.fields WHERE project = 'shop' AND collection = 'pageview' AND NOT system"),
            Some("b:text".into())
        );
        // a query's source dropped with CASCADE takes the query along
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{}', 'immediate')",
            "SELECT b, count(*) FROM pageview GROUP BY b"
        ));
        exec("DROP TABLE shop.pageview CASCADE");
        assert_eq!(traces(), 0);
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"b": 1}')"#);
        assert_eq!(count("SELECT 1 FROM shop.pageview"), 1);
    }

    #[pg_test]
    fn dropping_a_read_column_with_cascade_drops_the_query_and_the_field() {
        setup();
        for mode in ["async", "immediate"] {
            exec(&format!(
                "SELECT beacon.create_continuous_query('shop', 'v_{mode}', '{QUERY}', '{mode}')"
            ));
        }
        exec("SELECT beacon.create_continuous_query('shop', 'keeps', 'SELECT a, count(*) FROM pageview GROUP BY a')");
        assert_eq!(
            sqlstate_of("ALTER TABLE shop.pageview DROP COLUMN b").as_deref(),
            Some("2BP01")
        );
        exec("ALTER TABLE shop.pageview DROP COLUMN b CASCADE");
        assert_eq!(
            one::<String>("SELECT string_agg(name, ',') FROM beacon.continuous_queries WHERE project = 'shop'"),
            Some("keeps".into())
        );
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname ~ '^(_cq_)?v_(async|immediate)'"),
            0
        );
        assert_eq!(count("SELECT 1 FROM beacon.fields WHERE property = 'b'"), 0);
        // collect works; an event carrying b adds the column again
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": "x", "b": "again"}')"#);
        assert_eq!(
            one::<String>(
                "SELECT type FROM beacon.fields WHERE project = 'shop' AND property = 'b'"
            ),
            Some("text".into())
        );
        assert_eq!(count("SELECT 1 FROM shop.pageview WHERE b = 'again'"), 1);
        assert_eq!(count("SELECT 1 FROM shop._rejected"), 0);
        assert_eq!(
            differences("shop.keeps", "SELECT a, count(*) FROM pageview GROUP BY a"),
            0
        );
        // a column no query reads goes quietly, its field with it
        exec("ALTER TABLE shop.pageview DROP COLUMN c");
        assert_eq!(count("SELECT 1 FROM beacon.fields WHERE property = 'c'"), 0);
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": "x", "c": 3}')"#);
        assert_eq!(count("SELECT 1 FROM shop.pageview WHERE c = 3"), 1);
    }

    #[pg_test]
    fn a_hidden_relation_dropped_by_hand_drops_its_query() {
        setup();
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{QUERY}', 'immediate')"
        ));
        exec("SELECT beacon.create_continuous_query('shop', 'w', 'SELECT c, count(*) FROM pageview GROUP BY c')");
        exec("DROP VIEW shop._cq_v_columns");
        assert_eq!(
            one::<String>("SELECT string_agg(name, ',') FROM beacon.continuous_queries"),
            Some("w".into())
        );
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname ~ '^(_cq_)?v(_|$)'"),
            0
        );
        exec("DROP TABLE shop._cq_w_state CASCADE");
        assert_eq!(count("SELECT 1 FROM beacon.continuous_queries"), 0);
        assert_eq!(
            count("SELECT 1 FROM pg_trigger WHERE tgrelid = 'shop.pageview'::regclass AND NOT tgisinternal"),
            0
        );
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": "z", "b": 3}')"#);
        // a capture function dropped by hand is generated again
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{QUERY}', 'immediate')"
        ));
        exec("DROP FUNCTION shop._cq_capture_pageview() CASCADE");
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": "z", "b": 4}')"#);
        assert_eq!(differences("shop.v", QUERY), 0);
    }

    #[pg_test]
    fn a_dropped_filter_column_ends_its_subscriptions_only() {
        setup();
        let stale = one::<String>("SELECT beacon.subscribe('shop', 'pageview', 'b > 1')").unwrap();
        let kept =
            one::<String>("SELECT beacon.subscribe('shop', 'pageview', 'a = ''x''')").unwrap();
        exec("ALTER TABLE shop.pageview DROP COLUMN b");
        assert_eq!(
            one::<String>("SELECT string_agg(channel, ',') FROM beacon.subscriptions"),
            Some(kept.clone())
        );
        assert_ne!(stale, kept);
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": "x", "b": 9}')"#);
        assert_eq!(
            one::<i64>(&format!("SELECT events_sent + events_failed FROM beacon.subscriptions WHERE channel = '{kept}'")),
            Some(1)
        );
    }

    #[pg_test]
    fn renames_and_retyping_by_hand() {
        setup();
        // a column: its field follows, events keep arriving in it
        exec("ALTER TABLE shop.pageview RENAME COLUMN b TO amount");
        assert_eq!(
            one::<String>(
                "SELECT column_name FROM beacon.fields WHERE project = 'shop' AND property = 'b'"
            ),
            Some("amount".into())
        );
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"a": "x", "b": 10}')"#);
        assert_eq!(count("SELECT 1 FROM shop.pageview WHERE amount = 10"), 1);
        // a column a query reads: refused
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', 'v', '{}')",
            "SELECT a, count(*) FROM pageview GROUP BY a"
        ));
        assert_eq!(
            sqlstate_of("ALTER TABLE shop.pageview RENAME COLUMN a TO letter").as_deref(),
            Some("0A000")
        );
        // the table: refused
        for ddl in [
            "ALTER TABLE shop.pageview RENAME TO views",
            "ALTER TABLE shop.pageview SET SCHEMA public",
        ] {
            assert_eq!(sqlstate_of(ddl).as_deref(), Some("0A000"), "{ddl}");
        }
        exec("SELECT beacon.drop_continuous_query('shop', 'v')");
        assert_eq!(
            sqlstate_of("ALTER TABLE shop.pageview RENAME TO views").as_deref(),
            Some("0A000")
        );
        // a type: the catalog records it, and values are checked against it
        exec("ALTER TABLE shop.pageview ALTER COLUMN amount TYPE text");
        assert_eq!(
            one::<String>(
                "SELECT type FROM beacon.fields WHERE project = 'shop' AND property = 'b'"
            ),
            Some("text".into())
        );
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"b": "lots"}')"#);
        assert_eq!(
            count("SELECT 1 FROM shop.pageview WHERE amount = 'lots'"),
            1
        );
        exec("ALTER TABLE shop.pageview ALTER COLUMN c TYPE integer USING c::integer");
        assert_eq!(
            one::<String>(
                "SELECT type FROM beacon.fields WHERE project = 'shop' AND property = 'c'"
            ),
            Some("integer".into())
        );
        // a type pg_beacon does not write: such values go to _rejected, never an error
        exec(r#"SELECT beacon.collect('shop', 'pageview', '{"c": 1}')"#);
        assert_eq!(count("SELECT 1 FROM shop._rejected"), 1);
        // system columns are pg_beacon's
        for ddl in [
            "ALTER TABLE shop.pageview DROP COLUMN _time",
            "ALTER TABLE shop.pageview DROP COLUMN _user",
            "ALTER TABLE shop.pageview RENAME COLUMN _time TO t",
            "ALTER TABLE shop.pageview ALTER COLUMN _user TYPE varchar(10)",
        ] {
            assert_eq!(sqlstate_of(ddl).as_deref(), Some("0A000"), "{ddl}");
        }
        // a type change that keeps the type in other words is no change
        exec("ALTER TABLE shop.pageview ALTER COLUMN a SET STATISTICS 100");
        assert_eq!(
            one::<String>(
                "SELECT type FROM beacon.field WHERE project = 'shop' AND property = 'a'"
            ),
            Some("text".into())
        );
    }
}
