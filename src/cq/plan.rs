//! A continuous query turned into SQL: its state and delta tables, the capture statements
//! run by the source table's trigger, compaction, and the view. Everything is generated
//! from the analyzed query and the aggregate table; identifiers are always quoted, and
//! expressions come from sqlparser's rendering of the parsed query, never from raw input.

use super::aggregates::{invertible, spec, ArgType, Partial};
use super::analyze::{AggKind, ContinuousQuery, Output};
use crate::names::quote_ident;
use std::collections::BTreeMap;

/// The view's alias for a group, visible in the read-time recompute's subquery over the
/// source. A source table cannot take it and shadow it: collection names start with a
/// letter (names.rs) and pg_beacon's own tables never start with `_beacon`.
const GROUP: &str = "_beacon_group";

/// The recompute's alias for the source rows with their keys and arguments computed,
/// for the same reason.
const ROW: &str = "_beacon_row";

/// How a unique index holds a column whose values can exceed btree's row size (about
/// 2.7 kB): as the SHA-256 of its bytes. Only for types whose equality is byte equality
/// (text and varchar under a deterministic collation, bytea), so groups stay exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    Text,
    Bytes,
}

impl Digest {
    fn of(self, column: &str) -> String {
        match self {
            Digest::Text => format!("(beacon._text_digest({column}))"),
            Digest::Bytes => format!("(pg_catalog.sha256({column}))"),
        }
    }
}

mod joins;
mod merge;
mod partials;
mod recompute;
mod view;

pub use joins::{Event, JoinTypes};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Async,
    Immediate,
}

impl Mode {
    pub fn parse(mode: &str) -> Option<Mode> {
        match mode {
            "async" => Some(Mode::Async),
            "immediate" => Some(Mode::Immediate),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Immediate => "immediate",
        }
    }
}

/// Which rows a capture statement reads: a statement's inserted rows, or its deleted ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    Inserted,
    Deleted,
}

impl Rows {
    fn table(self) -> &'static str {
        match self {
            Rows::Inserted => "beacon_new",
            Rows::Deleted => "beacon_old",
        }
    }
}

pub struct Plan {
    pub project: String,
    pub name: String,
    pub source: String,
    pub mode: Mode,
    pub query: ContinuousQuery,
    /// The defining query's column types, in output order (from a probe of that query).
    pub output_types: Vec<String>,
    /// Each output's aggregate argument type, in output order (empty: not probed, `Other`).
    pub arg_types: Vec<ArgType>,
    /// Per key: whether equal values of its type can print differently (numeric 1.0 and
    /// 1.00, float 0 and -0, interval '1 day' and '24 hours', jsonb, arrays…). The state
    /// keeps the first row's value as the group's; when rows leave, the group is recomputed
    /// so that it shows a value of a remaining row, as the query would.
    pub loose_keys: Vec<bool>,
    /// Indexed columns held as digests: key `k<i>` under its name, the value of
    /// count(DISTINCT) output `i` as `d<i>`. Read from the existing indexes (see
    /// `cq::digests`), so the conflict targets always match them.
    pub digests: BTreeMap<String, Digest>,
    /// Column types of the joined tables (empty for a single-table query or not probed).
    pub join_types: JoinTypes,
}

struct PartialColumn {
    column: String,
    partial: &'static Partial,
    arg: String,
}

impl Plan {
    fn qualified(&self, relation: &str) -> String {
        format!("{}.{}", quote_ident(&self.project), quote_ident(relation))
    }

    pub fn source_table(&self) -> String {
        self.qualified(&self.source)
    }

    pub fn state_table(&self) -> String {
        self.qualified(&format!("_cq_{}_state", self.name))
    }

    pub fn delta_table(&self) -> String {
        self.qualified(&format!("_cq_{}_delta", self.name))
    }

    /// A view over the columns the query reads, so PostgreSQL's own dependency tracking
    /// refuses to drop them (or the table) while the query exists.
    pub fn columns_view(&self) -> String {
        self.qualified(&format!("_cq_{}_columns", self.name))
    }

    pub fn view(&self) -> String {
        self.qualified(&self.name)
    }

    /// Key expressions; a query without GROUP BY has one constant key, its single group.
    fn key_exprs(&self) -> Vec<String> {
        if self.query.keys.is_empty() {
            vec!["true".to_string()]
        } else {
            // parenthesized: a key like `a IS NULL` or `a OR b` is pasted next to
            // IS NOT DISTINCT FROM and the like
            self.query.keys.iter().map(|k| format!("({k})")).collect()
        }
    }

    fn arg_type(&self, output: usize) -> ArgType {
        self.arg_types.get(output).copied().unwrap_or_default()
    }

    fn key_columns(&self) -> Vec<String> {
        (0..self.key_exprs().len())
            .map(|i| format!("k{i}"))
            .collect()
    }

