//! Document views (issue 14), end to end: the seed scenario (TapFlow's order-wide view of
//! Olist-shaped tables), concurrent writers under READ COMMITTED and REPEATABLE READ, a
//! LISTEN client of `beacon.subscribe_documents`, a crash with pending changes, and
//! refused specs. Every check compares each view with documents built independently by
//! the oracle in tests/common/documents.rs.

#[path = "common/documents_cases.rs"]
mod cases;
mod common;
#[path = "common/documents.rs"]
mod documents;
#[path = "common/documents_olist.rs"]
mod olist;

use common::{server, Rng};
use documents::{assert_exact, assert_exact_in_transaction, assert_worker_caught_up, DocView};
use olist::Scale;
use postgres::Client;
use serde_json::Value;

fn olist_db(db: &str, scale: Scale) -> Client {
    let mut client = documents::project_db(server(), db);
    client.batch_execute(olist::SCHEMA).unwrap();
    for sql in olist::populate(scale) {
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("populating: {}\n{sql}", documents::describe(&e)));
    }
    client
}

fn one_i64(client: &mut Client, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> i64 {
    client
        .query_one(sql, params)
        .unwrap_or_else(|e| panic!("`{sql}`: {}", documents::describe(&e)))
        .get(0)
}

fn count(client: &mut Client, relation: &str) -> i64 {
    one_i64(client, &format!("SELECT count(*) FROM {relation}"), &[])
}

fn run(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("`{sql}`: {}", documents::describe(&e)));
}

/// The seed's four views: the order-wide document in both modes, and the open-orders
/// variant (where, exclude, rename, columns, DESC order) in both modes.
fn seed_views() -> Vec<DocView> {
    vec![
        DocView::new("orders_async", olist::order_wide_spec(), "async"),
        DocView::new("orders_immediate", olist::order_wide_spec(), "immediate"),
        DocView::new("open_orders", olist::open_orders_spec(), "async"),
        DocView::new("open_orders_now", olist::open_orders_spec(), "immediate"),
    ]
}

