use super::*;
use crate::documents::spec::parse;
use serde_json::json;

fn layout() -> Layout {
    let spec = parse(&json!({
        "from": "orders", "key": ["order_id"],
        "lookups": [
            {"path": "items", "from": "items", "type": "array", "on": {"order_id": "order_id"}, "order_by": ["no DESC"]},
            {"path": "items.product", "from": "products", "type": "object", "on": {"product_id": "id"}},
            {"path": "customer", "from": "customers", "type": "object", "on": {"customer_id": "id", "region": "region"}}
        ]
    }))
    .unwrap();
    let fields = vec![
        vec![
            ("order_id".into(), "order_id".into()),
            ("who".into(), "customer_id".into()),
        ],
        vec![("no".into(), "no".into())],
        vec![],
        vec![("name".into(), "name".into())],
    ];
    Layout {
        project: "shop".into(),
        name: "docs".into(),
        spec,
        fields,
        document_condition: None,
    }
}

#[test]
fn lookups_nest_with_their_own_aliases_and_orders() {
    let q = layout().defining_query(None, None);
    assert!(q.starts_with("SELECT beacon_row.\"order_id\", pg_catalog.jsonb_build_object('order_id', beacon_row.\"order_id\", 'who', beacon_row.\"customer_id\""), "{q}");
    assert!(q.contains("FROM \"shop\".\"items\" beacon_l1 WHERE beacon_l1.\"order_id\" = beacon_row.\"order_id\""), "{q}");
    assert!(
        q.contains("ORDER BY beacon_l1.\"no\" DESC, pg_catalog.to_jsonb(beacon_l1)"),
        "{q}"
    );
    // the product is looked up from the item, not from the order
    // (positions: parents first, so the nested product comes after the customer)
    assert!(
        q.contains("beacon_l3.\"id\" = beacon_l1.\"product_id\""),
        "{q}"
    );
    assert!(q.contains("LIMIT 1"), "{q}");
    assert!(q.contains("beacon_l2.\"id\" = beacon_row.\"customer_id\" AND beacon_l2.\"region\" = beacon_row.\"region\""), "{q}");
    // a lookup showing no column is still an object, and a missing array is []
    assert!(q.contains("'{}'::pg_catalog.jsonb"), "{q}");
    assert!(q.contains("'[]'::pg_catalog.jsonb"), "{q}");
    assert!(
        q.ends_with("WHERE beacon_row.\"order_id\" IS NOT NULL"),
        "{q}"
    );
}

#[test]
fn many_fields_are_split_over_several_calls() {
    let mut l = layout();
    l.fields[0] = (0..120)
        .map(|i| (format!("f{i}"), format!("c{i}")))
        .collect();
    let q = l.defining_query(None, None);
    // 120 columns and 2 lookups: three calls of at most 50 pairs
    assert_eq!(
        q.matches("pg_catalog.jsonb_build_object(").count() - 2,
        3,
        "{q}"
    );
}

#[test]
fn a_rebuild_writes_only_changed_documents_and_deletes_vanished_ones() {
    let l = layout();
    let r = l.rebuild(
        Some("status <> 'x'"),
        &l.keys_of("(SELECT * FROM beacon_new)"),
    );
    assert!(
        r.contains("WHERE d.doc IS DISTINCT FROM EXCLUDED.doc"),
        "{r}"
    );
    assert!(r.contains("DELETE FROM \"shop\".\"_dv_docs\" d WHERE d.\"order_id\" IN (SELECT \"order_id\" FROM keys)"), "{r}");
    assert!(r.contains("AND (status <> 'x')"), "{r}");
    assert!(r.trim_end().ends_with(CHANGED), "{r}");
}

#[test]
fn the_view_reads_pending_documents_through_their_function() {
    let v = layout().create_view();
    assert!(v.contains("NOT EXISTS (SELECT 1 FROM \"shop\".\"_dv_docs_pending\" p WHERE p.\"order_id\" = d.\"order_id\")"), "{v}");
    assert!(
        v.contains("FROM \"shop\".\"_dv_docs_pending_docs\"() b"),
        "{v}"
    );
}

#[test]
fn big_payloads_fall_back_to_the_key() {
    let p = layout().payload("n", "upsert", true);
    assert!(p.contains(&format!("<= {NOTIFY_LIMIT}")), "{p}");
    assert!(p.contains("\"truncated\": true"), "{p}");
    assert!(!layout().payload("n", "delete", false).contains("'doc'"));
}