    fn aggregates(&self) -> impl Iterator<Item = (usize, AggKind, Option<&String>)> {
        self.query
            .outputs
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Output::Aggregate { kind, arg, .. } => Some((i, *kind, arg.as_ref())),
                Output::Key { .. } => None,
            })
    }

    fn partial_columns(&self) -> Vec<PartialColumn> {
        let mut columns = Vec::new();
        for (i, kind, arg) in self.aggregates() {
            for partial in spec(kind, self.arg_type(i)).partials {
                columns.push(PartialColumn {
                    column: format!("a{i}_{}", partial.suffix),
                    partial,
                    arg: arg.map(|a| format!("({a})")).unwrap_or_default(),
                });
            }
        }
        columns
    }

    /// The state's unique index columns, which are also its conflict target.
    fn state_index(&self) -> String {
        self.key_columns()
            .iter()
            .map(|k| match self.digests.get(k) {
                Some(digest) => digest.of(k),
                None => k.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The unique index columns of count(DISTINCT) output `i`'s table.
    fn distinct_index(&self, i: usize) -> String {
        let value = match self.digests.get(&format!("d{i}")) {
            Some(digest) => digest.of("v"),
            None => "v".to_string(),
        };
        format!("{}, {value}", self.state_index())
    }

    /// (table, output position) of every count(DISTINCT x).
    pub fn distinct_table_names(&self) -> Vec<(String, usize)> {
        self.distinct_tables()
            .into_iter()
            .map(|(table, i, _)| (table, i))
            .collect()
    }

    /// (table, argument) of every count(DISTINCT x): the multiplicity of each value per group.
    fn distinct_tables(&self) -> Vec<(String, usize, String)> {
        self.aggregates()
            .filter(|(_, kind, _)| *kind == AggKind::CountDistinct)
            .map(|(i, _, arg)| {
                (
                    self.qualified(&format!("_cq_{}_d{i}", self.name)),
                    i,
                    arg.cloned().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Brings the distinct tables up to date for rows read under the source's lock (the
    /// backfill), and turns each group's values that appear (multiplicity 0 → positive)
    /// or vanish (positive → 0) into ±1 on the state's `a<i>_d` partial. Writers append
    /// multiplicity changes to the delta instead (`append_distinct`).
    fn capture_distinct(&self, from: &str, rows: Rows, condition: Option<&str>) -> Vec<String> {
        let keys = self.key_columns();
        let key_list = keys.join(", ");
        let sign = if rows == Rows::Deleted { "-" } else { "" };
        let positions: Vec<String> = (1..=keys.len() + 1).map(|i| i.to_string()).collect();
        let mut conditions: Vec<String> = condition.map(str::to_string).into_iter().collect();
        conditions.extend(self.query.filter.as_ref().map(|f| format!("({f})")));
        self.distinct_tables()
            .into_iter()
            .map(|(table, i, arg)| {
                let mut wheres = conditions.clone();
                wheres.push(format!("({arg}) IS NOT NULL"));
                let key_exprs: Vec<String> = self
                    .key_exprs()
                    .iter()
                    .zip(&keys)
                    .map(|(e, k)| format!("{e} AS {k}"))
                    .collect();
                let joined = keys
                    .iter()
                    .map(|k| format!("i.{k} IS NOT DISTINCT FROM u.{k}"))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let u_keys: Vec<String> = keys.iter().map(|k| format!("u.{k}")).collect();
                let column = format!("a{i}_d");
                let write = format!(
                    "INSERT INTO {} AS s ({key_list}, _count, {column}, _dirty) SELECT {key_list}, 0, dd, false FROM changes WHERE dd <> 0 \
                     ON CONFLICT ({}) DO UPDATE SET {column} = coalesce(s.{column}, 0) + excluded.{column}",
                    self.state_table(),
                    self.state_index()
                );
                format!(
                    "WITH input AS (SELECT {}, ({arg}) AS v, {sign}count(*) AS n FROM {from} WHERE {} GROUP BY {}), \
                     upserted AS (INSERT INTO {table} AS d ({key_list}, v, mult) SELECT * FROM input ORDER BY {} \
                                  ON CONFLICT ({}) DO UPDATE SET mult = d.mult + excluded.mult \
                                  RETURNING {}, d.v, d.mult), \
                     changes AS (SELECT {}, sum(CASE WHEN u.mult > 0 AND u.mult - i.n <= 0 THEN 1 \
                                                    WHEN u.mult <= 0 AND u.mult - i.n > 0 THEN -1 ELSE 0 END) AS dd \
                                   FROM upserted u JOIN input i ON i.v = u.v AND {joined} GROUP BY {}) \
                     {write}",
                    key_exprs.join(", "),
                    wheres.join(" AND "),
                    positions.join(", "),
                    positions.join(", "),
                    self.distinct_index(i),
                    keys.iter().map(|k| format!("d.{k}")).collect::<Vec<_>>().join(", "),
                    u_keys.iter().zip(&keys).map(|(u, k)| format!("{u} AS {k}")).collect::<Vec<_>>().join(", "),
                    u_keys.join(", "),
                )
            })
            .collect()
    }

    pub fn recomputes_on_delete(&self) -> bool {
        self.aggregates()
            .any(|(i, kind, _)| !invertible(kind, self.arg_type(i)))
            || !self.loose_key_columns().is_empty()
    }

    /// The key columns whose group value is refreshed from the source (see `loose_keys`).
    fn loose_key_columns(&self) -> Vec<String> {
        self.key_columns()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.loose_keys.get(*i).copied().unwrap_or(false))
            .map(|(_, k)| k)
            .collect()
    }

    /// Whether dirty groups are recomputed from the source at all.
    pub(super) fn needs_fresh(&self) -> bool {
        !self.recomputed_partials().is_empty() || !self.loose_key_columns().is_empty()
    }

    fn filter(&self) -> String {
        self.query
            .filter
            .as_ref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default()
    }

    fn key_positions(&self) -> String {
        let positions: Vec<String> = (1..=self.key_exprs().len())
            .map(|i| i.to_string())
            .collect();
        positions.join(", ")
    }

    fn group_by(&self) -> String {
        format!(" GROUP BY {}", self.key_positions())
    }

    /// All state columns in table order: keys, `_count`, partials, `_dirty`.
    fn state_columns(&self) -> Vec<String> {
        let mut columns = self.key_columns();
        columns.push("_count".into());
        columns.extend(self.partial_columns().into_iter().map(|p| p.column));
        columns.push("_dirty".into());
        columns
    }

    /// DDL for the state table; its column types are PostgreSQL's own result types of the
    /// partial aggregates, obtained by creating it from the partials query itself.
    pub fn create_state(&self) -> Vec<String> {
        let query = self.partials_query(&self.relation(), Rows::Inserted, None);
        let state = self.state_table();
        let mut ddl = vec![
            // groups are updated in place all the time: room on each page keeps those
            // updates HOT (no new index entry per update)
            format!(
                "CREATE TABLE {state} WITH (fillfactor = 50) AS {} WITH NO DATA",
                query.aliased()
            ),
        ];
        for (table, _, arg) in self.distinct_tables() {
            let exprs: Vec<String> = self
                .key_exprs()
                .iter()
                .zip(self.key_columns())
                .map(|(e, k)| format!("{e} AS {k}"))
                .collect();
            ddl.push(format!(
                "CREATE TABLE {table} AS SELECT {}, ({arg}) AS v, count(*) AS mult FROM {} GROUP BY {} WITH NO DATA",
                exprs.join(", "),
                self.relation(),
                (1..=exprs.len() + 1).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        // one row per statement: that statement's partials, packed as the state's own row type
        ddl.push(self.create_delta());
        ddl
    }

    /// The unique indexes of the tables `create_state` made, once `digests` says which
    /// of their columns need a digest.
    pub fn create_indexes(&self) -> Vec<String> {
        let mut ddl = vec![format!(
            "CREATE UNIQUE INDEX ON {} ({}) NULLS NOT DISTINCT",
            self.state_table(),
            self.state_index()
        )];
        for (table, i, _) in self.distinct_tables() {
            ddl.push(format!(
                "CREATE UNIQUE INDEX ON {table} ({}) NULLS NOT DISTINCT",
                self.distinct_index(i)
            ));
        }
        ddl
    }

    /// A temporary table of the state's shape, to compare with an existing state.
    pub fn state_probe(&self, name: &str) -> String {
        let query = self.partials_query(&self.relation(), Rows::Inserted, None);
        format!(
            "CREATE TEMP TABLE {} AS {} WITH NO DATA",
            quote_ident(name),
            query.aliased()
        )
    }

    /// Appends one delta row holding every row of `select` (whose columns are named
    /// `targets`, a subset of the state's) as an array of the state's row type: a statement
    /// that touches a thousand groups writes one row, not a thousand.
    fn append_delta(&self, targets: &[String], select: &str) -> String {
        let fields: Vec<String> = self
            .state_columns()
            .iter()
            .map(|c| {
                if targets.contains(c) {
                    format!("p.{c}")
                } else {
                    "NULL".to_string()
                }
            })
            .collect();
        format!(
            "INSERT INTO {} (_rows) SELECT array_agg(ROW({})::{}) FROM ({select}) p HAVING count(*) > 0",
            self.delta_table(),
            fields.join(", "),
            self.state_table()
        )
    }

    /// The pending deltas, one row per partial, with the state's columns.
    fn unpacked_delta(&self) -> String {
        format!(
            "(SELECT r.* FROM {} d, unnest(d._rows) r)",
            self.delta_table()
        )
    }

    fn merge_assignments(&self, target: &str, incoming: &str) -> Vec<String> {
        let mut set = vec![format!("_count = {target}._count + {incoming}._count")];
        for p in self.partial_columns() {
            set.push(format!(
                "{c} = {}",
                p.partial
                    .merge_two
                    .replace("{a}", &format!("{target}.{c}", c = p.column))
                    .replace("{b}", &format!("{incoming}.{c}", c = p.column)),
                c = p.column
            ));
        }
        set.push(format!("_dirty = {target}._dirty OR {incoming}._dirty"));
        set
    }

    /// Merges partials into the state. Rows are upserted in key order: merges lock groups
    /// in one order (see `merge`).
    fn upsert_into_state(&self, targets: &[String], select: &str) -> String {
        format!(
            "INSERT INTO {} AS s ({}) {select} ORDER BY {} ON CONFLICT ({}) DO UPDATE SET {}",
            self.state_table(),
            targets.join(", "),
            self.key_positions(),
            self.state_index(),
            self.merge_assignments("s", "excluded").join(", ")
        )
    }

    /// Statements the source's trigger runs for this query after a statement that
    /// inserted or deleted `rows` (an UPDATE runs both). Both modes only append deltas;
    /// immediate mode also lists the query for the merge at commit.
    pub fn capture(&self, rows: Rows) -> Vec<String> {
        let query = self.partials_query(rows.table(), rows, None);
        let filter: Vec<String> = self.query.filter.iter().map(|f| format!("({f})")).collect();
        let mut statements = self.append_distinct(rows.table(), rows, &filter);
        statements.push(self.append_delta(&query.targets, &query.aliased()));
        if self.mode == Mode::Immediate {
            statements.push(self.register_pending());
        }
        statements
    }

    /// Statements for an UPDATE: its deleted rows, then its inserted ones (appended to the
    /// delta like any other; the merge recomputes dirty groups after both).
    pub fn capture_update(&self) -> Vec<String> {
        let mut statements = self.capture(Rows::Deleted);
        statements.extend(self.capture(Rows::Inserted));
        statements
    }

    /// Moves every visible delta into the state in one statement (each delta is deleted
    /// and merged exactly once), then drops empty groups. Groups a delete made dirty get
    /// their non-subtractable partials recomputed from the source *in that same
    /// statement*: one snapshot sees exactly the rows whose deltas it merges, so a sum
    /// recomputed for a dirty group counts each row once (a later statement would also see
    /// rows committed meanwhile, whose deltas are merged next time: twice).
    /// The first statement returns the number of deltas applied.
    pub fn compaction(&self) -> Vec<String> {
        // dirty groups are recomputed inside the merge statement (see `merge_deltas`)
        let mut statements = vec![self.merge_deltas(false, "SELECT count(*) FROM u")];
        statements.push(format!(
            "DELETE FROM {} WHERE _count = 0",
            self.state_table()
        ));
        statements.extend(
            self.distinct_tables()
                .into_iter()
                .map(|(table, _, _)| format!("DELETE FROM {table} WHERE mult = 0")),
        );
        statements
    }

    /// Backfills the state from the rows of the source in block range [from, to).
    pub fn backfill_chunk(&self, from_block: i64, to_block: i64) -> Vec<String> {
        let ctid = format!("{}ctid", self.source_qualifier());
        let chunk = format!("{ctid} >= '({from_block},0)'::tid AND {ctid} < '({to_block},0)'::tid");
        let source = self.relation();
        let mut statements = self.capture_distinct(&source, Rows::Inserted, Some(&chunk));
        let query = self.partials_query(&source, Rows::Inserted, Some(&chunk));
        statements.push(self.upsert_into_state(&query.targets, &query.select()));
        statements
    }

    /// The partials recomputed from the source when a delete makes their group dirty.
    fn recomputed_partials(&self) -> Vec<PartialColumn> {
        self.partial_columns()
            .into_iter()
            .filter(|p| p.partial.negate.is_none())
            .collect()
    }

    /// The relations only pg_beacon's own code may read or write: all but the view.
    pub fn hidden_relations(&self) -> Vec<String> {
        let view = self.view();
        self.owned_relations()
            .into_iter()
            .filter(|r| *r != view)
            .collect()
    }

    pub fn owned_relations(&self) -> Vec<String> {
        // the delta's rows are of the state's type: drop it first
        let mut relations = vec![self.view(), self.columns_view(), self.delta_table()];
        relations.push(self.state_table());
        relations.extend(self.distinct_tables().into_iter().map(|(t, _, _)| t));
        relations
    }
}

#[cfg(test)]
mod tests;
