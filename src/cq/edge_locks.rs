//! The locks that order concurrent writers of tables joined in a tree: a continuous
//! query's joins (plan/joins.rs) and a document view's lookups (documents/). Pure text.
//!
//! A capture about to read across a join edge first locks the values of the edge's
//! columns it is about to join (transaction advisory locks, hashed into `BUCKETS` per
//! edge): exclusively on the edge from the changed table up to its parent, shared on
//! every other edge. Two writers whose rows meet in one result (a joined row, a document)
//! both lock every edge between them, and the first upward edge of one of them (of the
//! lower one when one table is an ancestor of the other) exclusively: so one waits for the
//! other to commit and then reads with a new snapshot that has its rows (READ COMMITTED).
//! Writers of the root never wait for each other, and a leaf's writers do not wait for
//! them on the edges above the leaf's own. Under REPEATABLE READ the transaction's
//! snapshot may predate a change committed before the lock was granted: each locked read
//! is compared with the latest committed data (`beacon._unchanged_since_snapshot`), and a
//! difference is a serialization failure (40001) to retry.

use crate::names::{quote_ident, quote_literal};

/// Lock buckets per join edge: bounds the advisory locks a statement takes (per edge) while
/// making two unrelated keys share a lock rarely.
pub const BUCKETS: u32 = 64;

/// FNV-1a, for lock ids stable across sessions and builds.
pub fn stable_hash(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The edge from position `i` (> 0) up to its parent.
#[derive(Clone, Debug)]
pub struct Edge {
    pub parent: usize,
    pub parent_column: String,
    pub own_column: String,
    /// An expression of `{v}` giving equal values of both sides the same hash, or `0`
    /// (one lock for the whole edge).
    pub hash: String,
}

/// A tree of tables: position 0 is the root, `edges[i - 1]` joins position i to its
/// parent (an earlier position).
pub struct Tree<'a> {
    pub project: &'a str,
    /// The table at each position, unqualified.
    pub tables: Vec<&'a str>,
    pub edges: Vec<Edge>,
}

/// What a change of one table must lock, and the rows it reached.
pub struct Locks {
    /// The statements to run, in order (each read after the locks it depends on).
    pub statements: Vec<String>,
    /// Per occurrence of the changed table: the rows reached at each position (None
    /// where the occurrence itself stands), as subqueries over the statement's rows.
    pub reached: Vec<Vec<Option<String>>>,
}

impl Tree<'_> {
    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", quote_ident(self.project), quote_ident(table))
    }

    /// The lock id of position i's edge: the same wherever the same columns of the same
    /// tables are joined in the same direction, so that captures of several queries share
    /// locks. Direction is part of it because which side locks exclusively depends on it.
    pub fn edge_lock_id(&self, i: usize) -> i32 {
        let e = &self.edges[i - 1];
        stable_hash(&format!(
            "pg_beacon|{}|{}.{}>{}.{}",
            self.project, self.tables[e.parent], e.parent_column, self.tables[i], e.own_column
        )) as i32
    }

    /// The locks (and, under REPEATABLE READ, the checks) a statement on `table` takes
    /// before reading the other tables: from each occurrence of the table outwards along
    /// the tree, one edge at a time, each read after its lock (every statement takes a new
    /// snapshot under READ COMMITTED). `rows` is the statement's rows, old and new.
    pub fn locks(&self, table: &str, rows: &str) -> Locks {
        let n = self.tables.len();
        // (neighbour, edge position, column on this side, column on theirs, whether the
        // neighbour is this side's parent)
        let neighbours = |o: usize| -> Vec<(usize, usize, String, String, bool)> {
            let mut out = Vec::new();
            if o > 0 {
                let e = &self.edges[o - 1];
                out.push((
                    e.parent,
                    o,
                    e.own_column.clone(),
                    e.parent_column.clone(),
                    true,
                ));
            }
            for (k, e) in self.edges.iter().enumerate() {
                if e.parent == o {
                    out.push((
                        k + 1,
                        k + 1,
                        e.parent_column.clone(),
                        e.own_column.clone(),
                        false,
                    ));
                }
            }
            out
        };
        let mut statements = Vec::new();
        let mut reached = Vec::new();
        for start in (0..n).filter(|i| self.tables[*i] == table) {
            let mut rows_at: Vec<Option<String>> = vec![None; n];
            let mut visited = vec![false; n];
            visited[start] = true;
            let mut queue = vec![(start, rows.to_string())];
            let mut next = 0;
            while next < queue.len() {
                let (at, at_rows) = queue[next].clone();
                next += 1;
                for (other, edge, column, their_column, upward) in neighbours(at) {
                    if visited[other] {
                        continue;
                    }
                    visited[other] = true;
                    let exclusive = upward && at == start;
                    let hash = self.edges[edge - 1]
                        .hash
                        .replace("{v}", &format!("r.{}", quote_ident(&column)));
                    statements.push(format!(
                        "PERFORM pg_catalog.{}({}, x.b) FROM (SELECT DISTINCT (({hash}) & {}) AS b FROM {at_rows} r \
                         WHERE r.{c} IS NOT NULL ORDER BY 1) x",
                        if exclusive {
                            "pg_advisory_xact_lock"
                        } else {
                            "pg_advisory_xact_lock_shared"
                        },
                        self.edge_lock_id(edge),
                        BUCKETS - 1,
                        c = quote_ident(&column)
                    ));
                    let their_table = self.qualified(self.tables[other]);
                    statements.push(unchanged_check(
                        &their_table,
                        &their_column,
                        &at_rows,
                        &column,
                    ));
                    let their_rows = format!(
                        "(SELECT t.* FROM {their_table} t WHERE t.{} IN (SELECT r.{} FROM {at_rows} r))",
                        quote_ident(&their_column),
                        quote_ident(&column)
                    );
                    rows_at[other] = Some(their_rows.clone());
                    queue.push((other, their_rows));
                }
            }
            reached.push(rows_at);
        }
        Locks {
            statements,
            reached,
        }
    }
}

/// Under REPEATABLE READ: raises 40001 unless the rows of `relation` whose `their_column`
/// is among `column` of `rows` are the same under the transaction's snapshot and the latest.
pub fn unchanged_check(relation: &str, their_column: &str, rows: &str, column: &str) -> String {
    format!(
        "IF \"beacon repeatable read\" THEN PERFORM beacon._unchanged_since_snapshot({}::regclass, {}, \
         (SELECT pg_catalog.array_agg(r.{c}) FROM {rows} r WHERE r.{c} IS NOT NULL)); END IF",
        quote_literal(relation),
        quote_literal(their_column),
        c = quote_ident(column)
    )
}

/// The declaration the generated trigger functions need for `unchanged_check`.
pub const REPEATABLE_READ_DECLARATION: &str = "\"beacon repeatable read\" boolean := \
     pg_catalog.current_setting('transaction_isolation') <> 'read committed';";
