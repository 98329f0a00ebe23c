//! The view a continuous query is read through, the function it calls for dirty groups,
//! the guard view over the columns the query reads, and the defining query itself.

use super::super::aggregates::spec;
use super::super::analyze::{AggKind, Output};
use super::{Plan, GROUP};
use crate::names::quote_ident;

impl Plan {
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
            self.relation(),
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
        // the group is either the state itself (one row per group) or the state merged with
        // the pending deltas; both have the state's columns. `_beacon_fresh` is the group
        // recomputed from the source, for groups a delete made dirty (see
        // `create_fresh_function`).
        let fresh = if !self.needs_fresh() {
            String::new()
        } else {
            let g_keys: Vec<String> = self
                .key_columns()
                .iter()
                .map(|k| format!("{GROUP}.{k}"))
                .collect();
            format!(
                // OFFSET 0 keeps the subquery from being pulled up: its condition then gates
                // the call (a one-time filter), instead of filtering the rows of a call made
                // for every group
                " LEFT JOIN LATERAL (SELECT * FROM {}({}) WHERE {GROUP}._dirty OFFSET 0) _beacon_fresh ON true",
                self.fresh_function(),
                g_keys.join(", ")
            )
        };
        let from = |relation: &str, only_if: &str| -> String {
            if self.query.keys.is_empty() {
                format!(
                    "(SELECT 1) AS one LEFT JOIN {relation} {GROUP} ON {GROUP}._count > 0{fresh}{only_if}"
                )
            } else {
                format!("{relation} {GROUP}{fresh} WHERE {GROUP}._count > 0{only_if}")
            }
        };
        let items: Vec<String> = self
            .query
            .outputs
            .iter()
            .zip(&self.output_types)
            .enumerate()
            .map(|(i, (output, ty))| {
                let (name, expr) = match output {
                    Output::Key { name, key } => {
                        let column = format!("k{key}");
                        if self.loose_key_columns().contains(&column) {
                            (name, format!("CASE WHEN {GROUP}._dirty AND _beacon_fresh._found THEN _beacon_fresh.{column} ELSE {GROUP}.{column} END"))
                        } else {
                            (name, format!("{GROUP}.{column}"))
                        }
                    }
                    Output::Aggregate { name, kind, .. } => {
                        let s = spec(*kind, self.arg_type(i));
                        let mut expr = s
                            .finalize
                            .replace("{count}", &format!("coalesce({GROUP}._count, 0)"));
                        for partial in s.partials {
                            let column = format!("a{i}_{}", partial.suffix);
                            let value = if partial.negate.is_none() {
                                format!("CASE WHEN {GROUP}._dirty THEN _beacon_fresh.{column} ELSE {GROUP}.{column} END")
                            } else {
                                format!("{GROUP}.{column}")
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

    pub fn fresh_function(&self) -> String {
        self.qualified(&format!("_cq_{}_fresh", self.name))
    }

    /// A function the view calls for a dirty group: its recomputed partials, evaluated
    /// under the query's own settings (time zone, DateStyle, float output...) as capture
    /// and compaction evaluate them, not under the reader's: a key like
    /// `date_trunc('day', _time)` must find the same rows whoever reads. A function's SET
    /// clauses are the only way a view can fix settings. `types` are the state's column
    /// types by name. None when no partial is ever recomputed.
    pub fn create_fresh_function(
        &self,
        types: &std::collections::HashMap<String, String>,
        settings: &str,
    ) -> Option<String> {
        if !self.needs_fresh() {
            return None;
        }
        let recomputed = self.recomputed_partials();
        let loose = self.loose_key_columns();
        let type_of = |column: &str| types.get(column).cloned().unwrap_or_default();
        let parameters: Vec<String> = self.key_columns().iter().map(|k| type_of(k)).collect();
        let mut returns: Vec<String> = recomputed
            .iter()
            .map(|p| p.column.clone())
            .chain(loose.iter().cloned())
            .map(|c| format!("{c} {}", type_of(&c)))
            .collect();
        returns.push("_found boolean".into());
        let mut conditions: Vec<String> =
            self.query.filter.iter().map(|f| format!("({f})")).collect();
        conditions.extend(
            self.key_exprs()
                .iter()
                .enumerate()
                .map(|(i, e)| format!("({e}) IS NOT DISTINCT FROM ${}", i + 1)),
        );
        let conditions = conditions.join(" AND ");
        let mut exprs: Vec<String> = recomputed
            .iter()
            .map(|p| p.partial.compute.replace("{x}", &p.arg))
            .collect();
        // a remaining row's own value of each loose key (the group's value may be a gone
        // row's, equal but printed differently)
        let key_exprs = self.key_exprs();
        for column in &loose {
            let i: usize = column[1..].parse().unwrap_or(0);
            exprs.push(format!(
                "(SELECT {} FROM {} WHERE {conditions} LIMIT 1)",
                key_exprs[i],
                self.relation()
            ));
        }
        exprs.push("count(*) > 0".into());
        let body = format!(
            "SELECT {} FROM {} WHERE {conditions}",
            exprs.join(", "),
            self.relation(),
        );
        Some(format!(
            "CREATE OR REPLACE FUNCTION {}({}) RETURNS TABLE ({}) LANGUAGE sql STABLE SECURITY DEFINER {settings} AS {}",
            self.fresh_function(),
            parameters.join(", "),
            returns.join(", "),
            crate::names::dollar_quote(&body)
        ))
    }

    pub fn create_columns_view(&self) -> String {
        let mut columns: Vec<String> = Vec::new();
        if self.is_join() {
            // qualified, and named apart: two tables may share a column name
            let alias = self.query.source_alias.clone().unwrap_or_default();
            let tables = std::iter::once((&alias, &self.query.columns))
                .chain(self.query.joins.iter().map(|j| (&j.alias, &j.columns)));
            for (alias, names) in tables {
                for c in names {
                    columns.push(format!(
                        "{}.{} AS {}",
                        quote_ident(alias),
                        quote_ident(c),
                        quote_ident(&format!("{alias}.{c}"))
                    ));
                }
            }
        } else {
            columns.extend(self.query.columns.iter().map(|c| quote_ident(c)));
        }
        let list = if columns.is_empty() {
            "1 AS one".to_string()
        } else {
            columns.join(", ")
        };
        format!(
            "CREATE VIEW {} AS SELECT {list} FROM {}",
            self.columns_view(),
            self.relation()
        )
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
