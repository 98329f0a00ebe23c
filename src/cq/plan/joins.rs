//! Continuous queries over joins: the FROM clause, and what a statement on one of the
//! tables appends to the delta.
//!
//! A statement changes one table; the other tables are as they are when its trigger
//! runs. Every step of a left-deep join is linear in its left input, and an inner step
//! also in its right one, so for a table that is only inner-joined (or the first one) the
//! change of the result is the query with the table's rows replaced by the statement's
//! new rows (added) and old rows (subtracted). A table the query reads several times
//! (self-join) takes every non-empty subset of its occurrences replaced, with
//! inclusion-exclusion signs. A left-joined table is read once (see analyze/joins.rs):
//! its change is the inner join with the changed rows, plus the rows of its left input
//! whose match appeared (their NULL-extended row leaves) or vanished (it comes back);
//! which keys flipped is decided by counting the table's rows per key now and before.
//!
//! Concurrency: before reading across a join edge, a capture locks the values it is about
//! to join, so that two transactions never each miss the other's rows (see `edge_locks`).

use super::super::analyze::JoinKind;
use super::super::edge_locks::{unchanged_check, Edge, Tree};
use super::{Plan, Rows};
use crate::names::quote_ident;
use std::collections::BTreeMap;

/// What PostgreSQL told about the joined tables, for the capture code.
#[derive(Clone, Debug, Default)]
pub struct JoinTypes {
    /// Per table of the query (0 = the first), the type of each column it references.
    pub columns: Vec<BTreeMap<String, String>>,
    /// Per join, how its first equality's values are hashed into a lock bucket: an
    /// expression of `{v}` that gives equal values of both sides the same hash, or `0`
    /// (one lock for the whole edge) for types without one.
    pub lock_hash: Vec<String>,
}

/// Which statement fired the trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Insert,
    Update,
    Delete,
}

impl Event {
    /// The transition tables of the statement, with the sign of their rows.
    fn row_sets(self) -> Vec<(&'static str, Rows)> {
        match self {
            Event::Insert => vec![("beacon_new", Rows::Inserted)],
            Event::Delete => vec![("beacon_old", Rows::Deleted)],
            Event::Update => vec![
                ("beacon_old", Rows::Deleted),
                ("beacon_new", Rows::Inserted),
            ],
        }
    }

    /// The statement's rows (old and new) as one relation.
    pub fn all_rows(self) -> String {
        let sets: Vec<String> = self
            .row_sets()
            .iter()
            .map(|(t, _)| format!("SELECT * FROM {t}"))
            .collect();
        format!("({})", sets.join(" UNION ALL "))
    }
}

/// What stands for a table of the query in one term of a change.
#[derive(Clone)]
enum Stand {
    Table,
    /// A transition table; a left join with it is an inner one.
    Rows(&'static str),
    /// The keys of a left-joined table whose match flipped, its columns NULL.
    Flipped(String),
}

impl Plan {
    pub fn is_join(&self) -> bool {
        !self.query.joins.is_empty()
    }

    fn table_of(&self, occurrence: usize) -> &str {
        match occurrence {
            0 => &self.source,
            i => &self.query.joins[i - 1].table,
        }
    }

    fn alias_of(&self, occurrence: usize) -> &str {
        match occurrence {
            0 => self.query.source_alias.as_deref().unwrap_or(&self.source),
            i => &self.query.joins[i - 1].alias,
        }
    }

    /// Every table the query reads, the first one first, each once.
    pub fn tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for i in 0..=self.query.joins.len() {
            let table = self.table_of(i).to_string();
            if !tables.contains(&table) {
                tables.push(table);
            }
        }
        tables
    }

