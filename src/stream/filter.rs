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
//!
//! The expression is walked by the one shared walker (`sql_policy::text::walk`)
//! with the filter's settings; what stays here is what only a filter has: its
//! columns are one collection's, its literals and types render pinned to
//! `pg_catalog`, and the whole must be a boolean form.

use std::fmt;

use crate::sqlident::fold;
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Ident, Query, UnaryOperator, Value, ValueWithSpan,
};

use crate::names::quote_ident;
use crate::sql_policy::text::walk::{self as shared, Settings, Surface, WalkState, FILTER};
use crate::sql_policy::text::{self, Limits};
use crate::sql_policy::Refusal;

/// Bounds parsing time (8 KiB) and, since chains such as `a OR b OR ...` grow the
/// syntax tree without nesting, also how deep the tree can get.
const LIMITS: Limits = Limits::FILTER;

/// No sensible filter comes close; the limit keeps the walk (and PostgreSQL's own
/// parser) far from the end of the stack.
const MAX_FILTER_DEPTH: usize = LIMITS.levels;

const BOOLEAN_REQUIRED: &str = "the filter must be a boolean expression \
     (a comparison, AND/OR/NOT, IN, BETWEEN, LIKE or IS ...)";

/// Why a filter is refused, naming the offending part.
fn refusal(message: impl Into<String>) -> Refusal {
    Refusal::object(message)
}

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
    let mut surface = Filter {
        columns,
        walk: WalkState::default(),
    };
    shared::expr(&mut surface, &mut expr)?;
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

fn subquery_refused(found: impl fmt::Display) -> Refusal {
    refusal(format!(
        "subqueries are not allowed in a filter (found {})",
        excerpt(found)
    ))
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

/// The filter as a surface of the shared walker: one collection's columns.
struct Filter<'a> {
    columns: &'a [&'a str],
    walk: WalkState,
}

impl Surface for Filter<'_> {
    fn settings(&self) -> &'static Settings {
        &FILTER
    }

    fn state(&mut self) -> &mut WalkState {
        &mut self.walk
    }

    fn max_depth(&self) -> usize {
        MAX_FILTER_DEPTH
    }

    fn too_deep(&self) -> Refusal {
        refusal(format!(
            "the filter is nested too deeply (at most {MAX_FILTER_DEPTH} levels)"
        ))
    }

    /// Rewritten into an identifier that renders quoted.
    fn column(&mut self, ident: &mut Ident, _reference: bool) -> Result<(), Refusal> {
        let name = fold(ident);
        if self.columns.contains(&name.as_str()) {
            *ident = Ident::with_quote('"', name);
            return Ok(());
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

    fn qualified_column(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        Err(refusal(format!(
            "qualified column references ({}) are not allowed in a filter; write the bare \
             column name",
            excerpt(&*expr)
        )))
    }

    fn subquery(&mut self, query: &mut Query) -> Result<(), Refusal> {
        Err(subquery_refused(&*query))
    }

    fn literal(&mut self, value: &mut ValueWithSpan) -> Result<(), Refusal> {
        value.value = literal(&value.value)?;
        Ok(())
    }

    fn cast_type(&mut self, data_type: &mut DataType) -> Result<(), Refusal> {
        *data_type = allowed_type(data_type)?;
        Ok(())
    }

    /// A typed literal is a cast of the string to the type, and as a cast it can take a
    /// qualified type name, which sqlparser cannot read back in the `type 'string'`
    /// spelling.
    fn typed_string(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        let Expr::TypedString(typed) = expr else {
            return Err(self.form_refused(expr));
        };
        let data_type = allowed_type(&typed.data_type)?;
        let value = Value::SingleQuotedString(string_literal(&typed.value.value)?);
        *expr = Expr::Cast {
            kind: CastKind::DoubleColon,
            expr: Box::new(Expr::value(value)),
            data_type,
            format: None,
        };
        Ok(())
    }

    fn form_refused(&self, expr: &Expr) -> Refusal {
        match expr {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                subquery_refused(expr)
            }
            Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } => {
                if matches!(**right, Expr::Subquery(_)) {
                    return subquery_refused(expr);
                }
                refusal(format!(
                    "ANY and ALL are not allowed in a filter ({}); use IN (...)",
                    excerpt(expr)
                ))
            }
            Expr::Like { any: true, .. } | Expr::ILike { any: true, .. } => refusal(format!(
                "LIKE ANY is not allowed in a filter ({})",
                excerpt(expr)
            )),
            Expr::Collate { .. } => refusal(format!(
                "COLLATE is not allowed in a filter ({})",
                excerpt(expr)
            )),
            Expr::Array(_) | Expr::CompoundFieldAccess { .. } => refusal(format!(
                "arrays, subscripts and field access are not allowed in a filter ({})",
                excerpt(expr)
            )),
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                refusal("wildcards (*) are not allowed in a filter")
            }
            Expr::TypedString(typed) if typed.uses_odbc_syntax => refusal(format!(
                "ODBC literals ({}) are not allowed in a filter",
                excerpt(typed)
            )),
            Expr::Interval(interval) => refusal(format!(
                "{} is not allowed in a filter; write intervals as interval '1 day'",
                excerpt(interval)
            )),
            other => refusal(format!(
                "the expression {} is not allowed in a filter",
                excerpt(other)
            )),
        }
    }

    fn keyword_refused(&self, keyword: &str) -> Refusal {
        refusal(format!(
            "{keyword} is not allowed in a filter: it reads the session, not the row; \
             to refer to a column named {keyword}, double-quote it"
        ))
    }
}

#[cfg(test)]
mod tests;
