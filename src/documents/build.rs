//! The SQL of a document view, from its checked spec and the columns each table shows
//! (resolved against the database when the view is created, then stored): the defining
//! query that builds documents from scratch, the rebuild of a set of keys, the exact
//! read view, and the names of the hidden relations. Pure text: plain `#[test]`s.
//!
//! A document is the root row's fields, with each lookup's field added: an object lookup
//! is the first matching row (by `order_by`, then by the whole row, so that any two
//! builds agree) or null, an array lookup every matching row in that order, or `[]`.
//! A lookup's field replaces a column of the same name.

use super::spec::{LookupKind, Spec};
use crate::names::{column_for_property, quote_ident, quote_literal};

/// `jsonb_build_object` takes at most 100 arguments: 50 fields per call.
const FIELDS_PER_CALL: usize = 50;

/// What a rebuild returns by default: how many documents changed.
pub const CHANGED: &str =
    "((SELECT count(*) FROM upserted) + (SELECT count(*) FROM deleted))::bigint";

/// NOTIFY's payload limit is 8000 bytes.
pub const NOTIFY_LIMIT: usize = 7999;

#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub project: String,
    pub name: String,
    pub spec: Spec,
    /// Per position (0 the root, i lookup i - 1): (field, column) in document order.
    pub fields: Vec<Vec<(String, String)>>,
    /// The spec's `document_where`, checked and rendered: documents must satisfy it.
    pub document_condition: Option<String>,
}

fn alias(position: usize) -> String {
    if position == 0 {
        // the root's `where` is checked against a table named so (see stream::checked_condition)
        "beacon_row".into()
    } else {
        format!("beacon_l{position}")
    }
}

impl Layout {
    fn qualified(&self, relation: &str) -> String {
        format!("{}.{}", quote_ident(&self.project), quote_ident(relation))
    }

    pub fn view(&self) -> String {
        self.qualified(&self.name)
    }

    pub fn docs_table_name(&self) -> String {
        format!("_dv_{}", self.name)
    }

    pub fn docs_table(&self) -> String {
        self.qualified(&self.docs_table_name())
    }

    pub fn pending_table(&self) -> String {
        self.qualified(&format!("_dv_{}_pending", self.name))
    }

    /// The capture function of one table (names of any length fit 63 bytes).
    pub fn capture_function(&self, table: &str) -> String {
        let name = column_for_property(&format!("_dv_{}_on_{table}", self.name), |_| false);
        self.qualified(&name)
    }

    pub fn notify_function(&self) -> String {
        let name = column_for_property(&format!("_dv_{}_notify", self.name), |_| false);
        self.qualified(&name)
    }

    pub fn trigger_name(&self, event: &str) -> String {
        column_for_property(&format!("_beacon_dv_{}_{event}", self.name), |_| false)
    }

    fn keys(&self) -> Vec<String> {
        self.spec.key.iter().map(|k| quote_ident(k)).collect()
    }

