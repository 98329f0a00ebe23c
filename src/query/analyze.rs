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
//! instead of slipping through. Table references are pinned to the project's
//! schema and function calls to `pg_catalog` (or `beacon`), so nothing depends
//! on `search_path`.
//!
//! Text is read and written only through the text layer of the policy
//! (`sql_policy::text`): its guarded parser, and its renderer, which prints
//! every literal and quoted identifier itself and reads the result back. The
//! walk still parenthesizes operands sqlparser would print ambiguously (`- -1`
//! as the comment `--1`) and refuses what the renderer cannot print.

use std::collections::BTreeSet;
use std::fmt;

use crate::sql_policy::lists::{
    AGGREGATE_FUNCTIONS, BEACON_FUNCTIONS, RECORD_FUNCTIONS, SCALAR_FUNCTIONS,
    SET_RETURNING_FUNCTIONS, WINDOW_FUNCTIONS,
};
use crate::sql_policy::text::{
    self,
    parse::{excerpt, Limits},
};
use crate::sql_policy::Refusal;
use crate::sqlident::{fold, unparenthesized};
use sqlparser::ast::{
    AccessExpr, Array, BinaryOperator, CaseWhen, CastKind, CeilFloorKind, Cte, DataType,
    DateTimeField, Distinct, DollarQuotedString, ExactNumberInfo, Expr, ExtractSyntax, Fetch,
    Function, FunctionArg, FunctionArgExpr, FunctionArgOperator, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, Interval, Join, JoinConstraint,
    JoinOperator, LimitClause, NamedWindowDefinition, NamedWindowExpr, ObjectName, ObjectNamePart,
    Offset, OrderBy, OrderByExpr, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, Statement, Subscript,
    TableAlias, TableFactor, TableFunctionArgs, TableWithJoins, TypedString, UnaryOperator, Value,
    ValueWithSpan, Values, WildcardAdditionalOptions, WindowFrame, WindowFrameBound, WindowSpec,
    WindowType, With,
};
use sqlparser::ast::{ArrayElemTypeDef, TimezoneInfo};

/// Refusals of the walk name the refused construct; all are about objects and
/// constructs the policy does not allow (the parser's are syntax errors and limits).
fn refusal(message: impl Into<String>) -> Refusal {
    Refusal::object(message)
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(refusal(message))
}

/// Backstop for the walk below, which recurses once per level of nesting
/// (operator and set-operation chains are walked in loops).
const MAX_WALK_DEPTH: usize = LIMITS.max_nesting_cost + 4 * LIMITS.recursion_limit;

/// The limits of the text `beacon.query`, materialized views and continuous queries read.
pub(crate) const LIMITS: Limits = Limits::QUERY;

/// Constructs PostgreSQL's grammar turns into expressions before any function
/// lookup (there is no `pg_catalog.coalesce`), so they stay unqualified and
/// must be written unquoted (`"coalesce"(x)` is an ordinary function lookup).
const KEYWORD_CONSTRUCTS: &[&str] = &["coalesce", "nullif", "greatest", "least", "row", "array"];

/// Keywords that read the clock: harmless, and often needed to bound time.
const CLOCK_KEYWORDS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
];

/// Keywords that read the session's identity or settings, which are none of
/// an end user's business (they would show the server's role names).
const SESSION_KEYWORDS: &[&str] = &[
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_schema",
    "current_catalog",
    "system_user",
];

const ALLOWED_TYPES_HINT: &str = "int, integer, smallint, bigint, int2, int4, int8, numeric, \
     decimal, real, double precision, float4, float8, text, varchar, char, boolean, date, time, \
     timestamp, timestamptz, interval, json, jsonb, uuid and arrays of these";

fn quoted(value: &str) -> Ident {
    Ident::with_quote('"', value)
}

/// Refuses identifiers that sqlparser would not print back as PostgreSQL read
/// them: its printer does not double a `"` that follows a backslash, so a
/// quoted identifier containing `\"` would end early when printed.
fn check_ident(ident: &Ident) -> Result<(), Refusal> {
    match ident.quote_style {
        None => {
            let mut chars = ident.value.chars();
            let plain = chars
                .next()
                .is_some_and(|c| c == '_' || c.is_alphabetic() || !c.is_ascii())
                && chars.all(|c| c == '_' || c == '$' || c.is_alphanumeric() || !c.is_ascii());
            if plain {
                Ok(())
            } else {
                refuse(format!("the identifier {} is not allowed", ident.value))
            }
        }
        Some('"') => {
            if ident.value.is_empty() || ident.value.contains(['"', '\0']) {
                refuse(format!(
                    "the quoted identifier {} is not allowed: quoted identifiers must not be \
                     empty or contain double quotes",
                    excerpt(ident)
                ))
            } else {
                Ok(())
            }
        }
        Some(_) => refuse(format!(
            "{} is not an identifier (only double quotes quote identifiers in PostgreSQL)",
            excerpt(ident)
        )),
    }
}

