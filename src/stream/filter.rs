//! Checks and re-renders the row filter of a stream subscription.
//!
//! `beacon.subscribe` takes the filter as SQL text written by the subscriber,
//! and pg_beacon pastes it into a generated trigger function that runs in every
//! session inserting into the collection. Whatever reaches PostgreSQL there
//! must therefore be harmless no matter who wrote it: the filter is parsed,
//! anything outside a small set of side-effect-free forms is refused with a
//! message naming the offending part, and the SQL is rendered back from the
//! syntax tree rather than copied. That way comments, trailing statements and
//! quoting tricks never survive, every column reference is quoted, and
//! functions and types are pinned to pg_catalog so that a same-named object
//! in another schema cannot be picked up instead.

use std::fmt;

use crate::sqlident::{fold, folded_parts};
use sqlparser::ast::{
    BinaryOperator, CastKind, CharacterLength, DataType, ExactNumberInfo, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, TimezoneInfo,
    UnaryOperator, Value,
};

use crate::names::quote_ident;
use crate::sql_policy::lists::{filter_function_names, FILTER_FUNCTIONS};
use crate::sql_policy::text::{self, Limits};
use crate::sql_policy::Refusal;

/// Bounds parsing time (8 KiB) and, since chains such as `a OR b OR ...` grow the
/// syntax tree without nesting, also how deep the tree can get.
const LIMITS: Limits = Limits::FILTER;

/// No sensible filter comes close; the limit keeps the recursive checks
/// below (and PostgreSQL's own parser) far from the end of the stack.
const MAX_FILTER_DEPTH: usize = LIMITS.levels;

const BOOLEAN_REQUIRED: &str = "the filter must be a boolean expression \
     (a comparison, AND/OR/NOT, IN, BETWEEN, LIKE or IS ...)";

/// Why a filter is refused, naming the offending part.
fn refusal(message: impl Into<String>) -> Refusal {
    Refusal::object(message)
}

/// Keywords PostgreSQL evaluates as session state when unquoted. sqlparser
/// reads some of them as column names; refusing them keeps a filter from
/// meaning one thing here and another to someone reading it as SQL.
const SQL_VALUE_KEYWORDS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_role",
    "current_user",
    "session_user",
    "system_user",
    "user",
    "current_catalog",
    "current_schema",
];

mod values;

use values::{allowed_type, literal, string_literal};

/// Checks `filter` against the collection's column names (exact names as
/// stored in PostgreSQL, e.g. "price", "_id", "_time", "_user", "Mixed Case"),
/// and returns the filter as SQL in which every column reference is a
/// double-quoted identifier.
///
/// The result is a bare expression without outer parentheses, so it needs
/// them when combined with other conditions. Its type is not known here (a
/// bare column passes); PostgreSQL has to confirm it is boolean. Operators
/// such as `=` still resolve through the search path, so the code that runs
/// the filter needs a fixed one.
pub fn check_filter(filter: &str, columns: &[&str]) -> Result<String, Refusal> {
    let mut expr = parse(filter)?;
    // Outer parentheses carry no meaning of their own, and dropping them
    // lets the top-level form be judged.
    while let Expr::Nested(inner) = expr {
        expr = *inner;
    }
    Checker { columns }.check(&mut expr, 1)?;
    if !is_boolean_form(&expr) {
        return Err(refusal(format!(
            "{BOOLEAN_REQUIRED}; found {}",
            excerpt(&expr)
        )));
    }
    text::render::expression(&expr, &LIMITS)
}

fn parse(filter: &str) -> Result<Expr, Refusal> {
    text::parse::expression(filter, &LIMITS)?.ok_or_else(|| {
        Refusal::syntax("the filter is empty (to subscribe without a filter, pass NULL)")
    })
}

/// Refusals quote the offending part; a bounded excerpt keeps a huge filter
/// from turning into a huge error message.
fn excerpt(text: impl fmt::Display) -> String {
    text::parse::excerpt(&text)
}

fn too_deep() -> Refusal {
    refusal(format!(
        "the filter is nested too deeply (at most {MAX_FILTER_DEPTH} levels)"
    ))
}

