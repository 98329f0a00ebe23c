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
#[path = "common/joins.rs"]
mod joins;
#[path = "common/documents_listen.rs"]
mod listen;
#[path = "common/documents_olist.rs"]
mod olist;
#[path = "common/documents_writers.rs"]
mod writers;

use common::{server, Rng};
use documents::{assert_exact, assert_exact_in_transaction, assert_worker_caught_up, DocView};
use listen::{Channel, Listener, Scene};
use olist::Scale;
use postgres::Client;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::thread;

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

    // TRUNCATE of a looked-up table: every seller null, then back. A TRUNCATE waits for
    // the async views' refreshes, which the held-off worker stands for: let it go
    for v in views.iter().filter(|v| v.mode == "async") {
        documents::resume_worker(&mut pauser, &v.name);
    }
    documents::run_retrying(&mut client, "BEGIN; TRUNCATE sellers");
    assert_exact_in_transaction(&mut client, &views, "TRUNCATE sellers, not committed");
    run(&mut client, "ROLLBACK");
    assert_exact(&mut client, &views, "after rolling back TRUNCATE sellers");
    documents::run_retrying(
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

    for v in views.iter().filter(|v| v.mode == "async") {
        documents::pause_worker(&mut pauser, &v.name);
    }
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
        "UPDATE orders SET order_status = 'x'; DELETE FROM order_items WHERE order_item_id = 1; TRUNCATE customers",
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
    let mut spec = olist::order_wide_spec();
    spec.as_object_mut().unwrap().remove("create_indexes");
    let mut without = DocView::new("without", spec, "async");
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
    let mut with = DocView::new("with_indexes", olist::order_wide_spec(), "immediate");
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

// ---------------------------------------------------------------------------------------
// Subscriptions

/// A LISTEN session receives exactly the documents a committed change changed, once each,
/// only after commit and never for a rolled-back one, with the payload shape of the
/// README; a filter restricts them; big documents arrive truncated; unsubscribing and the
/// end of a temporary subscription's session stop them.
#[test]
fn documents_listeners_receive_each_changed_document_once() {
    let db = "documents_listen";
    let mut client = olist_db(db, Scale::of(80));
    run(
        &mut client,
        "INSERT INTO orders VALUES ('SENTINEL', NULL, 'shipped', now(), NULL, NULL, NULL, '2031-01-01 00:00+00')",
    );
    let mut views = vec![
        DocView::new("live", olist::order_wide_spec(), "immediate"),
        DocView::new("later", olist::order_wide_spec(), "async"),
    ];
    documents::create_all(&mut client, &mut views);
    let subscribe = |client: &mut Client, view: &str, filter: Option<&str>| -> String {
        client
            .query_one(
                "SELECT beacon.subscribe_documents(current_schema(), $1, $2)",
                &[&view, &filter],
            )
            .unwrap_or_else(|e| panic!("subscribing to {view}: {}", documents::describe(&e)))
            .get(0)
    };
    // the filtered subscription: a refusal is a problem of the test's, and the rest goes on
    let mut problems = Vec::new();
    let filtered = match client.query_one(
        "SELECT beacon.subscribe_documents(current_schema(), 'live', $1)",
        &[&"doc->>'order_status' = 'shipped'"],
    ) {
        Ok(row) => Some(Channel {
            channel: row.get(0),
            view: "live".into(),
            wants: |d| d["order_status"] == "shipped",
        }),
        Err(e) => {
            problems.push(format!(
                "subscribe_documents with the filter doc->>'order_status' = 'shipped' failed: {}",
                documents::describe(&e)
            ));
            None
        }
    };
    let has_filtered = i64::from(filtered.is_some());
    let mut channels = vec![
        Channel {
            channel: subscribe(&mut client, "live", None),
            view: "live".into(),
            wants: |_| true,
        },
        Channel {
            channel: subscribe(&mut client, "later", None),
            view: "later".into(),
            wants: |_| true,
        },
    ];
    channels.extend(filtered);
    let subscriptions = |client: &mut Client, view: &str| {
        one_i64(
            client,
            "SELECT subscriptions FROM beacon.document_views WHERE project = current_schema() AND name = $1",
            &[&view],
        )
    };
    assert_eq!(subscriptions(&mut client, "live"), 1 + has_filtered);
    assert_eq!(subscriptions(&mut client, "later"), 1);
    let listener = Listener::new(
        documents::connect_to(server(), db),
        &channels.iter().collect::<Vec<_>>(),
    );
    let mut scene = Scene {
        client,
        listener,
        views,
        channels,
        round: 0,
        problems,
        checked: 0,
        truncated: 0,
    };
    scene.sentinel();

    scene.step(
        "a product renamed",
        "UPDATE products SET product_category_name = 'renamed' WHERE product_id IN \
           (SELECT product_id FROM order_items GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 2)",
    );
    scene.step(
        "orders shipped and un-shipped",
        "UPDATE orders SET order_status = CASE WHEN order_status = 'shipped' THEN 'delivered' ELSE 'shipped' END \
          WHERE order_id IN (SELECT order_id FROM orders WHERE order_id <> 'SENTINEL' ORDER BY order_id LIMIT 12)",
    );
    let before_noop = scene.checked;
    scene.step(
        "updates that change no document",
        "UPDATE orders SET order_status = order_status; UPDATE products SET product_category_name = product_category_name; \
         UPDATE customers SET customer_city = customer_city WHERE customer_id IS NULL; \
         INSERT INTO products (product_id) VALUES ('unused')",
    );
    assert_eq!(scene.checked, before_noop, "the no-op step expects nothing");
    scene.step(
        "an order inserted",
        "INSERT INTO orders VALUES ('NEW1', (SELECT min(customer_id) FROM customers), 'shipped', now())",
    );
    scene.step(
        "items of the new order",
        "INSERT INTO order_items SELECT 'NEW1', g, (SELECT min(product_id) FROM products), NULL, '2018-01-01', g, 0.5 \
           FROM pg_catalog.generate_series(1, 3) g",
    );
    scene.step(
        "a shipped order and another one deleted",
        "DELETE FROM orders WHERE order_id IN ('NEW1', (SELECT min(order_id) FROM orders WHERE order_status <> 'shipped'))",
    );
    // rolled back: nothing
    let before = scene.oracles();
    run(
        &mut scene.client,
        "BEGIN; UPDATE orders SET order_status = 'shipped' WHERE order_id <> 'SENTINEL'; \
         DELETE FROM products; ROLLBACK",
    );
    let received = scene.sentinel();
    scene.check("a rolled-back transaction", &before, &received);
    // nothing before commit, everything after
    let mut writer = documents::connect_to(server(), db);
    let before = scene.oracles();
    run(
        &mut writer,
        "BEGIN; UPDATE customers SET customer_city = 'CITY_' || customer_city \
           WHERE customer_id IN (SELECT customer_id FROM orders WHERE customer_id IS NOT NULL ORDER BY 1 LIMIT 5)",
    );
    let received = scene.sentinel();
    scene.check("a transaction not committed yet", &before, &received);
    run(&mut writer, "COMMIT");
    let received = scene.sentinel();
    scene.check("that transaction committed", &before, &received);
    // big documents: key-only payloads
    scene.step(
        "products with long names",
        "INSERT INTO products (product_id, product_category_name) \
           SELECT 'big' || g, pg_catalog.repeat('long_category_name_', 12) || g FROM pg_catalog.generate_series(1, 40) g; \
         INSERT INTO orders VALUES ('BIG', NULL, 'shipped', now())",
    );
    scene.step(
        "an order of 40 items of them",
        "INSERT INTO order_items SELECT 'BIG', g, 'big' || g, NULL, '2018-01-01', g, 0.5 FROM pg_catalog.generate_series(1, 40) g",
    );
    scene.step(
        "the big order shipped again",
        "UPDATE orders SET order_status = 'delivered' WHERE order_id = 'BIG'",
    );
    // TRUNCATE rebuilds: only the documents that changed are notified
    scene.step("TRUNCATE sellers", "TRUNCATE sellers");
    // unsubscribing one channel stops it
    let gone = scene.channels.remove(0);
    scene
        .client
        .execute("SELECT beacon.unsubscribe_documents($1)", &[&gone.channel])
        .unwrap();
    assert_eq!(subscriptions(&mut scene.client, "live"), has_filtered);
    let before = scene.oracles();
    run(
        &mut scene.client,
        "UPDATE orders SET order_status = 'shipped' WHERE order_id IN (SELECT order_id FROM orders ORDER BY 1 DESC LIMIT 5)",
    );
    let received = scene.sentinel();
    scene.check("after unsubscribing a channel", &before, &received);
    let stray: Vec<&(String, String)> = received
        .iter()
        .filter(|(c, _)| *c == gone.channel)
        .collect();
    if !stray.is_empty() {
        scene
            .problems
            .push(format!("the unsubscribed channel received {stray:?}"));
    }
    // a temporary subscription ends with its session, a permanent one does not
    let mut other = documents::connect_to(server(), db);
    let temporary = subscribe(&mut other, "live", None);
    let permanent: String = other
        .query_one(
            "SELECT beacon.subscribe_documents(current_schema(), 'live', NULL, false)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(subscriptions(&mut scene.client, "live"), 2 + has_filtered);
    drop(other);
    common::eventually("the temporary subscription to end with its session", || {
        subscriptions(&mut scene.client, "live") == 1 + has_filtered
    });
    let left: Vec<String> = scene
        .client
        .query("SELECT channel FROM beacon.document_subscription", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        left.contains(&permanent) && !left.contains(&temporary),
        "{left:?}"
    );
    let mut rest: Vec<String> = scene.channels.iter().map(|c| c.channel.clone()).collect();
    rest.push(permanent);
    for c in rest {
        scene
            .client
            .execute("SELECT beacon.unsubscribe_documents($1)", &[&c])
            .unwrap();
    }
    let notify_triggers = one_i64(
        &mut scene.client,
        "SELECT count(*) FROM pg_catalog.pg_trigger WHERE tgrelid IN ('_dv_live'::regclass, '_dv_later'::regclass)",
        &[],
    );
    assert_eq!(
        notify_triggers, 0,
        "notification triggers left without subscriptions"
    );
    let mut problems = std::mem::take(&mut scene.problems);
    let (checked, truncated) = (scene.checked, scene.truncated);
    if checked < 50 || truncated == 0 {
        problems.push(format!(
            "only {checked} notifications checked, {truncated} of them truncated"
        ));
    }
    drop(scene);
    drop(writer);
    server().drop_db(db);
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Several statements of one transaction changing one document: its listeners receive
/// one notification, with the committed document (never one of the states in between,
/// which no other session ever saw), in both modes.
#[test]
fn documents_listeners_get_one_notification_per_transaction() {
    let db = "documents_listen_txn";
    let mut client = olist_db(db, Scale::of(20));
    let mut views = vec![
        DocView::new("live", olist::order_wide_spec(), "immediate"),
        DocView::new("later", olist::order_wide_spec(), "async"),
    ];
    documents::create_all(&mut client, &mut views);
    let order: String = client
        .query_one("SELECT min(order_id) FROM orders", &[])
        .unwrap()
        .get(0);
    let mut listener = documents::connect_to(server(), db);
    let mut channels = Vec::new();
    for v in ["live", "later"] {
        let c: String = client
            .query_one(
                "SELECT beacon.subscribe_documents(current_schema(), $1)",
                &[&v],
            )
            .unwrap()
            .get(0);
        run(&mut listener, &format!("LISTEN {c}"));
        channels.push(c);
    }
    let mut listener = Listener {
        client: listener,
        received: Vec::new(),
    };
    run(
        &mut client,
        &format!(
            "BEGIN; UPDATE orders SET order_status = 'first' WHERE order_id = '{order}';
             UPDATE orders SET order_status = 'second' WHERE order_id = '{order}';
             INSERT INTO order_payments VALUES ('{order}', 77, 'voucher', 1, 1.00);
             COMMIT"
        ),
    );
    let want = documents::oracle(&mut client, &views[0]);
    let key = format!("[\"{order}\"]");
    let final_doc: Value = serde_json::from_str(&want[&key]).unwrap();
    listener.until("the final document on both channels", |received| {
        channels.iter().all(|c| {
            received.iter().any(|(rc, p)| {
                rc == c && serde_json::from_str::<Value>(p).unwrap()["doc"] == final_doc
            })
        })
    });
    // what follows the final document on either channel comes from the sentinel, committed
    // after the transaction
    run(
        &mut client,
        "UPDATE orders SET order_status = 'sentinel' WHERE order_id = (SELECT max(order_id) FROM orders)",
    );
    listener.until("the sentinel on both channels", |received| {
        channels.iter().all(|c| {
            received.iter().any(|(rc, p)| {
                rc == c
                    && serde_json::from_str::<Value>(p).unwrap()["doc"]["order_status"]
                        == "sentinel"
            })
        })
    });
    let received = listener.take();
    let mut problems = Vec::new();
    for (c, view) in channels.iter().zip(["live (immediate)", "later (async)"]) {
        let of: Vec<Value> = received
            .iter()
            .filter(|(rc, _)| rc == c)
            .map(|(_, p)| serde_json::from_str::<Value>(p).unwrap())
            .filter(|p| p["key"]["order_id"] == order.as_str())
            .collect();
        if of.len() != 1 || of[0]["doc"] != final_doc {
            problems.push(format!(
                "{view}: {} notifications for one transaction of three statements changing {order}, \
                 statuses {:?} (committed: second)",
                of.len(),
                of.iter().map(|p| p["doc"]["order_status"].clone()).collect::<Vec<_>>()
            ));
        }
    }
    drop(listener);
    server().drop_db(db);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Concurrent writers

fn concurrent_writers(db: &str, isolation: &str, writers: u64, transactions: u64) {
    let seed = writers::seed();
    eprintln!("{db}: seed {seed} (BEACON_SEED={seed} replays the statements)");
    let scale = Scale::of(300);
    let mut client = olist_db(db, scale);
    let mut views = vec![
        DocView::new("orders_async", olist::order_wide_spec(), "async"),
        DocView::new("orders_now", olist::order_wide_spec(), "immediate"),
        DocView::new("open_async", olist::open_orders_spec(), "async"),
        DocView::new("open_now", olist::open_orders_spec(), "immediate"),
    ];
    documents::create_all(&mut client, &mut views);
    let tally = Mutex::new(writers::Tally::default());
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let run = writers::Run {
        server: server(),
        db,
        scale,
        isolation,
        views: &views,
        tally: &tally,
        stop: &stop,
        done: &done,
    };
    let finished = AtomicBool::new(false);
    let comparisons = thread::scope(|scope| {
        let reader = scope.spawn(|| writers::reader(&run, &finished));
        let handles: Vec<_> = (0..writers)
            .map(|no| {
                let run = &run;
                scope.spawn(move || writers::writer(run, seed, no, transactions))
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().unwrap()
    });
    let tally = tally.into_inner().unwrap();
    eprintln!(
        "{db}: {} transactions committed, retries {:?}, {} reads inside writers' transactions, \
         {comparisons} comparisons by a concurrent reader",
        tally.committed, tally.retried, tally.own_reads
    );
    assert!(
        tally.failures.is_empty(),
        "seed {seed} (BEACON_SEED={seed}), {isolation}: {} failures, the first ones:\n{}",
        tally.failures.len(),
        tally
            .failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    assert!(
        tally.committed >= writers * transactions / 2,
        "only {} committed",
        tally.committed
    );
    assert_exact(
        &mut client,
        &views,
        &format!("seed {seed}, {isolation}: after the writers"),
    );
    assert_worker_caught_up(&mut client, &views, &format!("seed {seed}, {isolation}"));
    server().drop_db(db);
}

/// 4 writers of every table under READ COMMITTED (inserts, updates of shown and of
/// on-columns, items moving between orders, products changing category, deletes), then
/// every view equals the oracle, and again once the worker applied everything.
#[test]
fn documents_concurrent_writers_read_committed() {
    concurrent_writers("documents_writers_rc", "READ COMMITTED", 4, 60);
}

/// The same under REPEATABLE READ (40001 and 40P01 retried), the writers also comparing
/// the views inside their open transactions now and then.
#[test]
fn documents_concurrent_writers_repeatable_read() {
    concurrent_writers("documents_writers_rr", "REPEATABLE READ", 3, 50);
}

// ---------------------------------------------------------------------------------------
// Crash

/// SIGKILL of the postmaster of a server of the test's own while writers change every
/// table and the async view's worker is held off (its pending changes at the crash);
/// after the restart both views are exact at once, the worker catches up, and
/// maintenance goes on.
#[test]
fn documents_crash_with_pending_changes_keeps_views_exact() {
    let own = writers::OwnServer(common::Server::start_with(&[], ""));
    let own = &own.0;
    let db = "documents_crash";
    let scale = Scale::of(200);
    let mut admin = documents::project_db(own, db);
    run(&mut admin, olist::SCHEMA);
    for sql in olist::populate(scale) {
        run(&mut admin, &sql);
    }
    let mut views = vec![
        DocView::new("orders_async", olist::order_wide_spec(), "async"),
        DocView::new("orders_now", olist::order_wide_spec(), "immediate"),
    ];
    documents::create_all(&mut admin, &mut views);
    // the test server commits asynchronously: a crash may lose the last commits (rows and
    // pending entries together), not the views
    run(&mut admin, "CHECKPOINT");
    let mut pauser = documents::connect_to(own, db);
    documents::pause_worker(&mut pauser, "orders_async");
    let tally = Mutex::new(writers::Tally::default());
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let run_ = writers::Run {
        server: own,
        db,
        scale,
        isolation: "READ COMMITTED",
        views: &views,
        tally: &tally,
        stop: &stop,
        done: &done,
    };
    let seed = writers::seed();
    eprintln!("{db}: seed {seed}");
    let postmaster = own.postmaster_pid();
    thread::scope(|scope| {
        for no in 0..3 {
            let run_ = &run_;
            scope.spawn(move || writers::writer(run_, seed, no, 100_000));
        }
        common::eventually("the writers to commit 150 transactions", || {
            done.load(std::sync::atomic::Ordering::SeqCst) >= 150
        });
        assert!(
            documents::pending(&mut admin, "orders_async") > 0,
            "pending changes before the crash"
        );
        let children = writers::children_of(postmaster);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: a signal to the postmaster of the server this test started
        assert_eq!(unsafe { libc::kill(postmaster, libc::SIGKILL) }, 0);
        // its children notice it is gone and exit; a new postmaster cannot start before
        common::eventually("the dead postmaster's children to exit", || {
            children.iter().all(|c| !writers::alive(*c))
        });
    });
    let tally = tally.into_inner().unwrap();
    assert!(
        tally.failures.is_empty(),
        "seed {seed}: writers failed before the crash: {:?}",
        tally.failures
    );
    drop(admin);
    drop(pauser);
    own.start_existing();
    let mut client = documents::connect_to(own, db);
    assert_exact(&mut client, &views, "right after the restart");
    assert_worker_caught_up(&mut client, &views, "after the restart");
    let mut rng = Rng::new(seed);
    let mut writes = olist::Writes::new(scale, 9);
    for _ in 0..40 {
        let sql = writes.statement(&mut rng);
        client
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("after the restart `{sql}`: {}", documents::describe(&e)));
    }
    assert_exact(&mut client, &views, "after writes following the restart");
    assert_worker_caught_up(&mut client, &views, "after writes following the restart");
}

// ---------------------------------------------------------------------------------------
// Two writers of one document

/// Two writers each change a row in a different branch of one document (its customer and
/// one of its products, two of its products, a seller and a payment, ...), the second
/// while the first has not committed: the document shows both changes, in both modes.
/// The second writer's statement may wait (for a lock) until the first commits; if it
/// does not, it must not write a document built without the first's change over the
/// first's.
#[test]
fn documents_two_writers_of_branches_of_one_document() {
    let db = "documents_branches";
    let mut client = olist_db(db, Scale::of(120));
    let mut views = vec![
        DocView::new("orders_now", olist::order_wide_spec(), "immediate"),
        DocView::new("orders_async", olist::order_wide_spec(), "async"),
    ];
    documents::create_all(&mut client, &mut views);
    // orders with a customer, a payment and two items of distinct existing products with sellers
    let rows = client
        .query(
            "SELECT o.order_id, o.customer_id, min(i.product_id), max(i.product_id), min(i.seller_id)
               FROM orders o JOIN order_items i USING (order_id)
              WHERE EXISTS (SELECT 1 FROM customers c WHERE c.customer_id = o.customer_id)
                AND EXISTS (SELECT 1 FROM order_payments p WHERE p.order_id = o.order_id)
                AND EXISTS (SELECT 1 FROM products p WHERE p.product_id = i.product_id)
                AND i.seller_id IS NOT NULL
              GROUP BY 1, 2 HAVING count(DISTINCT i.product_id) = 2 ORDER BY 1 LIMIT 3",
            &[],
        )
        .unwrap();
    assert!(!rows.is_empty(), "no order with two products");
    let mut watcher = documents::connect_to(server(), db);
    let mut problems = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        let (order, customer, p1, p2, seller): (String, String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let pairs = [
            (
                format!("UPDATE customers SET customer_city = 'first_{n}' WHERE customer_id = '{customer}'"),
                format!("UPDATE products SET product_category_name = 'second_{n}' WHERE product_id = '{p1}'"),
            ),
            (
                format!("UPDATE products SET product_category_name = 'first_{n}' WHERE product_id = '{p1}'"),
                format!("UPDATE products SET product_category_name = 'second_{n}' WHERE product_id = '{p2}'"),
            ),
            (
                format!("UPDATE sellers SET seller_city = 'first_{n}' WHERE seller_id = '{seller}'"),
                format!("UPDATE order_payments SET payment_type = 'second_{n}' WHERE order_id = '{order}'"),
            ),
            (
                format!("INSERT INTO order_items VALUES ('{order}', 50 + {n}, '{p2}', NULL, '2018-01-01', 1, 1)"),
                format!("UPDATE customers SET customer_state = 'S{n}' WHERE customer_id = '{customer}'"),
            ),
        ];
        for (first, second) in pairs.iter().flat_map(|(a, b)| [(a, b), (b, a)]) {
            let mut a = joins::Session::open(server(), db, "first");
            let mut b = joins::Session::open(server(), db, "second");
            a.run("BEGIN").unwrap();
            a.run(first).unwrap();
            b.run("BEGIN").unwrap();
            let waited = matches!(b.step(second, &mut watcher), joins::Step::Waiting);
            a.run("COMMIT").unwrap();
            if waited {
                if let Err(e) = b.finish() {
                    problems.push(format!("`{second}` after `{first}`: {}", e.text));
                }
            }
            b.run("COMMIT").unwrap();
            match documents::mismatches_in(&mut client, &views, false, false) {
                Ok(p) if p.is_empty() => {}
                Ok(p) => problems.push(format!(
                    "order {order}: `{first}` (committed first) then `{second}` ({}):\n{}",
                    if waited {
                        "which waited"
                    } else {
                        "which did not wait"
                    },
                    p.join("\n")
                )),
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_worker_caught_up(&mut client, &views, "at the end");
    server().drop_db(db);
    assert!(
        problems.is_empty(),
        "{} interleavings wrong:\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------
// Roles, names, wide tables

/// A read-level role reads exact documents (pending ones included) through the view but
/// not the hidden tables; a write-level role's writes maintain the views; an outsider
/// reads nothing; a reader cannot refresh or leave errors in the status.
#[test]
fn documents_roles_read_the_view_and_write_the_tables() {
    let db = "documents_roles";
    let mut client = olist_db(db, Scale::of(60));
    let mut views = vec![
        DocView::new("orders_async", olist::order_wide_spec(), "async"),
        DocView::new("orders_now", olist::order_wide_spec(), "immediate"),
    ];
    documents::create_all(&mut client, &mut views);
    run(
        &mut client,
        &format!(
            "DROP ROLE IF EXISTS documents_r, documents_w, documents_x;
             CREATE ROLE documents_r LOGIN; CREATE ROLE documents_w LOGIN; CREATE ROLE documents_x LOGIN;
             SELECT beacon.grant('{db}', 'documents_r', 'read');
             SELECT beacon.grant('{db}', 'documents_w', 'write');
             GRANT SELECT, INSERT, UPDATE, DELETE ON orders, customers, order_payments, order_items, products, sellers
                TO documents_w;"
        ),
    );
    let as_role = |role: &str| {
        let mut c = server().connect_as(db, role);
        c.batch_execute(&format!(
            "SET search_path = {db}, public; SET TimeZone = 'Asia/Tokyo'"
        ))
        .unwrap();
        c
    };
    let mut reader = as_role("documents_r");
    let mut writer = as_role("documents_w");
    let mut outsider = as_role("documents_x");
    let mut pauser = documents::connect_to(server(), db);
    documents::pause_worker(&mut pauser, "orders_async");
    run(
        &mut writer,
        "UPDATE products SET product_category_name = 'by_writer' WHERE product_id IN (SELECT product_id FROM order_items LIMIT 5);
         INSERT INTO orders VALUES ('W1', NULL, 'shipped', now()); DELETE FROM order_items WHERE order_item_id = 2",
    );
    assert!(documents::pending(&mut client, "orders_async") > 0);
    let mut problems = Vec::new();
    for v in &views {
        let want = documents::oracle(&mut client, v);
        let got = documents::view_docs(&mut reader, v);
        problems.extend(documents::compare_docs(
            &format!("{} read by a reader", v.name),
            &got,
            &[],
            &want,
        ));
        for (who, c) in [("the reader", &mut reader), ("the outsider", &mut outsider)] {
            match c.batch_execute(&format!("SELECT * FROM {db}._dv_{}", v.name)) {
                Err(e) if documents::sqlstate(&e) == "42501" => {}
                other => problems.push(format!(
                    "{who} reading _dv_{}: {:?}",
                    v.name,
                    other.map_err(|e| documents::describe(&e))
                )),
            }
        }
        match outsider.batch_execute(&format!("SELECT * FROM {db}.{}", v.name)) {
            Err(e) if documents::sqlstate(&e) == "42501" => {}
            other => problems.push(format!(
                "the outsider reading {}: {:?}",
                v.name,
                other.map_err(|e| documents::describe(&e))
            )),
        }
    }
    // a reader's refresh applies nothing and records no error
    let _ = reader.batch_execute(&format!(
        "SELECT beacon.refresh_document_view('{db}', 'orders_async')"
    ));
    let error: Option<String> = client
        .query_one(
            "SELECT last_error FROM beacon.document_views WHERE name = 'orders_async'",
            &[],
        )
        .unwrap()
        .get(0);
    if let Some(e) = error {
        problems.push(format!(
            "a reader's refresh_document_view left last_error = {e:?}"
        ));
    }
    run(
        &mut client,
        "UPDATE beacon.document_view SET last_error = NULL",
    );
    documents::resume_worker(&mut pauser, "orders_async");
    assert_worker_caught_up(&mut client, &views, "after the writer's changes");
    drop((reader, writer, outsider, pauser));
    server().drop_db(db);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Table and column names that need quoting (spaces, mixed case, quotes, non-ASCII), a
/// lookup path with a dash, and a root of 130 columns (more fields than one
/// jsonb_build_object call takes).
#[test]
fn documents_quoted_names_and_wide_tables() {
    let db = "documents_names";
    let mut client = documents::project_db(server(), db);
    let wide: Vec<String> = (1..=128).map(|i| format!("c{i} int DEFAULT {i}")).collect();
    run(
        &mut client,
        &format!(
            "CREATE TABLE \"Orders\" (\"Order Id\" text PRIMARY KEY, \"Status\" text, {});
             CREATE TABLE \"Order Items\" (\"Order Id\" text, \"n°\" int, \"we\"\"ird\" text, \"Price €\" numeric,
                                           PRIMARY KEY (\"Order Id\", \"n°\"));
             INSERT INTO \"Orders\" (\"Order Id\", \"Status\") SELECT 'o' || g, 's' || (g % 3) FROM generate_series(1, 30) g;
             INSERT INTO \"Order Items\" SELECT 'o' || (g % 25), g, E'q\"uote\\\\' || g, g / 3.0 FROM generate_series(1, 60) g;",
            wide.join(", ")
        ),
    );
    let spec = serde_json::json!({
        "from": "Orders", "key": ["Order Id"], "rename": {"Status": "status ✓", "c7": "Seven \"7\""},
        "lookups": [{"path": "items-list", "from": "Order Items", "type": "array",
                     "on": {"Order Id": "Order Id"}, "order_by": ["n° DESC"], "rename": {"we\"ird": "weird"}},
                    {"path": "items-list.again", "from": "Orders", "type": "object",
                     "on": {"Order Id": "Order Id"}, "columns": ["Status", "c128"]}]
    });
    let mut views = vec![
        DocView::new("named_now", spec.clone(), "immediate"),
        DocView::new("named_later", spec, "async"),
    ];
    documents::create_all(&mut client, &mut views);
    assert_exact(&mut client, &views, "after creation");
    let fields = one_i64(
        &mut client,
        "SELECT count(*) FROM pg_catalog.jsonb_object_keys((SELECT doc FROM named_now LIMIT 1))",
        &[],
    );
    assert_eq!(fields, 131, "every column of the wide root and the lookup");
    run(
        &mut client,
        "UPDATE \"Orders\" SET c77 = 0, \"Status\" = 'it''s' WHERE \"Order Id\" IN ('o1', 'o2');
         UPDATE \"Order Items\" SET \"we\"\"ird\" = 'new' WHERE \"n°\" % 7 = 0;
         DELETE FROM \"Order Items\" WHERE \"n°\" % 11 = 0;
         INSERT INTO \"Orders\" (\"Order Id\", c1) VALUES ('o99', -1);
         UPDATE \"Order Items\" SET \"Order Id\" = 'o99' WHERE \"n°\" < 5",
    );
    assert_exact(&mut client, &views, "after writes");
    assert_worker_caught_up(&mut client, &views, "after writes");
    server().drop_db(db);
}

// ---------------------------------------------------------------------------------------
// DDL on the tables

/// What the views read cannot be dropped or renamed from under them; a column they do
/// not read can be dropped; DROP … CASCADE of a table, or of a view by hand, takes the
/// views that read it along entirely (nothing left on the other tables), and the others
/// stay exact.
#[test]
fn documents_ddl_on_the_tables_is_refused_or_followed() {
    let db = "documents_ddl";
    let mut client = olist_db(db, Scale::of(50));
    let mut spec = olist::order_wide_spec();
    spec["lookups"][3]["exclude"] = serde_json::json!(["product_weight_g"]);
    let mut views = vec![
        DocView::new("wide", spec, "async"),
        DocView::new("open_now", olist::open_orders_spec(), "immediate"),
        DocView::new(
            "customers_only",
            serde_json::json!({"from": "orders", "key": ["order_id"], "columns": ["order_status"],
                               "lookups": [{"path": "c", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}}]}),
            "immediate",
        ),
    ];
    documents::create_all(&mut client, &mut views);
    let mut problems = Vec::new();
    for (sql, codes) in [
        ("DROP TABLE sellers", &["2BP01", "0A000"][..]),
        (
            "ALTER TABLE products DROP COLUMN product_category_name",
            &["2BP01", "0A000"][..],
        ),
        (
            "ALTER TABLE products RENAME COLUMN product_category_name TO category",
            &["0A000", "2BP01"][..],
        ),
        (
            "ALTER TABLE order_items RENAME COLUMN order_id TO oid",
            &["0A000", "2BP01"][..],
        ),
        (
            "ALTER TABLE products RENAME TO goods",
            &["0A000", "2BP01"][..],
        ),
        (
            "ALTER TABLE order_items ALTER COLUMN product_id TYPE varchar(40)",
            &["0A000", "2BP01", "0A000"][..],
        ),
    ] {
        let before = cases::schema_objects(&mut client);
        match client.batch_execute(sql) {
            Err(e) if codes.contains(&documents::sqlstate(&e).as_str()) => {}
            other => problems.push(format!(
                "`{sql}`: {:?} (expected one of {codes:?})",
                other.map_err(|e| documents::describe(&e))
            )),
        }
        if cases::schema_objects(&mut client) != before {
            problems.push(format!("`{sql}` changed the schema's objects"));
        }
    }
    assert_exact(&mut client, &views, "after the refused DDL");
    // a column no view reads
    run(&mut client, "ALTER TABLE products DROP COLUMN product_weight_g; UPDATE products SET product_height_cm = 1");
    // `wide` excludes it (it is still in the whole row its products are ordered by)
    assert_exact(&mut client, &views, "after dropping a column no view shows");
    // DROP TABLE … CASCADE of a looked-up table: its views go, entirely
    // (a deadlock with the worker's refresh is retried: see
    // documents_ddl_alongside_a_refresh_never_deadlocks)
    documents::run_retrying(&mut client, "DROP TABLE sellers CASCADE");
    for name in ["wide", "open_now"] {
        let left = documents::leftovers(&mut client, name);
        if !left.is_empty() {
            problems.push(format!(
                "after DROP TABLE sellers CASCADE, {name} left {left:?}"
            ));
        }
    }
    let remaining: Vec<DocView> = views
        .iter()
        .filter(|v| v.name == "customers_only")
        .cloned()
        .collect();
    run(
        &mut client,
        "UPDATE customers SET customer_city = 'x'; UPDATE products SET product_category_name = 'y'; DELETE FROM order_items",
    );
    assert_exact(&mut client, &remaining, "after the cascade");
    // a view dropped by hand: the rest of it goes too
    run(&mut client, "DROP VIEW customers_only");
    let left = documents::leftovers(&mut client, "customers_only");
    if !left.is_empty() {
        problems.push(format!("after DROP VIEW customers_only by hand: {left:?}"));
    }
    run(
        &mut client,
        "UPDATE customers SET customer_city = 'z'; UPDATE orders SET order_status = 'q'",
    );
    server().drop_db(db);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// DDL on an async view's table (TRUNCATE, DROP TABLE … CASCADE) while the view is being
/// refreshed (a client's `refresh_document_view` in an open transaction, the worker's own
/// refresh queued behind it, with changes pending): the DDL waits and then succeeds; it
/// never fails with a deadlock against the worker, whose refresh takes the view's refresh
/// lock before the tables' locks while the DDL takes them the other way round.
#[test]
fn documents_ddl_alongside_a_refresh_never_deadlocks() {
    let db = "documents_truncate_refresh";
    let mut client = olist_db(db, Scale::of(40));
    let mut views = vec![DocView::new("later", olist::order_wide_spec(), "async")];
    documents::create_all(&mut client, &mut views);
    let mut watcher = documents::connect_to(server(), db);
    let mut problems = Vec::new();
    let change = "UPDATE orders SET order_status = order_status || '.' WHERE order_id IN (SELECT order_id FROM orders ORDER BY 1 LIMIT 3)";
    for (round, ddl) in [
        "TRUNCATE sellers",
        "TRUNCATE order_items",
        "DROP TABLE sellers CASCADE",
    ]
    .iter()
    .enumerate()
    {
        let mut refresher = joins::Session::open(server(), db, "refresher");
        let mut ddl_session = joins::Session::open(server(), db, "ddl");
        run(&mut client, change);
        refresher.run("BEGIN").unwrap();
        refresher
            .run("SELECT beacon.refresh_document_view(current_schema(), 'later')")
            .unwrap();
        // more pending changes for the worker, which skips the view while the refresher
        // holds its lock (it used to wait for it, and then deadlocked with the DDL)
        run(&mut client, change);
        let waited = matches!(ddl_session.step(ddl, &mut watcher), joins::Step::Waiting);
        refresher.run("COMMIT").unwrap();
        let result = if waited {
            ddl_session.finish()
        } else {
            Ok(vec![])
        };
        if let Err(e) = result {
            problems.push(format!("round {round}: `{ddl}`: {}", e.text));
        }
        if ddl.starts_with("DROP") {
            break;
        }
        run(
            &mut client,
            "INSERT INTO sellers SELECT pg_catalog.md5('s' || g), '0', 'c', 'SP' FROM pg_catalog.generate_series(1, 4) g \
             ON CONFLICT DO NOTHING",
        );
        assert_exact(&mut client, &views, &format!("round {round}"));
    }
    server().drop_db(db);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The seed's own check at the seed's size (about 100,000 orders, 110,000 items, 30,000
/// products, 3,000 sellers): 10 new orders add 10 documents, and the customer-city update
/// for 10 customers reaches every one of their orders' documents, read exactly before
/// the worker applies it and stored after.
#[test]
fn documents_seed_at_full_scale() {
    let db = "documents_seed_full";
    let mut client = olist_db(db, Scale::of(100_000));
    let mut views = vec![DocView::new(
        "orders_async",
        olist::order_wide_spec(),
        "async",
    )];
    documents::create_all(&mut client, &mut views);
    let before = count(&mut client, "orders_async");
    assert_eq!(before, count(&mut client, "orders"));
    let mut rng = Rng::new(11);
    for i in 0..10 {
        let id = format!("ORD_I_{i}_{:016x}", rng.next());
        run(
            &mut client,
            &format!(
                "INSERT INTO orders VALUES ('{id}', pg_catalog.md5('{id}'), 'processing', now(), now(), NULL, NULL, now() + interval '20 days')"
            ),
        );
    }
    assert_eq!(count(&mut client, "orders_async"), before + 10);
    let customers: Vec<String> = client
        .query(
            "SELECT customer_id FROM (SELECT DISTINCT customer_id FROM orders WHERE customer_id IN (SELECT customer_id FROM customers)) c
              ORDER BY customer_id LIMIT 10",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(customers.len(), 10);
    run(
        &mut client,
        &format!(
            "UPDATE customers SET customer_city = 'CITY_' || customer_city WHERE customer_id IN ({})",
            customers.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")
        ),
    );
    let theirs = one_i64(
        &mut client,
        "SELECT count(*) FROM orders WHERE customer_id = ANY ($1)",
        &[&customers],
    );
    assert!(theirs >= 10);
    let check = |client: &mut Client, relation: &str| {
        one_i64(
            client,
            &format!(
                "SELECT count(*) FROM {relation} v JOIN orders o USING (order_id) JOIN customers c USING (customer_id)
                  WHERE o.customer_id = ANY ($1)
                    AND v.doc->'customer_info'->>'customer_city' = c.customer_city
                    AND c.customer_city LIKE 'CITY\\_%'"
            ),
            &[&customers],
        )
    };
    // exact before the worker (pending changes are rebuilt on read) ...
    assert_eq!(check(&mut client, "orders_async"), theirs);
    // ... and stored after it
    crate::common::eventually("the worker to apply the city update", || {
        documents::pending(&mut client, "orders_async") == 0
    });
    assert_eq!(check(&mut client, "_dv_orders_async"), theirs);
    assert_eq!(count(&mut client, "_dv_orders_async"), before + 10);
}
