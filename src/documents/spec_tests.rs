use super::*;
use serde_json::json;

#[test]
fn a_nested_spec_resolves_parents_in_any_order() {
    let spec = parse(&json!({
        "from": "orders", "key": ["order_id"],
        "lookups": [
            {"path": "order_items.product", "from": "products", "type": "object", "on": {"product_id": "product_id"}},
            {"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id"}, "order_by": ["order_item_id", "price desc"]},
            {"path": "customer_info", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}, "exclude": ["zip"], "rename": {"city": "town"}}
        ],
        "indexes": ["doc->'customer_info'->>'customer_id'", "GIN"]
    }))
    .unwrap();
    assert_eq!(spec.lookups.len(), 3);
    let product = spec
        .lookups
        .iter()
        .position(|l| l.path == "order_items.product")
        .unwrap();
    let items = spec
        .lookups
        .iter()
        .position(|l| l.path == "order_items")
        .unwrap();
    assert_eq!(spec.lookups[product].parent, Some(items));
    assert!(items < product);
    assert_eq!(spec.lookups[product].field, "product");
    assert_eq!(
        spec.lookups[items].order_by,
        vec![
            ("order_item_id".to_string(), false),
            ("price".to_string(), true)
        ]
    );
    assert_eq!(
        spec.indexes,
        vec![
            Index::Path(vec![
                ("customer_info".into(), false),
                ("customer_id".into(), true)
            ]),
            Index::Gin
        ]
    );
    // the root, then the lookups' tables, parents first
    assert_eq!(
        spec.tables(),
        vec!["orders", "order_items", "customers", "products"]
    );
}

#[test]
fn mistakes_are_named() {
    let cases = [
        (json!([]), "must be a JSON object"),
        (json!({"key": ["a"]}), "no \"from\""),
        (json!({"from": "t"}), "no \"key\""),
        (json!({"from": "t", "key": []}), "names no column"),
        (json!({"from": "t", "key": ["a", "a"]}), "twice"),
        (
            json!({"from": "t", "key": ["a"], "exlude": ["b"]}),
            "unknown key \"exlude\"",
        ),
        (
            json!({"from": "t", "key": ["a"], "columns": ["a"], "exclude": ["b"]}),
            "both",
        ),
        (json!({"from": "t", "key": ["a"], "where": 3}), "where"),
        (
            json!({"from": "t", "key": ["a"], "lookups": [{"path": "x.y", "from": "u", "type": "object", "on": {"a": "b"}}]}),
            "which no lookup fills",
        ),
        (
            json!({"from": "t", "key": ["a"], "lookups": [{"path": "x", "from": "u", "type": "set", "on": {"a": "b"}}]}),
            "\"object\" or \"array\"",
        ),
        (
            json!({"from": "t", "key": ["a"], "lookups": [{"path": "x", "from": "u", "type": "array", "on": {}}]}),
            "joins no column",
        ),
        (
            json!({"from": "t", "key": ["a"], "lookups": [{"path": "x", "from": "u", "type": "array", "on": {"a": "b"}, "order_by": ["b sideways"]}]}),
            "ASC or DESC",
        ),
        (
            json!({"from": "t", "key": ["a"], "lookups": [
                {"path": "x", "from": "u", "type": "array", "on": {"a": "b"}},
                {"path": "x", "from": "v", "type": "array", "on": {"a": "b"}}]}),
            "two lookups",
        ),
        (
            json!({"from": "t", "key": ["a"], "indexes": ["doc->>'a'->'b'"]}),
            "has no keys",
        ),
        (
            json!({"from": "t", "key": ["a"], "indexes": ["lower(doc::text)"]}),
            "expected \"gin\"",
        ),
        (
            json!({"from": "t", "key": ["a"], "indexes": ["doc->'a"]}),
            "expected \"gin\"",
        ),
        (json!({"from": "", "key": ["a"]}), "not a name"),
    ];
    for (spec, expected) in cases {
        let err = parse(&spec).expect_err(&spec.to_string());
        assert!(err.contains(expected), "{spec}: {err}");
    }
}

#[test]
fn index_paths_read_quoted_keys() {
    assert_eq!(
        index_path("doc -> 'it''s' ->> 'b'", "i").unwrap(),
        vec![("it's".to_string(), false), ("b".to_string(), true)]
    );
    assert!(index_path("doc", "i").is_err());
    assert!(index_path("doc->'a'; DROP TABLE x", "i").is_err());
}