/// How a call is named in refusals: `pg_sleep()`, but `current_user`, which
/// is written without parentheses.
fn call_label(f: &Function) -> String {
    let name = match folded_parts(&f.name) {
        Some(parts) => parts.join("."),
        None => f.name.to_string(),
    };
    match f.args {
        FunctionArguments::None => name,
        _ => format!("{name}()"),
    }
}

fn subquery_refused(found: impl fmt::Display) -> Refusal {
    refusal(format!(
        "subqueries are not allowed in a filter (found {})",
        excerpt(found)
    ))
}

fn allowed_operator(op: &BinaryOperator) -> Result<(), Refusal> {
    use BinaryOperator as B;
    match op {
        B::Eq
        | B::NotEq
        | B::Lt
        | B::LtEq
        | B::Gt
        | B::GtEq
        | B::Plus
        | B::Minus
        | B::Multiply
        | B::Divide
        | B::Modulo
        | B::StringConcat
        | B::And
        | B::Or
        | B::Arrow
        | B::LongArrow => Ok(()),
        other => Err(refusal(format!(
            "operator {} is not allowed in a filter",
            excerpt(other)
        ))),
    }
}

/// Forms that yield a boolean whatever their operands; a bare column (or a
/// cast to boolean) may too, which PostgreSQL verifies with the real types.
fn is_boolean_form(expr: &Expr) -> bool {
    use BinaryOperator as B;
    match expr {
        Expr::BinaryOp { op, .. } => matches!(
            op,
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::And | B::Or
        ),
        Expr::UnaryOp { op, .. } => *op == UnaryOperator::Not,
        Expr::Value(value) => matches!(value.value, Value::Boolean(_)),
        Expr::Cast { data_type, .. } => *data_type == DataType::Boolean,
        Expr::Identifier(_)
        | Expr::InList { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsNotTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..) => true,
        _ => false,
    }
}

/// Whether the rendering of `expr` starts with a sign, which right after a
/// unary minus would form `--`, the start of a comment.
fn starts_with_sign(mut expr: &Expr) -> bool {
    loop {
        expr = match expr {
            Expr::UnaryOp {
                op: UnaryOperator::Minus | UnaryOperator::Plus,
                ..
            } => return true,
            Expr::BinaryOp { left: first, .. }
            | Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: first,
                ..
            }
            | Expr::IsNull(first)
            | Expr::IsNotNull(first)
            | Expr::IsTrue(first)
            | Expr::IsNotTrue(first)
            | Expr::IsFalse(first)
            | Expr::IsNotFalse(first)
            | Expr::IsUnknown(first)
            | Expr::IsNotUnknown(first)
            | Expr::IsDistinctFrom(first, _)
            | Expr::IsNotDistinctFrom(first, _)
            | Expr::InList { expr: first, .. }
            | Expr::Between { expr: first, .. }
            | Expr::Like { expr: first, .. }
            | Expr::ILike { expr: first, .. } => first,
            _ => return false,
        }
    }
}

struct Checker<'a> {
    columns: &'a [&'a str],
}

