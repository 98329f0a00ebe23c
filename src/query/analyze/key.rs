//! The unique key of a materialized view's result, where the query shows one.

use super::*;
use sqlparser::ast::{Value, ValueWithSpan};

/// For materialized views: when the (already checked) query is a single
/// SELECT with GROUP BY whose every GROUP BY expression is also an output
/// column of the select list (matched by position `GROUP BY 1`, by output
/// alias, or by an identical expression whose output name is known: a column
/// name or an alias), returns those output column names (as PostgreSQL names
/// them: unquoted folded to lower case, quoted kept); these form a unique key
/// of the result. SELECT DISTINCT with all named outputs also qualifies (all
/// outputs). Otherwise None.
///
/// PostgreSQL resolves a bare GROUP BY name to an input column before an
/// output alias. The table's columns are unknown here, so a match by alias
/// (`SELECT date_trunc('day', ts) AS day ... GROUP BY day`) is only taken
/// when the query uses no column of that name; a table with such a column
/// the query never mentions would still make the key wrong.
pub fn unique_output_key(sql: &str) -> Option<Vec<String>> {
    let mut query = parse_query(sql).ok()?;
    let mut checker = Checker::new(None);
    checker.query(&mut query).ok()?;
    if checker.top_level_srf {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let outputs = select
        .projection
        .iter()
        .map(Output::of)
        .collect::<Option<Vec<_>>>()?;
    let key = match &select.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if !exprs.is_empty() && modifiers.is_empty() => {
            group_key(exprs, &outputs, &checker.columns)
        }
        _ => None,
    };
    let key = match key {
        Some(key) => key,
        None if select.distinct == Some(Distinct::Distinct) => outputs
            .iter()
            .map(|output| output.known_name.clone())
            .collect::<Option<Vec<_>>>()?,
        None => return None,
    };
    // Each key column must be the only output of that name.
    let unique = key.iter().all(|name| {
        outputs
            .iter()
            .filter(|output| output.name.as_deref() == Some(name.as_str()))
            .count()
            == 1
    });
    unique.then_some(key)
}

struct Output<'q> {
    expr: &'q Expr,
    /// The alias, or the column name of a bare column reference.
    known_name: Option<String>,
    /// The alias or PostgreSQL's default name, where it can be told.
    name: Option<String>,
    alias: Option<String>,
}

impl<'q> Output<'q> {
    /// `None` for a wildcard, whose columns (and so positions) are unknown.
    fn of(item: &'q SelectItem) -> Option<Self> {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(expr) => (unparenthesized(expr), None),
            SelectItem::ExprWithAlias { expr, alias } => (unparenthesized(expr), Some(fold(alias))),
            _ => return None,
        };
        let column = match expr {
            Expr::Identifier(ident) => Some(fold(ident)),
            Expr::CompoundIdentifier(parts) => parts.last().map(fold),
            _ => None,
        };
        Some(Output {
            expr,
            known_name: alias.clone().or(column),
            name: alias.clone().or_else(|| default_name(expr)),
            alias,
        })
    }
}

/// PostgreSQL's default output name (FigureColname) where it is a name the
/// query spells; `None` stands for `?column?` or a type name.
fn default_name(expr: &Expr) -> Option<String> {
    match unparenthesized(expr) {
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(fold),
        Expr::Cast { expr, .. } => default_name(expr),
        Expr::Case { else_result, .. } => Some(
            else_result
                .as_deref()
                .and_then(default_name)
                .unwrap_or_else(|| "case".to_string()),
        ),
        Expr::Extract { .. } => Some("extract".to_string()),
        Expr::Substring { .. } => Some("substring".to_string()),
        Expr::Position { .. } => Some("position".to_string()),
        Expr::Overlay { .. } => Some("overlay".to_string()),
        Expr::Exists { .. } => Some("exists".to_string()),
        Expr::Array(_) => Some("array".to_string()),
        Expr::Trim { .. } => Some("btrim".to_string()),
        _ => None,
    }
}

fn group_key(
    exprs: &[Expr],
    outputs: &[Output],
    columns: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let mut key: Vec<String> = Vec::new();
    for expr in exprs {
        let expr = unparenthesized(expr);
        let index = match expr {
            Expr::Value(ValueWithSpan {
                value: Value::Number(position, false),
                ..
            }) => position
                .parse::<usize>()
                .ok()?
                .checked_sub(1)
                .filter(|&index| index < outputs.len())?,
            Expr::Identifier(ident) => {
                let name = fold(ident);
                let same_column = outputs.iter().position(|output| {
                    matches!(
                        output.expr,
                        Expr::Identifier(_) | Expr::CompoundIdentifier(_)
                    ) && default_name(output.expr).as_deref() == Some(name.as_str())
                });
                match same_column {
                    Some(index) => index,
                    None => {
                        if columns.contains(&name) {
                            // Also a column to PostgreSQL, which groups by
                            // that column rather than by the output.
                            return None;
                        }
                        let mut aliased = outputs
                            .iter()
                            .enumerate()
                            .filter(|(_, output)| output.alias.as_deref() == Some(name.as_str()));
                        match (aliased.next(), aliased.next()) {
                            (Some((index, _)), None) => index,
                            _ => return None,
                        }
                    }
                }
            }
            Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => return None,
            _ => {
                let rendered = expr.to_string();
                outputs
                    .iter()
                    .position(|output| output.expr.to_string() == rendered)?
            }
        };
        let name = outputs[index].known_name.clone()?;
        if !key.contains(&name) {
            key.push(name);
        }
    }
    Some(key)
}
