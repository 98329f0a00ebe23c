//! The walk over expressions; chains are walked in a loop, and a chain of binary
//! operators is one level of nesting, whatever its length.

use super::call::function;
use super::*;
use crate::sqlident::fold;
use sqlparser::ast::{
    AccessExpr, Array, CaseWhen, CastKind, CeilFloorKind, DateTimeField, ExtractSyntax, Subscript,
    TypedString,
};

fn enter<S: Surface + ?Sized>(s: &mut S) -> Result<(), Refusal> {
    let max = s.max_depth();
    let state = s.state();
    state.depth += 1;
    if state.depth > max {
        return Err(s.too_deep());
    }
    Ok(())
}

/// One more level of nesting, against the surface's bound on levels.
fn level_up<S: Surface + ?Sized>(s: &mut S) -> Result<(), Refusal> {
    let max = s.settings().max_levels;
    let state = s.state();
    state.level += 1;
    if max.is_some_and(|max| state.level > max) {
        return Err(s.too_deep());
    }
    Ok(())
}

/// Checks `expr`, refusing what the surface does not allow and rewriting names, literals
/// and types in place into what it renders.
pub fn expr<S: Surface + ?Sized>(s: &mut S, expr: &mut Expr) -> Result<(), Refusal> {
    let saved = s.state().clone();
    let result = walk(s, expr);
    *s.state() = saved;
    result
}

fn walk<S: Surface + ?Sized>(s: &mut S, expr: &mut Expr) -> Result<(), Refusal> {
    enter(s)?;
    level_up(s)?;
    let mut next = step(s, expr)?;
    while let Some(expr) = next {
        level_up(s)?;
        next = step(s, expr)?;
    }
    Ok(())
}

pub fn exprs<S: Surface + ?Sized>(s: &mut S, exprs: &mut [Expr]) -> Result<(), Refusal> {
    for e in exprs {
        expr(s, e)?;
    }
    Ok(())
}

fn opt_expr<S: Surface + ?Sized>(s: &mut S, e: &mut Option<Box<Expr>>) -> Result<(), Refusal> {
    match e {
        Some(e) => expr(s, e),
        None => Ok(()),
    }
}

/// Whether the settings allow the form of `expr` (the walk below still decides on its
/// parts).
fn form_allowed(settings: &Settings, expr: &Expr) -> bool {
    match expr {
        Expr::Case { .. } => settings.case,
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => settings.subqueries,
        Expr::AnyOp { .. } | Expr::AllOp { .. } => settings.any_all,
        Expr::Extract { .. }
        | Expr::Substring { .. }
        | Expr::Trim { .. }
        | Expr::AtTimeZone { .. }
        | Expr::Ceil { .. }
        | Expr::Floor { .. } => settings.grammar,
        Expr::Overlay { .. } | Expr::Position { .. } | Expr::SimilarTo { .. } => {
            settings.text_grammar
        }
        Expr::CompoundFieldAccess { .. }
        | Expr::Array(_)
        | Expr::Tuple(_)
        | Expr::GroupingSets(_)
        | Expr::Cube(_)
        | Expr::Rollup(_) => settings.structured,
        Expr::Interval(interval) => settings.interval_fields || plain_interval(interval),
        _ => true,
    }
}

