//! Checks and rewrites the SQL behind `beacon.query(project, sql, row_limit)`.
//!
//! That function lets an application's untrusted end users run analysis SQL
//! against one project. This module is the first of two independent barriers
//! (the second executes as the project's read role, read-only, under a
//! statement timeout): it parses the text, refuses anything outside a small
//! read-only subset, and hands back SQL *rendered from the checked syntax
//! tree*, so what PostgreSQL runs is exactly what was checked, never the raw
//! text.
//!
//! Everything is default-deny: every `match` over a syntax node lists what is
//! allowed and refuses the rest, and the large structs are destructured in
//! full, so syntax a future sqlparser adds is refused (or fails to compile)
//! instead of slipping through. Expressions are walked by the one shared walker
//! (`sql_policy::text::walk`) with `beacon.query`'s settings; this module walks
//! the statement around them: WITH, set operations, SELECT clauses, FROM items. Table references are pinned to the project's
//! schema and function calls to `pg_catalog` (or `beacon`), so nothing depends
//! on `search_path`.
//!
//! Text is read and written only through the text layer of the policy
//! (`sql_policy::text`): its guarded parser, and its renderer, which prints
//! every literal and quoted identifier itself and reads the result back. The
//! walk still parenthesizes operands sqlparser would print ambiguously (`- -1`
//! as the comment `--1`) and refuses what the renderer cannot print.

use std::collections::BTreeSet;

use crate::sql_policy::lists::{RECORD_FUNCTIONS, SET_RETURNING_FUNCTIONS};
use crate::sql_policy::text::walk::{self as shared, check_ident, name_parts, quoted, refuse};
use crate::sql_policy::text::{
    self,
    parse::{excerpt, Limits},
};
use crate::sql_policy::Refusal;
use crate::sqlident::{fold, unparenthesized};
use sqlparser::ast::{
    Cte, Distinct, Expr, Fetch, FunctionArg, FunctionArgExpr, GroupByExpr, Join, JoinConstraint,
    JoinOperator, LimitClause, NamedWindowDefinition, NamedWindowExpr, ObjectName, Offset, OrderBy,
    OrderByKind, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator,
    SetQuantifier, Statement, TableAlias, TableFactor, TableFunctionArgs, TableWithJoins, Values,
    With,
};

use crate::sql_policy::text::walk::{catalog_name, check_type, label};

fn refusal(message: impl Into<String>) -> Refusal {
    Refusal::object(message)
}

/// Backstop for the walk below, which recurses once per level of nesting
/// (operator and set-operation chains are walked in loops).
const MAX_WALK_DEPTH: usize = LIMITS.max_nesting_cost + 4 * LIMITS.recursion_limit;

/// The limits of the text `beacon.query`, materialized views and continuous queries read.
pub(crate) const LIMITS: Limits = Limits::QUERY;

fn check_set_operation(op: &SetOperator, quantifier: &SetQuantifier) -> Result<(), Refusal> {
    match op {
        SetOperator::Union | SetOperator::Except | SetOperator::Intersect => {}
        SetOperator::Minus => return refuse("MINUS is not allowed; use EXCEPT"),
    }
    match quantifier {
        SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None => Ok(()),
        other => refuse(format!("{op} {other} is not allowed")),
    }
}

#[cold]
fn modification_refused(set_expr: &SetExpr) -> Refusal {
    let rendered = set_expr.to_string();
    let kind = rendered.split_whitespace().next().unwrap_or_default();
    refusal(format!(
        "data-modifying statements ({kind}) are not allowed, not even inside WITH"
    ))
}

#[cold]
fn from_item_refused(factor: &TableFactor) -> Refusal {
    refusal(format!("the FROM item {} is not allowed", excerpt(factor)))
}

/// UNNEST(...) is printed as the bare keyword, which PostgreSQL looks up on
/// search_path; as a table function it gets pg_catalog.
fn unnest_as_function(factor: &mut TableFactor) {
    let TableFactor::UNNEST {
        alias,
        array_exprs,
        with_ordinality,
        ..
    } = factor
    else {
        return;
    };
    *factor = TableFactor::Table {
        name: catalog_name("pg_catalog", "unnest"),
        alias: alias.take(),
        args: Some(TableFunctionArgs {
            args: array_exprs
                .drain(..)
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            settings: None,
        }),
        with_hints: vec![],
        version: None,
        with_ordinality: *with_ordinality,
        partitions: vec![],
        json_path: None,
        sample: None,
        index_hints: vec![],
    };
}

fn too_deep() -> Refusal {
    LIMITS.too_deep()
}

/// Parses `sql` into statements within the size and nesting limits every surface of
/// user SQL shares (continuous queries use it too).
pub(crate) fn parse_guarded(sql: &str) -> Result<Vec<Statement>, Refusal> {
    text::parse::statements(sql, &LIMITS)
}

/// Parses `sql` as exactly one query.
fn parse_query(sql: &str) -> Result<Query, Refusal> {
    let mut statements = parse_guarded(sql)?;
    let statement = match statements.len() {
        1 => statements.remove(0),
        0 => return refuse("no statement found; expected one SELECT query"),
        n => {
            return refuse(format!(
                "exactly one statement is allowed, found {n} (multiple statements)"
            ));
        }
    };
    match statement {
        Statement::Query(query) => Ok(*query),
        other => {
            let rendered = other.to_string();
            let kind = rendered.split_whitespace().next().unwrap_or_default();
            refuse(format!("only SELECT queries are allowed, not {kind}"))
        }
    }
}

/// Checks `sql` and returns it rewritten: every table reference that is not a
/// CTE name becomes `"<project>"."<table>"` (double-quoted), every allowed
/// function call becomes `pg_catalog."<name>"` (or
/// `beacon."approx_count_distinct"` for that one), so nothing depends on
/// search_path.
///
/// The result reads the same under any `standard_conforming_strings`: the
/// renderer prints strings with backslashes as `E'...'`.
pub fn check_query(sql: &str, project: &str) -> Result<String, Refusal> {
    // Project names are validated long before; this only keeps a bad one
    // from being printed as a broken identifier.
    if project.is_empty() || project.contains(['"', '\0']) {
        return refuse(format!("invalid project name {project:?}"));
    }
    let mut query = parse_query(sql)?;
    let mut checker = Checker::new(Some(project));
    checker.query(&mut query)?;
    text::render::statement(&Statement::Query(Box::new(query)), &LIMITS)
}

mod key;
mod walk;

pub use key::unique_output_key;
use walk::Checker;

#[cfg(test)]
mod tests;