/// The name's parts, each checked; `pg_catalog.pg_sleep` and
/// `"pg_catalog"."pg_sleep"` come out the same after [`fold`].
fn name_parts(name: &ObjectName) -> Result<Vec<&Ident>, Refusal> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => check_ident(ident).map(|()| ident),
            ObjectNamePart::Function(_) => refuse(format!("the name {} is not allowed", name)),
        })
        .collect()
}

fn label(parts: &[&Ident]) -> String {
    parts.iter().map(|p| fold(p)).collect::<Vec<_>>().join(".")
}

fn catalog_name(schema: &str, function: &str) -> ObjectName {
    ObjectName::from(vec![Ident::new(schema), quoted(function)])
}

pub(crate) fn catalog_call(function: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: catalog_name("pg_catalog", function),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|arg| FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)))
                .collect(),
            clauses: vec![],
        }),
        within_group: vec![],
        filter: None,
        null_treatment: None,
        over: None,
    })
}

fn take(expr: &mut Expr) -> Expr {
    std::mem::replace(expr, Expr::Value(Value::Null.into()))
}

/// Whether the printed form of `expr` starts with an operator character.
/// sqlparser prints prefix operators without a space, so `- -1` would come
/// out as the comment `--1`, and `@ -1` as the operator `@-`.
fn starts_with_operator(expr: &Expr) -> bool {
    /// Keeps the first character and stops the printing there.
    struct FirstChar(Option<char>);
    impl fmt::Write for FirstChar {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match s.chars().next() {
                Some(c) => {
                    self.0 = Some(c);
                    Err(fmt::Error)
                }
                None => Ok(()),
            }
        }
    }
    let mut first = FirstChar(None);
    let _ = fmt::write(&mut first, format_args!("{expr}"));
    first.0.is_some_and(|c| "+-*/<>=~!@#%^&|`?".contains(c))
}

pub(crate) fn check_type(data_type: &DataType) -> Result<(), Refusal> {
    let allowed = match data_type {
        DataType::Int(_)
        | DataType::Integer(_)
        | DataType::Int2(_)
        | DataType::Int4(_)
        | DataType::Int8(_)
        | DataType::SmallInt(_)
        | DataType::BigInt(_)
        | DataType::Numeric(_)
        | DataType::Decimal(_)
        | DataType::Dec(_)
        | DataType::Real
        | DataType::Float4
        | DataType::Float8
        | DataType::DoublePrecision
        | DataType::Text
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::CharVarying(_)
        | DataType::Char(_)
        | DataType::Character(_)
        | DataType::Bool
        | DataType::Boolean
        | DataType::Date
        | DataType::Interval { .. }
        | DataType::JSON
        | DataType::JSONB
        | DataType::Uuid => true,
        DataType::Float(info) => !matches!(info, ExactNumberInfo::PrecisionAndScale(..)),
        DataType::Time(_, tz) | DataType::Timestamp(_, tz) => matches!(
            tz,
            TimezoneInfo::None
                | TimezoneInfo::WithTimeZone
                | TimezoneInfo::WithoutTimeZone
                | TimezoneInfo::Tz
        ),
        DataType::Array(ArrayElemTypeDef::SquareBracket(inner, _)) => {
            return check_type(inner);
        }
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        refuse(format!(
            "the type {} is not allowed (allowed: {ALLOWED_TYPES_HINT})",
            excerpt(data_type).to_lowercase()
        ))
    }
}

fn check_datetime_field(field: &DateTimeField) -> Result<(), Refusal> {
    match field {
        // EXTRACT('epoch' FROM x) is valid PostgreSQL; a plain word prints
        // back exactly even in single quotes.
        DateTimeField::Custom(ident)
            if ident.quote_style == Some('\'')
                && !ident.value.is_empty()
                && ident
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Ok(())
        }
        DateTimeField::Custom(ident) | DateTimeField::Week(Some(ident)) => check_ident(ident),
        _ => Ok(()),
    }
}