/// Checks one node and everything under it except its first operand, which it returns
/// for [`walk`] to continue with in a loop: left-deep chains then cost no recursion,
/// however long they are. What remains recursive is nesting sqlparser's recursion limit
/// bounds.
///
/// Kept to calls of small functions: in debug builds each temporary of a big function
/// gets a stack slot of its own, so refusal messages and rewritten nodes are built in
/// functions off the recursive path.
fn step<'e, S: Surface + ?Sized>(
    s: &mut S,
    expr: &'e mut Expr,
) -> Result<Option<&'e mut Expr>, Refusal> {
    if !form_allowed(s.settings(), expr) {
        return Err(s.form_refused(expr));
    }
    if s.settings().pin_grammar_calls
        && matches!(
            expr,
            Expr::Ceil { .. } | Expr::Floor { .. } | Expr::Substring { special: true, .. }
        )
    {
        // Printed as CEIL(x) / FLOOR(x), which PostgreSQL looks up on search_path, or as
        // an ordinary call (SUBSTR(x, a, b)): made a pg_catalog call, then checked as one.
        rewrite_call_syntax(s, expr)?;
        return Ok(Some(expr));
    }
    let first = match expr {
        Expr::Identifier(ident) => {
            identifier(s, ident, true)?;
            s.bare_column(expr)?;
            return Ok(None);
        }
        Expr::CompoundIdentifier(_) => {
            s.qualified_column(expr)?;
            return Ok(None);
        }
        Expr::CompoundFieldAccess { root, access_chain } => {
            access(s, access_chain)?;
            root
        }
        Expr::Nested(inner)
        | Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::IsTrue(inner)
        | Expr::IsNotTrue(inner)
        | Expr::IsFalse(inner)
        | Expr::IsNotFalse(inner)
        | Expr::IsUnknown(inner)
        | Expr::IsNotUnknown(inner) => inner,
        Expr::Ceil {
            expr: inner,
            field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
        }
        | Expr::Floor {
            expr: inner,
            field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
        } => inner,
        Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
            typed_pair(s, left, right, Context::Comparison)?;
            self::expr(s, right)?;
            left
        }
        Expr::AtTimeZone {
            timestamp: left,
            time_zone: right,
        } => {
            typed_pair(s, left, right, Context::AtTimeZone)?;
            self::expr(s, right)?;
            left
        }
        Expr::Position {
            expr: left,
            r#in: right,
        } => {
            self::expr(s, right)?;
            left
        }
        Expr::BinaryOp { .. } => {
            chain(s, expr)?;
            return Ok(None);
        }
        Expr::AnyOp {
            left,
            compare_op,
            right,
            is_some: _,
        }
        | Expr::AllOp {
            left,
            compare_op,
            right,
        } => {
            any_all(s, compare_op, right)?;
            left
        }
        Expr::UnaryOp { op, expr: operand } => {
            unary(s, *op, operand)?;
            operand
        }
        Expr::InList {
            expr: inner,
            list,
            negated: _,
        } => {
            s.context_typed(inner, Context::Comparison)?;
            for item in list.iter_mut() {
                s.context_typed(item, Context::Comparison)?;
                self::expr(s, item)?;
            }
            inner
        }
        Expr::InSubquery {
            expr: inner,
            subquery,
            negated: _,
        } => {
            s.subquery(subquery)?;
            inner
        }
        Expr::Between {
            expr: inner,
            negated: _,
            low,
            high,
        } => {
            for operand in [&**inner, &**low, &**high] {
                s.context_typed(operand, Context::Comparison)?;
            }
            pair(s, low, high)?;
            inner
        }
        Expr::Like {
            negated: _,
            any: false,
            expr: inner,
            pattern,
            escape_char,
        }
        | Expr::ILike {
            negated: _,
            any: false,
            expr: inner,
            pattern,
            escape_char,
        }
        | Expr::SimilarTo {
            negated: _,
            expr: inner,
            pattern,
            escape_char,
        } => {
            self::expr(s, pattern)?;
            opt_expr(s, escape_char)?;
            inner
        }
        Expr::Cast {
            kind: CastKind::Cast | CastKind::DoubleColon,
            expr: inner,
            data_type,
            format: None,
        } => {
            s.cast_type(data_type)?;
            s.context_typed(inner, Context::Cast)?;
            inner
        }
        Expr::Extract {
            field,
            syntax: ExtractSyntax::From,
            expr: inner,
        } => {
            check_datetime_field(field)?;
            s.context_typed(inner, Context::Extract)?;
            inner
        }
        Expr::Substring {
            expr: inner,
            substring_from,
            substring_for,
            special,
            shorthand,
        } => {
            // SUBSTRING(x FROM a FOR b) is grammar, which always means
            // pg_catalog.substring; SUBSTR(x FROM ...) would not be. (The call
            // spelling is here only where it is kept as written.)
            if !*special {
                *shorthand = false;
            }
            opt_expr(s, substring_from)?;
            opt_expr(s, substring_for)?;
            inner
        }
        Expr::Trim {
            trim_where: _,
            trim_what,
            expr: inner,
            trim_characters,
        } => {
            trim(s, trim_what, trim_characters)?;
            inner
        }
        Expr::Overlay {
            expr: inner,
            overlay_what,
            overlay_from,
            overlay_for,
        } => {
            pair(s, overlay_what, overlay_from)?;
            opt_expr(s, overlay_for)?;
            inner
        }
        Expr::Interval(interval) => {
            check_interval(interval)?;
            &mut interval.value
        }
        Expr::Value(value) => {
            s.literal(value)?;
            return Ok(None);
        }
        Expr::TypedString(TypedString {
            uses_odbc_syntax: false,
            ..
        }) => {
            s.typed_string(expr)?;
            return Ok(None);
        }
        Expr::Function(_) => {
            function(s, expr)?;
            return Ok(None);
        }
        Expr::Case {
            case_token: _,
            end_token: _,
            operand,
            conditions,
            else_result,
        } => {
            case(s, operand, conditions, else_result)?;
            return Ok(None);
        }
        Expr::Exists {
            subquery,
            negated: _,
        }
        | Expr::Subquery(subquery) => {
            s.subquery(subquery)?;
            return Ok(None);
        }
        Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
            for set in sets {
                exprs(s, set)?;
            }
            return Ok(None);
        }
        Expr::Tuple(items)
        | Expr::Array(Array {
            elem: items,
            named: true,
        }) => {
            exprs(s, items)?;
            return Ok(None);
        }
        other => return Err(s.form_refused(other)),
    };
    Ok(Some(first))
}