/// The seed scenario, step by step (each step checked against the oracle in both modes;
/// the async views' worker is held off, so that their reads are reads of pending
/// changes, and released at the end).
#[test]
fn documents_seed_order_wide_view() {
    let db = "documents_seed";
    let scale = Scale::ci();
    let mut client = olist_db(db, scale);
    let mut views = seed_views();
    documents::create_all(&mut client, &mut views);
    let mut pauser = documents::connect_to(server(), db);
    for v in views.iter().filter(|v| v.mode == "async") {
        documents::pause_worker(&mut pauser, &v.name);
    }
    assert_exact(&mut client, &views, "right after creation");
    let orders = count(&mut client, "orders");
    for name in ["orders_async", "orders_immediate"] {
        assert_eq!(
            count(&mut client, name),
            orders,
            "{name}: one document per order"
        );
    }

    // 10 new orders of unknown customers: 10 more documents, customer_info null, no
    // items, no payments
    let mut rng = Rng::new(4);
    let new_ids: Vec<String> = (0..10)
        .map(|i| format!("ORD_I_{i}_{:016x}", rng.next()))
        .collect();
    for id in &new_ids {
        client
            .execute(
                "INSERT INTO orders VALUES ($1, pg_catalog.md5($1), $2, now() - interval '3 days', now() - interval '2 days', NULL, NULL, now() + interval '20 days')",
                &[id, &olist::STATUSES[(rng.below(3)) as usize]],
            )
            .unwrap();
    }
    assert_exact(&mut client, &views, "after inserting 10 orders");
    for name in ["orders_async", "orders_immediate"] {
        assert_eq!(
            count(&mut client, name),
            orders + 10,
            "{name}: 10 more documents"
        );
        let empty = one_i64(
            &mut client,
            &format!(
                "SELECT count(*) FROM {name} WHERE order_id = ANY($1) AND doc->'customer_info' = 'null'
                   AND doc->'order_items' = '[]' AND doc->'order_payments' = '[]'"
            ),
            &[&new_ids],
        );
        assert_eq!(
            empty, 10,
            "{name}: the new orders have no customer, items, payments"
        );
    }
    assert!(
        documents::pending(&mut client, "orders_async") > 0,
        "the async view has pending changes while the worker is held off"
    );
    assert_eq!(documents::pending(&mut client, "orders_immediate"), 0);

    // CITY_ prefix for 10 customers with orders: every one of their orders shows it
    let customers: Vec<String> = client
        .query(
            "SELECT customer_id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id)
              ORDER BY customer_id LIMIT 10",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    client
        .execute(
            "UPDATE customers SET customer_city = 'CITY_' || customer_city WHERE customer_id = ANY($1)",
            &[&customers],
        )
        .unwrap();
    assert_exact(
        &mut client,
        &views,
        "after the CITY_ update of 10 customers",
    );
    let their_orders = one_i64(
        &mut client,
        "SELECT count(*) FROM orders WHERE customer_id = ANY($1)",
        &[&customers],
    );
    assert!(their_orders >= 10);
    for name in ["orders_async", "orders_immediate"] {
        let shown = one_i64(
            &mut client,
            &format!(
                "SELECT count(*) FROM {name} WHERE doc->'customer_info'->>'customer_id' = ANY($1)
                   AND doc->'customer_info'->>'customer_city' LIKE 'CITY\\_%'"
            ),
            &[&customers],
        );
        assert_eq!(
            shown, their_orders,
            "{name}: every order of the 10 customers shows CITY_"
        );
    }

    // an item added, one changed, one deleted
    let order: String = client
        .query_one(
            "SELECT order_id FROM order_items GROUP BY order_id HAVING count(*) = 2 ORDER BY order_id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    let seller: String = client
        .query_one(
            "SELECT seller_id FROM sellers ORDER BY seller_id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO order_items SELECT order_id, 3, product_id, $2, shipping_limit_date, 10.50, 1.25
               FROM order_items WHERE order_id = $1 AND order_item_id = 1",
            &[&order, &seller],
        )
        .unwrap();
    client
        .execute(
            "UPDATE order_items SET price = 999.99, freight_value = 0.1 + 0.2 WHERE order_id = $1 AND order_item_id = 2",
            &[&order],
        )
        .unwrap();
    client
        .execute(
            "DELETE FROM order_items WHERE order_id = $1 AND order_item_id = 1",
            &[&order],
        )
        .unwrap();
    assert_exact(
        &mut client,
        &views,
        "after an item added, changed and deleted",
    );
    for name in ["orders_async", "orders_immediate"] {
        let items: Value = client
            .query_one(
                &format!("SELECT doc->'order_items' FROM {name} WHERE order_id = $1"),
                &[&order],
            )
            .unwrap()
            .get(0);
        let numbers: Vec<i64> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["order_item_id"].as_i64().unwrap())
            .collect();
        assert_eq!(numbers, vec![2, 3], "{name}: items of {order}: {items}");
        assert_eq!(items[0]["price"].to_string(), "999.99", "{name}: {items}");
        assert_eq!(items[1]["seller"]["seller_id"], seller, "{name}: {items}");
    }

    // the most used product renamed: every document embedding it shows the new name
    let product: String = client
        .query_one(
            "SELECT product_id FROM order_items GROUP BY product_id ORDER BY count(DISTINCT order_id) DESC, product_id LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "UPDATE products SET product_category_name = 'renamed_category' WHERE product_id = $1",
            &[&product],
        )
        .unwrap();
    assert_exact(&mut client, &views, "after a product renamed");
    let embedding = one_i64(
        &mut client,
        "SELECT count(DISTINCT order_id) FROM order_items WHERE product_id = $1",
        &[&product],
    );
    assert!(embedding >= 2, "the product is in {embedding} orders");
    for name in ["orders_async", "orders_immediate"] {
        let shown = one_i64(
            &mut client,
            &format!(
                "SELECT count(*) FROM {name} WHERE doc @> pg_catalog.jsonb_build_object('order_items',
                   pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('product',
                     pg_catalog.jsonb_build_object('product_id', $1::text, 'product_category_name', 'renamed_category'))))"
            ),
            &[&product],
        );
        assert_eq!(
            shown, embedding,
            "{name}: documents embedding the renamed product"
        );
    }

    // an order deleted: its document is gone
    let deleted = new_ids[3].clone();
    client
        .execute("DELETE FROM orders WHERE order_id = $1", &[&deleted])
        .unwrap();
    let old_order: String = client
        .query_one(
            "SELECT order_id FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.order_id)
              ORDER BY order_id DESC LIMIT 1",
            &[],
        )
        .unwrap()
        .get(0);
    client
        .execute("DELETE FROM orders WHERE order_id = $1", &[&old_order])
        .unwrap();
    assert_exact(&mut client, &views, "after two orders deleted");
    for name in [
        "orders_async",
        "orders_immediate",
        "open_orders",
        "open_orders_now",
    ] {
        let left = one_i64(
            &mut client,
            &format!("SELECT count(*) FROM {name} WHERE order_id IN ($1, $2)"),
            &[&deleted, &old_order],
        );
        assert_eq!(left, 0, "{name}: deleted orders have no document");
    }

    // an item moved to another order, an order moved to another customer, a canceled
    // order (it leaves the open views) and one reopened
    run(
        &mut client,
        &format!(
            "UPDATE order_items SET order_id = '{}', order_item_id = 7 WHERE order_id = '{order}' AND order_item_id = 2;
             UPDATE orders SET customer_id = (SELECT min(customer_id) FROM customers) WHERE order_id = '{order}';
             UPDATE orders SET order_status = 'canceled' WHERE order_id = (SELECT min(order_id) FROM orders WHERE order_status = 'delivered');
             UPDATE orders SET order_status = 'shipped' WHERE order_id = (SELECT min(order_id) FROM orders WHERE order_status = 'canceled')",
            new_ids[0]
        ),
    );
    assert_exact(
        &mut client,
        &views,
        "after moving an item, an order, canceling and reopening",
    );

    // missing matches: null and [] exactly where nothing matches
    let no_customer = one_i64(
        &mut client,
        "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = o.customer_id)",
        &[],
    );
    let no_items = one_i64(
        &mut client,
        "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.order_id)",
        &[],
    );
    let unknown_products = one_i64(
        &mut client,
        "SELECT count(*) FROM order_items i JOIN orders o USING (order_id)
          WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.product_id = i.product_id)",
        &[],
    );
    assert!(no_customer > 10 && no_items > 10 && unknown_products > 0);
    for name in ["orders_async", "orders_immediate"] {
        let shown = |client: &mut Client, condition: &str| {
            one_i64(
                client,
                &format!("SELECT count(*) FROM {name} WHERE {condition}"),
                &[],
            )
        };
        assert_eq!(
            shown(&mut client, "doc->'customer_info' = 'null'"),
            no_customer,
            "{name}"
        );
        assert_eq!(
            shown(&mut client, "doc->'order_items' = '[]'"),
            no_items,
            "{name}"
        );
        let null_products = one_i64(
            &mut client,
            &format!(
                "SELECT count(*) FROM {name}, pg_catalog.jsonb_array_elements(doc->'order_items') i
                  WHERE i->'product' = 'null'"
            ),
            &[],
        );
        assert_eq!(
            null_products, unknown_products,
            "{name}: items of unknown products"
        );
    }

    // a reader with other settings sees the same documents (pending ones built on the fly
    // with the view's settings, not the reader's)
    let mut odd = documents::connect_to(server(), db);
    run(
        &mut odd,
        "SET TimeZone = 'Asia/Kathmandu'; SET extra_float_digits = -3; SET DateStyle = 'SQL, DMY'; \
         SET IntervalStyle = 'iso_8601'; SET lc_numeric = 'C'",
    );
    for v in &views {
        let ours = documents::view_docs(&mut client, v);
        let theirs = documents::view_docs(&mut odd, v);
        if let Some(d) = documents::compare_docs(
            &format!(
                "{} read with TimeZone Asia/Kathmandu, extra_float_digits -3",
                v.name
            ),
            &theirs,
            &[],
            &ours,
        ) {
            panic!("{d}");
        }
    }
    drop(odd);

    // an explicit refresh applies the pending changes; the stored documents are exact
    let applied = one_i64(
        &mut pauser,
        "SELECT beacon.refresh_document_view(current_schema(), 'orders_async')",
        &[],
    );
    assert!(
        applied > 0,
        "refresh_document_view applied {applied} entries"
    );
    assert_eq!(documents::pending(&mut client, "orders_async"), 0);
    match documents::mismatches_in(&mut client, &views[..2], true, false) {
        Ok(p) => assert!(
            p.is_empty(),
            "after refresh_document_view:\n{}",
            p.join("\n")
        ),
        Err(e) => panic!("{e}"),
    }

    // the reader's own uncommitted writes, a savepoint rolled back, then all rolled back
    run(
        &mut client,
        &format!(
            "BEGIN;
             UPDATE products SET product_category_name = 'mine' WHERE product_id = '{product}';
             DELETE FROM sellers WHERE seller_id = '{seller}';
             INSERT INTO order_payments VALUES ('{order}', 9, 'voucher', 1, 3.00);"
        ),
    );
    assert_exact_in_transaction(&mut client, &views, "own writes");
    run(
        &mut client,
        "SAVEPOINT s; DELETE FROM customers WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY 1 LIMIT 50);",
    );
    assert_exact_in_transaction(&mut client, &views, "own writes in a savepoint");
    run(&mut client, "ROLLBACK TO SAVEPOINT s");
    assert_exact_in_transaction(&mut client, &views, "after ROLLBACK TO SAVEPOINT");
    run(&mut client, "ROLLBACK");
    assert_exact(&mut client, &views, "after ROLLBACK");

    // TRUNCATE of a looked-up table: every seller null, then back
    run(&mut client, "BEGIN; TRUNCATE sellers");
    assert_exact_in_transaction(&mut client, &views, "TRUNCATE sellers, not committed");
    run(&mut client, "ROLLBACK");
    assert_exact(&mut client, &views, "after rolling back TRUNCATE sellers");
    run(
        &mut client,
        "CREATE TABLE sellers_copy AS TABLE sellers; TRUNCATE sellers",
    );
    assert_exact(&mut client, &views, "after TRUNCATE sellers");
    let with_sellers = one_i64(
        &mut client,
        "SELECT count(*) FROM orders_async, pg_catalog.jsonb_array_elements(doc->'order_items') i
          WHERE i->'seller' <> 'null'",
        &[],
    );
    assert_eq!(
        with_sellers, 0,
        "no item has a seller after TRUNCATE sellers"
    );
    run(
        &mut client,
        "INSERT INTO sellers SELECT * FROM sellers_copy; DROP TABLE sellers_copy",
    );
    assert_exact(&mut client, &views, "after the sellers came back");

    // a column added later is not in the documents (the fields are those at creation),
    // and maintenance goes on
    run(
        &mut client,
        "ALTER TABLE products ADD COLUMN product_note text DEFAULT 'note'",
    );
    client
        .execute(
            "UPDATE products SET product_weight_g = 1, product_note = 'x' WHERE product_id = $1",
            &[&product],
        )
        .unwrap();
    assert_exact(&mut client, &views, "after a column was added to products");

    for v in views.iter().filter(|v| v.mode == "async") {
        documents::resume_worker(&mut pauser, &v.name);
    }
    assert_worker_caught_up(&mut client, &views, "at the end of the seed scenario");
    for v in &views {
        let row = client
            .query_one(
                "SELECT documents, entries_applied, mode, root FROM beacon.document_views
                  WHERE project = current_schema() AND name = $1",
                &[&v.name],
            )
            .unwrap();
        let (documents_count, applied, mode, root): (i64, i64, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(
            documents_count,
            count(&mut client, &v.name),
            "{}: documents",
            v.name
        );
        assert_eq!(mode, v.mode);
        assert_eq!(root, "orders");
        if v.mode == "async" {
            assert!(applied > 0, "{}: entries_applied {applied}", v.name);
        }
    }

    // dropping leaves nothing behind (names checked once all are dropped: one view's
    // name is a prefix of another's), and the tables are writable as before
    for v in &views {
        client
            .execute(
                "SELECT beacon.drop_document_view(current_schema(), $1)",
                &[&v.name],
            )
            .unwrap();
    }
    for v in &views {
        let left = documents::leftovers(&mut client, &v.name);
        assert!(left.is_empty(), "after dropping {}: {left:?}", v.name);
    }
    run(
        &mut client,
        "UPDATE orders SET order_status = 'x'; DELETE FROM order_items WHERE order_item_id = 1; TRUNCATE sellers",
    );
    drop(pauser);
    server().drop_db(db);
}

