//! Select items, their output names as PostgreSQL gives them, and what GROUP BY refers
//! to.

use super::*;

/// PostgreSQL's default output column name (FigureColnameInternal), with its
/// strength: 2 for a name taken from a column or function, 1 for a fallback
/// that an enclosing cast or CASE replaces. Where PostgreSQL would fall back to
/// a type's internal name (`1::int` is `int4`), this gives no name, so the
/// caller asks for an alias instead of guessing.
pub(super) fn figure_colname(expr: &Expr) -> (Option<String>, u8) {
    let function_like = |name: &str| (Some(name.to_string()), 2);
    match expr {
        Expr::Nested(inner) => figure_colname(inner),
        Expr::Identifier(ident) => (Some(fold(ident)), 2),
        Expr::CompoundIdentifier(parts) => (parts.last().map(fold), 2),
        Expr::Function(f) => (f.name.0.last().and_then(|p| p.as_ident()).map(fold), 2),
        // These are function calls to PostgreSQL, named after the function its
        // grammar rewrites them to.
        Expr::Extract { .. } => function_like("extract"),
        Expr::Substring { .. } => function_like("substring"),
        Expr::Ceil { .. } => function_like("ceil"),
        Expr::Floor { .. } => function_like("floor"),
        Expr::Trim { trim_where, .. } => function_like(match trim_where {
            Some(TrimWhereField::Leading) => "ltrim",
            Some(TrimWhereField::Trailing) => "rtrim",
            Some(TrimWhereField::Both) | None => "btrim",
        }),
        Expr::Cast { expr, .. } => match figure_colname(expr) {
            (name, 2) => (name, 2),
            _ => (None, 0),
        },
        Expr::Case { else_result, .. } => match else_result.as_deref().map(figure_colname) {
            Some((name, 2)) => (name, 2),
            _ => (Some("case".to_string()), 1),
        },
        _ => (None, 0),
    }
}

/// A select item once analyzed; `name` is its output column name.
pub(super) enum Item {
    Aggregate {
        kind: AggKind,
        arg: Option<String>,
    },
    Expr {
        rendered: String,
        /// The column name when the item is a bare column reference.
        column: Option<String>,
    },
}

pub(super) struct NamedItem {
    pub(super) name: String,
    pub(super) item: Item,
}

pub(super) fn select_item(item: &SelectItem, cx: &mut Cx) -> Result<NamedItem, Refusal> {
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(expr) => (expr, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(fold(alias))),
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
            return Err(refusal(format!(
                "SELECT {item} is not supported in a continuous query; list the group keys \
                 and aggregates"
            )));
        }
        SelectItem::ExprWithAliases { .. } => {
            return Err(not_supported(format!("the select item {item}")));
        }
    };
    let expr = unparenthesized(expr);
    let name = alias.unwrap_or_else(|| {
        figure_colname(expr)
            .0
            .unwrap_or_else(|| "?column?".to_string())
    });
    if let Expr::Function(f) = expr {
        reject_window(f)?;
        if let Some(kind) = aggregate_kind(&f.name) {
            let item = cx.aggregate(f, kind)?;
            return Ok(NamedItem { name, item });
        }
    }
    let rendered = cx.render(expr, Place::SelectList(&expr.to_string()))?;
    let column = match expr {
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(fold),
        _ => None,
    };
    Ok(NamedItem {
        name,
        item: Item::Expr { rendered, column },
    })
}

/// How one GROUP BY entry names its key before keys are deduplicated.
pub(super) enum GroupRef {
    Rendered(String),
    /// 1-based position in the select list.
    Position(usize),
    /// A bare name matching the output name of the select item at this index.
    OutputName(usize, Ident),
}

pub(super) fn group_ref(
    expr: &Expr,
    items: &[NamedItem],
    cx: &mut Cx,
) -> Result<GroupRef, Refusal> {
    let expr = unparenthesized(expr);
    match expr {
        Expr::GroupingSets(_) | Expr::Rollup(_) | Expr::Cube(_) => {
            Err(not_supported("GROUPING SETS / ROLLUP / CUBE"))
        }
        Expr::Value(value) if !matches!(value.value, Value::Placeholder(_)) => {
            // PostgreSQL reads a bare integer as a select-list position and
            // rejects any other constant.
            match &value.value {
                Value::Number(n, _) => n
                    .parse()
                    .map(GroupRef::Position)
                    .map_err(|_| refusal(format!("non-integer constant {n} in GROUP BY"))),
                other => Err(refusal(format!("non-integer constant {other} in GROUP BY"))),
            }
        }
        Expr::Identifier(ident) => {
            let name = fold(ident);
            let mut matching = items
                .iter()
                .enumerate()
                .filter(|(_, item)| item.name == name);
            match (matching.next(), matching.next()) {
                (Some((index, _)), None) => Ok(GroupRef::OutputName(index, folded(ident))),
                (Some(_), Some(_)) => Err(duplicate_name(&name)),
                (None, _) => Ok(GroupRef::Rendered(cx.render(expr, Place::GroupBy)?)),
            }
        }
        _ => Ok(GroupRef::Rendered(cx.render(expr, Place::GroupBy)?)),
    }
}

pub(super) fn duplicate_name(name: &str) -> Refusal {
    refusal(format!(
        "output column name \"{name}\" appears twice; give one an alias with AS"
    ))
}

/// The key a GROUP BY entry stands for, once every source column the query
/// uses is known.
pub(super) fn resolve_group_ref(
    group: GroupRef,
    items: &[NamedItem],
    cx: &Cx,
) -> Result<String, Refusal> {
    let (item, written) = match group {
        GroupRef::Rendered(rendered) => return Ok(rendered),
        GroupRef::Position(position) => {
            let item = position
                .checked_sub(1)
                .and_then(|index| items.get(index))
                .ok_or_else(|| {
                    refusal(format!(
                        "GROUP BY position {position} is not in the select list"
                    ))
                })?;
            (item, position.to_string())
        }
        GroupRef::OutputName(index, ident) => {
            let item = &items[index];
            // PostgreSQL resolves a GROUP BY name to a source column before an
            // output name. The table's columns are unknown here, but a name the
            // query also uses as a column is one.
            if cx.columns.contains(&ident.value) {
                match &item.item {
                    Item::Aggregate { .. } => return Ok(Expr::Identifier(ident).to_string()),
                    Item::Expr { rendered, column }
                        if column.as_deref() != Some(ident.value.as_str()) =>
                    {
                        // Grouping by the column while showing an expression of
                        // it is valid PostgreSQL but almost never what was meant.
                        return Err(refusal(format!(
                            "GROUP BY {ident} is ambiguous: \"{}\" is both a source column \
                             and the output name of {rendered}; PostgreSQL would group by the \
                             column. Group by the expression itself or by its position",
                            ident.value
                        )));
                    }
                    Item::Expr { .. } => {}
                }
            }
            (item, ident.to_string())
        }
    };
    match &item.item {
        Item::Expr { rendered, .. } => Ok(rendered.clone()),
        Item::Aggregate { .. } => Err(refusal(format!(
            "aggregate functions are not allowed in GROUP BY (GROUP BY {written} refers to \
             the aggregate \"{}\")",
            item.name
        ))),
    }
}
