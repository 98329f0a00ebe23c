//! Refused document view specs: each case, the SQLSTATEs it may fail with and the words
//! its message must contain; and the check that a refused create leaves the project
//! schema and the catalog exactly as they were.
#![allow(dead_code)]

use crate::documents::{describe, sqlstate};
use postgres::Client;
use serde_json::Value;

/// The tables the cases refer to, besides the seed's (tests/common/documents_olist.rs).
pub const REFUSAL_SCHEMA: &str = "
CREATE TABLE events (id int, v text);
CREATE TABLE partial (id int, v text);
CREATE UNIQUE INDEX ON partial (id) WHERE id > 0;
CREATE TABLE expression (id int, v text);
CREATE UNIQUE INDEX ON expression ((id + 1));
CREATE VIEW orders_v AS SELECT * FROM orders;
CREATE TABLE _dv_hidden (x int);
CREATE TABLE public.outside (id int PRIMARY KEY);
";

/// `case | view name | mode | SQLSTATEs | words the message names | spec`, one a line.
/// 22023: the spec itself is wrong; 42P01/42704: unknown table; 42703/42704: unknown
/// column; 0A000 (or 42804): not maintainable; 42P07/42710: the name is taken; 42501
/// and 42601: the `where` refused by the stream-filter policy (README, Filters).
pub const REFUSALS: &str = r#"
not_an_object | refused | async | 22023 | object | ["orders"]
unknown_key | refused | async | 22023 | exlude | {"from": "orders", "key": ["order_id"], "exlude": ["order_status"]}
create_index_misspelt | refused | async | 22023 | create_index | {"from": "orders", "key": ["order_id"], "create_index": true}
unknown_lookup_key | refused | async | 22023 | relation | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "relation": [["customer_id", "customer_id"]]}]}
no_from | refused | async | 22023 | from | {"key": ["order_id"]}
from_not_a_string | refused | async | 22023 | from | {"from": 5, "key": ["order_id"]}
no_key | refused | async | 22023 | key | {"from": "orders"}
empty_key | refused | async | 22023 | key | {"from": "orders", "key": []}
key_not_an_array | refused | async | 22023 | key | {"from": "orders", "key": "order_id"}
key_twice | refused | async | 22023 | order_id | {"from": "orders", "key": ["order_id", "order_id"]}
columns_not_an_array | refused | async | 22023 | columns | {"from": "orders", "key": ["order_id"], "columns": "order_id"}
columns_and_exclude | refused | async | 22023 | columns,exclude | {"from": "orders", "key": ["order_id"], "columns": ["order_id"], "exclude": ["order_status"]}
rename_not_an_object | refused | async | 22023 | rename | {"from": "orders", "key": ["order_id"], "rename": ["order_status"]}
rename_to_a_number | refused | async | 22023 | order_status | {"from": "orders", "key": ["order_id"], "rename": {"order_status": 5}}
where_not_a_string | refused | async | 22023 | where | {"from": "orders", "key": ["order_id"], "where": 5}
lookups_not_an_array | refused | async | 22023 | lookups | {"from": "orders", "key": ["order_id"], "lookups": {"path": "c", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}}}
lookup_type_list | refused | async | 22023 | type | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "list", "on": {"customer_id": "customer_id"}}]}
lookup_without_type | refused | async | 22023 | type | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "on": {"customer_id": "customer_id"}}]}
lookup_without_path | refused | async | 22023 | path | {"from": "orders", "key": ["order_id"], "lookups": [{"from": "customers", "type": "object", "on": {"customer_id": "customer_id"}}]}
lookup_empty_path_part | refused | async | 22023 | path | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id"}}, {"path": "order_items..product", "from": "products", "type": "object", "on": {"product_id": "product_id"}}]}
lookup_without_on | refused | async | 22023 | on | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object"}]}
on_not_an_object | refused | async | 22023 | on | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "on": ["customer_id"]}]}
on_empty | refused | async | 22023 | on | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "on": {}}]}
on_value_not_a_string | refused | async | 22023 | customer_id | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "on": {"customer_id": 1}}]}
nested_without_parent | refused | async | 22023 | order_items | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items.product", "from": "products", "type": "object", "on": {"product_id": "product_id"}}]}
same_path_twice | refused | async | 22023 | customer_info | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "customer_info", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}}, {"path": "customer_info", "from": "customers", "type": "array", "on": {"customer_id": "customer_id"}}]}
order_by_direction | refused | async | 22023 | sideways | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id"}, "order_by": ["order_item_id sideways"]}]}
order_by_not_an_array | refused | async | 22023 | order_by | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id"}, "order_by": "order_item_id"}]}
index_expression | refused | async | 22023 | indexes | {"from": "orders", "key": ["order_id"], "indexes": ["lower(doc->>'order_status')"]}
index_text_then_key | refused | async | 22023 | indexes | {"from": "orders", "key": ["order_id"], "indexes": ["doc->>'customer_info'->'customer_id'"]}
index_not_a_string | refused | async | 22023 | indexes | {"from": "orders", "key": ["order_id"], "indexes": [5]}
bad_mode | refused | sometimes | 22023 | sometimes | {"from": "orders", "key": ["order_id"]}
unknown_table | refused | async | 42P01,42704 | nope | {"from": "nope", "key": ["id"]}
qualified_table | refused | async | 42P01,42704 | outside | {"from": "public.outside", "key": ["id"]}
unknown_lookup_table | refused | async | 42P01,42704 | nope | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "nope", "type": "object", "on": {"customer_id": "customer_id"}}]}
from_a_view | refused | async | 0A000,42809,42P01 | orders_v | {"from": "orders_v", "key": ["order_id"]}
unknown_key_column | refused | async | 42703,42704 | nope | {"from": "orders", "key": ["nope"]}
unknown_column_in_columns | refused | async | 42703,42704 | nope | {"from": "orders", "key": ["order_id"], "columns": ["order_id", "nope"]}
unknown_column_in_exclude | refused | async | 42703,42704 | nope | {"from": "orders", "key": ["order_id"], "exclude": ["nope"]}
unknown_lookup_column | refused | async | 42703,42704 | nope | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}, "columns": ["nope"]}]}
unknown_on_parent_column | refused | async | 42703,42704 | nope | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "on": {"nope": "customer_id"}}]}
unknown_on_own_column | refused | async | 42703,42704 | nope | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "on": {"customer_id": "nope"}}]}
unknown_order_by_column | refused | async | 42703,42704 | nope | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id"}, "order_by": ["nope DESC"]}]}
nested_on_a_root_column | refused | async | 42703,42704 | customer_id | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id"}}, {"path": "order_items.c", "from": "customers", "type": "object", "on": {"customer_id": "customer_id"}}]}
rename_a_column_not_shown | refused | async | 22023,42703,42704 | order_status | {"from": "orders", "key": ["order_id"], "columns": ["order_id"], "rename": {"order_status": "status"}}
rename_an_unknown_column | refused | async | 22023,42703,42704 | nope | {"from": "orders", "key": ["order_id"], "rename": {"nope": "x"}}
key_without_unique_index | refused | async | 0A000 | customer_id | {"from": "orders", "key": ["customer_id"]}
key_part_of_the_primary_key | refused | async | 0A000 | order_id | {"from": "order_items", "key": ["order_id"]}
key_of_a_table_without_index | refused | async | 0A000 | id | {"from": "events", "key": ["id"]}
key_with_a_partial_unique_index | refused | async | 0A000 | id | {"from": "partial", "key": ["id"]}
key_with_an_expression_index | refused | async | 0A000 | id | {"from": "expression", "key": ["id"]}
on_text_and_integer | refused | async | 0A000,42804 | order_id,order_item_id | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_item_id"}}]}
on_timestamptz_and_text | refused | immediate | 0A000,42804 | order_purchase_timestamp,customer_id | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "c", "from": "customers", "type": "object", "on": {"order_purchase_timestamp": "customer_id"}}]}
on_second_pair_of_other_types | refused | async | 0A000,42804 | order_status,order_item_id | {"from": "orders", "key": ["order_id"], "lookups": [{"path": "order_items", "from": "order_items", "type": "array", "on": {"order_id": "order_id", "order_status": "order_item_id"}}]}
where_unknown_column | refused | async | 42501,42703 | nope | {"from": "orders", "key": ["order_id"], "where": "nope = 1"}
where_subquery | refused | async | 42501,0A000 | | {"from": "orders", "key": ["order_id"], "where": "order_id IN (SELECT order_id FROM order_items)"}
where_function | refused | async | 42501,0A000 | pg_sleep | {"from": "orders", "key": ["order_id"], "where": "pg_sleep(1) IS NOT NULL"}
where_syntax_error | refused | async | 42601 | | {"from": "orders", "key": ["order_id"], "where": "order_status = "}
where_not_boolean | refused | async | 42501,42804 | | {"from": "orders", "key": ["order_id"], "where": "order_status"}
name_of_a_table | orders | async | 42P07,42710 | orders | {"from": "orders", "key": ["order_id"]}
name_of_a_hidden_table | hidden | immediate | 42P07,42710 | _dv_hidden | {"from": "orders", "key": ["order_id"]}
invalid_name | Bad Name | async | 42602,22023 | | {"from": "orders", "key": ["order_id"]}
name_with_a_quote | o"rders | async | 42602,22023 | | {"from": "orders", "key": ["order_id"]}
name_too_long | a_document_view_name_of_more_than_forty_bytes | async | 42602,22023,42622,54000 | | {"from": "orders", "key": ["order_id"]}
"#;