// ---------------------------------------------------------------------------------------
// Refused specs

#[test]
fn documents_bad_specs_are_refused_and_leave_nothing_behind() {
    let db = "documents_refusals";
    let mut client = documents::project_db(server(), db);
    run(&mut client, olist::SCHEMA);
    run(&mut client, cases::REFUSAL_SCHEMA);
    let mut problems: Vec<String> = cases::refusals()
        .iter()
        .filter_map(|r| cases::check_refusal(&mut client, r))
        .collect();
    let plain = serde_json::json!({"from": "orders", "key": ["order_id"]});
    let mut taken = DocView::new("taken", plain.clone(), "async");
    documents::create(&mut client, &mut taken).unwrap();
    for mode in ["async", "immediate"] {
        let r = cases::Refusal {
            case: "name_of_a_document_view".into(),
            name: "taken".into(),
            mode: mode.into(),
            codes: vec!["42P07".into(), "42710".into()],
            words: vec!["taken".into()],
            spec: plain.clone(),
        };
        problems.extend(cases::check_refusal(&mut client, &r));
    }
    // an unknown project; a role with write access only
    match client.execute(
        "SELECT beacon.create_document_view('nope', 'x', $1)",
        &[&plain],
    ) {
        Err(e) if documents::sqlstate(&e) == "3F000" => {}
        other => problems.push(format!(
            "unknown project: {:?}",
            other.map_err(|e| documents::describe(&e))
        )),
    }
    run(
        &mut client,
        &format!(
            "DROP ROLE IF EXISTS documents_writer; CREATE ROLE documents_writer LOGIN;
             SELECT beacon.grant('{db}', 'documents_writer', 'write')"
        ),
    );
    let mut writer = server().connect_as(db, "documents_writer");
    run(&mut writer, &format!("SET search_path = {db}, public"));
    let before = cases::schema_objects(&mut client);
    match writer.execute(
        "SELECT beacon.create_document_view(current_schema(), 'by_writer', $1)",
        &[&plain],
    ) {
        Err(e) if documents::sqlstate(&e) == "42501" => {}
        other => problems.push(format!(
            "write-level role: {:?}",
            other.map_err(|e| documents::describe(&e))
        )),
    }
    if cases::schema_objects(&mut client) != before {
        problems.push("the write-level role's refused create left objects behind".into());
    }
    drop(writer);
    // unknown views elsewhere: 42704 naming the view
    for (what, sql) in [
        (
            "drop",
            "SELECT beacon.drop_document_view(current_schema(), 'nope')",
        ),
        (
            "subscribe",
            "SELECT beacon.subscribe_documents(current_schema(), 'nope')",
        ),
    ] {
        match client.batch_execute(sql) {
            Err(e)
                if ["42704", "42P01"].contains(&documents::sqlstate(&e).as_str())
                    && documents::describe(&e).contains("nope") => {}
            other => problems.push(format!(
                "{what} of an unknown view: {:?}",
                other.map_err(|e| documents::describe(&e))
            )),
        }
    }
    // after all that, the name refused for its specs is free
    let mut fine = vec![DocView::new(
        "refused",
        olist::order_wide_spec(),
        "immediate",
    )];
    documents::create_all(&mut client, &mut fine);
    fine.push(taken);
    run(
        &mut client,
        "INSERT INTO orders VALUES ('o1', 'c1', 'shipped'); INSERT INTO customers VALUES ('c1', 'u1')",
    );
    assert_exact(&mut client, &fine, "views created after the refusals");
    server().drop_db(db);
    assert!(
        problems.is_empty(),
        "{} refusals wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// `create_indexes: true` creates the indexes the lookups need (a change of a looked-up
/// row finds its parents by them); without it a NOTICE names them and nothing is created.
/// The spec's `indexes` are created on the documents.
#[test]
fn documents_create_indexes_creates_the_lookup_indexes() {
    let db = "documents_indexes";
    let mut client = olist_db(db, Scale::of(100));
    let leading = |client: &mut Client, table: &str, column: &str| -> bool {
        one_i64(
            client,
            "SELECT count(*) FROM pg_catalog.pg_index x JOIN pg_catalog.pg_attribute a
                ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
              WHERE x.indrelid = pg_catalog.quote_ident($1)::regclass AND a.attname = $2",
            &[&table, &column],
        ) > 0
    };
    let mut without = DocView::new("without", olist::order_wide_spec(), "async");
    documents::create(&mut client, &mut without).unwrap();
    let wanted = [
        ("orders", "customer_id"),
        ("order_items", "product_id"),
        ("order_items", "seller_id"),
    ];
    for (table, column) in wanted {
        assert!(
            !leading(&mut client, table, column),
            "{table} ({column}) indexed without create_indexes"
        );
    }
    let doc_indexes: Vec<String> = client
        .query(
            "SELECT indexdef FROM pg_catalog.pg_indexes WHERE schemaname = current_schema() AND tablename = '_dv_without'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        doc_indexes.iter().any(|d| d.contains("gin"))
            && doc_indexes.iter().any(|d| d.contains("customer_info")),
        "the spec's indexes on the documents: {doc_indexes:?}"
    );
    let mut spec = olist::order_wide_spec();
    spec["create_indexes"] = Value::Bool(true);
    let mut with = DocView::new("with_indexes", spec, "immediate");
    match documents::create(&mut client, &mut with) {
        Ok(()) => {}
        Err(e) => panic!(
            "a spec with \"create_indexes\": true (the issue's example) is refused: {}",
            documents::describe(&e)
        ),
    }
    for (table, column) in wanted {
        assert!(
            leading(&mut client, table, column),
            "create_indexes did not index {table} ({column})"
        );
    }
    run(
        &mut client,
        "UPDATE products SET product_weight_g = 5; UPDATE sellers SET seller_city = 'x'",
    );
    assert_exact(&mut client, &[without, with], "after writes");
    server().drop_db(db);
}

/// The harness itself: a document changed, removed or added behind the view's back is
/// reported, so the oracle comparisons above cannot pass vacuously.
#[test]
fn documents_oracle_detects_wrong_documents() {
    let db = "documents_oracle";
    let mut client = olist_db(db, Scale::of(60));
    let mut views = vec![DocView::new(
        "checked",
        olist::order_wide_spec(),
        "immediate",
    )];
    documents::create_all(&mut client, &mut views);
    assert_exact(&mut client, &views, "after creation");
    for (what, sql, word) in [
        ("a changed field", "UPDATE _dv_checked SET doc = pg_catalog.jsonb_set(doc, '{order_items,0,price}', '1.5') WHERE order_id = (SELECT min(order_id) FROM _dv_checked WHERE doc->'order_items' <> '[]')", "different"),
        ("a field more", "UPDATE _dv_checked SET doc = doc || '{\"x\": 1}' WHERE order_id = (SELECT min(order_id) FROM _dv_checked)", "different"),
        ("an array reordered", "UPDATE _dv_checked SET doc = pg_catalog.jsonb_set(doc, '{order_items}', (SELECT pg_catalog.jsonb_agg(e ORDER BY n DESC) FROM pg_catalog.jsonb_array_elements(doc->'order_items') WITH ORDINALITY a(e, n))) WHERE order_id = (SELECT min(order_id) FROM _dv_checked WHERE pg_catalog.jsonb_array_length(doc->'order_items') > 1)", "different"),
        ("a number's scale", "UPDATE _dv_checked SET doc = pg_catalog.jsonb_set(doc, '{order_payments,0,payment_value}', pg_catalog.to_jsonb((doc->'order_payments'->0->>'payment_value')::numeric(12,4))) WHERE order_id = (SELECT min(order_id) FROM _dv_checked WHERE doc->'order_payments' <> '[]')", "different"),
        ("a missing document", "DELETE FROM _dv_checked WHERE order_id = (SELECT min(order_id) FROM _dv_checked)", "missing"),
        ("an extra document", "INSERT INTO _dv_checked VALUES ('nope', '{}')", "extra"),
    ] {
        run(&mut client, "BEGIN");
        run(&mut client, sql);
        let found = documents::mismatches_in(&mut client, &views, false, true).unwrap();
        run(&mut client, "ROLLBACK");
        assert!(
            found.len() == 1 && found[0].contains(&format!("1 {word}")),
            "{what} behind the view's back: the oracle reported {found:?}"
        );
    }
    assert_exact(&mut client, &views, "after the rollbacks");
    server().drop_db(db);
}
