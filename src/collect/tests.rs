use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
    }

    fn column_type(table: &str, column: &str) -> Option<String> {
        Spi::get_one_with_args::<String>(
            "SELECT (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                       WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped)",
            &[table.into(), column.into()],
        )
        .unwrap()
    }

    #[pg_test]
    fn collect_creates_typed_table_from_first_values() {
        setup();
        let id = one::<i64>(
            r#"SELECT beacon.collect('shop', 'pageview', '{
                "url": "/cart", "price": 12.5, "qty": 3, "ok": true,
                "at": "2024-05-01T10:00:00Z", "tags": ["a", "b"], "ids": [1, 2],
                "mixed": [1, "a"], "meta": {"k": [1, {"x": null}]}, "gone": null,
                "big": 123456789012345678901234567890, "_user": "u1",
                "_time": "2024-01-02 03:04:05+02"}')"#,
        );
        assert!(id.is_some());
        let t = "shop.pageview";
        let expect = [
            ("_id", "bigint"),
            ("_time", "timestamp with time zone"),
            ("_user", "text"),
            ("url", "text"),
            ("price", "double precision"),
            ("qty", "bigint"),
            ("ok", "boolean"),
            ("at", "timestamp with time zone"),
            ("tags", "text[]"),
            ("ids", "bigint[]"),
            ("mixed", "jsonb"),
            ("meta", "jsonb"),
            ("big", "numeric"),
        ];
        for (column, ty) in expect {
            assert_eq!(column_type(t, column).as_deref(), Some(ty), "{column}");
        }
        assert_eq!(
            column_type(t, "gone"),
            None,
            "a null value creates no column"
        );
        assert_eq!(
            one::<String>("SELECT format('%s|%s|%s|%s|%s|%s|%s', url, price, qty, ok, tags, big, _user) FROM shop.pageview").as_deref(),
            Some("/cart|12.5|3|t|{a,b}|123456789012345678901234567890|u1")
        );
        assert_eq!(
            one::<bool>("SELECT _time = '2024-01-02 01:04:05+00' AND at = '2024-05-01 10:00:00+00' AND meta = '{\"k\": [1, {\"x\": null}]}' FROM shop.pageview"),
            Some(true)
        );
        assert_eq!(one::<i64>("SELECT _id FROM shop.pageview"), id);
        assert_eq!(
            count("SELECT 1 FROM pg_indexes WHERE schemaname = 'shop' AND tablename = 'pageview' AND indexdef LIKE '%USING brin (_time)%'"),
            1
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.fields WHERE project = 'shop' AND collection = 'pageview'"),
            13
        );
    }

    #[pg_test]
    fn lossless_coercion_only_and_rejected_events_are_kept() {
        setup();
        exec(
            r#"SELECT beacon.collect('shop', 'buy', '{"price": 1.5, "label": "x", "n": 1, "when": "2024-01-01T00:00:00Z"}')"#,
        );
        // integer into double precision, number and boolean into text: nothing lost
        assert!(one::<i64>(
            r#"SELECT beacon.collect('shop', 'buy', '{"price": 2, "label": 7.25}')"#
        )
        .is_some());
        assert!(one::<i64>(r#"SELECT beacon.collect('shop', 'buy', '{"label": true}')"#).is_some());
        assert_eq!(
            one::<String>("SELECT string_agg(coalesce(label, '-') || ':' || coalesce(price::text, '-'), ',' ORDER BY _id) FROM shop.buy").as_deref(),
            Some("x:1.5,7.25:2,true:-")
        );
        // would lose something: rejected, kept with the reason, NULL returned
        let misfits = [
            r#"{"price": "twelve"}"#,
            r#"{"n": 1.5}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"label": {"a": 1}}"#,
            r#"{"when": "yesterday"}"#,
            r#"{"price": 9007199254740993}"#,
            r#"{"_time": "not a time"}"#,
            r#"{"_user": {"id": 1}}"#,
        ];
        for event in misfits {
            let id = one::<i64>(&format!("SELECT beacon.collect('shop', 'buy', '{event}')"));
            assert_eq!(id, None, "{event}");
        }
        assert_eq!(count("SELECT 1 FROM shop.buy"), 3);
        assert_eq!(
            count("SELECT 1 FROM shop._rejected WHERE collection = 'buy'"),
            misfits.len() as i64
        );
        assert_eq!(
            one::<String>(
                "SELECT reason FROM shop._rejected WHERE properties = '{\"price\": \"twelve\"}'"
            )
            .as_deref(),
            Some(
                "property \"price\": value \"twelve\" (string) does not fit type double precision"
            )
        );
        assert_eq!(
            one::<bool>("SELECT properties = '{\"n\": 9223372036854775808}' FROM shop._rejected WHERE reason LIKE '%\"n\"%bigint%' AND properties ? 'n' AND (properties->>'n')::numeric > 9e18"),
            Some(true)
        );
    }

    #[pg_test]
    fn property_names_become_safe_distinct_columns() {
        setup();
        let long_a = format!("{}A", "p".repeat(70));
        let long_b = format!("{}B", "p".repeat(70));
        let event = serde_json::json!({
            "x\"; DROP TABLE shop._rejected; --": 1,
            "Name": "upper",
            "name": "lower",
            "ünïcödé": "ok",
            "_id": "client id",
            "xmin": 5,
            "": "empty",
            long_a.clone(): 1,
            long_b.clone(): 2,
        });
        exec(&format!(
            "SELECT beacon.collect('shop', 'weird', {})",
            crate::names::quote_literal(&event.to_string())
        ));
        assert_eq!(
            count("SELECT 1 FROM shop._rejected"),
            0,
            "the injection did not drop anything"
        );
        assert_eq!(count("SELECT 1 FROM shop.weird"), 1);
        assert_eq!(
            count("SELECT 1 FROM beacon.field WHERE collection = 'weird'"),
            9
        );
        assert_eq!(
            count("SELECT DISTINCT column_name FROM beacon.field WHERE collection = 'weird'"),
            9,
            "every property has its own column"
        );
        assert_eq!(
            one::<String>(r#"SELECT "Name" || "name" || "ünïcödé" FROM shop.weird"#).as_deref(),
            Some("upperlowerok")
        );
        assert_eq!(
            one::<i64>(r#"SELECT "x""; DROP TABLE shop._rejected; --" FROM shop.weird"#),
            Some(1)
        );
        assert_eq!(
            count("SELECT 1 FROM beacon.field WHERE collection = 'weird' AND (octet_length(column_name) > 63 OR column_name IN ('_id', 'xmin', ''))"),
            0
        );
        let renamed_id = one::<String>(
            "SELECT column_name FROM beacon.field WHERE collection = 'weird' AND property = '_id'",
        )
        .unwrap();
        assert_eq!(
            one::<String>(&format!(
                "SELECT {} FROM shop.weird",
                crate::names::quote_ident(&renamed_id)
            ))
            .as_deref(),
            Some("client id")
        );
    }

    #[pg_test]
    fn collect_batch_stores_per_collection_and_counts() {
        setup();
        let stored = one::<i64>(
            r#"SELECT beacon.collect_batch('shop', '[
                {"collection": "pageview", "properties": {"url": "/a", "n": 1}},
                {"collection": "click", "properties": {"target": "buy"}},
                {"collection": "pageview", "properties": {"url": "/b", "n": 2.5}},
                {"collection": "pageview", "properties": {"url": "/c", "n": 3, "extra": false}},
                {"collection": "click"}
            ]')"#,
        );
        assert_eq!(
            stored,
            Some(4),
            "the event with n = 2.5 does not fit bigint"
        );
        assert_eq!(count("SELECT 1 FROM shop.pageview"), 2);
        assert_eq!(count("SELECT 1 FROM shop.click"), 2);
        assert_eq!(count("SELECT 1 FROM shop._rejected"), 1);
        assert_eq!(
            one::<i64>("SELECT beacon.collect_batch('shop', '[]')"),
            Some(0)
        );
    }

    #[pg_test]
    fn malformed_input_is_an_error_and_stores_nothing() {
        setup();
        let cases = [
            ("SELECT beacon.collect('shop', 'e', '[1, 2]')", "22023"),
            ("SELECT beacon.collect('shop', 'e', '\"text\"')", "22023"),
            ("SELECT beacon.collect('shop', 'e', NULL)", "22023"),
            ("SELECT beacon.collect('nope', 'e', '{}')", "3F000"),
            ("SELECT beacon.collect('shop', 'Bad Name', '{}')", "42602"),
            ("SELECT beacon.collect('shop', '_rejected', '{}')", "42602"),
            ("SELECT beacon.collect('shop', 'x\"; DROP TABLE t; --', '{}')", "42602"),
            ("SELECT beacon.collect('shop', 'invalid', '{bad json')", "22P02"),
            ("SELECT beacon.collect_batch('shop', '{}')", "22023"),
            ("SELECT beacon.collect_batch('shop', '[{\"collection\": \"ok\", \"properties\": {}}, 5]')", "22023"),
            ("SELECT beacon.collect_batch('shop', '[{\"properties\": {}}]')", "22023"),
            ("SELECT beacon.collect_batch('shop', '[{\"collection\": \"a\", \"properties\": []}]')", "22023"),
            ("SELECT beacon.collect_batch('shop', '[{\"collection\": \"a\", \"properties\": {}, \"_time\": 1}]')", "22023"),
            ("SELECT beacon.collect_batch('shop', '[{\"collection\": \"a\", \"properties\": {\"v\": 1}}, {\"collection\": \"A\"}]')", "42602"),
        ];
        for (sql, state) in cases {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        assert_eq!(
            count("SELECT 1 FROM beacon.collection WHERE name <> '_users'"),
            0,
            "no collection half-created"
        );
        assert_eq!(count("SELECT 1 FROM shop._rejected"), 0);
    }

    #[pg_test]
    fn define_collection_declares_types_up_front() {
        setup();
        exec(
            r#"SELECT beacon.define_collection('shop', 'order', '{"total": "numeric", "items": "bigint[]", "paid_at": "timestamp with time zone", "price": "float8"}')"#,
        );
        assert_eq!(
            column_type("shop.\"order\"", "total").as_deref(),
            Some("numeric")
        );
        assert_eq!(
            column_type("shop.\"order\"", "items").as_deref(),
            Some("bigint[]")
        );
        assert_eq!(
            column_type("shop.\"order\"", "price").as_deref(),
            Some("double precision")
        );
        // the declared type wins over what the first value would have given
        exec(r#"SELECT beacon.collect('shop', 'order', '{"total": 10, "price": 3}')"#);
        assert_eq!(
            one::<String>("SELECT total::text || '/' || price::text FROM shop.\"order\"")
                .as_deref(),
            Some("10/3")
        );
        // declaring again with the same type is a no-op; another type is refused
        exec(r#"SELECT beacon.define_collection('shop', 'order', '{"total": "numeric"}')"#);
        let cases = [
            (
                r#"SELECT beacon.define_collection('shop', 'order', '{"total": "text"}')"#,
                "42804",
            ),
            (
                r#"SELECT beacon.define_collection('shop', 'order', '{"x": "integer"}')"#,
                "22023",
            ),
            (
                r#"SELECT beacon.define_collection('shop', 'order', '{"x": 5}')"#,
                "22023",
            ),
            (
                r#"SELECT beacon.define_collection('shop', 'order', '{"_time": "text"}')"#,
                "22023",
            ),
            (
                r#"SELECT beacon.define_collection('shop', 'order', '[]')"#,
                "22023",
            ),
            (
                r#"SELECT beacon.define_collection('nope', 'order', '{}')"#,
                "3F000",
            ),
        ];
        for (sql, state) in cases {
            assert_eq!(sqlstate_of(sql).as_deref(), Some(state), "{sql}");
        }
        assert_eq!(column_type("shop.\"order\"", "x"), None);
    }

    #[pg_test]
    fn max_fields_rejects_events_bringing_more_columns() {
        setup();
        exec("SET LOCAL beacon.max_fields = 2");
        assert!(one::<i64>(r#"SELECT beacon.collect('shop', 'e', '{"a": 1, "b": 2}')"#).is_some());
        assert_eq!(
            one::<i64>(r#"SELECT beacon.collect('shop', 'e', '{"a": 1, "c": 3}')"#),
            None
        );
        assert_eq!(
            count("SELECT 1 FROM shop._rejected WHERE reason LIKE '%beacon.max_fields%'"),
            1
        );
        assert_eq!(
            sqlstate_of(r#"SELECT beacon.define_collection('shop', 'e', '{"d": "text"}')"#)
                .as_deref(),
            Some("54000")
        );
    }

    #[pg_test]
    fn write_role_collects_read_role_cannot() {
        setup();
        exec("CREATE ROLE writer");
        exec("CREATE ROLE reader");
        exec("SELECT beacon.grant('shop', 'writer', 'write')");
        exec("SELECT beacon.grant('shop', 'reader', 'read')");
        exec("SET LOCAL ROLE writer");
        exec(r#"SELECT beacon.collect('shop', 'e', '{"a": 1}')"#);
        exec("SET LOCAL ROLE reader");
        assert_eq!(
            sqlstate_of(r#"SELECT beacon.collect('shop', 'e', '{"a": 2}')"#).as_deref(),
            Some("42501")
        );
        assert_eq!(one::<i64>("SELECT a FROM shop.e"), Some(1));
        exec("RESET ROLE");
        assert_eq!(count("SELECT 1 FROM shop.e"), 1);
    }
}