pub struct Refusal {
    pub case: String,
    pub name: String,
    pub mode: String,
    pub codes: Vec<String>,
    pub words: Vec<String>,
    pub spec: Value,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn refusals() -> Vec<Refusal> {
    REFUSALS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let parts: Vec<&str> = line.splitn(6, '|').collect();
            assert_eq!(parts.len(), 6, "a case line: {line}");
            Refusal {
                case: parts[0].trim().into(),
                name: parts[1].trim().into(),
                mode: parts[2].trim().into(),
                codes: list(parts[3]),
                words: list(parts[4]),
                spec: serde_json::from_str(parts[5].trim())
                    .unwrap_or_else(|e| panic!("{}: {e}", parts[0])),
            }
        })
        .collect()
}

/// Every relation (kind, owner), function and trigger of the project schema, and the
/// document view catalog: what a failed create must leave as it was.
pub fn schema_objects(client: &mut Client) -> Vec<String> {
    client
        .query(
            "SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' owner ' || c.relowner::regrole::text
               FROM pg_catalog.pg_class c WHERE c.relnamespace = current_schema()::regnamespace
             UNION ALL
             SELECT 'function ' || p.oid::regprocedure::text FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace
             UNION ALL
             SELECT 'trigger ' || t.tgname || ' on ' || t.tgrelid::regclass::text FROM pg_catalog.pg_trigger t
               JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace
             UNION ALL
             SELECT 'document view ' || name FROM beacon.document_views WHERE project = current_schema()
             UNION ALL
             SELECT 'subscription ' || channel FROM beacon.document_subscription
             ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Runs one refused create; the problems with it (accepted, another SQLSTATE, a message
/// not naming the part, objects left behind or removed), if any.
pub fn check_refusal(client: &mut Client, r: &Refusal) -> Option<String> {
    let before = schema_objects(client);
    let result = client.execute(
        "SELECT beacon.create_document_view(current_schema(), $1, $2, $3)",
        &[&r.name, &r.spec, &r.mode],
    );
    let after = schema_objects(client);
    let mut problems = Vec::new();
    match result {
        Ok(_) => problems.push("accepted".to_string()),
        Err(e) => {
            let text = describe(&e);
            if !r.codes.contains(&sqlstate(&e)) {
                problems.push(format!("{text} (expected SQLSTATE {:?})", r.codes));
            }
            let lower = text.to_lowercase();
            let unnamed: Vec<&String> = r
                .words
                .iter()
                .filter(|w| !lower.contains(&w.to_lowercase()))
                .collect();
            if !unnamed.is_empty() {
                problems.push(format!("message does not name {unnamed:?}"));
            }
        }
    }
    if before != after {
        let added: Vec<&String> = after.iter().filter(|o| !before.contains(o)).collect();
        let removed: Vec<&String> = before.iter().filter(|o| !after.contains(o)).collect();
        problems.push(format!("left behind {added:?}, removed {removed:?}"));
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "{} ({}): {}\n  spec: {}",
            r.case,
            r.mode,
            problems.join("; "),
            r.spec
        ))
    }
}
