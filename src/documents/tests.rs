//! Document views in the database, inside one (rolled back) transaction: creation, the
//! documents after every kind of change of every table (compared with an oracle written
//! here by hand, not with the generated SQL), refusals, and what a failure leaves behind.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec(
            "CREATE TABLE shop.orders (order_id text PRIMARY KEY, customer_id text, status text, \
             placed timestamptz, total numeric)",
        );
        exec("CREATE TABLE shop.customers (customer_id text PRIMARY KEY, city text, state text)");
        exec(
            "CREATE TABLE shop.items (order_id text, item_no int, product_id int, seller_id int, \
             price numeric, PRIMARY KEY (order_id, item_no))",
        );
        exec("CREATE TABLE shop.products (product_id int PRIMARY KEY, name text, category text)");
        exec("CREATE TABLE shop.sellers (seller_id int PRIMARY KEY, city text)");
        exec("INSERT INTO shop.customers SELECT 'c' || i, 'city' || (i % 4), 'S' || (i % 2) FROM generate_series(0, 19) i");
        exec("INSERT INTO shop.products SELECT i, 'p' || i, 'cat' || (i % 3) FROM generate_series(0, 29) i");
        exec("INSERT INTO shop.sellers SELECT i, 'scity' || (i % 3) FROM generate_series(0, 4) i");
        exec(
            "INSERT INTO shop.orders SELECT 'o' || i, 'c' || (i % 23), CASE WHEN i % 3 = 0 THEN 'shipped' ELSE 'new' END, \
             timestamptz '2024-01-01 00:00+00' + i * interval '1 hour', i * 1.5 FROM generate_series(0, 59) i",
        );
        exec(
            "INSERT INTO shop.items SELECT 'o' || (i % 50), i / 50, i % 33, CASE WHEN i % 9 = 0 THEN NULL ELSE i % 5 END, i % 7 \
             FROM generate_series(0, 149) i",
        );
    }

    const SPEC: &str = r#"{"from": "orders", "key": ["order_id"], "exclude": ["total"],
        "rename": {"status": "order_status"},
        "lookups": [
          {"path": "customer_info", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}},
          {"path": "order_items", "from": "items", "type": "array", "on": {"order_id": "order_id"}, "order_by": ["item_no DESC"]},
          {"path": "order_items.product", "from": "products", "type": "object", "on": {"product_id": "product_id"}, "columns": ["name", "category"]},
          {"path": "order_items.seller", "from": "sellers", "type": "object", "on": {"seller_id": "seller_id"}}]}"#;

    /// The documents as written by hand, in UTC.
    const ORACLE: &str = "SELECT o.order_id, jsonb_build_object('order_id', o.order_id, 'customer_id', o.customer_id,
            'order_status', o.status, 'placed', o.placed,
            'customer_info', (SELECT to_jsonb(c) FROM shop.customers c WHERE c.customer_id = o.customer_id),
            'order_items', coalesce((SELECT jsonb_agg(to_jsonb(i) || jsonb_build_object(
                    'product', (SELECT jsonb_build_object('name', p.name, 'category', p.category)
                                  FROM shop.products p WHERE p.product_id = i.product_id),
                    'seller', (SELECT to_jsonb(s) FROM shop.sellers s WHERE s.seller_id = i.seller_id))
                  ORDER BY i.item_no DESC) FROM shop.items i WHERE i.order_id = o.order_id), '[]')) AS doc
        FROM shop.orders o";

    fn differences(view: &str) -> i64 {
        exec("SET LOCAL TimeZone = 'UTC'");
        let n = count(&format!(
            "(SELECT order_id, doc FROM {view} EXCEPT ({ORACLE})) UNION ALL (({ORACLE}) EXCEPT SELECT order_id, doc FROM {view})"
        ));
        exec("SET LOCAL TimeZone = 'Asia/Kathmandu'");
        n
    }

    const CHANGES: [&str; 14] = [
        "INSERT INTO shop.orders VALUES ('o100', 'c1', 'new', now(), 1), ('o101', 'nobody', 'new', now(), 2)",
        "INSERT INTO shop.items VALUES ('o100', 1, 3, 1, 9.5), ('o100', 2, 99, NULL, 1)",
        "UPDATE shop.customers SET city = 'CITY_' || city WHERE customer_id IN ('c1', 'c2', 'c3')",
        "UPDATE shop.products SET name = name || '!' WHERE product_id % 4 = 0",
        "UPDATE shop.items SET order_id = 'o7', item_no = item_no + 10 WHERE order_id = 'o8'",
        "UPDATE shop.items SET product_id = product_id + 1 WHERE item_no = 1",
        "DELETE FROM shop.items WHERE product_id % 5 = 0",
        "DELETE FROM shop.orders WHERE order_id IN ('o3', 'o4')",
        "UPDATE shop.orders SET customer_id = 'c5' WHERE order_id = 'o9'",
        "UPDATE shop.orders SET order_id = 'o9x' WHERE order_id = 'o9'",
        "DELETE FROM shop.sellers WHERE seller_id = 2",
        "INSERT INTO shop.products VALUES (99, 'late', 'cat9')",
        "TRUNCATE shop.sellers",
        "INSERT INTO shop.sellers VALUES (1, 'back')",
    ];

    fn check(mode: &str) {
        setup();
        exec(&format!(
            "SELECT beacon.create_document_view('shop', 'orders_doc', $s${SPEC}$s$, '{mode}')"
        ));
        assert_eq!(differences("shop.orders_doc"), 0, "after creation");
        for change in CHANGES {
            exec(change);
            assert_eq!(differences("shop.orders_doc"), 0, "{mode}, after {change}");
        }
        exec("SELECT beacon.refresh_document_view('shop', 'orders_doc')");
        assert_eq!(
            differences("shop._dv_orders_doc"),
            0,
            "{mode}: the stored documents"
        );
        assert_eq!(count("SELECT 1 FROM shop._dv_orders_doc_pending"), 0);
        exec("TRUNCATE shop.orders CASCADE");
        assert_eq!(count("SELECT 1 FROM shop.orders_doc"), 0);
    }

    #[pg_test]
    fn documents_async_follow_every_change() {
        check("async");
    }

    #[pg_test]
    fn documents_immediate_follow_every_change() {
        check("immediate");
        // immediate: the stored documents are current without a refresh
        exec("INSERT INTO shop.orders VALUES ('z1', 'c2', 'new', now(), 1)");
        assert_eq!(
            count("SELECT 1 FROM shop._dv_orders_doc WHERE order_id = 'z1'"),
            1
        );
    }

    #[pg_test]
    fn documents_where_multi_column_on_and_missing_matches() {
        setup();
        exec("CREATE TABLE shop.notes (order_id text, item_no int, note text)");
        exec("INSERT INTO shop.notes VALUES ('o1', 0, 'fragile'), ('o1', 0, 'again'), ('o2', 9, 'none')");
        exec(
            r#"SELECT beacon.create_document_view('shop', 'shipped', '{"from": "orders", "key": ["order_id"],
                "columns": ["order_id"], "where": "status = ''shipped''",
                "lookups": [{"path": "items", "from": "items", "type": "array", "on": {"order_id": "order_id"}, "columns": ["item_no"]},
                            {"path": "items.notes", "from": "notes", "type": "array", "on": {"order_id": "order_id", "item_no": "item_no"}, "columns": ["note"]}]}', 'immediate')"#,
        );
        let oracle = "SELECT o.order_id, jsonb_build_object('order_id', o.order_id, 'items', coalesce((SELECT jsonb_agg(
                jsonb_build_object('item_no', i.item_no, 'notes', coalesce((SELECT jsonb_agg(jsonb_build_object('note', n.note) ORDER BY to_jsonb(n))
                    FROM shop.notes n WHERE n.order_id = i.order_id AND n.item_no = i.item_no), '[]'))
                ORDER BY to_jsonb(i)) FROM shop.items i WHERE i.order_id = o.order_id), '[]')) AS doc
              FROM shop.orders o WHERE o.status = 'shipped'";
        let diff = || {
            count(&format!(
                "(SELECT * FROM shop.shipped EXCEPT ({oracle})) UNION ALL (({oracle}) EXCEPT SELECT * FROM shop.shipped)"
            ))
        };
        assert_eq!(diff(), 0);
        assert_eq!(count("SELECT 1 FROM shop.shipped"), 20);
        // a condition on the built document
        exec(
            r#"SELECT beacon.create_document_view('shop', 'with_items', '{"from": "orders", "key": ["order_id"],
                "columns": ["order_id"], "document_where": "doc->''items''->2 IS NOT NULL",
                "lookups": [{"path": "items", "from": "items", "type": "array", "on": {"order_id": "order_id"}, "columns": ["item_no"]}]}', 'immediate')"#,
        );
        let with_items = "SELECT o.order_id FROM shop.orders o WHERE (SELECT count(*) FROM shop.items i WHERE i.order_id = o.order_id) > 2";
        let same = || {
            count(&format!("(SELECT order_id FROM shop.with_items EXCEPT {with_items}) UNION ALL ({with_items} EXCEPT SELECT order_id FROM shop.with_items)"))
        };
        assert!(count("SELECT 1 FROM shop.with_items") > 0);
        assert_eq!(same(), 0);
        exec("INSERT INTO shop.items SELECT 'o55', 10 + i, 1, 1, 1 FROM generate_series(1, 3) i");
        exec("DELETE FROM shop.items WHERE order_id = 'o1' AND item_no = 0");
        assert_eq!(same(), 0);
        for change in [
            "UPDATE shop.orders SET status = 'shipped' WHERE order_id = 'o1'",
            "INSERT INTO shop.notes VALUES ('o3', 0, 'x'), ('o3', NULL, 'y')",
            "UPDATE shop.notes SET item_no = 1 WHERE note = 'again'",
            "UPDATE shop.orders SET status = 'new' WHERE order_id = 'o0'",
            "DELETE FROM shop.notes WHERE note = 'fragile'",
        ] {
            exec(change);
            assert_eq!(diff(), 0, "after {change}");
        }
        assert_eq!(
            count("SELECT 1 FROM shop.shipped WHERE order_id = 'o1' AND doc::text LIKE '%again%' AND doc::text NOT LIKE '%fragile%'"),
            1
        );
    }

    #[pg_test]
    fn documents_status_and_drop() {
        setup();
        exec(&format!(
            "SELECT beacon.create_document_view('shop', 'd', $s${SPEC}$s$)"
        ));
        exec("UPDATE shop.products SET name = 'renamed' WHERE product_id = 3");
        let (documents, pending) = (
            one::<i64>("SELECT documents FROM beacon.document_views WHERE name = 'd'"),
            one::<i64>("SELECT pending FROM beacon.document_views WHERE name = 'd'"),
        );
        assert_eq!(documents, Some(60));
        assert!(pending > Some(0));
        // beacon.status() warns of pending documents older than the threshold (these are
        // the transaction's own, 0 s old, hence a negative one), and only while they wait
        let lagging = "SELECT count(*) FROM beacon.status(interval '-1 second')
                        WHERE component = 'document view' AND name = 'd' AND severity = 'warning'";
        assert_eq!(one::<i64>(lagging), Some(1));
        assert!(one::<i64>("SELECT beacon.refresh_document_view('shop', 'd')") > Some(0));
        assert_eq!(
            one::<i64>("SELECT pending FROM beacon.document_views WHERE name = 'd'"),
            Some(0)
        );
        assert_eq!(one::<i64>(lagging), Some(0));
        exec("SELECT beacon.drop_document_view('shop', 'd')");
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname LIKE '\\_dv\\_d%' OR relname = 'd'"),
            0
        );
        assert_eq!(
            count("SELECT 1 FROM pg_proc WHERE proname LIKE '\\_dv\\_d\\_%'"),
            0
        );
        assert_eq!(
            count("SELECT 1 FROM pg_trigger WHERE tgname LIKE '\\_beacon\\_dv\\_d\\_%'"),
            0
        );
        assert_eq!(count("SELECT 1 FROM beacon.document_view"), 0);
    }

    #[pg_test]
    fn documents_refusals_name_the_part_and_leave_nothing() {
        setup();
        exec("CREATE TABLE shop.nokey (order_id text, x int)");
        for (spec, code) in [
            (r#"{"from": "orders"}"#, "22023"),
            (
                r#"{"from": "orders", "key": ["order_id"], "lokups": []}"#,
                "22023",
            ),
            (
                r#"{"from": "orders", "key": ["order_id"], "lookups": [{"path": "a.b", "from": "items", "type": "array", "on": {"order_id": "order_id"}}]}"#,
                "22023",
            ),
            (
                r#"{"from": "orders", "key": ["order_id"], "lookups": [{"path": "a", "from": "items", "type": "list", "on": {"order_id": "order_id"}}]}"#,
                "22023",
            ),
            (
                r#"{"from": "orders", "key": ["order_id"], "columns": ["nope"]}"#,
                "42704",
            ),
            (r#"{"from": "orders", "key": ["status"]}"#, "0A000"),
            (r#"{"from": "nokey", "key": ["order_id"]}"#, "0A000"),
            (
                r#"{"from": "orders", "key": ["order_id"], "lookups": [{"path": "a", "from": "items", "type": "array", "on": {"order_id": "item_no"}}]}"#,
                "0A000",
            ),
            (
                r#"{"from": "orders", "key": ["order_id"], "where": "pg_sleep(1) IS NULL"}"#,
                "42501",
            ),
            (r#"{"from": "missing", "key": ["order_id"]}"#, "42P01"),
        ] {
            let got = sqlstate_of(&format!(
                "SELECT beacon.create_document_view('shop', 'bad', $s${spec}$s$)"
            ));
            assert_eq!(got.as_deref(), Some(code), "{spec}");
        }
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname LIKE '%bad%'"),
            0
        );
        assert_eq!(count("SELECT 1 FROM beacon.document_view"), 0);
        exec(&format!(
            "SELECT beacon.create_document_view('shop', 'good', $s${SPEC}$s$)"
        ));
        assert_eq!(
            sqlstate_of(&format!(
                "SELECT beacon.create_document_view('shop', 'good', $s${SPEC}$s$)"
            ))
            .as_deref(),
            Some("42710")
        );
        assert_eq!(
            sqlstate_of("SELECT beacon.create_document_view('shop', 'x', '{\"from\": \"orders\", \"key\": [\"order_id\"]}', 'sometimes')").as_deref(),
            Some("22023")
        );
    }

    #[pg_test]
    fn documents_index_from_the_spec_serves_lookups_by_a_field() {
        setup();
        exec(
            r#"SELECT beacon.create_document_view('shop', 'by_customer', '{"from": "orders", "key": ["order_id"],
                "lookups": [{"path": "customer_info", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}}],
                "indexes": ["doc->''customer_info''->>''customer_id''", "gin"]}', 'immediate')"#,
        );
        assert_eq!(
            count("SELECT 1 FROM pg_indexes WHERE tablename = '_dv_by_customer' AND indexdef LIKE '%customer_info%'"),
            1
        );
        assert_eq!(
            count("SELECT 1 FROM pg_indexes WHERE tablename = '_dv_by_customer' AND indexdef LIKE '%gin%'"),
            1
        );
        assert_eq!(
            count(
                "SELECT 1 FROM shop.by_customer WHERE doc->'customer_info'->>'customer_id' = 'c1'"
            ),
            3
        );
    }

    #[pg_test]
    fn documents_ddl_by_hand_is_refused_or_followed() {
        setup();
        exec(&format!(
            "SELECT beacon.create_document_view('shop', 'd', $s${SPEC}$s$, 'immediate')"
        ));
        // the stored SQL names these: renaming would break every write
        for ddl in [
            "ALTER TABLE shop.customers RENAME COLUMN city TO town",
            "ALTER TABLE shop.items RENAME TO order_items",
            "ALTER TABLE shop.products RENAME COLUMN name TO title",
        ] {
            assert_eq!(sqlstate_of(ddl).as_deref(), Some("0A000"), "{ddl}");
        }
        // a column the view does not show may be renamed
        exec("ALTER TABLE shop.orders RENAME COLUMN total TO amount");
        // PostgreSQL itself refuses to drop what the view reads
        assert_eq!(
            sqlstate_of("DROP TABLE shop.sellers").as_deref(),
            Some("2BP01")
        );
        // with CASCADE the view goes, and so does everything pg_beacon made for it
        exec("DROP TABLE shop.sellers CASCADE");
        assert_eq!(count("SELECT 1 FROM beacon.document_view"), 0);
        assert_eq!(
            count("SELECT 1 FROM pg_trigger WHERE tgname LIKE '\\_beacon\\_dv%'"),
            0
        );
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname LIKE '\\_dv\\_%'"),
            0
        );
        exec("INSERT INTO shop.items VALUES ('o1', 50, 1, 1, 1)");
    }
}
