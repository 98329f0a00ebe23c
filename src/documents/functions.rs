//! The PL/pgSQL and SQL functions generated for a document view (pure text):
//!
//! - one capture function per table it reads: after the edge locks (`cq::edge_locks`),
//!   the keys of the documents the statement may change are appended to the pending
//!   table (async) or those documents rebuilt at once (immediate); TRUNCATE rebuilds all;
//! - `_dv_<name>_refresh(batch)`: the worker's (and `refresh_document_view`'s) step, which
//!   takes pending keys and rebuilds their documents in one statement;
//! - `_dv_<name>_rebuild_all()`: every document, at creation and after TRUNCATE;
//! - `_dv_<name>_pending_docs()`: the documents of pending keys, built for the view.
//!
//! All of them run with the same SET clauses, so that a document (its timestamps, floats,
//! intervals as JSON text) is the same whoever builds it.

use super::build::{Layout, CHANGED};
use crate::cq::edge_locks::{Tree, REPEATABLE_READ_DECLARATION};
use crate::cq::plan::Event;
use crate::names::quote_ident;

/// The lock tree of the view's lookups, each edge with its lock hash.
pub fn lock_tree<'a>(layout: &'a Layout, hashes: &[String]) -> Tree<'a> {
    let spec = &layout.spec;
    Tree {
        project: &layout.project,
        tables: (0..=spec.lookups.len()).map(|p| spec.table_at(p)).collect(),
        edges: spec
            .lookups
            .iter()
            .enumerate()
            .map(|(i, l)| crate::cq::edge_locks::Edge {
                parent: spec.parent_position(i),
                parent_column: l.on[0].0.clone(),
                own_column: l.on[0].1.clone(),
                hash: hashes.get(i).cloned().unwrap_or_else(|| "0".into()),
            })
            .collect(),
    }
}

/// The body of `table`'s capture function.
pub fn capture_body(
    layout: &Layout,
    hashes: &[String],
    condition: Option<&str>,
    immediate: bool,
    table: &str,
) -> String {
    let tree = lock_tree(layout, hashes);
    let mut branches = String::new();
    for (op, event) in [
        ("INSERT", Event::Insert),
        ("UPDATE", Event::Update),
        ("DELETE", Event::Delete),
    ] {
        let rows = event.all_rows();
        let locks = tree.locks(table, &rows);
        let mut text = String::new();
        for statement in &locks.statements {
            text.push_str(&format!("    {statement};\n"));
        }
        // the roots the statement's rows reach: its own rows where the table is the root
        let occurrences = (0..tree.tables.len()).filter(|p| tree.tables[*p] == table);
        let roots: Vec<String> = occurrences
            .zip(&locks.reached)
            .map(|(position, reached)| {
                let relation = if position == 0 {
                    rows.clone()
                } else {
                    reached[0].clone().unwrap_or_else(|| rows.clone())
                };
                format!("SELECT {} FROM {relation} r", layout.key_list("r."))
            })
            .collect();
        let roots = format!("({})", roots.join(" UNION "));
        if immediate {
            text.push_str(&format!(
                "    {} INTO \"beacon changed\";\n",
                layout.rebuild(condition, &layout.keys_of(&roots))
            ));
        } else {
            let not_null: Vec<String> = layout
                .spec
                .key
                .iter()
                .map(|k| format!("r.{} IS NOT NULL", quote_ident(k)))
                .collect();
            text.push_str(&format!(
                "    INSERT INTO {} ({}) SELECT DISTINCT {} FROM {roots} r WHERE {};\n",
                layout.pending_table(),
                layout.key_list(""),
                layout.key_list("r."),
                not_null.join(" AND ")
            ));
        }
        branches.push_str(&format!(
            "  {} TG_OP = '{op}' THEN\n{text}",
            if op == "INSERT" { "IF" } else { "ELSIF" }
        ));
    }
    format!(
        "DECLARE\n  {REPEATABLE_READ_DECLARATION}\n  \"beacon changed\" bigint;\nBEGIN\n\
         {branches}  ELSE\n    -- TRUNCATE: every document is rebuilt from the tables as they are\n    \
         PERFORM {}();\n  END IF;\n  RETURN NULL;\nEND",
        layout.qualified_function("rebuild_all")
    )
}

/// `_dv_<name>_refresh(batch integer) RETURNS bigint`: rebuilds the documents of up to
/// `batch` pending entries; returns how many entries it took.
pub fn refresh_body(layout: &Layout, condition: Option<&str>) -> String {
    let rebuild = layout.rebuild_returning(
        condition,
        &layout.taken_keys("batch"),
        &format!("(SELECT count(*) FROM taken)::bigint, {CHANGED}"),
    );
    format!(
        "DECLARE\n  taken bigint;\n  changed bigint;\nBEGIN\n  {rebuild} INTO taken, changed;\n  \
         RETURN taken;\nEND"
    )
}

pub fn rebuild_all_body(layout: &Layout, condition: Option<&str>) -> String {
    format!(
        "DECLARE\n  changed bigint;\nBEGIN\n  {} INTO changed;\n  RETURN changed;\nEND",
        layout.rebuild(condition, &layout.all_keys())
    )
}