fn check_binary_operator(op: &BinaryOperator) -> Result<(), Refusal> {
    use BinaryOperator as B;
    match op {
        B::Plus
        | B::Minus
        | B::Multiply
        | B::Divide
        | B::Modulo
        | B::StringConcat
        | B::Gt
        | B::Lt
        | B::GtEq
        | B::LtEq
        | B::Eq
        | B::NotEq
        | B::And
        | B::Or
        | B::BitwiseOr
        | B::BitwiseAnd
        | B::PGBitwiseXor
        | B::PGBitwiseShiftLeft
        | B::PGBitwiseShiftRight
        | B::PGExp
        | B::PGOverlap
        | B::PGRegexMatch
        | B::PGRegexIMatch
        | B::PGRegexNotMatch
        | B::PGRegexNotIMatch
        | B::PGLikeMatch
        | B::PGILikeMatch
        | B::PGNotLikeMatch
        | B::PGNotILikeMatch
        | B::PGStartsWith
        | B::Arrow
        | B::LongArrow
        | B::HashArrow
        | B::HashLongArrow
        | B::AtArrow
        | B::ArrowAt
        | B::HashMinus
        | B::AtQuestion
        | B::AtAt
        | B::Question
        | B::QuestionAnd
        | B::QuestionPipe
        | B::Overlaps => Ok(()),
        // Includes OPERATOR(schema.op), which picks an operator by schema.
        other => refuse(format!("the operator {other} is not allowed")),
    }
}

fn check_comparison(op: &BinaryOperator) -> Result<(), Refusal> {
    use BinaryOperator as B;
    match op {
        B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => Ok(()),
        other => refuse(format!("the operator {other} is not allowed with ANY/ALL")),
    }
}

/// What a call turned out to be.
enum Call {
    /// A grammar construct or clock keyword, printed as written.
    Construct(&'static str),
    /// A function, printed as `schema."name"`.
    Function { schema: &'static str, name: String },
}

#[cold]
fn function_refused(label: &str) -> Refusal {
    refusal(format!(
        "the function {label}() is not allowed: only built-in functions from the allow-list \
         can be called"
    ))
}

#[cold]
fn field_access_refused(access: &AccessExpr) -> Refusal {
    refusal(format!(
        "the field access {} is not allowed",
        excerpt(&format!("{access:?}"))
    ))
}

fn typed_string(data_type: &DataType, value: &mut ValueWithSpan) -> Result<(), Refusal> {
    check_type(data_type)?;
    literal(value)
}

fn rewrite_call_syntax(expr: &mut Expr) -> Result<(), Refusal> {
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
        other => return Err(expression_refused(other)),
    };
    *expr = catalog_call(function, args);
    Ok(())
}

#[cold]
fn argument_refused(arg: &dyn fmt::Display) -> Refusal {
    refusal(format!("the argument {} is not allowed", excerpt(&arg)))
}

#[cold]
fn construct_refused(keyword: &str) -> Refusal {
    refusal(format!("this form of {keyword} is not allowed"))
}

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

fn check_interval(interval: &Interval) -> Result<(), Refusal> {
    for field in [&interval.leading_field, &interval.last_field]
        .into_iter()
        .flatten()
    {
        check_datetime_field(field)?;
    }
    Ok(())
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

#[cold]
fn expression_refused(expr: &Expr) -> Refusal {
    match expr {
        Expr::Collate { .. } => refusal("COLLATE is not allowed"),
        other => refusal(format!("the expression {} is not allowed", excerpt(other))),
    }
}

#[cold]
fn operator_refused(op: &dyn fmt::Display) -> Refusal {
    refusal(format!("the operator {op} is not allowed"))
}

fn parenthesize(expr: &mut Box<Expr>) {
    let inner = take(expr);
    **expr = Expr::Nested(Box::new(inner));
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

/// Checks a literal and re-encodes strings so that they print back exactly.
fn literal(value: &mut ValueWithSpan) -> Result<(), Refusal> {
    let text = match &mut value.value {
        Value::Number(number, false)
            if number
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_')) =>
        {
            return Ok(());
        }
        Value::Boolean(_) | Value::Null => return Ok(()),
        Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) => std::mem::take(text),
        Value::DollarQuotedString(DollarQuotedString { value, tag: _ }) => std::mem::take(value),
        Value::Placeholder(placeholder) => {
            return refuse(format!(
                "placeholders ({placeholder}) are not allowed; write the value inline"
            ));
        }
        other => return refuse(format!("the literal {} is not allowed", excerpt(other))),
    };
    value.value = Value::SingleQuotedString(text);
    Ok(())
}

mod key;
mod walk;

pub use key::unique_output_key;
use walk::Checker;

#[cfg(test)]
mod tests;
