//! The one way parsed user SQL becomes text again.
//!
//! sqlparser's printer is not safe for every tree it can parse: it prints a string
//! containing `\'` or an identifier containing `\"` without doubling the quote (PostgreSQL
//! then ends the literal early and reads the rest as SQL), and how a backslash in `'...'`
//! reads depends on `standard_conforming_strings`. So the renderer prints every string
//! literal and every quoted identifier itself ([`string_literal`], `quote_ident`), lets
//! sqlparser print the rest of the (already checked) tree, reads the text back within the
//! surface's limits and refuses, as an internal error, anything that does not come back as
//! the tree that was checked.
//!
//! The walkers keep every string in a checked tree as `Value::SingleQuotedString` holding
//! the string's value; only the renderer encodes it.

use super::super::Refusal;
use super::parse::{self, excerpt, Limits};
use crate::names::quote_ident;
use sqlparser::ast::{Expr, Ident, Statement, Value, ValueWithSpan, VisitMut, VisitorMut};
use std::fmt;
use std::ops::ControlFlow;

/// A string literal that PostgreSQL reads as `value` under every setting: `'...'` with
/// quotes doubled when it holds no backslash (backslashes are the only characters
/// `standard_conforming_strings = off` reads differently there), else `E'...'` with
/// backslashes and quotes doubled, which means the same whatever that setting. Quotes are
/// never backslash-escaped, which `backslash_quote` may forbid. Dollar quotes would read
/// the same too, but not as one form for every value.
pub fn string_literal(value: &str) -> String {
    let body = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// The value a string literal of any spelling stands for, `None` for other literals.
/// (`N'...'` is not here: PostgreSQL reads it as `bpchar`, not as an untyped string.)
fn string_value(value: &Value) -> Option<&str> {
    match value {
        Value::SingleQuotedString(text)
        | Value::EscapedStringLiteral(text)
        | Value::UnicodeStringLiteral(text) => Some(text),
        Value::DollarQuotedString(dollar) => Some(&dollar.value),
        _ => None,
    }
}

/// Makes every string literal a plain `SingleQuotedString` of its value, the form the
/// walkers keep and trees are compared in.
pub fn canonical_string(value: &mut Value) {
    if let Some(text) = string_value(value) {
        if !matches!(value, Value::SingleQuotedString(_)) {
            *value = Value::SingleQuotedString(text.to_string());
        }
    }
}

/// Rewrites a tree into what sqlparser prints faithfully: string literals and quoted
/// identifiers become verbatim text (a placeholder and an unquoted identifier are printed
/// as they are).
struct Printable;

impl VisitorMut for Printable {
    type Break = Box<Refusal>;

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<Self::Break> {
        if let Some(text) = string_value(&value.value) {
            if text.contains('\0') {
                return ControlFlow::Break(Box::new(Refusal::object(
                    "string literals cannot contain NUL characters",
                )));
            }
            value.value = Value::Placeholder(string_literal(text));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<Self::Break> {
        if ident.quote_style == Some('"') {
            if ident.value.contains('\0') {
                return ControlFlow::Break(Box::new(Refusal::object(
                    "identifiers cannot contain NUL characters",
                )));
            }
            *ident = Ident::new(quote_ident(&ident.value));
        }
        ControlFlow::Continue(())
    }
}

/// Makes two trees comparable: strings of every spelling as their value.
struct Canonical;

impl VisitorMut for Canonical {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        canonical_string(&mut value.value);
        ControlFlow::Continue(())
    }
}

fn canonical<T: VisitMut + Clone>(tree: &T) -> T {
    let mut copy = tree.clone();
    let _ = copy.visit(&mut Canonical);
    copy
}

fn printed<T: VisitMut + Clone + fmt::Display>(tree: &T) -> Result<String, Refusal> {
    let mut copy = tree.clone();
    if let ControlFlow::Break(refusal) = copy.visit(&mut Printable) {
        return Err(*refusal);
    }
    Ok(copy.to_string())
}

#[cold]
fn not_rendered(limits: &Limits, rendered: &str) -> Refusal {
    Refusal::internal(format!(
        "the {} could not be rendered back to SQL safely (rendered as {}); please report \
         this",
        limits.what,
        excerpt(&rendered)
    ))
}

/// Copying, printing, reading back, comparing and dropping a tree recurse once per level
/// in sqlparser's derived code, which takes more stack per level than the walkers do (a
/// chain of 1,000 operators is allowed): so that happens on a stack of its own. Nothing in
/// here calls PostgreSQL, whose stack-depth check assumes one stack.
fn on_own_stack<R>(work: impl FnOnce() -> R) -> R {
    stacker::grow(64 << 20, work)
}

/// An expression as SQL, read back and compared with `expr`.
pub fn expression(expr: &Expr, limits: &Limits) -> Result<String, Refusal> {
    on_own_stack(|| {
        let rendered = printed(expr)?;
        let back = parse::expression(&rendered, &limits.rendered())
            .map_err(|_| not_rendered(limits, &rendered))?;
        if back.map(|back| canonical(&back)) != Some(canonical(expr)) {
            return Err(not_rendered(limits, &rendered));
        }
        Ok(rendered)
    })
}

/// A statement as SQL, read back and compared with `statement`.
pub fn statement(statement: &Statement, limits: &Limits) -> Result<String, Refusal> {
    on_own_stack(|| {
        let rendered = printed(statement)?;
        let back = parse::statements(&rendered, &limits.rendered())
            .map_err(|_| not_rendered(limits, &rendered))?;
        if back.len() != 1 || canonical(&back[0]) != canonical(statement) {
            return Err(not_rendered(limits, &rendered));
        }
        Ok(rendered)
    })
}

#[cfg(test)]
pub(crate) mod tests;
