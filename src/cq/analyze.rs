//! Parses and checks the query behind a continuous query.
//!
//! pg_beacon can only maintain `SELECT <keys>, <aggregates> FROM <one table>
//! [WHERE ...] GROUP BY ...` incrementally, and the capture code re-evaluates
//! every key, aggregate argument and filter against a transition table. So
//! anything that would make those expressions mean something else there
//! (other tables, subqueries, volatile functions, qualifiers) is refused here,
//! with a message that names the offending part, rather than surfacing later
//! as a wrong result.

use std::collections::BTreeSet;
use std::fmt;

use crate::query::analyze::LIMITS;
use crate::sql_policy::text;
use crate::sql_policy::Refusal;
use crate::sqlident::{fold, folded_parts, unparenthesized};
use sqlparser::ast::{
    BinaryOperator, Distinct, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName, Query, Select, SelectItem,
    SetExpr, Statement, TableFactor, TableWithJoins, TrimWhereField, Value,
};

/// An accepted query. Identifiers are given as PostgreSQL resolves them
/// (unquoted ones lower-cased); SQL text has its column references
/// unqualified, so it runs as is against a transition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuousQuery {
    pub source_schema: Option<String>,
    pub source_table: String,
    /// The WHERE condition as SQL.
    pub filter: Option<String>,
    /// GROUP BY expressions as SQL, deduplicated, in GROUP BY order; empty
    /// for a query without GROUP BY, which has one global group.
    pub keys: Vec<String>,
    /// The select list, in order.
    pub outputs: Vec<Output>,
    /// Every source column the query references, sorted (of the first table, in a join).
    pub columns: Vec<String>,
    /// The first table's name in a join's expressions (its alias or its name); None for
    /// a single-table query, whose expressions are unqualified.
    pub source_alias: Option<String>,
    /// The other tables of a join, in FROM order; empty for a single-table query.
    pub joins: Vec<JoinedTable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Key {
        name: String,
        /// Index into [`ContinuousQuery::keys`].
        key: usize,
    },
    Aggregate {
        name: String,
        kind: AggKind,
        /// The argument as SQL; `None` only for `count(*)`.
        arg: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggKind {
    CountStar,
    Count,
    CountDistinct,
    ApproxCountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    StddevSamp,
    StddevPop,
    VarSamp,
    VarPop,
    BoolAnd,
    BoolOr,
}

/// Why a query cannot be a continuous query, naming the offending part: most of what
/// the walk refuses is allowed SQL that cannot be maintained incrementally.
fn refusal(message: impl Into<String>) -> Refusal {
    Refusal::unsupported(message)
}

fn not_supported(what: impl fmt::Display) -> Refusal {
    refusal(format!("{what} is not supported in a continuous query"))
}

fn subqueries_refused(found: impl fmt::Display) -> Refusal {
    refusal(format!(
        "subqueries are not supported in a continuous query ({found})"
    ))
}

mod expr;
mod joins;
mod outputs;
mod select;
mod surface;

pub use joins::{JoinKind, JoinedTable};

use expr::*;
use outputs::*;
use select::*;
use surface::Expressions;

/// Analyzes one SQL statement as a continuous query definition.
#[cfg(test)]
pub fn analyze(sql: &str) -> Result<ContinuousQuery, Refusal> {
    analyze_with(sql, &|_| None)
}

/// `analyze`, with the columns of a joined table (by name) to qualify bare column names.
pub fn analyze_with(
    sql: &str,
    columns_of: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<ContinuousQuery, Refusal> {
    let SelectParts {
        projection,
        from,
        selection,
        group_by,
    } = select_parts(single_select(sql)?)?;
    let (tables, raw_joins) = source_tables(&from, columns_of)?;
    let mut cx = Cx {
        table_columns: vec![BTreeSet::new(); tables.len()],
        tables,
        columns: BTreeSet::new(),
    };
    cx.check_names()?;
    let mut joins = raw_joins
        .into_iter()
        .enumerate()
        .map(|(i, raw)| cx.join(i + 1, raw))
        .collect::<Result<Vec<_>, _>>()?;
    cx.check_tables(&joins)?;
    let filter = selection
        .as_ref()
        .map(|expr| cx.render(expr, Place::Where))
        .transpose()?;
    let items = projection
        .iter()
        .map(|item| select_item(item, &mut cx))
        .collect::<Result<Vec<_>, _>>()?;
    if !items
        .iter()
        .any(|item| matches!(item.item, Item::Aggregate { .. }))
    {
        return Err(refusal(format!(
            "a continuous query needs at least one aggregate in its select list \
             ({SUPPORTED_AGGREGATES_HINT})"
        )));
    }

    // Names are only resolved once all expressions have been seen, so that a
    // name the query uses as a column anywhere is known to be one.
    let group_refs = group_by
        .iter()
        .map(|expr| group_ref(expr, &items, &mut cx))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys: Vec<String> = Vec::new();
    for group in group_refs {
        let key = resolve_group_ref(group, &items, &cx)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    let mut outputs = Vec::with_capacity(items.len());
    for NamedItem { name, item } in items {
        outputs.push(match item {
            Item::Aggregate { kind, arg } => Output::Aggregate { name, kind, arg },
            Item::Expr { rendered, column } => {
                let Some(key) = keys.iter().position(|key| *key == rendered) else {
                    return Err(refusal(match column {
                        Some(column) => format!(
                            "column \"{column}\" must appear in GROUP BY or be used in an \
                             aggregate"
                        ),
                        None => format!(
                            "expression {rendered} must appear in GROUP BY or be used in an \
                             aggregate"
                        ),
                    }));
                };
                Output::Key { name, key }
            }
        });
    }
    check_output_names(&outputs, &keys)?;

    let join_mode = cx.join_mode();
    for (i, join) in joins.iter_mut().enumerate() {
        join.columns = cx.table_columns[i + 1].iter().cloned().collect();
    }
    let root = cx.tables.swap_remove(0);
    Ok(ContinuousQuery {
        source_alias: join_mode.then(|| root.name().to_string()),
        source_schema: root.schema,
        source_table: root.table,
        filter,
        keys,
        outputs,
        columns: if join_mode {
            cx.table_columns[0].iter().cloned().collect()
        } else {
            cx.columns.into_iter().collect()
        },
        joins,
    })
}

fn check_output_names(outputs: &[Output], keys: &[String]) -> Result<(), Refusal> {
    let mut seen = BTreeSet::new();
    for output in outputs {
        let name = match output {
            Output::Key { name, key } => {
                if name == "?column?" {
                    return Err(refusal(format!(
                        "select item {} has no name; give it an alias with AS",
                        keys[*key]
                    )));
                }
                name
            }
            Output::Aggregate { name, .. } => name,
        };
        if name.starts_with('_') {
            return Err(refusal(format!(
                "output column name \"{name}\" starts with \"_\", which pg_beacon reserves for \
                 its own columns; choose another alias"
            )));
        }
        if !seen.insert(name) {
            return Err(duplicate_name(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