fn pair<S: Surface + ?Sized>(s: &mut S, left: &mut Expr, right: &mut Expr) -> Result<(), Refusal> {
    expr(s, left)?;
    expr(s, right)
}

/// A run of binary operators such as `a OR b OR c`: it leans left and can be as long
/// as the text, so its spine is walked in a loop, and its operands in the order they
/// are written, so that a refusal names the first offending one.
fn chain<S: Surface + ?Sized>(s: &mut S, expr: &mut Expr) -> Result<(), Refusal> {
    let mut operands = Vec::new();
    let mut current = expr;
    while let Expr::BinaryOp { left, op, right } = current {
        if !(s.settings().operators)(op) {
            return Err(operator_refused(s, op));
        }
        typed_pair(s, left, right, Context::Operator(op))?;
        operands.push(right);
        current = left;
    }
    self::expr(s, current)?;
    for operand in operands.into_iter().rev() {
        self::expr(s, operand)?;
    }
    Ok(())
}

fn typed_pair<S: Surface + ?Sized>(
    s: &mut S,
    left: &Expr,
    right: &Expr,
    context: Context,
) -> Result<(), Refusal> {
    s.context_typed(left, context)?;
    s.context_typed(right, context)
}

fn any_all<S: Surface + ?Sized>(
    s: &mut S,
    op: &BinaryOperator,
    right: &mut Expr,
) -> Result<(), Refusal> {
    if !is_comparison(op) {
        return Err(s.refusal(format!(
            "the operator {op} is not allowed with ANY/ALL{}",
            s.settings().suffix
        )));
    }
    expr(s, right)
}

#[cold]
fn operator_refused<S: Surface + ?Sized>(s: &S, op: &impl fmt::Display) -> Refusal {
    s.refusal(format!(
        "the operator {} is not allowed{}",
        super::super::parse::excerpt(op),
        s.settings().suffix
    ))
}

