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

/// Per position, the root key's columns in that position's table when the position is a
/// lookup of the root whose `on` covers the whole key (`order_items` on `order_id`): its
/// rows name their document themselves.
pub fn key_columns_at(layout: &Layout) -> Vec<Option<Vec<String>>> {
    let spec = &layout.spec;
    let mut out = vec![None; spec.lookups.len() + 1];
    for (i, l) in spec.lookups.iter().enumerate() {
        if spec.parent_position(i) != 0 {
            continue;
        }
        let own: Option<Vec<String>> = spec
            .key
            .iter()
            .map(|k| l.on.iter().find(|(p, _)| p == k).map(|(_, c)| c.clone()))
            .collect();
        out[i + 1] = own;
    }
    out
}

/// The lock trees of the view: the lookup tree cut below the root at every lookup keyed
/// by the root's key. A change never reads across such an edge (the lookup's rows carry
/// their document's key), so nothing needs ordering there: each part is locked as a tree
/// of its own (`cq::edge_locks`). Each part: its positions (the first one its top) and
/// its tree.
pub fn lock_trees<'a>(layout: &'a Layout, hashes: &[String]) -> Vec<(Vec<usize>, Tree<'a>)> {
    let spec = &layout.spec;
    let keyed = key_columns_at(layout);
    let n = spec.lookups.len() + 1;
    let top_of = |mut p: usize| -> usize {
        while p != 0 && keyed[p].is_none() {
            p = spec.parent_position(p - 1);
        }
        p
    };
    let tops: Vec<usize> = (0..n).filter(|p| *p == 0 || keyed[*p].is_some()).collect();
    tops.into_iter()
        .map(|top| {
            let positions: Vec<usize> = (0..n).filter(|p| top_of(*p) == top).collect();
            let local = |p: usize| positions.iter().position(|q| *q == p).unwrap_or(0);
            let tree = Tree {
                project: &layout.project,
                tables: positions.iter().map(|p| spec.table_at(*p)).collect(),
                edges: positions[1..]
                    .iter()
                    .map(|p| {
                        let l = &spec.lookups[p - 1];
                        crate::cq::edge_locks::Edge {
                            parent: local(spec.parent_position(p - 1)),
                            parent_column: l.on[0].0.clone(),
                            own_column: l.on[0].1.clone(),
                            hash: hashes.get(p - 1).cloned().unwrap_or_else(|| "0".into()),
                        }
                    })
                    .collect(),
            };
            (positions, tree)
        })
        .collect()
}

/// Immediate mode: before rebuilding, the documents are locked (exclusively, by key
/// hash), so that two writers of one document rebuild it one after the other, the second
/// with the first's rows in view; a statement touching many documents locks the whole
/// view instead (every document lock also holds the view's lock shared), which bounds
/// the locks a statement takes. Under REPEATABLE READ a document another transaction
/// wrote since the snapshot is a serialization failure.
fn document_locks(layout: &Layout, roots: &str) -> String {
    let id = document_lock_id(layout);
    let key_hash = format!(
        "pg_catalog.hashtext(pg_catalog.jsonb_build_array({})::pg_catalog.text)",
        layout.key_list("r.")
    );
    let first = quote_ident(&layout.spec.key[0]);
    format!(
        "SELECT count(DISTINCT {key_hash}) INTO \"beacon documents\" FROM {roots} r;\n    \
         IF \"beacon documents\" > {MAX_DOCUMENT_LOCKS} THEN\n      \
         PERFORM pg_catalog.pg_advisory_xact_lock({id}, 0);\n    \
         ELSIF \"beacon documents\" > 0 THEN\n      \
         PERFORM pg_catalog.pg_advisory_xact_lock_shared({id}, 0);\n      \
         PERFORM pg_catalog.pg_advisory_xact_lock({}, x.h) FROM (SELECT DISTINCT {key_hash} AS h FROM {roots} r ORDER BY 1) x;\n    \
         END IF;\n    \
         IF \"beacon repeatable read\" AND \"beacon documents\" > 0 THEN\n      \
         PERFORM beacon._unchanged_since_snapshot({}::regclass, {}, (SELECT pg_catalog.array_agg(r.{first}) FROM {roots} r WHERE r.{first} IS NOT NULL));\n    \
         END IF",
        id.wrapping_add(1),
        crate::names::quote_literal(&layout.docs_table()),
        crate::names::quote_literal(&layout.spec.key[0]),
    )
}

/// The advisory lock (with 0) of a whole immediate view; with `+ 1`, its documents'.
fn document_lock_id(layout: &Layout) -> i32 {
    crate::cq::edge_locks::stable_hash(&format!(
        "pg_beacon|document|{}|{}",
        layout.project, layout.name
    )) as i32
}

/// The name of the lock a refresh of an async view holds (see `refresh_one`).
pub fn refresh_lock_name(layout: &Layout) -> String {
    format!("beacon.document_view {}.{}", layout.project, layout.name)
}

/// Above this many documents, a statement of an immediate view locks the whole view.
const MAX_DOCUMENT_LOCKS: usize = 64;

/// The body of `table`'s capture function.
pub fn capture_body(
    layout: &Layout,
    hashes: &[String],
    condition: Option<&str>,
    immediate: bool,
    table: &str,
) -> String {
    let trees = lock_trees(layout, hashes);
    let keyed = key_columns_at(layout);
    let mut branches = String::new();
    for (op, event) in [
        ("INSERT", Event::Insert),
        ("UPDATE", Event::Update),
        ("DELETE", Event::Delete),
    ] {
        let rows = event.all_rows();
        let mut text = String::new();
        let mut roots = Vec::new();
        for (positions, tree) in &trees {
            if !tree.tables.contains(&table) {
                continue;
            }
            let locks = tree.locks(table, &rows);
            for statement in &locks.statements {
                text.push_str(&format!("    {statement};\n"));
            }
            // the documents the statement's rows reach: through the part's top, whose
            // rows are the root's or carry its key
            let top = positions[0];
            let key_of_top: Vec<String> = match &keyed[top] {
                None => layout.spec.key.iter().map(|k| quote_ident(k)).collect(),
                Some(columns) => columns.iter().map(|c| quote_ident(c)).collect(),
            };
            let select: Vec<String> = key_of_top
                .iter()
                .zip(&layout.spec.key)
                .map(|(c, k)| format!("r.{c} AS {}", quote_ident(k)))
                .collect();
            let occurrences = (0..tree.tables.len()).filter(|p| tree.tables[*p] == table);
            for (local, reached) in occurrences.zip(&locks.reached) {
                let relation = if local == 0 {
                    rows.clone()
                } else {
                    reached[0].clone().unwrap_or_else(|| rows.clone())
                };
                roots.push(format!("SELECT {} FROM {relation} r", select.join(", ")));
            }
        }
        let roots = format!("({})", roots.join(" UNION "));
        if immediate {
            text.push_str(&format!("    {};\n", document_locks(layout, &roots)));
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
    // TRUNCATE rebuilds every document. No lock is needed against the other rebuilders:
    // each reads every table of the view, so TRUNCATE's ACCESS EXCLUSIVE lock waits for
    // those already reading, and those that come later wait for it, and take their
    // snapshot (READ COMMITTED) once it committed.
    format!(
        "DECLARE\n  {REPEATABLE_READ_DECLARATION}\n  \"beacon changed\" bigint;\n  \"beacon documents\" bigint;\nBEGIN\n\
         {branches}  ELSE\n    PERFORM {}();\n  END IF;\n  RETURN NULL;\nEND",
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

#[cfg(test)]
#[path = "functions_tests.rs"]
mod tests;
