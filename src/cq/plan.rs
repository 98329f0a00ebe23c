//! A continuous query turned into SQL: its state and delta tables, the capture statements
//! run by the source table's trigger, compaction, and the view. Everything is generated
//! from the analyzed query and the aggregate table; identifiers are always quoted, and
//! expressions come from sqlparser's rendering of the parsed query, never from raw input.

use super::aggregates::{invertible, spec, Partial};
use super::analyze::{AggKind, ContinuousQuery, Output};
use crate::names::quote_ident;

mod merge;

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
}

struct PartialsQuery {
    targets: Vec<String>,
    exprs: Vec<String>,
    /// FROM, WHERE and GROUP BY.
    rest: String,
}

impl PartialsQuery {
    fn select(&self) -> String {
        format!("SELECT {}{}", self.exprs.join(", "), self.rest)
    }

    fn aliased(&self) -> String {
        let items: Vec<String> = self
            .exprs
            .iter()
            .zip(&self.targets)
            .map(|(e, t)| format!("{e} AS {t}"))
            .collect();
        format!("SELECT {}{}", items.join(", "), self.rest)
    }
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
            self.query.keys.clone()
        }
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
            for partial in spec(kind).partials {
                columns.push(PartialColumn {
                    column: format!("a{i}_{}", partial.suffix),
                    partial,
                    arg: arg.cloned().unwrap_or_default(),
                });
            }
        }
        columns
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
                     ON CONFLICT ({key_list}) DO UPDATE SET {column} = coalesce(s.{column}, 0) + excluded.{column}",
                    self.state_table()
                );
                format!(
                    "WITH input AS (SELECT {}, ({arg}) AS v, {sign}count(*) AS n FROM {from} WHERE {} GROUP BY {}), \
                     upserted AS (INSERT INTO {table} AS d ({key_list}, v, mult) SELECT * FROM input ORDER BY {} \
                                  ON CONFLICT ({key_list}, v) DO UPDATE SET mult = d.mult + excluded.mult \
                                  RETURNING {}, d.v, d.mult), \
                     changes AS (SELECT {}, sum(CASE WHEN u.mult > 0 AND u.mult - i.n <= 0 THEN 1 \
                                                    WHEN u.mult <= 0 AND u.mult - i.n > 0 THEN -1 ELSE 0 END) AS dd \
                                   FROM upserted u JOIN input i ON i.v = u.v AND {joined} GROUP BY {}) \
                     {write}",
                    key_exprs.join(", "),
                    wheres.join(" AND "),
                    positions.join(", "),
                    positions.join(", "),
                    keys.iter().map(|k| format!("d.{k}")).collect::<Vec<_>>().join(", "),
                    u_keys.iter().zip(&keys).map(|(u, k)| format!("{u} AS {k}")).collect::<Vec<_>>().join(", "),
                    u_keys.join(", "),
                )
            })
            .collect()
    }

    pub fn recomputes_on_delete(&self) -> bool {
        self.aggregates().any(|(_, kind, _)| !invertible(kind))
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

    /// `SELECT <keys>, <partials> FROM <from> WHERE <condition and filter> GROUP BY <keys>`.
    fn partials_query(&self, from: &str, rows: Rows, condition: Option<&str>) -> PartialsQuery {
        let mut targets = self.key_columns();
        let mut exprs = self.key_exprs();
        targets.push("_count".into());
        exprs.push(match rows {
            Rows::Inserted => "count(*)".into(),
            Rows::Deleted => "-count(*)".into(),
        });
        for p in self.partial_columns() {
            let template = match rows {
                Rows::Inserted => Some(p.partial.compute),
                Rows::Deleted => p.partial.negate,
            };
            if let Some(template) = template {
                targets.push(p.column);
                exprs.push(template.replace("{x}", &p.arg));
            }
        }
        targets.push("_dirty".into());
        exprs.push((rows == Rows::Deleted && self.recomputes_on_delete()).to_string());
        let conditions: Vec<String> = condition
            .map(str::to_string)
            .into_iter()
            .chain(self.query.filter.as_ref().map(|f| format!("({f})")))
            .collect();
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        PartialsQuery {
            targets,
            exprs,
            rest: format!(" FROM {from}{filter}{}", self.group_by()),
        }
    }

    /// DDL for the state table; its column types are PostgreSQL's own result types of the
    /// partial aggregates, obtained by creating it from the partials query itself.
    pub fn create_state(&self) -> Vec<String> {
        let query = self.partials_query(&self.source_table(), Rows::Inserted, None);
        let state = self.state_table();
        let keys = self.key_columns().join(", ");
        let mut ddl = vec![
            // groups are updated in place all the time: room on each page keeps those
            // updates HOT (no new index entry per update)
            format!(
                "CREATE TABLE {state} WITH (fillfactor = 50) AS {} WITH NO DATA",
                query.aliased()
            ),
            format!("CREATE UNIQUE INDEX ON {state} ({keys}) NULLS NOT DISTINCT"),
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
                self.source_table(),
                (1..=exprs.len() + 1).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
            ));
            ddl.push(format!(
                "CREATE UNIQUE INDEX ON {table} ({keys}, v) NULLS NOT DISTINCT"
            ));
        }
        // one row per statement: that statement's partials, packed as the state's own row type
        ddl.push(self.create_delta());
        ddl
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
            self.key_columns().join(", "),
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

    pub fn truncate(&self) -> Vec<String> {
        let mut tables = vec![self.state_table()];
        tables.extend(self.distinct_tables().into_iter().map(|(t, _, _)| t));
        let mut statements = vec![format!("TRUNCATE {}", tables.join(", "))];
        match self.mode {
            Mode::Async => statements[0].push_str(&format!(", {}", self.delta_table())),
            // PostgreSQL refuses to truncate a table with pending trigger events (the merge
            // at commit); the source's lock keeps every other writer out meanwhile
            Mode::Immediate => statements.push(format!("DELETE FROM {}", self.delta_table())),
        }
        statements
    }

    /// Recomputes the non-invertible partials of groups marked dirty by deletes, from the
    /// source. Recomputing is idempotent for them (min, max, sketches), so it is exact at
    /// whatever later snapshot it runs.
    fn recompute_dirty(&self) -> Vec<String> {
        let recomputed: Vec<PartialColumn> = self
            .partial_columns()
            .into_iter()
            .filter(|p| p.partial.negate.is_none())
            .collect();
        if recomputed.is_empty() {
            return Vec::new();
        }
        let state = self.state_table();
        let key_match = |left: &str, right: &[String]| -> String {
            self.key_columns()
                .iter()
                .zip(right)
                .map(|(k, r)| format!("{left}.{k} IS NOT DISTINCT FROM {r}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let mut exprs = self.key_exprs();
        exprs.extend(
            recomputed
                .iter()
                .map(|p| p.partial.compute.replace("{x}", &p.arg)),
        );
        let mut names = self.key_columns();
        names.extend(recomputed.iter().map(|p| p.column.clone()));
        let filter = match &self.query.filter {
            Some(f) => format!("({f}) AND "),
            None => String::new(),
        };
        let fresh = format!(
            "SELECT {} FROM {} WHERE {filter}EXISTS (SELECT 1 FROM {state} d WHERE d._dirty AND {}){}",
            exprs
                .iter()
                .zip(&names)
                .map(|(e, n)| format!("{e} AS {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.source_table(),
            key_match("d", &self.key_exprs()),
            self.group_by()
        );
        let r_keys: Vec<String> = self
            .key_columns()
            .iter()
            .map(|k| format!("r.{k}"))
            .collect();
        vec![
            format!(
                "UPDATE {state} s SET {}, _dirty = false FROM ({fresh}) r WHERE s._dirty AND {}",
                recomputed
                    .iter()
                    .map(|p| format!("{c} = r.{c}", c = p.column))
                    .collect::<Vec<_>>()
                    .join(", "),
                key_match("s", &r_keys)
            ),
            // groups whose rows are all gone but whose count is still pending elsewhere
            format!(
                "UPDATE {state} SET {}, _dirty = false WHERE _dirty",
                recomputed
                    .iter()
                    .map(|p| format!("{} = NULL", p.column))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ]
    }

    /// Moves every visible delta into the state in one statement (each delta is deleted
    /// and merged exactly once), then drops empty groups and recomputes dirty ones.
    /// The first statement returns the number of deltas applied.
    pub fn compaction(&self) -> Vec<String> {
        let mut statements = vec![self.merge_deltas(false, "SELECT count(*) FROM u")];
        statements.push(format!(
            "DELETE FROM {} WHERE _count = 0",
            self.state_table()
        ));
        statements.extend(self.recompute_dirty());
        statements.extend(
            self.distinct_tables()
                .into_iter()
                .map(|(table, _, _)| format!("DELETE FROM {table} WHERE mult = 0")),
        );
        statements
    }

    /// Backfills the state from the rows of the source in block range [from, to).
    pub fn backfill_chunk(&self, from_block: i64, to_block: i64) -> Vec<String> {
        let chunk = format!("ctid >= '({from_block},0)'::tid AND ctid < '({to_block},0)'::tid");
        let source = self.source_table();
        let mut statements = self.capture_distinct(&source, Rows::Inserted, Some(&chunk));
        let query = self.partials_query(&source, Rows::Inserted, Some(&chunk));
        statements.push(self.upsert_into_state(&query.targets, &query.select()));
        statements
    }

    /// The defining query over the qualified source: probed for column types, and the
    /// oracle that the view must always equal.
    pub fn defining_query(&self) -> String {
        let items: Vec<String> = self
            .query
            .outputs
            .iter()
            .map(|o| match o {
                Output::Key { name, key } => {
                    format!("{} AS {}", self.query.keys[*key], quote_ident(name))
                }
                Output::Aggregate { name, kind, arg } => format!(
                    "{} AS {}",
                    aggregate_call(*kind, arg.as_deref().unwrap_or("")),
                    quote_ident(name)
                ),
            })
            .collect();
        let group_by = if self.query.keys.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", self.query.keys.join(", "))
        };
        format!(
            "SELECT {} FROM {}{}{group_by}",
            items.join(", "),
            self.source_table(),
            self.filter()
        )
    }

    /// The view: state merged with pending deltas, empty groups hidden, dirty
    /// min/max recomputed from the source, each column cast to the defining query's type.
    pub fn create_view(&self) -> String {
        let keys = self.key_columns().join(", ");
        let columns = self.state_columns().join(", ");
        let mut merged = vec![keys.clone(), "sum(_count) AS _count".to_string()];
        merged.extend(self.partial_columns().iter().map(|p| {
            format!(
                "{} AS {}",
                p.partial.merge_agg.replace("{a}", &p.column),
                p.column
            )
        }));
        merged.push("bool_or(_dirty) AS _dirty".into());
        let distinct: String = self
            .pending_distinct()
            .iter()
            .map(|s| format!(" UNION ALL {s}"))
            .collect();
        let groups = format!(
            "SELECT {} FROM (SELECT {columns} FROM {} UNION ALL SELECT {columns} FROM {} pending{distinct}) u GROUP BY {keys}",
            merged.join(", "),
            self.state_table(),
            self.unpacked_delta()
        );
        // `m` is either the state itself (one row per group) or the state merged with the
        // pending deltas; both have the state's columns
        let from = |relation: &str, only_if: &str| -> String {
            if self.query.keys.is_empty() {
                format!("(SELECT 1) AS one LEFT JOIN {relation} m ON m._count > 0{only_if}")
            } else {
                format!("{relation} m WHERE m._count > 0{only_if}")
            }
        };
        let m_keys: Vec<String> = self
            .key_columns()
            .iter()
            .map(|k| format!("m.{k}"))
            .collect();
        let dirty_match = self
            .key_exprs()
            .iter()
            .zip(&m_keys)
            .map(|(e, k)| format!("{e} IS NOT DISTINCT FROM {k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let filter = match &self.query.filter {
            Some(f) => format!("({f}) AND "),
            None => String::new(),
        };
        let items: Vec<String> = self
            .query
            .outputs
            .iter()
            .zip(&self.output_types)
            .enumerate()
            .map(|(i, (output, ty))| {
                let (name, expr) = match output {
                    Output::Key { name, key } => (name, format!("m.k{key}")),
                    Output::Aggregate { name, kind, arg } => {
                        let s = spec(*kind);
                        let mut expr = s
                            .finalize
                            .replace("{count}", "coalesce(m._count, 0)");
                        for partial in s.partials {
                            let column = format!("m.a{i}_{}", partial.suffix);
                            let value = if partial.negate.is_none() {
                                format!(
                                    "CASE WHEN m._dirty THEN (SELECT {} FROM {} WHERE {filter}{dirty_match}) ELSE {column} END",
                                    partial.compute.replace("{x}", arg.as_deref().unwrap_or("")),
                                    self.source_table()
                                )
                            } else {
                                column
                            };
                            expr = expr.replace(&format!("{{p:{}}}", partial.suffix), &value);
                        }
                        (name, expr)
                    }
                };
                format!("({expr})::{ty} AS {}", quote_ident(name))
            })
            .collect();
        let items = items.join(", ");
        let state = self.state_table();
        // An uncorrelated EXISTS is evaluated once: with no pending delta the view is a
        // plain read of the state, as fast as a materialized view; otherwise it merges. In
        // immediate mode the only deltas a reader sees are its own transaction's.
        let body = {
            let delta = self.delta_table();
            let (fast, merge) = if self.query.keys.is_empty() {
                (" WHERE NOT EXISTS", " WHERE EXISTS")
            } else {
                (" AND NOT EXISTS", " AND EXISTS")
            };
            format!(
                "SELECT {items} FROM {} UNION ALL SELECT {items} FROM {}",
                from(&state, &format!("{fast} (SELECT 1 FROM {delta})")),
                from(
                    &format!("({groups})"),
                    &format!("{merge} (SELECT 1 FROM {delta})")
                )
            )
        };
        format!("CREATE VIEW {} AS {body}", self.view())
    }

    pub fn create_columns_view(&self) -> String {
        let columns: Vec<String> = self.query.columns.iter().map(|c| quote_ident(c)).collect();
        let list = if columns.is_empty() {
            "1 AS one".to_string()
        } else {
            columns.join(", ")
        };
        format!(
            "CREATE VIEW {} AS SELECT {list} FROM {}",
            self.columns_view(),
            self.source_table()
        )
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

fn aggregate_call(kind: AggKind, arg: &str) -> String {
    match kind {
        AggKind::CountStar => "count(*)".into(),
        AggKind::Count => format!("count({arg})"),
        AggKind::CountDistinct => format!("count(DISTINCT {arg})"),
        AggKind::ApproxCountDistinct => format!("beacon.approx_count_distinct({arg})"),
        AggKind::Sum => format!("sum({arg})"),
        AggKind::Avg => format!("avg({arg})"),
        AggKind::Min => format!("min({arg})"),
        AggKind::Max => format!("max({arg})"),
        AggKind::StddevSamp => format!("stddev_samp({arg})"),
        AggKind::StddevPop => format!("stddev_pop({arg})"),
        AggKind::VarSamp => format!("var_samp({arg})"),
        AggKind::VarPop => format!("var_pop({arg})"),
        AggKind::BoolAnd => format!("bool_and({arg})"),
        AggKind::BoolOr => format!("bool_or({arg})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cq::analyze::analyze;

    fn plan(query: &str, mode: Mode) -> Plan {
        let query = analyze(query).unwrap();
        Plan {
            project: "shop".into(),
            name: "v".into(),
            source: query.source_table.clone(),
            mode,
            query,
            output_types: vec![],
        }
    }

    #[test]
    fn deletes_mark_groups_dirty_only_when_an_aggregate_cannot_be_subtracted() {
        let with_max = plan(
            "SELECT country, count(*), max(price) FROM src GROUP BY country",
            Mode::Async,
        );
        let deleted = with_max.capture(Rows::Deleted).join(";");
        assert!(deleted.contains("-count(*)"), "{deleted}");
        assert!(
            !deleted.contains("max(price)"),
            "max is recomputed, not negated: {deleted}"
        );
        assert!(deleted.contains("true AS _dirty"), "{deleted}");
        let inserted = with_max.capture(Rows::Inserted).join(";");
        assert!(
            inserted.contains("max(price) AS a2_m") && inserted.contains("false AS _dirty"),
            "{inserted}"
        );

        let sums = plan(
            "SELECT country, count(*), sum(price) FROM src GROUP BY country",
            Mode::Async,
        );
        let deleted = sums.capture(Rows::Deleted).join(";");
        assert!(
            deleted.contains("-sum(price)") && deleted.contains("false AS _dirty"),
            "{deleted}"
        );
    }

    #[test]
    fn async_capture_appends_one_packed_row_per_statement() {
        let p = plan(
            "SELECT product, count(*), max(price) FROM src GROUP BY product",
            Mode::Async,
        );
        let statements = p.capture(Rows::Deleted);
        assert_eq!(statements.len(), 1);
        let s = &statements[0];
        assert!(
            s.starts_with("INSERT INTO \"shop\".\"_cq_v_delta\" (_rows) SELECT array_agg(ROW("),
            "{s}"
        );
        // the max partial is absent from a delete's partials: NULL in its place
        assert!(
            s.contains("ROW(p.k0, p._count, NULL, p._dirty)::\"shop\".\"_cq_v_state\""),
            "{s}"
        );
        assert!(s.ends_with("HAVING count(*) > 0"), "{s}");
    }

    #[test]
    fn immediate_capture_appends_and_the_merge_at_commit_locks_in_key_order() {
        let p = plan(
            "SELECT a, b, count(*), min(x), count(DISTINCT y) AS d FROM src GROUP BY a, b",
            Mode::Immediate,
        );
        let statements = p.capture(Rows::Deleted);
        assert!(
            statements
                .iter()
                .all(|s| s.starts_with("INSERT INTO \"shop\".\"_cq_v_delta\"")
                    || s.contains("pg_beacon.pending_merges")),
            "{statements:?}"
        );
        assert!(statements.iter().any(|s| s.contains("',shop.v,'")));
        let merge = p.create_merge_function("UTC", "");
        assert!(
            merge.contains(
                "DELETE FROM \"shop\".\"_cq_v_delta\" WHERE _xid = pg_catalog.pg_current_xact_id()"
            ),
            "{merge}"
        );
        // distinct multiplicities first, then the state, each in key order
        let distinct = merge
            .find("INSERT INTO \"shop\".\"_cq_v_d4\" AS t (k0, k1, v, mult) SELECT * FROM x4 ORDER BY 1, 2, 3")
            .expect(&merge);
        let state = merge
            .find("GROUP BY k0, k1 ORDER BY 1, 2 ON CONFLICT (k0, k1)")
            .expect(&merge);
        assert!(distinct < state, "{merge}");
        assert!(
            merge.contains("SET a3_m = r.a3_m, _dirty = false"),
            "{merge}"
        );
        assert!(
            merge.contains("DELETE FROM \"shop\".\"_cq_v_state\" WHERE ctid = ANY (beacon_empty)"),
            "{merge}"
        );
    }

    #[test]
    fn a_global_aggregate_has_one_constant_group() {
        let p = plan("SELECT count(*), sum(x) FROM src", Mode::Immediate);
        assert!(!p.defining_query().contains("GROUP BY"));
        assert!(p.capture(Rows::Inserted)[0].contains("SELECT true AS k0, count(*)"));
    }

    #[test]
    fn identifiers_are_quoted() {
        let mut p = plan(
            "SELECT \"Country\", count(*) FROM \"Src\" GROUP BY 1",
            Mode::Async,
        );
        p.project = "we\"ird".into();
        assert_eq!(p.source_table(), "\"we\"\"ird\".\"Src\"");
        assert!(p
            .defining_query()
            .starts_with("SELECT \"Country\" AS \"Country\", count(*) AS \"count\""));
    }
}