use std::fmt;

/// Checks the operator; the caller continues with the operand.
fn unary<S: Surface + ?Sized>(
    s: &mut S,
    op: UnaryOperator,
    operand: &mut Box<Expr>,
) -> Result<(), Refusal> {
    if !(s.settings().unary_operators)(op) {
        return Err(operator_refused(s, &op));
    }
    // Parenthesized only where needed: elsewhere the parentheses could change the
    // meaning, since sqlparser binds `-x ^ 2` as `-(x ^ 2)` and PostgreSQL, reading the
    // printed text, as `(-x) ^ 2`.
    if op != UnaryOperator::Not && starts_with_operator(operand) {
        parenthesize(operand);
    }
    Ok(())
}

fn trim<S: Surface + ?Sized>(
    s: &mut S,
    what: &mut Option<Box<Expr>>,
    characters: &mut Option<Vec<Expr>>,
) -> Result<(), Refusal> {
    opt_expr(s, what)?;
    match characters {
        Some(characters) => exprs(s, characters),
        None => Ok(()),
    }
}

fn case<S: Surface + ?Sized>(
    s: &mut S,
    operand: &mut Option<Box<Expr>>,
    conditions: &mut [CaseWhen],
    else_result: &mut Option<Box<Expr>>,
) -> Result<(), Refusal> {
    opt_expr(s, operand)?;
    for CaseWhen { condition, result } in conditions {
        pair(s, condition, result)?;
    }
    opt_expr(s, else_result)
}

fn access<S: Surface + ?Sized>(s: &mut S, chain: &mut [AccessExpr]) -> Result<(), Refusal> {
    for item in chain {
        match item {
            AccessExpr::Dot(Expr::Identifier(field)) => check_ident(field)?,
            AccessExpr::Subscript(Subscript::Index { index }) => expr(s, index)?,
            AccessExpr::Subscript(Subscript::Slice {
                lower_bound,
                upper_bound,
                stride: None,
            }) => {
                for bound in [lower_bound, upper_bound].into_iter().flatten() {
                    expr(s, bound)?;
                }
            }
            other => {
                return Err(s.refusal(format!(
                    "the field access {} is not allowed{}",
                    super::super::parse::excerpt(&format!("{other:?}")),
                    s.settings().suffix
                )))
            }
        }
    }
    Ok(())
}

/// A bare name: a keyword to PostgreSQL when unquoted and one of the session's or the
/// clock's, else what the surface says.
pub fn identifier<S: Surface + ?Sized>(
    s: &mut S,
    ident: &mut Ident,
    reference: bool,
) -> Result<(), Refusal> {
    if ident.quote_style.is_none() {
        let name = fold(ident);
        if SESSION_KEYWORDS.contains(&name.as_str()) {
            return Err(s.keyword_refused(&name));
        }
        if CLOCK_KEYWORDS.contains(&name.as_str()) {
            return if s.settings().clock {
                Ok(())
            } else {
                Err(s.keyword_refused(&name))
            };
        }
    }
    s.column(ident, reference)
}

fn rewrite_call_syntax<S: Surface + ?Sized>(s: &S, expr: &mut Expr) -> Result<(), Refusal> {
    let (function, args) = match expr {
        Expr::Ceil {
            expr: inner,
            field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
        } => ("ceil", vec![take(inner)]),
        Expr::Floor {
            expr: inner,
            field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
        } => ("floor", vec![take(inner)]),
        Expr::Substring {
            expr: inner,
            substring_from,
            substring_for,
            special: true,
            shorthand,
        } => {
            let mut args = vec![take(inner)];
            args.extend(
                [substring_from.take(), substring_for.take()]
                    .into_iter()
                    .flatten()
                    .map(|bound| *bound),
            );
            (if *shorthand { "substr" } else { "substring" }, args)
        }
        other => return Err(s.form_refused(other)),
    };
    *expr = catalog_call(function, args);
    Ok(())
}