    /// The tables other than the first one, sorted (the catalog's `joined`).
    pub fn joined_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = self
            .tables()
            .into_iter()
            .filter(|t| *t != self.source)
            .collect();
        tables.sort();
        tables
    }

    /// What the query reads: the source, or its joins.
    pub fn relation(&self) -> String {
        if !self.is_join() {
            return self.source_table();
        }
        self.join_clause(&vec![Stand::Table; self.query.joins.len() + 1])
    }

    /// How the first table's system columns are named in `relation()`.
    pub(super) fn source_qualifier(&self) -> String {
        match &self.query.source_alias {
            Some(alias) if self.is_join() => format!("{}.", quote_ident(alias)),
            _ => String::new(),
        }
    }

    fn join_clause(&self, stands: &[Stand]) -> String {
        let relation = |i: usize| match &stands[i] {
            Stand::Table => self.qualified(self.table_of(i)),
            Stand::Rows(table) => table.to_string(),
            Stand::Flipped(relation) => relation.clone(),
        };
        let mut from = format!("{} AS {}", relation(0), quote_ident(self.alias_of(0)));
        for (j, join) in self.query.joins.iter().enumerate() {
            let i = j + 1;
            let left = join.kind == JoinKind::Left && matches!(stands[i], Stand::Table);
            let alias = quote_ident(&join.alias);
            let parent = quote_ident(self.alias_of(join.parent));
            let mut conditions: Vec<String> = join
                .pairs
                .iter()
                .enumerate()
                .map(|(k, (parent_column, own))| {
                    let own = match stands[i] {
                        Stand::Flipped(_) => format!("_beacon_k{k}"),
                        _ => own.clone(),
                    };
                    format!(
                        "{parent}.{} = {alias}.{}",
                        quote_ident(parent_column),
                        quote_ident(&own)
                    )
                })
                .collect();
            if let Some(filter) = &join.filter {
                conditions.push(format!("({filter})"));
            }
            from.push_str(&format!(
                " {} {} AS {alias} ON {}",
                if left { "LEFT JOIN" } else { "JOIN" },
                relation(i),
                conditions.join(" AND ")
            ));
        }
        from
    }

    /// For left-joined `occurrence`: the keys of the statement's rows whose match flipped,
    /// one row each with the table's columns NULL — `lost` those that have no row any more
    /// (their NULL-extended rows come back), else those that had none before.
    fn flipped(&self, occurrence: usize, event: Event, lost: bool) -> String {
        let join = &self.query.joins[occurrence - 1];
        let types = self.join_types.columns.get(occurrence);
        let keys: Vec<String> = (0..join.pairs.len())
            .map(|k| format!("_beacon_k{k}"))
            .collect();
        let signed: Vec<String> = event
            .row_sets()
            .iter()
            .map(|(table, rows)| {
                let values: Vec<String> = join
                    .pairs
                    .iter()
                    .zip(&keys)
                    .map(|((_, own), k)| format!("r.{} AS {k}", quote_ident(own)))
                    .collect();
                let n = if *rows == Rows::Inserted { 1 } else { -1 };
                format!("SELECT {}, {n} AS n FROM {table} r", values.join(", "))
            })
            .collect();
        let positions: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
        let not_null: Vec<String> = keys.iter().map(|k| format!("x.{k} IS NOT NULL")).collect();
        let matching: Vec<String> = join
            .pairs
            .iter()
            .zip(&keys)
            .map(|((_, own), k)| format!("t.{} = f.{k}", quote_ident(own)))
            .collect();
        let mut columns: Vec<String> = join
            .columns
            .iter()
            .map(|c| {
                let ty = types
                    .and_then(|t| t.get(c))
                    .map(String::as_str)
                    .unwrap_or("pg_catalog.text");
                format!("NULL::{ty} AS {}", quote_ident(c))
            })
            .collect();
        columns.extend(keys.iter().map(|k| format!("f.{k}")));
        format!(
            "(SELECT {} FROM (SELECT {}, sum(x.n) AS _beacon_delta FROM ({}) x WHERE {} GROUP BY {}) f \
             CROSS JOIN LATERAL (SELECT count(*) AS _beacon_count FROM {} t WHERE {}) c \
             WHERE (c._beacon_count > 0) <> (c._beacon_count - f._beacon_delta > 0) AND c._beacon_count {})",
            columns.join(", "),
            keys.iter().map(|k| format!("x.{k}")).collect::<Vec<_>>().join(", "),
            signed.join(" UNION ALL "),
            not_null.join(" AND "),
            positions.join(", "),
            self.qualified(&join.table),
            matching.join(" AND "),
            if lost { "= 0" } else { "> 0" }
        )
    }

    /// The terms of the change a statement on `table` makes: (FROM clause, sign).
    fn change_terms(&self, table: &str, event: Event) -> Vec<(String, Rows)> {
        let n = self.query.joins.len() + 1;
        let occurrences: Vec<usize> = (0..n).filter(|i| self.table_of(*i) == table).collect();
        let mut terms = Vec::new();
        let left = occurrences
            .iter()
            .copied()
            .find(|i| *i > 0 && self.query.joins[i - 1].kind == JoinKind::Left);
        if let Some(o) = left {
            // read only once (analyze refuses otherwise)
            for (rows_table, rows) in event.row_sets() {
                let mut stands = vec![Stand::Table; n];
                stands[o] = Stand::Rows(rows_table);
                terms.push((self.join_clause(&stands), rows));
            }
            for (lost, rows) in [(true, Rows::Inserted), (false, Rows::Deleted)] {
                let mut stands = vec![Stand::Table; n];
                stands[o] = Stand::Flipped(self.flipped(o, event, lost));
                terms.push((self.join_clause(&stands), rows));
            }
            return terms;
        }
        let sets = event.row_sets();
        for subset in 1..(1u32 << occurrences.len()) {
            let chosen: Vec<usize> = occurrences
                .iter()
                .enumerate()
                .filter(|(bit, _)| subset & (1 << bit) != 0)
                .map(|(_, o)| *o)
                .collect();
            // every assignment of the statement's row sets to the chosen occurrences
            let combinations = sets.len().pow(chosen.len() as u32);
            for combination in 0..combinations {
                let mut stands = vec![Stand::Table; n];
                let mut negative = chosen.len().is_multiple_of(2);
                let mut rest = combination;
                for o in &chosen {
                    let (rows_table, rows) = sets[rest % sets.len()];
                    rest /= sets.len();
                    stands[*o] = Stand::Rows(rows_table);
                    negative ^= rows == Rows::Deleted;
                }
                let rows = if negative {
                    Rows::Deleted
                } else {
                    Rows::Inserted
                };
                terms.push((self.join_clause(&stands), rows));
            }
        }
        terms
    }

    /// Statements a statement on `table` runs for this join query, after the locks.
    pub fn join_capture(&self, table: &str, event: Event) -> Vec<String> {
        let filter: Vec<String> = self.query.filter.iter().map(|f| format!("({f})")).collect();
        let mut statements = Vec::new();
        for (from, rows) in self.change_terms(table, event) {
            statements.extend(self.append_distinct(&from, rows, &filter));
            let query = self.partials_query(&from, rows, None);
            statements.push(self.append_delta(&query.targets, &query.aliased()));
        }
        if self.mode == super::Mode::Immediate {
            statements.push(self.register_pending());
        }
        statements
    }

    /// After a TRUNCATE of any of its tables: the state rebuilt from the tables as they are.
    pub fn join_truncate(&self) -> Vec<String> {
        let mut statements = self.truncate();
        let relation = self.relation();
        statements.extend(self.capture_distinct(&relation, Rows::Inserted, None));
        let query = self.partials_query(&relation, Rows::Inserted, None);
        statements.push(self.upsert_into_state(&query.targets, &query.select()));
        statements
    }

    /// The join tree as the edge locks see it.
    fn lock_tree(&self) -> Tree<'_> {
        Tree {
            project: &self.project,
            tables: (0..=self.query.joins.len())
                .map(|i| self.table_of(i))
                .collect(),
            edges: self
                .query
                .joins
                .iter()
                .enumerate()
                .map(|(k, j)| Edge {
                    parent: j.parent,
                    parent_column: j.pairs[0].0.clone(),
                    own_column: j.pairs[0].1.clone(),
                    hash: self
                        .join_types
                        .lock_hash
                        .get(k)
                        .cloned()
                        .unwrap_or_else(|| "0".into()),
                })
                .collect(),
        }
    }

    /// The locks (and, under REPEATABLE READ, the checks) a statement on `table` takes
    /// before this query's terms read the other tables (see `edge_locks`).
    pub fn join_locks(&self, table: &str, event: Event) -> Vec<String> {
        let mut steps = self.lock_tree().locks(table, &event.all_rows()).statements;
        let n = self.query.joins.len() + 1;
        for start in (1..n).filter(|i| self.table_of(*i) == table) {
            // a left-joined table counts its own rows per key (see `flipped`)
            if self.query.joins[start - 1].kind == JoinKind::Left {
                let own = &self.query.joins[start - 1].pairs[0].1;
                steps.push(unchanged_check(
                    &self.qualified(table),
                    own,
                    &event.all_rows(),
                    own,
                ));
            }
        }
        steps
    }

    /// The indexes maintenance looks rows up with: (table, column) of both sides of every
    /// join's first equality.
    pub fn lookup_columns(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for j in &self.query.joins {
            let (parent_column, own) = &j.pairs[0];
            for pair in [
                (self.table_of(j.parent).to_string(), parent_column.clone()),
                (j.table.clone(), own.clone()),
            ] {
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
        out
    }
}