impl Checker<'_> {
    /// Refuses anything but the allowed forms and rewrites `expr` in place
    /// into its safe rendering: columns quoted, literals requoted, functions
    /// and types pinned to pg_catalog.
    fn check(&self, expr: &mut Expr, depth: usize) -> Result<(), Refusal> {
        if depth > MAX_FILTER_DEPTH {
            return Err(too_deep());
        }
        let inner_depth = depth + 1;
        match expr {
            Expr::Identifier(ident) => *ident = self.column(ident)?,
            Expr::CompoundIdentifier(parts) => {
                let written = excerpt(Expr::CompoundIdentifier(parts.clone()));
                return Err(refusal(format!(
                    "qualified column references ({written}) are not allowed in a filter; \
                     write the bare column name"
                )));
            }
            Expr::Value(value) => value.value = literal(&value.value)?,
            Expr::TypedString(typed) => {
                if typed.uses_odbc_syntax {
                    return Err(refusal(format!(
                        "ODBC literals ({}) are not allowed in a filter",
                        excerpt(&*typed)
                    )));
                }
                // A typed literal is a cast of the string to the type, and as
                // a cast it can take a qualified type name, which sqlparser
                // cannot read back in the `type 'string'` spelling.
                let data_type = allowed_type(&typed.data_type)?;
                let value = Value::SingleQuotedString(string_literal(&typed.value.value)?);
                *expr = Expr::Cast {
                    kind: CastKind::DoubleColon,
                    expr: Box::new(Expr::value(value)),
                    data_type,
                    format: None,
                };
            }
            Expr::Interval(interval) => {
                let plain = interval.leading_field.is_none()
                    && interval.leading_precision.is_none()
                    && interval.last_field.is_none()
                    && interval.fractional_seconds_precision.is_none();
                match &mut *interval.value {
                    Expr::Value(value) if plain => {
                        value.value = Value::SingleQuotedString(string_literal(&value.value)?);
                    }
                    _ => {
                        return Err(refusal(format!(
                            "{} is not allowed in a filter; write intervals as \
                             interval '1 day'",
                            excerpt(&*interval)
                        )));
                    }
                }
            }
            Expr::Nested(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::IsTrue(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsFalse(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner)
            | Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: inner,
            } => self.check(inner, inner_depth)?,
            Expr::UnaryOp {
                op: UnaryOperator::Minus | UnaryOperator::Plus,
                expr: inner,
            } => {
                self.check(inner, inner_depth)?;
                if starts_with_sign(inner) {
                    let operand = std::mem::replace(&mut **inner, Expr::value(Value::Null));
                    **inner = Expr::Nested(Box::new(operand));
                }
            }
            Expr::UnaryOp { op, .. } => {
                return Err(refusal(format!(
                    "operator {} is not allowed in a filter",
                    excerpt(*op)
                )));
            }
            Expr::BinaryOp { .. } => self.check_chain(expr, inner_depth)?,
            Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
                self.check(left, inner_depth)?;
                self.check(right, inner_depth)?;
            }
            Expr::InList {
                expr: inner,
                list,
                negated: _,
            } => {
                self.check(inner, inner_depth)?;
                for item in list {
                    self.check(item, inner_depth)?;
                }
            }
            Expr::Between {
                expr: inner,
                negated: _,
                low,
                high,
            } => {
                self.check(inner, inner_depth)?;
                self.check(low, inner_depth)?;
                self.check(high, inner_depth)?;
            }
            Expr::Like { any: true, .. } | Expr::ILike { any: true, .. } => {
                return Err(refusal(format!(
                    "LIKE ANY is not allowed in a filter ({})",
                    excerpt(&*expr)
                )));
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
            } => {
                self.check(inner, inner_depth)?;
                self.check(pattern, inner_depth)?;
                if let Some(escape) = escape_char {
                    self.check(escape, inner_depth)?;
                }
            }
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type,
                format: None,
            } => {
                *data_type = allowed_type(data_type)?;
                self.check(inner, inner_depth)?;
            }
            Expr::Function(f) => self.function(f, inner_depth)?,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                return Err(subquery_refused(&*expr));
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                if matches!(**right, Expr::Subquery(_)) {
                    return Err(subquery_refused(&*expr));
                }
                return Err(refusal(format!(
                    "ANY and ALL are not allowed in a filter ({}); use IN (...)",
                    excerpt(&*expr)
                )));
            }
            Expr::Collate { .. } => {
                return Err(refusal(format!(
                    "COLLATE is not allowed in a filter ({})",
                    excerpt(&*expr)
                )));
            }
            Expr::Array(_) | Expr::CompoundFieldAccess { .. } => {
                return Err(refusal(format!(
                    "arrays, subscripts and field access are not allowed in a filter ({})",
                    excerpt(&*expr)
                )));
            }
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                return Err(refusal("wildcards (*) are not allowed in a filter"));
            }
            other => {
                return Err(refusal(format!(
                    "the expression {} is not allowed in a filter",
                    excerpt(&*other)
                )));
            }
        }
        Ok(())
    }

    /// Checks a run of binary operators such as `a OR b OR c`. It leans
    /// left and can be as long as the filter, so its spine is walked in a loop
    /// (recursing would use stack per operator) and counts as one level.
    fn check_chain(&self, expr: &mut Expr, depth: usize) -> Result<(), Refusal> {
        let mut operands = Vec::new();
        let mut current = expr;
        while let Expr::BinaryOp { left, op, right } = current {
            allowed_operator(op)?;
            operands.push(right);
            current = left;
        }
        self.check(current, depth)?;
        for operand in operands.into_iter().rev() {
            self.check(operand, depth)?;
        }
        Ok(())
    }

    /// The column `ident` names, as an identifier that renders quoted.
    fn column(&self, ident: &Ident) -> Result<Ident, Refusal> {
        let name = fold(ident);
        if ident.quote_style.is_none() && SQL_VALUE_KEYWORDS.contains(&name.as_str()) {
            return Err(session_keyword(&name));
        }
        if self.columns.contains(&name.as_str()) {
            // the renderer quotes it
            return Ok(Ident::with_quote('"', name));
        }
        let mut message = format!(
            "{} is not a column of the collection",
            excerpt(quote_ident(&name))
        );
        if let Some(similar) = self
            .columns
            .iter()
            .find(|column| column.to_lowercase() == name.to_lowercase())
        {
            message.push_str(&format!(
                "; did you mean {}? (unquoted names are folded to lower case, quoted \
                 names must match exactly)",
                quote_ident(similar)
            ));
        }
        Err(refusal(message))
    }

    fn function(&self, f: &mut Function, depth: usize) -> Result<(), Refusal> {
        let label = call_label(f);
        if let FunctionArguments::Subquery(_) = f.args {
            return Err(subquery_refused(&*f));
        }
        let name = match folded_parts(&f.name).as_deref() {
            Some([name]) => name.clone(),
            Some([schema, name]) if schema == "pg_catalog" => name.clone(),
            _ => String::new(),
        };
        let Some(&(_, min_args, max_args)) = FILTER_FUNCTIONS.iter().find(|(n, ..)| *n == name)
        else {
            if matches!(f.args, FunctionArguments::None)
                && SQL_VALUE_KEYWORDS.contains(&label.as_str())
            {
                return Err(session_keyword(&label));
            }
            return Err(refusal(format!(
                "function {} is not allowed in a filter (allowed: {})",
                excerpt(&label),
                filter_function_names().collect::<Vec<_>>().join(", ")
            )));
        };
        let FunctionArguments::List(list) = &mut f.args else {
            return Err(refusal(format!(
                "{label} must be called with an argument list"
            )));
        };
        if list.duplicate_treatment.is_some()
            || !list.clauses.is_empty()
            || f.filter.is_some()
            || f.over.is_some()
            || !f.within_group.is_empty()
            || f.null_treatment.is_some()
            || f.uses_odbc_syntax
            || !matches!(f.parameters, FunctionArguments::None)
        {
            return Err(refusal(format!(
                "{label} must be a plain call in a filter: DISTINCT, ORDER BY, FILTER, \
                 WITHIN GROUP and OVER are not allowed"
            )));
        }
        let count = list.args.len();
        if count < min_args || max_args.is_some_and(|max| count > max) {
            let expected = match max_args {
                Some(max) if max == min_args => format!("{min_args}"),
                Some(max) => format!("{min_args} to {max}"),
                None => format!("at least {min_args}"),
            };
            return Err(refusal(format!(
                "{label} takes {expected} argument(s), not {count}"
            )));
        }
        for arg in &mut list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) => self.check(arg, depth)?,
                FunctionArg::Unnamed(_) => {
                    return Err(refusal(format!(
                        "{label} cannot take * as an argument in a filter"
                    )));
                }
                FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. } => {
                    return Err(refusal(format!(
                        "named arguments are not allowed in a filter ({})",
                        excerpt(&*arg)
                    )));
                }
            }
        }
        // COALESCE is grammar, not a function in pg_catalog, and so cannot be
        // redirected; everything else is pinned to the built-in function.
        f.name = if name == "coalesce" {
            ObjectName::from(vec![Ident::new("COALESCE")])
        } else {
            ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new(name)])
        };
        Ok(())
    }
}

fn session_keyword(keyword: &str) -> Refusal {
    refusal(format!(
        "{keyword} is not allowed in a filter: it reads the session, not the row; \
         to refer to a column named {keyword}, double-quote it"
    ))
}

#[cfg(test)]
mod tests;