    /// `a.k1, a.k2`
    pub fn key_list(&self, prefix: &str) -> String {
        self.keys()
            .iter()
            .map(|k| format!("{prefix}{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a.k1 = b.k1 AND a.k2 = b.k2`
    fn keys_equal(&self, a: &str, b: &str) -> String {
        self.keys()
            .iter()
            .map(|k| format!("{a}.{k} = {b}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// `jsonb_build_object('k1', a.k1, …)`: the key of a notification.
    pub fn key_object(&self, a: &str) -> String {
        let pairs: Vec<String> = self
            .spec
            .key
            .iter()
            .map(|k| format!("{}, {a}.{}", quote_literal(k), quote_ident(k)))
            .collect();
        format!("pg_catalog.jsonb_build_object({})", pairs.join(", "))
    }

    /// The jsonb of the row at `position` (aliased by `alias(position)`), its lookups in.
    fn document(&self, position: usize) -> String {
        let a = alias(position);
        let mut pairs: Vec<String> = self.fields[position]
            .iter()
            .map(|(field, column)| format!("{}, {a}.{}", quote_literal(field), quote_ident(column)))
            .collect();
        for (i, lookup) in self.spec.lookups.iter().enumerate() {
            if self.spec.parent_position(i) == position {
                pairs.push(format!(
                    "{}, {}",
                    quote_literal(&lookup.field),
                    self.lookup(i + 1)
                ));
            }
        }
        if pairs.is_empty() {
            return "'{}'::pg_catalog.jsonb".into();
        }
        pairs
            .chunks(FIELDS_PER_CALL)
            .map(|chunk| format!("pg_catalog.jsonb_build_object({})", chunk.join(", ")))
            .collect::<Vec<_>>()
            .join(" || ")
    }

    fn lookup(&self, position: usize) -> String {
        let lookup = &self.spec.lookups[position - 1];
        let own = alias(position);
        let parent = alias(self.spec.parent_position(position - 1));
        let on: Vec<String> = lookup
            .on
            .iter()
            .map(|(parent_column, column)| {
                format!(
                    "{own}.{} = {parent}.{}",
                    quote_ident(column),
                    quote_ident(parent_column)
                )
            })
            .collect();
        let mut order: Vec<String> = lookup
            .order_by
            .iter()
            .map(|(column, descending)| {
                format!(
                    "{own}.{}{}",
                    quote_ident(column),
                    if *descending { " DESC" } else { "" }
                )
            })
            .collect();
        // ties (and lookups without order_by) are broken by the whole row
        order.push(format!("pg_catalog.to_jsonb({own})"));
        let from = format!(
            "FROM {} {own} WHERE {}",
            self.qualified(&lookup.table),
            on.join(" AND ")
        );
        match lookup.kind {
            LookupKind::Object => format!(
                "(SELECT {} {from} ORDER BY {} LIMIT 1)",
                self.document(position),
                order.join(", ")
            ),
            LookupKind::Array => format!(
                "COALESCE((SELECT pg_catalog.jsonb_agg({} ORDER BY {}) {from}), '[]'::pg_catalog.jsonb)",
                self.document(position),
                order.join(", ")
            ),
        }
    }

    /// The defining query: every document from scratch, as `(keys…, doc)`. `condition`
    /// (the root's checked `where`, already rendered) and `extra` restrict the roots.
    pub fn defining_query(&self, condition: Option<&str>, extra: Option<&str>) -> String {
        let root = alias(0);
        let mut wheres: Vec<String> = self
            .keys()
            .iter()
            .map(|k| format!("{root}.{k} IS NOT NULL"))
            .collect();
        if let Some(c) = condition {
            wheres.push(format!("({c})"));
        }
        if let Some(e) = extra {
            wheres.push(e.to_string());
        }
        let query = format!(
            "SELECT {}, {} AS doc FROM {} {root} WHERE {}",
            self.key_list(&format!("{root}.")),
            self.document(0),
            self.qualified(&self.spec.table),
            wheres.join(" AND ")
        );
        match &self.document_condition {
            // the condition was checked against the documents table, whose columns
            // these are
            Some(c) => format!("SELECT * FROM ({query}) beacon_row WHERE ({c})"),
            None => query,
        }
    }

    /// The documents of the keys `keys` (a query or relation with the key columns).
    fn built_for(&self, condition: Option<&str>, keys: &str) -> String {
        let root = alias(0);
        let key_cols = self.key_list("");
        let lhs = if self.spec.key.len() == 1 {
            format!("{root}.{}", self.keys()[0])
        } else {
            format!("({})", self.key_list(&format!("{root}.")))
        };
        self.defining_query(
            condition,
            Some(&format!("{lhs} IN (SELECT {key_cols} FROM {keys})")),
        )
    }

    /// One statement that brings the documents of `keys` up to date: rebuilt ones are
    /// upserted (and only written when they changed, so a notification means a change),
    /// those whose root is gone or filtered out are deleted. `keys_cte` defines `keys`
    /// (distinct key tuples); the statement returns how many documents changed.
    pub fn rebuild(&self, condition: Option<&str>, keys_cte: &str) -> String {
        self.rebuild_returning(condition, keys_cte, CHANGED)
    }

    /// `rebuild`, selecting `returning` at the end (over the CTEs `keys`, `built`,
    /// `upserted`, `deleted`, and whatever `keys_cte` defines).
    pub fn rebuild_returning(
        &self,
        condition: Option<&str>,
        keys_cte: &str,
        returning: &str,
    ) -> String {
        let docs = self.docs_table();
        let key_cols = self.key_list("");
        let lhs = if self.spec.key.len() == 1 {
            format!("d.{}", self.keys()[0])
        } else {
            format!("({})", self.key_list("d."))
        };
        format!(
            "WITH {keys_cte},
             built AS ({}),
             upserted AS (INSERT INTO {docs} AS d ({key_cols}, doc) SELECT {key_cols}, doc FROM built
                           ON CONFLICT ({key_cols}) DO UPDATE SET doc = EXCLUDED.doc
                           WHERE d.doc IS DISTINCT FROM EXCLUDED.doc RETURNING 1),
             deleted AS (DELETE FROM {docs} d WHERE {lhs} IN (SELECT {key_cols} FROM keys)
                           AND NOT EXISTS (SELECT 1 FROM built b WHERE {}) RETURNING 1)
             SELECT {returning}",
            self.built_for(condition, "keys"),
            self.keys_equal("b", "d")
        )
    }

    /// `keys` as the distinct non-NULL keys of `rows` (a relation with the root's columns).
    pub fn keys_of(&self, rows: &str) -> String {
        let not_null: Vec<String> = self
            .keys()
            .iter()
            .map(|k| format!("r.{k} IS NOT NULL"))
            .collect();
        format!(
            "keys AS (SELECT DISTINCT {} FROM {rows} r WHERE {})",
            self.key_list("r."),
            not_null.join(" AND ")
        )
    }

    /// Every document: the keys of the stored documents and of the root.
    pub fn all_keys(&self) -> String {
        format!(
            "keys AS (SELECT {k} FROM {} UNION SELECT {k} FROM {} WHERE {})",
            self.docs_table(),
            self.qualified(&self.spec.table),
            self.keys()
                .iter()
                .map(|k| format!("{k} IS NOT NULL"))
                .collect::<Vec<_>>()
                .join(" AND "),
            k = self.key_list("")
        )
    }

    /// Up to `limit` (an expression) pending entries, taken (deleted) by the statement
    /// that rebuilds them.
    pub fn taken_keys(&self, limit: &str) -> String {
        let pending = self.pending_table();
        format!(
            "taken AS (DELETE FROM {pending} p WHERE p.ctid IN (SELECT ctid FROM {pending} LIMIT {limit})
                        RETURNING {}),
             keys AS (SELECT DISTINCT {} FROM taken)",
            self.key_list("p."),
            self.key_list("")
        )
    }

    /// The view users read, before its functions exist: the stored documents only, so
    /// that conditions on documents can be checked against it.
    pub fn create_plain_view(&self) -> String {
        format!(
            "CREATE VIEW {} AS SELECT {}, d.doc FROM {} d",
            self.view(),
            self.key_list("d."),
            self.docs_table()
        )
    }

    /// A view of the defining query that nothing reads: PostgreSQL's dependencies on it
    /// keep the tables and columns the documents are built from from being dropped,
    /// retyped (or, by pg_beacon's guard, renamed) under the view.
    pub fn source_view(&self) -> String {
        self.qualified(&format!("_dv_{}_source", self.name))
    }

    /// A generated function of the view: `_dv_<name>_<suffix>`.
    pub fn qualified_function(&self, suffix: &str) -> String {
        self.qualified(&format!("_dv_{}_{suffix}", self.name))
    }

    /// The documents of the pending keys, as the view shows them.
    pub fn pending_docs(&self, condition: Option<&str>) -> String {
        self.built_for(condition, &self.pending_table())
    }

    /// The view users read: the stored documents, but those with pending changes rebuilt
    /// on the fly (by `_dv_<name>_pending_docs()`), so that every read is exact and sees
    /// the reader's own writes. The uncorrelated EXISTS is a one-time filter: without
    /// pending changes the function is not called at all.
    pub fn create_view(&self) -> String {
        let pending = self.pending_table();
        format!(
            "CREATE OR REPLACE VIEW {} AS
             SELECT {}, d.doc FROM {} d
              WHERE NOT EXISTS (SELECT 1 FROM {pending} p WHERE {})
             UNION ALL
             SELECT {}, b.doc FROM {}() b WHERE EXISTS (SELECT 1 FROM {pending})",
            self.view(),
            self.key_list("d."),
            self.docs_table(),
            self.keys_equal("p", "d"),
            self.key_list("b."),
            self.qualified_function("pending_docs")
        )
    }

    /// The NOTIFY payload of a changed document `n` (its columns) for `op`, or the
    /// key-only form when it does not fit.
    pub fn payload(&self, n: &str, op: &str, with_doc: bool) -> String {
        let short = format!(
            "pg_catalog.jsonb_build_object('view', {}, 'key', {}, 'op', {})",
            quote_literal(&self.name),
            self.key_object(n),
            quote_literal(op)
        );
        if !with_doc {
            return format!("({short})::text");
        }
        let full = format!("({short} || pg_catalog.jsonb_build_object('doc', {n}.doc))::text");
        format!(
            "(SELECT CASE WHEN pg_catalog.octet_length(f.p) <= {NOTIFY_LIMIT} THEN f.p
                     ELSE ({short} || '{{\"truncated\": true}}'::pg_catalog.jsonb)::text END
                FROM (SELECT {full} AS p) f)"
        )
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
