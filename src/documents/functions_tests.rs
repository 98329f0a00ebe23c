use super::*;
use crate::documents::spec::parse;
use serde_json::json;

fn seed_layout() -> Layout {
    let spec = parse(&json!({
        "from": "orders", "key": ["order_id"],
        "lookups": [
            {"path": "customer_info", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}},
            {"path": "payments", "from": "payments", "type": "array", "on": {"order_id": "order_id"}},
            {"path": "items", "from": "items", "type": "array", "on": {"order_id": "order_id"}},
            {"path": "items.product", "from": "products", "type": "object", "on": {"product_id": "product_id"}}
        ]
    }))
    .unwrap();
    let fields = vec![vec![("order_id".into(), "order_id".into())]; 5];
    Layout {
        project: "shop".into(),
        name: "docs".into(),
        spec,
        fields,
        document_condition: None,
    }
}

fn capture(table: &str, immediate: bool) -> String {
    let hashes = vec!["pg_catalog.hashtext(({v})::pg_catalog.text)".to_string(); 4];
    capture_body(&seed_layout(), &hashes, None, immediate, table)
}

#[test]
fn lookups_keyed_by_the_root_key_cut_the_lock_tree() {
    let layout = seed_layout();
    let trees = lock_trees(&layout, &[]);
    // the root with its customers; the payments alone; the items with their products
    let parts: Vec<Vec<&str>> = trees.iter().map(|(_, t)| t.tables.clone()).collect();
    assert_eq!(
        parts,
        vec![
            vec!["orders", "customers"],
            vec!["payments"],
            vec!["items", "products"]
        ]
    );
}

#[test]
fn writers_of_an_order_and_its_lines_take_no_exclusive_lock() {
    // an order, its payment and its items in one transaction: shared locks only, so
    // two such transactions never wait for each other (nor deadlock)
    // (the TRUNCATE branch comes last)
    let writes = |table: &str| {
        let body = capture(table, false);
        body[..body.find("  ELSE\n").unwrap()].to_string()
    };
    for table in ["orders", "payments", "items"] {
        let body = writes(table);
        assert!(!body.contains("pg_advisory_xact_lock("), "{table}: {body}");
    }
    assert!(!writes("payments").contains("advisory"));
    // a payment's document is its own order_id: nothing is read to find it
    assert!(capture("payments", false)
        .contains("SELECT r.\"order_id\" AS \"order_id\" FROM (SELECT * FROM beacon_new) r"));
}

#[test]
fn a_product_change_locks_its_edge_and_finds_orders_through_items() {
    let body = capture("products", false);
    assert!(body.contains("pg_advisory_xact_lock("), "{body}");
    assert!(
        body.contains("FROM \"shop\".\"items\" t WHERE t.\"product_id\" IN"),
        "{body}"
    );
    // the orders table is not read: the items carry the order's key
    assert!(!body.contains("\"shop\".\"orders\""), "{body}");
    let customers = capture("customers", false);
    assert!(
        customers.contains("FROM \"shop\".\"orders\" t WHERE t.\"customer_id\" IN"),
        "{customers}"
    );
}

#[test]
fn immediate_writers_lock_their_documents_before_rebuilding() {
    let body = capture("payments", true);
    let lock = body
        .find("pg_advisory_xact_lock_shared")
        .expect("the view's lock");
    let rebuild = body.find("ON CONFLICT").expect("the rebuild");
    assert!(lock < rebuild, "{body}");
    assert!(
        body.contains(&format!("\"beacon documents\" > {MAX_DOCUMENT_LOCKS}")),
        "{body}"
    );
    assert!(
        body.contains("_unchanged_since_snapshot('\"shop\".\"_dv_docs\"'"),
        "{body}"
    );
    // TRUNCATE rebuilds everything, without a lock of its own (see capture_body)
    assert!(capture("payments", true).contains("PERFORM \"shop\".\"_dv_docs_rebuild_all\"()"));
}
