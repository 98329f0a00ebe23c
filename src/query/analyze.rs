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
//! Rendering is done by sqlparser, whose printer is not safe for every tree
//! it can parse: it prints a string containing `\'` or an identifier
//! containing `\"` without doubling the quote (PostgreSQL then ends the
//! literal early and reads the rest as SQL), prints `- -1` as the comment
//! `--1`, and prints dollar-quote tags PostgreSQL reads as parameters. The
//! walk therefore re-encodes such literals, parenthesizes such operands and
//! refuses such identifiers before anything is printed.

use std::collections::BTreeSet;
use std::fmt;

use crate::sqlident::{fold, unparenthesized};
use sqlparser::ast::{
    AccessExpr, Array, BinaryOperator, CaseWhen, CastKind, CeilFloorKind, Cte, DataType,
    DateTimeField, Distinct, DollarQuotedString, ExactNumberInfo, Expr, ExtractSyntax, Fetch,
    Function, FunctionArg, FunctionArgExpr, FunctionArgOperator, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, Interval, Join, JoinConstraint,
    JoinOperator, LimitClause, NamedWindowDefinition, NamedWindowExpr, ObjectName, ObjectNamePart,
    Offset, OrderBy, OrderByExpr, OrderByKind, Query, Select, SelectFlavor, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier, Statement, Subscript,
    TableAlias, TableFactor, TableFunctionArgs, TableWithJoins, TypedString, UnaryOperator, Value,
    ValueWithSpan, Values, WildcardAdditionalOptions, WindowFrame, WindowFrameBound, WindowSpec,
    WindowType, With,
};
use sqlparser::ast::{ArrayElemTypeDef, TimezoneInfo};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// Why a query was refused; the message names the refused construct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRefusal(pub String);

impl fmt::Display for QueryRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueryRefusal {}

fn refusal(message: impl Into<String>) -> QueryRefusal {
    QueryRefusal(message.into())
}

fn refuse<T>(message: impl Into<String>) -> Result<T, QueryRefusal> {
    Err(refusal(message))
}

/// Longer texts are refused before they are even tokenized.
const MAX_SQL_BYTES: usize = 100_000;

/// sqlparser's own limit on how deeply it recurses (its default is 50):
/// about 95 levels of parentheses or 48 of nested subqueries.
const PARSER_RECURSION_LIMIT: usize = 100;

/// Upper bound on how deep the syntax tree may get, estimated from the tokens
/// before parsing (see [`nesting_cost`]). sqlparser builds `a + b + c ...`,
/// `x::t::t ...` and `UNION` chains in loops, without touching its recursion
/// limit, yet dropping, printing or walking the resulting left-deep tree
/// recurses once per operator: 30,000 `+1` fit in the size limit and
/// overflow the stack. The estimate has to be checked before parsing,
/// because the parser itself drops what it built when it fails.
const MAX_NESTING_COST: usize = 1_000;

/// Backstop for the walk below, which recurses once per level of nesting
/// (operator and set-operation chains are walked in loops).
const MAX_WALK_DEPTH: usize = MAX_NESTING_COST + 4 * PARSER_RECURSION_LIMIT;

/// Aggregates, rendered `pg_catalog."name"`.
const AGGREGATE_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "corr",
    "covar_pop",
    "covar_samp",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
];

/// Window functions, rendered `pg_catalog."name"`.
const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
];

/// Scalar functions that only compute from their arguments (or read the
/// clock or the random generator), rendered `pg_catalog."name"`. Anything
/// reading files, settings, catalogs, sequences, locks or other sessions is
/// absent on purpose.
const SCALAR_FUNCTIONS: &[&str] = &[
    // math
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "sign",
    "sqrt",
    "cbrt",
    "exp",
    "ln",
    "log",
    "log10",
    "power",
    "pow",
    "mod",
    "div",
    "width_bucket",
    "random",
    "pi",
    "degrees",
    "radians",
    // strings (not repeat, lpad or rpad: one call can allocate a gigabyte before the
    // statement timeout gets a chance to cancel it)
    "lower",
    "upper",
    "initcap",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "substr",
    "substring",
    "position",
    "strpos",
    "left",
    "right",
    "ltrim",
    "rtrim",
    "btrim",
    "replace",
    "split_part",
    "concat",
    "concat_ws",
    "reverse",
    "starts_with",
    "md5",
    "regexp_replace",
    "regexp_match",
    "translate",
    "to_char",
    "to_number",
    "format",
    "ascii",
    "chr",
    // date and time
    "date_trunc",
    "date_part",
    "to_timestamp",
    "to_date",
    "make_date",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "make_interval",
    "age",
    "date_bin",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "isfinite",
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    // json
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "json_extract_path",
    "json_extract_path_text",
    "jsonb_array_length",
    "json_array_length",
    "jsonb_typeof",
    "json_typeof",
    "to_jsonb",
    "to_json",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "jsonb_strip_nulls",
    "json_strip_nulls",
    // arrays
    "array_length",
    "cardinality",
    "array_position",
    "array_positions",
    "array_to_string",
    "string_to_array",
    "array_upper",
    "array_lower",
];

/// Set-returning functions, allowed in FROM and in expressions, rendered
/// `pg_catalog."name"`.
const SET_RETURNING_FUNCTIONS: &[&str] = &[
    "generate_series",
    "unnest",
    "regexp_matches",
    "regexp_split_to_table",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_object_keys",
    "json_object_keys",
    "jsonb_each",
    "jsonb_each_text",
    "json_each",
    "json_each_text",
];

/// Functions returning `record`, usable only in FROM with a column
/// definition list (`AS x(a int, b text)`).
const RECORD_FUNCTIONS: &[&str] = &[
    "json_to_record",
    "jsonb_to_record",
    "json_to_recordset",
    "jsonb_to_recordset",
];

/// pg_beacon's own functions, rendered `beacon."name"`.
const BEACON_FUNCTIONS: &[&str] = &["approx_count_distinct"];

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

/// Shortens what a refusal quotes of the query, which may be 100 kB long.
fn excerpt(shown: &impl fmt::Display) -> String {
    shortened(shown.to_string(), 80)
}

fn shortened(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

fn parse_error(error: impl fmt::Display) -> QueryRefusal {
    refusal(shortened(
        format!("could not parse the query: {error}"),
        300,
    ))
}

/// Refuses identifiers that sqlparser would not print back as PostgreSQL read
/// them: its printer does not double a `"` that follows a backslash, so a
/// quoted identifier containing `\"` would end early when printed.
fn check_ident(ident: &Ident) -> Result<(), QueryRefusal> {
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
fn name_parts(name: &ObjectName) -> Result<Vec<&Ident>, QueryRefusal> {
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

fn catalog_call(function: &str, args: Vec<Expr>) -> Expr {
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

/// A string literal sqlparser prints back exactly: plain quotes when the
/// value has no quote or backslash (its printer does not escape those
/// faithfully, and backslashes would depend on standard_conforming_strings),
/// otherwise dollar quotes with a tag that cannot occur inside.
pub(crate) fn string_literal(value: String) -> Value {
    if !value.contains(['\'', '\\']) {
        return Value::SingleQuotedString(value);
    }
    let mut n = 0usize;
    loop {
        let tag = if n == 0 {
            "q".to_string()
        } else {
            format!("q{n}")
        };
        let delimiter = format!("${tag}$");
        // The first delimiter PostgreSQL finds after the opening one must be
        // the closing one, also when the value ends in `$` or `$q`.
        if format!("{value}{delimiter}").find(&delimiter) == Some(value.len()) {
            return Value::DollarQuotedString(DollarQuotedString {
                value,
                tag: Some(tag),
            });
        }
        n += 1;
    }
}

pub(crate) fn check_type(data_type: &DataType) -> Result<(), QueryRefusal> {
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

fn check_datetime_field(field: &DateTimeField) -> Result<(), QueryRefusal> {
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

fn check_binary_operator(op: &BinaryOperator) -> Result<(), QueryRefusal> {
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

fn check_comparison(op: &BinaryOperator) -> Result<(), QueryRefusal> {
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
fn function_refused(label: &str) -> QueryRefusal {
    refusal(format!(
        "the function {label}() is not allowed: only built-in functions from the allow-list \
         can be called"
    ))
}

#[cold]
fn field_access_refused(access: &AccessExpr) -> QueryRefusal {
    refusal(format!(
        "the field access {} is not allowed",
        excerpt(&format!("{access:?}"))
    ))
}

fn typed_string(data_type: &DataType, value: &mut ValueWithSpan) -> Result<(), QueryRefusal> {
    check_type(data_type)?;
    literal(value)
}

fn rewrite_call_syntax(expr: &mut Expr) -> Result<(), QueryRefusal> {
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
fn argument_refused(arg: &dyn fmt::Display) -> QueryRefusal {
    refusal(format!("the argument {} is not allowed", excerpt(&arg)))
}

#[cold]
fn construct_refused(keyword: &str) -> QueryRefusal {
    refusal(format!("this form of {keyword} is not allowed"))
}

fn check_set_operation(op: &SetOperator, quantifier: &SetQuantifier) -> Result<(), QueryRefusal> {
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
fn modification_refused(set_expr: &SetExpr) -> QueryRefusal {
    let rendered = set_expr.to_string();
    let kind = rendered.split_whitespace().next().unwrap_or_default();
    refusal(format!(
        "data-modifying statements ({kind}) are not allowed, not even inside WITH"
    ))
}

fn check_interval(interval: &Interval) -> Result<(), QueryRefusal> {
    for field in [&interval.leading_field, &interval.last_field]
        .into_iter()
        .flatten()
    {
        check_datetime_field(field)?;
    }
    Ok(())
}

#[cold]
fn from_item_refused(factor: &TableFactor) -> QueryRefusal {
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
fn expression_refused(expr: &Expr) -> QueryRefusal {
    match expr {
        Expr::Collate { .. } => refusal("COLLATE is not allowed"),
        other => refusal(format!("the expression {} is not allowed", excerpt(other))),
    }
}

#[cold]
fn operator_refused(op: &dyn fmt::Display) -> QueryRefusal {
    refusal(format!("the operator {op} is not allowed"))
}

fn parenthesize(expr: &mut Box<Expr>) {
    let inner = take(expr);
    **expr = Expr::Nested(Box::new(inner));
}

fn too_deep() -> QueryRefusal {
    refusal(format!(
        "the query is nested too deeply or chains too many operators (at most about \
         {PARSER_RECURSION_LIMIT} levels of nesting and {MAX_NESTING_COST} chained operators)"
    ))
}

#[derive(Default)]
struct Frame {
    /// Operator-like tokens since the last comma at this level.
    segment: usize,
    /// The deepest group opened in the current segment.
    child: usize,
    /// The deepest segment seen at this level.
    best: usize,
    /// UNION/INTERSECT/EXCEPT at this level: their chains span commas.
    set_operations: usize,
}

impl Frame {
    fn close_segment(&mut self) {
        self.best = self.best.max(self.segment + self.child);
        self.segment = 0;
        self.child = 0;
    }

    fn cost(mut self) -> usize {
        self.close_segment();
        self.best + self.set_operations + 1
    }
}

/// Upper bound on the depth of the syntax tree the tokens can parse into.
///
/// Each level a tree gains needs at least one keyword, symbol or opening
/// bracket; identifiers and literals never nest. An operator chain cannot
/// cross a comma at its own bracket level, except a chain of set operations,
/// which is counted separately. So the depth is at most, along the deepest
/// path of brackets, the sum of each level's counted tokens between commas
/// plus its set operations.
fn nesting_cost(tokens: &[TokenWithSpan]) -> usize {
    let mut frames = vec![Frame::default()];
    for token in tokens {
        let top = frames
            .last_mut()
            .expect("the outermost frame is never popped");
        match &token.token {
            Token::Whitespace(_)
            | Token::EOF
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            Token::Word(word) if word.keyword == Keyword::NoKeyword => {}
            Token::Word(word)
                if matches!(
                    word.keyword,
                    Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::MINUS
                ) =>
            {
                top.set_operations += 1;
            }
            Token::Comma => top.close_segment(),
            Token::LParen | Token::LBracket => {
                top.segment += 1;
                frames.push(Frame::default());
            }
            Token::RParen | Token::RBracket => {
                if frames.len() > 1 {
                    let cost = frames.pop().map(Frame::cost).unwrap_or_default();
                    let top = frames
                        .last_mut()
                        .expect("the outermost frame is never popped");
                    top.child = top.child.max(cost);
                }
            }
            _ => top.segment += 1,
        }
    }
    while frames.len() > 1 {
        let cost = frames.pop().map(Frame::cost).unwrap_or_default();
        let top = frames
            .last_mut()
            .expect("the outermost frame is never popped");
        top.child = top.child.max(cost);
    }
    frames.pop().map(Frame::cost).unwrap_or_default()
}

/// Refuses what has to be caught on the tokens: `U&` escapes, which
/// sqlparser does not decode the way PostgreSQL does, and trees too deep to
/// handle safely.
fn check_tokens(tokens: &[TokenWithSpan]) -> Result<(), QueryRefusal> {
    for (i, token) in tokens.iter().enumerate() {
        match &token.token {
            Token::UnicodeStringLiteral(_) => {
                return refuse("U&'...' string literals are not allowed");
            }
            Token::Ampersand if i > 0 => {
                let after_u = matches!(
                    &tokens[i - 1].token,
                    Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("u")
                );
                let before_quoted = matches!(
                    tokens.get(i + 1).map(|t| &t.token),
                    Some(Token::Word(w)) if w.quote_style.is_some()
                );
                if after_u && before_quoted {
                    return refuse("U&\"...\" identifiers are not allowed");
                }
            }
            _ => {}
        }
    }
    if nesting_cost(tokens) > MAX_NESTING_COST {
        return Err(too_deep());
    }
    Ok(())
}

/// Parses `sql` into statements within the size and nesting limits every surface of
/// user SQL shares (continuous queries use it too).
pub(crate) fn parse_guarded(sql: &str) -> Result<Vec<Statement>, QueryRefusal> {
    if sql.len() > MAX_SQL_BYTES {
        return refuse(format!(
            "the query is too long ({} bytes; at most {MAX_SQL_BYTES})",
            sql.len()
        ));
    }
    if sql.contains('\0') {
        return refuse("the query contains a NUL character");
    }
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(parse_error)?;
    check_tokens(&tokens)?;
    Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| match e {
            ParserError::RecursionLimitExceeded => too_deep(),
            other => parse_error(other),
        })
}

/// Parses `sql` as exactly one query.
fn parse_query(sql: &str) -> Result<Query, QueryRefusal> {
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
/// The result relies on `standard_conforming_strings` as little as the input
/// did: literals containing quotes or backslashes are printed dollar-quoted.
pub fn check_query(sql: &str, project: &str) -> Result<String, QueryRefusal> {
    // Project names are validated long before; this only keeps a bad one
    // from being printed as a broken identifier.
    if project.is_empty() || project.contains(['"', '\0']) {
        return refuse(format!("invalid project name {project:?}"));
    }
    let mut query = parse_query(sql)?;
    let mut checker = Checker::new(Some(project));
    checker.query(&mut query)?;
    Ok(query.to_string())
}

/// Walks a query, refusing what is not allowed and rewriting names in place.
struct Checker<'a> {
    /// `None` when inspecting an already checked (and rewritten) query, whose
    /// table references are taken as they are.
    project: Option<&'a str>,
    /// Names of the CTEs in scope, innermost last.
    ctes: Vec<String>,
    depth: usize,
    /// 1 inside the outermost query, more inside subqueries and CTEs.
    query_depth: usize,
    /// A set-returning function is called in an expression of the outermost
    /// query, so it may return several rows per group.
    top_level_srf: bool,
    /// Every name used as a column reference (folded), except bare names in
    /// GROUP BY and ORDER BY, which may be output names instead.
    columns: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    fn new(project: Option<&'a str>) -> Self {
        Checker {
            project,
            ctes: Vec::new(),
            depth: 0,
            query_depth: 0,
            top_level_srf: false,
            columns: BTreeSet::new(),
        }
    }

    fn enter(&mut self) -> Result<(), QueryRefusal> {
        self.depth += 1;
        if self.depth > MAX_WALK_DEPTH {
            return Err(too_deep());
        }
        Ok(())
    }

    fn query(&mut self, query: &mut Query) -> Result<(), QueryRefusal> {
        self.enter()?;
        self.query_depth += 1;
        let scope = self.ctes.len();
        let result = self.query_inner(query);
        self.ctes.truncate(scope);
        self.query_depth -= 1;
        self.depth -= 1;
        result
    }

    fn query_inner(&mut self, query: &mut Query) -> Result<(), QueryRefusal> {
        // Destructured in full so that a clause added by a future sqlparser
        // fails to compile here instead of being silently allowed.
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = query;
        if !locks.is_empty() {
            return refuse("FOR UPDATE / FOR SHARE (row locking clauses) are not allowed");
        }
        if for_clause.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || !pipe_operators.is_empty()
        {
            return refuse(
                "the query uses syntax from another SQL dialect (FOR / SETTINGS / FORMAT / |>)",
            );
        }
        if let Some(with) = with {
            self.with(with)?;
        }
        self.set_expr(body)?;
        if let Some(OrderBy { kind, interpolate }) = order_by {
            if interpolate.is_some() {
                return refuse("INTERPOLATE is not allowed");
            }
            match kind {
                OrderByKind::Expressions(items) => {
                    for item in items {
                        self.order_by_expr(item, true)?;
                    }
                }
                OrderByKind::All(_) => return refuse("ORDER BY ALL is not allowed"),
            }
        }
        match limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return refuse("LIMIT BY is not allowed");
                }
                if let Some(limit) = limit {
                    self.expr(limit)?;
                }
                if let Some(Offset { value, rows: _ }) = offset {
                    self.expr(value)?;
                }
            }
            Some(LimitClause::OffsetCommaLimit { .. }) => {
                return refuse(
                    "LIMIT offset, count is not allowed; write LIMIT count OFFSET offset",
                );
            }
            None => {}
        }
        if let Some(Fetch {
            with_ties: _,
            percent: _,
            quantity: Some(quantity),
        }) = fetch
        {
            self.expr(quantity)?;
        }
        Ok(())
    }

    fn with(&mut self, with: &mut With) -> Result<(), QueryRefusal> {
        let With {
            with_token: _,
            recursive,
            cte_tables,
        } = with;
        // A recursive CTE sees itself and its siblings; otherwise each CTE
        // sees only the ones before it, and its own name means the table.
        if *recursive {
            for cte in cte_tables.iter() {
                check_ident(&cte.alias.name)?;
                self.ctes.push(fold(&cte.alias.name));
            }
        }
        for cte in cte_tables.iter_mut() {
            let Cte {
                alias,
                query,
                from,
                materialized: _,
                closing_paren_token: _,
            } = cte;
            if from.is_some() {
                return refuse("CTE ... FROM is not allowed");
            }
            self.table_alias(alias, false)?;
            self.query(query)?;
            if !*recursive {
                self.ctes.push(fold(&alias.name));
            }
        }
        Ok(())
    }

    fn set_expr(&mut self, set_expr: &mut SetExpr) -> Result<(), QueryRefusal> {
        self.enter()?;
        let result = self.set_expr_inner(set_expr);
        self.depth -= 1;
        result
    }

    fn set_expr_inner(&mut self, set_expr: &mut SetExpr) -> Result<(), QueryRefusal> {
        match set_expr {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation { .. } => self.set_operation_chain(set_expr),
            SetExpr::Values(Values {
                explicit_row,
                value_keyword: _,
                rows,
            }) => {
                if *explicit_row {
                    return refuse("VALUES ROW(...) is not allowed");
                }
                for row in rows {
                    for value in row.content.iter_mut() {
                        self.expr(value)?;
                    }
                }
                Ok(())
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Err(modification_refused(set_expr))
            }
            SetExpr::Table(_) => refuse("the TABLE x form is not allowed; write SELECT * FROM x"),
        }
    }

    /// Walked along the left spine in a loop, like operator chains: `SELECT
    /// 1 UNION SELECT 2 UNION ...` nests one level per UNION.
    fn set_operation_chain(&mut self, mut set_expr: &mut SetExpr) -> Result<(), QueryRefusal> {
        while let SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } = set_expr
        {
            check_set_operation(op, set_quantifier)?;
            self.set_expr(right)?;
            set_expr = left;
        }
        self.set_expr(set_expr)
    }

    fn select(&mut self, select: &mut Select) -> Result<(), QueryRefusal> {
        // Destructured in full for the same reason as the query above.
        let Select {
            select_token: _,
            optimizer_hints,
            distinct,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode,
            flavor,
        } = select;
        if into.is_some() {
            return refuse("SELECT ... INTO is not allowed: queries cannot create tables");
        }
        if top.is_some()
            || !optimizer_hints.is_empty()
            || select_modifiers.is_some()
            || exclude.is_some()
            || !lateral_views.is_empty()
            || prewhere.is_some()
            || !connect_by.is_empty()
            || !cluster_by.is_empty()
            || !distribute_by.is_empty()
            || !sort_by.is_empty()
            || qualify.is_some()
            || value_table_mode.is_some()
            || *flavor != SelectFlavor::Standard
        {
            return refuse("the SELECT uses syntax from another SQL dialect");
        }
        for table in from.iter_mut() {
            self.table_with_joins(table)?;
        }
        match distinct {
            Some(Distinct::On(exprs)) => self.exprs(exprs)?,
            Some(Distinct::All | Distinct::Distinct) | None => {}
        }
        for item in projection.iter_mut() {
            self.select_item(item)?;
        }
        if let Some(selection) = selection {
            self.expr(selection)?;
        }
        match group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                for expr in exprs {
                    self.expr_or_output_name(expr)?;
                }
            }
            GroupByExpr::Expressions(..) => {
                return refuse(
                    "GROUP BY ... WITH ROLLUP / CUBE / TOTALS is not allowed; use ROLLUP(...)",
                );
            }
            GroupByExpr::All(_) => return refuse("GROUP BY ALL is not allowed"),
        }
        if let Some(having) = having {
            self.expr(having)?;
        }
        for NamedWindowDefinition(name, definition) in named_window {
            check_ident(name)?;
            match definition {
                NamedWindowExpr::NamedWindow(other) => check_ident(other)?,
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
            }
        }
        Ok(())
    }

    fn select_item(&mut self, item: &mut SelectItem) -> Result<(), QueryRefusal> {
        match item {
            SelectItem::UnnamedExpr(expr) => self.expr(expr),
            SelectItem::ExprWithAlias { expr, alias } => {
                check_ident(alias)?;
                self.expr(expr)
            }
            SelectItem::Wildcard(options) => wildcard_options(options),
            SelectItem::QualifiedWildcard(kind, options) => {
                match kind {
                    // Names a FROM item, which is already checked.
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        name_parts(name)?;
                    }
                    SelectItemQualifiedWildcardKind::Expr(expr) => self.expr(expr)?,
                }
                wildcard_options(options)
            }
            other => refuse(format!("the select item {} is not allowed", excerpt(other))),
        }
    }

    fn table_with_joins(&mut self, table: &mut TableWithJoins) -> Result<(), QueryRefusal> {
        let TableWithJoins { relation, joins } = table;
        self.table_factor(relation)?;
        for join in joins {
            let Join {
                relation,
                global,
                join_operator,
            } = join;
            if *global {
                return refuse("GLOBAL JOIN is not allowed");
            }
            self.table_factor(relation)?;
            match join_operator {
                JoinOperator::Join(constraint)
                | JoinOperator::Inner(constraint)
                | JoinOperator::Left(constraint)
                | JoinOperator::LeftOuter(constraint)
                | JoinOperator::Right(constraint)
                | JoinOperator::RightOuter(constraint)
                | JoinOperator::FullOuter(constraint)
                | JoinOperator::CrossJoin(constraint) => match constraint {
                    JoinConstraint::On(expr) => self.expr(expr)?,
                    JoinConstraint::Using(columns) => {
                        for column in columns {
                            if name_parts(column)?.len() != 1 {
                                return refuse(format!(
                                    "USING ({column}) must name columns, not qualified names"
                                ));
                            }
                        }
                    }
                    JoinConstraint::Natural | JoinConstraint::None => {}
                },
                other => {
                    return refuse(format!(
                        "this kind of join is not allowed ({})",
                        excerpt(&format!("{other:?}"))
                    ));
                }
            }
        }
        Ok(())
    }

    fn table_factor(&mut self, factor: &mut TableFactor) -> Result<(), QueryRefusal> {
        self.enter()?;
        let result = self.table_factor_inner(factor);
        self.depth -= 1;
        result
    }

    fn table_factor_inner(&mut self, factor: &mut TableFactor) -> Result<(), QueryRefusal> {
        match factor {
            // Destructured in full so that a new table modifier fails to
            // compile here instead of being silently accepted.
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                if sample.is_some() {
                    return refuse("TABLESAMPLE is not allowed");
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(from_item_refused(factor));
                }
                match args {
                    Some(TableFunctionArgs {
                        args,
                        settings: None,
                    }) => self.table_function(name, args, alias),
                    Some(_) => refuse("SETTINGS is not allowed"),
                    None if *with_ordinality => refuse("WITH ORDINALITY needs a function"),
                    None => {
                        self.relation(name)?;
                        self.table_alias_opt(alias, false)
                    }
                }
            }
            TableFactor::Derived {
                lateral: _,
                subquery,
                alias,
                sample,
            } => {
                if sample.is_some() {
                    return refuse("TABLESAMPLE is not allowed");
                }
                self.query(subquery)?;
                self.table_alias_opt(alias, false)
            }
            TableFactor::Function {
                lateral: _,
                name,
                args,
                with_ordinality: _,
                alias,
            } => self.table_function(name, args, alias),
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_offset_alias: None,
                with_ordinality: _,
            } => {
                self.exprs(array_exprs)?;
                self.table_alias_opt(alias, false)?;
                unnest_as_function(factor);
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                self.table_with_joins(table_with_joins)?;
                self.table_alias_opt(alias, false)
            }
            other => Err(from_item_refused(other)),
        }
    }

    /// A table function in FROM: only set-returning built-ins.
    fn table_function(
        &mut self,
        name: &mut ObjectName,
        args: &mut [FunctionArg],
        alias: &mut Option<TableAlias>,
    ) -> Result<(), QueryRefusal> {
        let parts = name_parts(name)?;
        let label = label(&parts);
        let function = match parts.as_slice() {
            [function] => fold(function),
            [schema, function] if fold(schema) == "pg_catalog" => fold(function),
            _ => String::new(),
        };
        let record = RECORD_FUNCTIONS.contains(&function.as_str());
        if !record && !SET_RETURNING_FUNCTIONS.contains(&function.as_str()) {
            return refuse(format!(
                "the table function {label}() is not allowed in FROM (allowed: {})",
                SET_RETURNING_FUNCTIONS.join(", ")
            ));
        }
        for arg in args.iter_mut() {
            self.function_arg(arg)?;
        }
        self.table_alias_opt(alias, record)?;
        *name = catalog_name("pg_catalog", &function);
        Ok(())
    }

    /// A table reference: the project's own table, or a CTE in scope.
    fn relation(&mut self, name: &mut ObjectName) -> Result<(), QueryRefusal> {
        let parts = name_parts(name)?;
        let label = label(&parts);
        let table = match parts.as_slice() {
            // sqlparser reads `FROM ONLY t` as table `only` aliased `t`.
            [only] if only.quote_style.is_none() && only.value.eq_ignore_ascii_case("only") => {
                return refuse("FROM ONLY is not allowed");
            }
            [table] => {
                let table = fold(table);
                if self.ctes.contains(&table) {
                    return Ok(());
                }
                table
            }
            [schema, table] if Some(fold(schema).as_str()) == self.project => fold(table),
            _ => {
                let Some(project) = self.project else {
                    // Inspecting an already checked query.
                    return Ok(());
                };
                return refuse(format!(
                    "the table {label} is not allowed: queries can only read the tables of \
                     project {project} (write the table name without a schema)"
                ));
            }
        };
        if let Some(project) = self.project {
            *name = ObjectName::from(vec![quoted(project), quoted(&table)]);
        }
        Ok(())
    }

    fn table_alias_opt(
        &mut self,
        alias: &Option<TableAlias>,
        typed_columns: bool,
    ) -> Result<(), QueryRefusal> {
        match alias {
            Some(alias) => self.table_alias(alias, typed_columns),
            None => Ok(()),
        }
    }

    fn table_alias(&mut self, alias: &TableAlias, typed_columns: bool) -> Result<(), QueryRefusal> {
        let TableAlias {
            explicit: _,
            name,
            columns,
            at,
        } = alias;
        if at.is_some() {
            return refuse("AT in a table alias is not allowed");
        }
        check_ident(name)?;
        for column in columns {
            check_ident(&column.name)?;
            if let Some(data_type) = &column.data_type {
                if !typed_columns {
                    return refuse(format!(
                        "column types in the alias {} are only allowed for {}",
                        excerpt(alias),
                        RECORD_FUNCTIONS.join(", ")
                    ));
                }
                check_type(data_type)?;
            }
        }
        Ok(())
    }

    /// A bare name in GROUP BY or ORDER BY may be an output column name
    /// rather than a column reference.
    fn expr_or_output_name(&mut self, expr: &mut Expr) -> Result<(), QueryRefusal> {
        match expr {
            Expr::Identifier(ident) => self.identifier(ident, false),
            other => self.expr(other),
        }
    }

    fn order_by_expr(&mut self, item: &mut OrderByExpr, top: bool) -> Result<(), QueryRefusal> {
        let OrderByExpr {
            expr,
            options: _,
            with_fill,
        } = item;
        if with_fill.is_some() {
            return refuse("WITH FILL is not allowed");
        }
        if top {
            self.expr_or_output_name(expr)
        } else {
            self.expr(expr)
        }
    }

    fn identifier(&mut self, ident: &Ident, record: bool) -> Result<(), QueryRefusal> {
        check_ident(ident)?;
        if ident.quote_style.is_none() {
            let name = fold(ident);
            // Unquoted, these are keywords to PostgreSQL, never columns.
            if SESSION_KEYWORDS.contains(&name.as_str()) {
                return refuse(format!(
                    "{name} is not allowed: queries cannot read session state"
                ));
            }
            if CLOCK_KEYWORDS.contains(&name.as_str()) {
                return Ok(());
            }
        }
        if record {
            self.columns.insert(fold(ident));
        }
        Ok(())
    }

    fn expr(&mut self, expr: &mut Expr) -> Result<(), QueryRefusal> {
        self.enter()?;
        let mut next = Some(expr);
        let mut result = Ok(());
        while let Some(expr) = next {
            match self.expr_step(expr) {
                Ok(step) => next = step,
                Err(refusal) => {
                    result = Err(refusal);
                    break;
                }
            }
        }
        self.depth -= 1;
        result
    }

    /// Checks one node and everything under it except its first operand,
    /// which it returns for [`Self::expr`] to continue with in a loop: left-
    /// deep chains (`a + b + c ...`, `x LIKE y LIKE z ...`, `v::a::b ...`)
    /// then cost no recursion, however long they are. What remains recursive
    /// is nesting sqlparser's recursion limit bounds.
    ///
    /// Kept to calls of small functions: in debug builds each temporary of a
    /// big function gets a stack slot of its own, so refusal messages and
    /// rewritten nodes are built in functions off the recursive path.
    fn expr_step<'e>(&mut self, expr: &'e mut Expr) -> Result<Option<&'e mut Expr>, QueryRefusal> {
        if matches!(
            expr,
            Expr::Ceil { .. } | Expr::Floor { .. } | Expr::Substring { special: true, .. }
        ) {
            // Printed as CEIL(x) / FLOOR(x), which PostgreSQL looks up on
            // search_path, or as an ordinary call (SUBSTR(x, a, b)): made a
            // pg_catalog call, then checked as one.
            rewrite_call_syntax(expr)?;
            return Ok(Some(expr));
        }
        let first = match expr {
            Expr::Identifier(ident) => {
                self.identifier(ident, true)?;
                return Ok(None);
            }
            Expr::CompoundIdentifier(parts) => {
                self.compound_identifier(parts)?;
                return Ok(None);
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.access_chain(access_chain)?;
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
            Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right)
            | Expr::AtTimeZone {
                timestamp: left,
                time_zone: right,
            }
            | Expr::Position {
                expr: left,
                r#in: right,
            } => {
                self.expr(right)?;
                left
            }
            Expr::BinaryOp { left, op, right } => {
                self.binary(op, right)?;
                left
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
                self.any_all(compare_op, right)?;
                left
            }
            Expr::UnaryOp { op, expr: operand } => {
                self.unary(*op, operand)?;
                operand
            }
            Expr::InList {
                expr: inner,
                list,
                negated: _,
            } => {
                self.exprs(list)?;
                inner
            }
            Expr::InSubquery {
                expr: inner,
                subquery,
                negated: _,
            } => {
                self.query(subquery)?;
                inner
            }
            Expr::Between {
                expr: inner,
                negated: _,
                low,
                high,
            } => {
                self.pair(low, high)?;
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
                self.like(pattern, escape_char)?;
                inner
            }
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type,
                format: None,
            } => {
                check_type(data_type)?;
                inner
            }
            Expr::Extract {
                field,
                syntax: ExtractSyntax::From,
                expr: inner,
            } => {
                check_datetime_field(field)?;
                inner
            }
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                special: false,
                shorthand,
            } => {
                // SUBSTRING(x FROM a FOR b) is grammar, which always means
                // pg_catalog.substring; SUBSTR(x FROM ...) would not be.
                *shorthand = false;
                self.opt_pair(substring_from, substring_for)?;
                inner
            }
            Expr::Trim {
                trim_where: _,
                trim_what,
                expr: inner,
                trim_characters,
            } => {
                self.trim(trim_what, trim_characters)?;
                inner
            }
            Expr::Overlay {
                expr: inner,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.overlay(overlay_what, overlay_from, overlay_for)?;
                inner
            }
            Expr::Interval(interval) => {
                check_interval(interval)?;
                &mut interval.value
            }
            Expr::Value(value) => {
                literal(value)?;
                return Ok(None);
            }
            Expr::TypedString(TypedString {
                data_type,
                value,
                uses_odbc_syntax: false,
            }) => {
                typed_string(data_type, value)?;
                return Ok(None);
            }
            Expr::Function(function) => {
                self.function(function)?;
                return Ok(None);
            }
            Expr::Case {
                case_token: _,
                end_token: _,
                operand,
                conditions,
                else_result,
            } => {
                self.case(operand, conditions, else_result)?;
                return Ok(None);
            }
            Expr::Exists {
                subquery,
                negated: _,
            }
            | Expr::Subquery(subquery) => {
                self.query(subquery)?;
                return Ok(None);
            }
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                self.expr_sets(sets)?;
                return Ok(None);
            }
            Expr::Tuple(items)
            | Expr::Array(Array {
                elem: items,
                named: true,
            }) => {
                self.exprs(items)?;
                return Ok(None);
            }
            other => return Err(expression_refused(other)),
        };
        Ok(Some(first))
    }

    fn pair(&mut self, left: &mut Expr, right: &mut Expr) -> Result<(), QueryRefusal> {
        self.expr(left)?;
        self.expr(right)
    }

    fn opt_expr(&mut self, expr: &mut Option<Box<Expr>>) -> Result<(), QueryRefusal> {
        match expr {
            Some(expr) => self.expr(expr),
            None => Ok(()),
        }
    }

    fn opt_pair(
        &mut self,
        first: &mut Option<Box<Expr>>,
        second: &mut Option<Box<Expr>>,
    ) -> Result<(), QueryRefusal> {
        self.opt_expr(first)?;
        self.opt_expr(second)
    }

    fn exprs(&mut self, exprs: &mut [Expr]) -> Result<(), QueryRefusal> {
        for expr in exprs {
            self.expr(expr)?;
        }
        Ok(())
    }

    fn expr_sets(&mut self, sets: &mut [Vec<Expr>]) -> Result<(), QueryRefusal> {
        for set in sets {
            self.exprs(set)?;
        }
        Ok(())
    }

    fn binary(&mut self, op: &BinaryOperator, right: &mut Expr) -> Result<(), QueryRefusal> {
        check_binary_operator(op)?;
        self.expr(right)
    }

    fn any_all(&mut self, op: &BinaryOperator, right: &mut Expr) -> Result<(), QueryRefusal> {
        check_comparison(op)?;
        self.expr(right)
    }

    fn like(
        &mut self,
        pattern: &mut Expr,
        escape: &mut Option<Box<Expr>>,
    ) -> Result<(), QueryRefusal> {
        self.expr(pattern)?;
        self.opt_expr(escape)
    }

    fn trim(
        &mut self,
        what: &mut Option<Box<Expr>>,
        characters: &mut Option<Vec<Expr>>,
    ) -> Result<(), QueryRefusal> {
        self.opt_expr(what)?;
        match characters {
            Some(characters) => self.exprs(characters),
            None => Ok(()),
        }
    }

    fn overlay(
        &mut self,
        what: &mut Expr,
        from: &mut Expr,
        length: &mut Option<Box<Expr>>,
    ) -> Result<(), QueryRefusal> {
        self.pair(what, from)?;
        self.opt_expr(length)
    }

    fn case(
        &mut self,
        operand: &mut Option<Box<Expr>>,
        conditions: &mut [CaseWhen],
        else_result: &mut Option<Box<Expr>>,
    ) -> Result<(), QueryRefusal> {
        self.opt_expr(operand)?;
        for CaseWhen { condition, result } in conditions {
            self.pair(condition, result)?;
        }
        self.opt_expr(else_result)
    }

    fn compound_identifier(&mut self, parts: &[Ident]) -> Result<(), QueryRefusal> {
        for part in parts {
            check_ident(part)?;
        }
        if let Some(last) = parts.last() {
            self.columns.insert(fold(last));
        }
        Ok(())
    }

    fn access_chain(&mut self, chain: &mut [AccessExpr]) -> Result<(), QueryRefusal> {
        for access in chain {
            match access {
                AccessExpr::Dot(Expr::Identifier(field)) => check_ident(field)?,
                AccessExpr::Subscript(Subscript::Index { index }) => self.expr(index)?,
                AccessExpr::Subscript(Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride: None,
                }) => {
                    for bound in [lower_bound, upper_bound].into_iter().flatten() {
                        self.expr(bound)?;
                    }
                }
                other => return Err(field_access_refused(other)),
            }
        }
        Ok(())
    }

    /// Checks the operator; the caller continues with the operand.
    fn unary(&mut self, op: UnaryOperator, operand: &mut Box<Expr>) -> Result<(), QueryRefusal> {
        match op {
            UnaryOperator::Plus
            | UnaryOperator::Minus
            | UnaryOperator::Not
            | UnaryOperator::BitwiseNot
            | UnaryOperator::PGAbs
            | UnaryOperator::PGSquareRoot
            | UnaryOperator::PGCubeRoot => {}
            other => return Err(operator_refused(&other)),
        }
        // Parenthesized only where needed: elsewhere the parentheses could
        // change the meaning, since sqlparser binds `-x ^ 2` as `-(x ^ 2)`
        // and PostgreSQL, reading the printed text, as `(-x) ^ 2`.
        if op != UnaryOperator::Not && starts_with_operator(operand) {
            parenthesize(operand);
        }
        Ok(())
    }

    fn function(&mut self, function: &mut Function) -> Result<(), QueryRefusal> {
        match self.resolve_call(function)? {
            Call::Construct(keyword) => self.keyword_construct(keyword, &mut function.args),
            Call::Function { schema, name } => {
                self.call_parts(function)?;
                function.name = catalog_name(schema, &name);
                Ok(())
            }
        }
    }

    /// Decides what a call may be, refusing it if nothing; does not recurse.
    fn resolve_call(&mut self, function: &Function) -> Result<Call, QueryRefusal> {
        // Destructured in full so that a new call modifier fails to compile
        // here instead of being silently accepted.
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group,
            filter,
            null_treatment,
            over,
        } = function;
        let parts = name_parts(name)?;
        let label = label(&parts);
        if *uses_odbc_syntax
            || !matches!(parameters, FunctionArguments::None)
            || null_treatment.is_some()
        {
            return refuse(format!(
                "the call to {label} uses syntax from another SQL dialect"
            ));
        }
        if let [keyword] = parts.as_slice() {
            if keyword.quote_style.is_none() {
                let keyword = fold(keyword);
                if SESSION_KEYWORDS.contains(&keyword.as_str()) {
                    return refuse(format!(
                        "{keyword} is not allowed: queries cannot read session state"
                    ));
                }
                let construct = CLOCK_KEYWORDS
                    .iter()
                    .chain(KEYWORD_CONSTRUCTS)
                    .find(|k| **k == keyword);
                if let Some(construct) = construct {
                    if !within_group.is_empty() || filter.is_some() || over.is_some() {
                        return refuse(format!(
                            "{keyword} is not an aggregate: WITHIN GROUP, FILTER and OVER do \
                             not apply"
                        ));
                    }
                    return Ok(Call::Construct(construct));
                }
            }
        }
        let (schema, base) = match parts.as_slice() {
            [function] if BEACON_FUNCTIONS.contains(&fold(function).as_str()) => {
                ("beacon", fold(function))
            }
            [function] => ("pg_catalog", fold(function)),
            [schema, function] if fold(schema) == "pg_catalog" => ("pg_catalog", fold(function)),
            [schema, function]
                if fold(schema) == "beacon"
                    && BEACON_FUNCTIONS.contains(&fold(function).as_str()) =>
            {
                ("beacon", fold(function))
            }
            _ => return Err(function_refused(&label)),
        };
        let set_returning = SET_RETURNING_FUNCTIONS.contains(&base.as_str());
        let allowed = schema == "beacon"
            || set_returning
            || AGGREGATE_FUNCTIONS.contains(&base.as_str())
            || WINDOW_FUNCTIONS.contains(&base.as_str())
            || SCALAR_FUNCTIONS.contains(&base.as_str());
        if !allowed {
            return Err(function_refused(&label));
        }
        let FunctionArguments::List(list) = args else {
            return refuse(format!("{label} must be called with an argument list"));
        };
        // age(x) measures from the current date, which is rarely what an
        // analysis means; age(a, b) is pure.
        if base == "age" && list.args.len() != 2 {
            return refuse("age() is only allowed with two arguments");
        }
        if let Some(clause) = list
            .clauses
            .iter()
            .find(|clause| !matches!(clause, FunctionArgumentClause::OrderBy(_)))
        {
            return refuse(format!(
                "{} in a call to {label} is not allowed",
                excerpt(clause)
            ));
        }
        if set_returning && self.query_depth == 1 {
            self.top_level_srf = true;
        }
        Ok(Call::Function { schema, name: base })
    }

    /// Walks the arguments and clauses of a call [`Self::resolve_call`]
    /// allowed.
    fn call_parts(&mut self, function: &mut Function) -> Result<(), QueryRefusal> {
        if let FunctionArguments::List(list) = &mut function.args {
            for arg in list.args.iter_mut() {
                self.function_arg(arg)?;
            }
            for clause in list.clauses.iter_mut() {
                if let FunctionArgumentClause::OrderBy(items) = clause {
                    self.order_by_exprs(items)?;
                }
            }
        }
        self.order_by_exprs(&mut function.within_group)?;
        if let Some(filter) = &mut function.filter {
            self.expr(filter)?;
        }
        match &mut function.over {
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec),
            Some(WindowType::NamedWindow(window)) => check_ident(window),
            None => Ok(()),
        }
    }

    fn order_by_exprs(&mut self, items: &mut [OrderByExpr]) -> Result<(), QueryRefusal> {
        for item in items {
            self.order_by_expr(item, false)?;
        }
        Ok(())
    }

    /// Clock keywords and grammar constructs, kept as written.
    fn keyword_construct(
        &mut self,
        keyword: &str,
        args: &mut FunctionArguments,
    ) -> Result<(), QueryRefusal> {
        match args {
            FunctionArguments::None if CLOCK_KEYWORDS.contains(&keyword) => Ok(()),
            FunctionArguments::Subquery(query) if keyword == "array" => self.query(query),
            FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args,
                clauses,
            }) if keyword != "array" && clauses.is_empty() => {
                for arg in args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => self.expr(expr)?,
                        other => return Err(argument_refused(other)),
                    }
                }
                Ok(())
            }
            _ => Err(construct_refused(keyword)),
        }
    }

    fn function_arg(&mut self, arg: &mut FunctionArg) -> Result<(), QueryRefusal> {
        match arg {
            FunctionArg::Unnamed(arg) => self.function_arg_expr(arg),
            // make_interval(days => 1)
            FunctionArg::Named {
                name,
                arg,
                operator: FunctionArgOperator::RightArrow,
            }
            | FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg,
                operator: FunctionArgOperator::RightArrow,
            } => {
                check_ident(name)?;
                self.function_arg_expr(arg)
            }
            other => Err(argument_refused(other)),
        }
    }

    fn function_arg_expr(&mut self, arg: &mut FunctionArgExpr) -> Result<(), QueryRefusal> {
        match arg {
            FunctionArgExpr::Expr(expr) => self.expr(expr),
            // count(*)
            FunctionArgExpr::Wildcard => Ok(()),
            // count(t.*): names a FROM item, which is checked on its own.
            FunctionArgExpr::QualifiedWildcard(name) => name_parts(name).map(|_| ()),
            other => Err(argument_refused(other)),
        }
    }

    fn window_spec(&mut self, spec: &mut WindowSpec) -> Result<(), QueryRefusal> {
        let WindowSpec {
            window_name,
            partition_by,
            order_by,
            window_frame,
        } = spec;
        if let Some(window) = window_name {
            check_ident(window)?;
        }
        for expr in partition_by {
            self.expr(expr)?;
        }
        for item in order_by {
            self.order_by_expr(item, false)?;
        }
        if let Some(WindowFrame {
            units: _,
            start_bound,
            end_bound,
        }) = window_frame
        {
            for bound in std::iter::once(start_bound).chain(end_bound.as_mut()) {
                match bound {
                    WindowFrameBound::Preceding(Some(offset))
                    | WindowFrameBound::Following(Some(offset)) => self.expr(offset)?,
                    WindowFrameBound::CurrentRow
                    | WindowFrameBound::Preceding(None)
                    | WindowFrameBound::Following(None) => {}
                }
            }
        }
        Ok(())
    }
}

fn wildcard_options(options: &WildcardAdditionalOptions) -> Result<(), QueryRefusal> {
    let WildcardAdditionalOptions {
        wildcard_token: _,
        opt_ilike,
        opt_exclude,
        opt_except,
        opt_replace,
        opt_rename,
        opt_alias,
    } = options;
    if opt_ilike.is_some()
        || opt_exclude.is_some()
        || opt_except.is_some()
        || opt_replace.is_some()
        || opt_rename.is_some()
        || opt_alias.is_some()
    {
        return refuse(format!(
            "the wildcard options {} are not allowed",
            excerpt(options)
        ));
    }
    Ok(())
}

/// Checks a literal and re-encodes strings so that they print back exactly.
fn literal(value: &mut ValueWithSpan) -> Result<(), QueryRefusal> {
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
    value.value = string_literal(text);
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "shop";

    /// The string literals and quoted identifiers of `sql` as PostgreSQL's
    /// lexer reads them (standard_conforming_strings on), or what breaks it.
    fn pg_lexemes(sql: &str) -> Result<Vec<String>, String> {
        let chars: Vec<char> = sql.chars().collect();
        let in_word = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii();
        let mut lexemes = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if (c == '-' && next == Some('-')) || (c == '/' && next == Some('*')) {
                return Err(format!("a comment starts at {i}"));
            }
            if c == '\'' || c == '"' {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("{c} is not closed")),
                        Some(&q) if q == c && chars.get(i + 1) == Some(&c) => {
                            value.push(c);
                            i += 2;
                        }
                        Some(&q) if q == c => break,
                        Some(&other) => {
                            value.push(other);
                            i += 1;
                        }
                    }
                }
                lexemes.push(format!("{c}{value}"));
                i += 1;
            } else if c == '$' && (i == 0 || !in_word(chars[i - 1])) {
                let tag: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                let open = tag.chars().count() + 2;
                if tag.starts_with(|c: char| c.is_ascii_digit())
                    || chars.get(i + open - 1) != Some(&'$')
                {
                    i += 1;
                    continue;
                }
                let rest: String = chars[i + open..].iter().collect();
                let end = rest
                    .find(&format!("${tag}$"))
                    .ok_or_else(|| format!("${tag}$ is not closed"))?;
                lexemes.push(format!("'{}", &rest[..end]));
                i += open + rest[..end].chars().count() + open;
            } else {
                i += 1;
            }
        }
        Ok(lexemes)
    }

    fn sqlparser_lexemes(sql: &str) -> Vec<String> {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize()
            .unwrap();
        tokens
            .into_iter()
            .filter_map(|token| match token {
                Token::SingleQuotedString(value) => Some(format!("'{value}")),
                Token::DollarQuotedString(DollarQuotedString { value, .. }) => {
                    Some(format!("'{value}"))
                }
                Token::Word(word) if word.quote_style == Some('"') => {
                    Some(format!("\"{}", word.value))
                }
                _ => None,
            })
            .collect()
    }

    fn accepted(sql: &str) -> String {
        let rewritten =
            check_query(sql, PROJECT).unwrap_or_else(|e| panic!("refused {sql:?}: {e}"));
        // PostgreSQL must read the literals and quoted names exactly as they
        // were checked, and find no comment.
        assert_eq!(
            pg_lexemes(&rewritten),
            Ok(sqlparser_lexemes(&rewritten)),
            "{rewritten:?} reads differently in PostgreSQL"
        );
        // The rewritten text must re-parse, pass again and come out unchanged.
        let again = check_query(&rewritten, PROJECT)
            .unwrap_or_else(|e| panic!("rewritten {rewritten:?} refused: {e}"));
        assert_eq!(again, rewritten, "not idempotent for {sql:?}");
        rewritten
    }

    fn refused(sql: &str, needle: &str) {
        let shown = excerpt(&sql);
        match check_query(sql, PROJECT) {
            Ok(rewritten) => panic!("accepted {shown:?} as {:?}", excerpt(&rewritten)),
            Err(QueryRefusal(message)) => assert!(
                message.to_lowercase().contains(&needle.to_lowercase()),
                "refusal of {shown:?} does not mention {needle:?}: {message}"
            ),
        }
    }

    fn refused_all(cases: &[(&str, &str)]) {
        for (sql, needle) in cases {
            refused(sql, needle);
        }
    }

    #[test]
    fn exactly_one_query_statement() {
        refused_all(&[
            ("select 1; select 2", "multiple statements"),
            ("select 1; drop table events", "multiple statements"),
            ("", "no statement"),
            ("drop table events", "DROP"),
            ("delete from events", "DELETE"),
            ("insert into events values (1)", "INSERT"),
            ("update events set x = 1", "UPDATE"),
            ("copy events to stdout", "COPY"),
            ("copy (select 1) to '/tmp/x'", "COPY"),
            ("explain select 1", "EXPLAIN"),
            ("explain analyze select 1", "EXPLAIN"),
            ("set role postgres", "SET"),
            ("show search_path", "SHOW"),
            ("do $$ begin perform pg_sleep(1); end $$", "parse"),
            ("call f()", "CALL"),
            ("prepare p as select 1", "PREPARE"),
            ("execute p", "EXECUTE"),
            ("listen channel", "LISTEN"),
            ("notify channel", "NOTIFY"),
            ("begin", "BEGIN"),
            ("TABLE events", "parse"),
            ("select 1 union table events", "TABLE"),
        ]);
        assert_eq!(accepted("select 1;"), "SELECT 1");
        // An empty statement is no statement to sqlparser.
        assert_eq!(accepted("select 1;;"), "SELECT 1");
    }

    #[test]
    fn tables_outside_the_project_are_refused() {
        refused_all(&[
            ("select * from pg_catalog.pg_authid", "pg_catalog.pg_authid"),
            ("select * from PG_CATALOG.PG_AUTHID", "pg_catalog.pg_authid"),
            (
                r#"select * from "pg_catalog"."pg_authid""#,
                "pg_catalog.pg_authid",
            ),
            (
                "select * from pg_catalog/**/.pg_authid",
                "pg_catalog.pg_authid",
            ),
            (
                "select * from information_schema.tables",
                "information_schema.tables",
            ),
            ("select * from otherproject.events", "otherproject.events"),
            ("select * from beacon.project", "beacon.project"),
            ("select * from public.events", "public.events"),
            ("select * from db.shop.events", "db.shop.events"),
            // Quoted, the schema keeps its case and is another schema.
            (r#"select * from "Shop".events"#, "Shop.events"),
            (
                "select * from events e join pg_catalog.pg_user u on true",
                "pg_catalog.pg_user",
            ),
            (
                "select * from (events join pg_catalog.pg_roles r on true)",
                "pg_catalog.pg_roles",
            ),
            (
                "select count(*) from events, pg_catalog.pg_stat_activity",
                "pg_stat_activity",
            ),
            ("select * from only events", "ONLY"),
        ]);
    }

    #[test]
    fn project_tables_are_qualified() {
        assert_eq!(
            accepted("select count(*) from events"),
            r#"SELECT pg_catalog."count"(*) FROM "shop"."events""#
        );
        assert_eq!(
            accepted("select x from shop.events, SHOP.Users, \"shop\".\"Mixed\""),
            r#"SELECT x FROM "shop"."events", "shop"."users", "shop"."Mixed""#
        );
        // Catalogs named without a schema are looked up in the project,
        // where they do not exist.
        assert_eq!(
            accepted("select * from pg_class, pg_authid, pg_settings"),
            r#"SELECT * FROM "shop"."pg_class", "shop"."pg_authid", "shop"."pg_settings""#
        );
        assert_eq!(
            accepted("select * from pg_stat_activity"),
            r#"SELECT * FROM "shop"."pg_stat_activity""#
        );
    }

    #[test]
    fn cte_names_shadow_only_unqualified_references() {
        refused(
            "WITH pg_authid AS (SELECT 1) SELECT * FROM pg_catalog.pg_authid",
            "pg_catalog.pg_authid",
        );
        refused(
            "WITH t AS (SELECT 1) SELECT * FROM t, pg_catalog.pg_shadow",
            "pg_catalog.pg_shadow",
        );
        assert_eq!(
            accepted("WITH t AS (SELECT 1) SELECT * FROM t"),
            "WITH t AS (SELECT 1) SELECT * FROM t"
        );
        assert_eq!(
            accepted("WITH pg_authid AS (SELECT 1 AS a) SELECT a FROM pg_authid"),
            "WITH pg_authid AS (SELECT 1 AS a) SELECT a FROM pg_authid"
        );
        // A qualified reference is the project's table, not the CTE.
        assert_eq!(
            accepted("WITH t AS (SELECT 1) SELECT * FROM shop.t"),
            r#"WITH t AS (SELECT 1) SELECT * FROM "shop"."t""#
        );
        // A non-recursive CTE does not see itself: inside, t is the table.
        assert_eq!(
            accepted("with t as (select * from t) select * from t"),
            r#"WITH t AS (SELECT * FROM "shop"."t") SELECT * FROM t"#
        );
        // Later CTEs see earlier ones, not the other way round.
        assert_eq!(
            accepted("with a as (select * from b), b as (select * from a) select * from b"),
            r#"WITH a AS (SELECT * FROM "shop"."b"), b AS (SELECT * FROM a) SELECT * FROM b"#
        );
        // A CTE is not visible outside the subquery defining it.
        assert_eq!(
            accepted("select * from (with t as (select 1) select * from t) s, t"),
            r#"SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) s, "shop"."t""#
        );
        assert_eq!(
            accepted(
                "with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) \
                 select * from r"
            ),
            "WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) \
             SELECT * FROM r"
        );
        refused(
            "with recursive r(n) as (select 1 union all select n + 1 from r where n < \
             pg_backend_pid()) select * from r",
            "pg_backend_pid",
        );
    }

    #[test]
    fn subqueries_are_checked_everywhere() {
        refused_all(&[
            ("SELECT (SELECT pg_sleep(1))", "pg_sleep"),
            (
                "SELECT * FROM events WHERE x IN (SELECT usename FROM pg_catalog.pg_user)",
                "pg_catalog.pg_user",
            ),
            (
                "select * from events where exists (select 1 from pg_catalog.pg_shadow)",
                "pg_catalog.pg_shadow",
            ),
            (
                "select * from events e, lateral (select pg_sleep(1)) s",
                "pg_sleep",
            ),
            (
                "select * from (select * from information_schema.columns) c",
                "information_schema.columns",
            ),
            ("values ((select pg_sleep(1)))", "pg_sleep"),
            ("select 1 union select pg_sleep(1)", "pg_sleep"),
            (
                "select 1 from events where x = any(select oid from pg_catalog.pg_class)",
                "pg_catalog.pg_class",
            ),
            (
                "select array(select rolname from pg_catalog.pg_roles)",
                "pg_catalog.pg_roles",
            ),
            (
                "select count(*) filter (where pg_sleep(1) is null) from events",
                "pg_sleep",
            ),
            (
                "select string_agg(x, ',' order by pg_backend_pid()) from events",
                "pg_backend_pid",
            ),
            (
                "select percentile_cont(0.5) within group (order by pg_backend_pid()) from events",
                "pg_backend_pid",
            ),
            (
                "select * from events order by pg_backend_pid()",
                "pg_backend_pid",
            ),
            (
                "select * from events limit (select pg_backend_pid())",
                "pg_backend_pid",
            ),
            (
                "select x from events group by pg_backend_pid()",
                "pg_backend_pid",
            ),
            (
                "select x from events group by x having max(pg_backend_pid()) > 0",
                "pg_backend_pid",
            ),
            (
                "select lag(x) over (order by pg_backend_pid()) from events",
                "pg_backend_pid",
            ),
            (
                "select sum(x) over w from events window w as (partition by pg_backend_pid())",
                "pg_backend_pid",
            ),
            (
                "select * from events e join users u on pg_sleep(1) is null",
                "pg_sleep",
            ),
            ("select case when true then pg_sleep(1) end", "pg_sleep"),
            ("select coalesce(pg_sleep(1), 1)", "pg_sleep"),
            ("select row(pg_sleep(1))", "pg_sleep"),
            ("select (1, pg_sleep(1))", "pg_sleep"),
            ("select array[pg_sleep(1)]", "pg_sleep"),
            (
                "select x from events where x between 1 and pg_backend_pid()",
                "pg_backend_pid",
            ),
            ("select cast(pg_backend_pid() as text)", "pg_backend_pid"),
            (
                "select extract(year from pg_postmaster_start_time())",
                "pg_postmaster_start_time",
            ),
            (
                "select x from events e, generate_series(1, pg_backend_pid()) g",
                "pg_backend_pid",
            ),
        ]);
    }

    #[test]
    fn dangerous_functions_are_refused() {
        refused_all(&[
            ("select repeat('x', 1000000000)", "repeat"),
            ("select lpad('x', 1000000000)", "lpad"),
            ("select dblink('host=x', 'select 1')", "dblink"),
            (
                "select dblink_exec('host=x', 'drop table t')",
                "dblink_exec",
            ),
            (
                "select query_to_xml('select 1', true, true, '')",
                "query_to_xml",
            ),
            (
                "select query_to_xml_and_xmlschema('select 1', true, true, '')",
                "query_to_xml_and_xmlschema",
            ),
            (
                "select table_to_xml('events', true, true, '')",
                "table_to_xml",
            ),
            (
                "select cursor_to_xml('c', 1, true, true, '')",
                "cursor_to_xml",
            ),
            ("select xpath('/a', '<a/>')", "xpath"),
            ("select pg_read_file('/etc/passwd')", "pg_read_file"),
            (
                "select pg_read_binary_file('/etc/passwd')",
                "pg_read_binary_file",
            ),
            ("select pg_ls_dir('.')", "pg_ls_dir"),
            ("select pg_stat_file('postgresql.conf')", "pg_stat_file"),
            ("select lo_import('/etc/passwd')", "lo_import"),
            ("select lo_export(1, '/tmp/x')", "lo_export"),
            ("select lo_get(1)", "lo_get"),
            ("select lo_open(1, 262144)", "lo_open"),
            ("select pg_sleep(10)", "pg_sleep"),
            ("select pg_sleep_for('1 minute')", "pg_sleep_for"),
            ("select pg_sleep_until('tomorrow')", "pg_sleep_until"),
            ("select set_config('role', 'postgres', false)", "set_config"),
            (
                "select current_setting('data_directory')",
                "current_setting",
            ),
            ("select pg_advisory_lock(1)", "pg_advisory_lock"),
            ("select pg_try_advisory_lock(1)", "pg_try_advisory_lock"),
            ("select pg_advisory_xact_lock(1)", "pg_advisory_xact_lock"),
            ("select pg_notify('channel', 'x')", "pg_notify"),
            ("select pg_cancel_backend(1)", "pg_cancel_backend"),
            ("select pg_terminate_backend(1)", "pg_terminate_backend"),
            ("select pg_reload_conf()", "pg_reload_conf"),
            ("select txid_current()", "txid_current"),
            ("select nextval('s')", "nextval"),
            ("select setval('s', 1)", "setval"),
            ("select currval('s')", "currval"),
            ("select version()", "version"),
            ("select pg_backend_pid()", "pg_backend_pid"),
            ("select pg_size_pretty(1)", "pg_size_pretty"),
            ("select setseed(0.5)", "setseed"),
            ("select age(ts) from events", "age"),
            (
                "select jsonb_path_query(x, '$.a') from events",
                "jsonb_path_query",
            ),
            ("select myfunc(x) from events", "myfunc"),
            // Qualified with anything but pg_catalog (or beacon for its one
            // function), even the project's own schema.
            ("select shop.myfunc(x) from events", "shop.myfunc"),
            ("select public.lower(x) from events", "public.lower"),
            ("select beacon.project_id()", "beacon.project_id"),
            (
                "select pg_catalog.approx_count_distinct(x) from events",
                "approx_count_distinct",
            ),
            // Grammar constructs have no pg_catalog function behind them.
            ("select pg_catalog.coalesce(1, 2)", "pg_catalog.coalesce"),
            (r#"select "coalesce"(1, 2)"#, "coalesce"),
            ("select * from pg_ls_dir('.')", "pg_ls_dir"),
            ("select * from pg_catalog.pg_ls_dir('.') f", "pg_ls_dir"),
            (
                "select * from events e cross join lateral dblink('x', 'y') as t(a int)",
                "dblink",
            ),
            (
                "select * from events e, lateral pg_ls_dir('.') d",
                "pg_ls_dir",
            ),
            (
                "select * from json_to_recordset('[]') as x(a int, b regclass)",
                "regclass",
            ),
        ]);
    }

    #[test]
    fn session_keywords_are_refused() {
        refused_all(&[
            ("select current_user", "current_user"),
            ("select session_user", "session_user"),
            ("select user", "user"),
            ("select current_role", "current_role"),
            ("select current_schema", "current_schema"),
            ("select current_catalog", "current_catalog"),
            (
                "select x from events where x = current_user",
                "current_user",
            ),
            ("select x from events group by current_user", "current_user"),
        ]);
        assert_eq!(
            accepted("select current_date, current_timestamp(3), localtimestamp, now()"),
            r#"SELECT current_date, current_timestamp(3), localtimestamp, pg_catalog."now"()"#
        );
    }

    #[test]
    fn quoting_and_comment_tricks_are_refused() {
        refused_all(&[
            (
                r#"select "pg_catalog"."pg_read_file"('/etc/passwd')"#,
                "pg_read_file",
            ),
            ("SELECT PG_CATALOG.PG_SLEEP(1)", "pg_catalog.pg_sleep"),
            (r#"SELECT U&"pg_sleep"(1)"#, "U&"),
            (r#"SELECT U&"\0070g_sleep"(1)"#, "U&"),
            ("SELECT U&'\\0070'", "U&"),
            ("select pg_catalog/**/.pg_sleep(1)", "pg_catalog.pg_sleep"),
            ("select pg_catalog . pg_sleep(1)", "pg_catalog.pg_sleep"),
            ("select pg_catalog--\n.pg_sleep(1)", "pg_catalog.pg_sleep"),
            (r#"select "pg_sleep "(1)"#, "pg_sleep "),
            (r#"select "PG_SLEEP"(1)"#, "PG_SLEEP"),
            (r#"select pg_catalog."pg_sleep"(1)"#, "pg_sleep"),
            ("select pg_sle/**/ep(1)", "parse"),
            ("select /* */ pg_sleep(1)", "pg_sleep"),
            // sqlparser would print this identifier back as `"x\"`, ending it
            // early and leaving `, pg_sleep(1)` as SQL.
            (
                r#"SELECT "x\"", pg_sleep(1) --" FROM events"#,
                "double quotes",
            ),
            (r#"select 1 as "a""b""#, "double quotes"),
            // Single-quoted aliases are no identifiers; `oid '1'` and
            // `regproc 'now'` are typed literals to PostgreSQL.
            ("select 1 as 'x'", "not an identifier"),
            ("select oid '1'", "not an identifier"),
            ("select regproc 'now'", "not an identifier"),
            ("select * from events 'e'", "not an identifier"),
            ("select 1 + operator(pg_catalog.+) 2", "parse"),
            (
                "select extract('ep''och' from ts) from events",
                "not an identifier",
            ),
            ("select 1 operator(+) 2", "OPERATOR"),
        ]);
    }

    #[test]
    fn literals_print_back_safely() {
        // sqlparser reads `'\''` as PostgreSQL does (a backslash, then an
        // escaped quote) but prints the value as `'\', pg_sleep(10) --'`,
        // which PostgreSQL would run as a call to pg_sleep.
        assert_eq!(
            accepted("SELECT '\\'', pg_sleep(10) --'"),
            "SELECT $q$\\', pg_sleep(10) --$q$"
        );
        // `- -1` would print as `--1`, commenting out the rest of the line,
        // so the string on the next line would become SQL.
        assert_eq!(
            accepted("SELECT - -1 AS a, '\npg_sleep(10) --'"),
            "SELECT -(-1) AS a, '\npg_sleep(10) --'"
        );
        assert_eq!(
            accepted("SELECT @ -1, |/ -4, ~ -1"),
            "SELECT @(-1), |/(-4), ~(-1)"
        );
        assert_eq!(
            accepted("SELECT @ -1 * 2, - x ^ 2, - (x), - ceil(x), -'1'"),
            r#"SELECT @(-1 * 2), -x ^ 2, -(x), -pg_catalog."ceil"(x), -'1'"#
        );
        // PostgreSQL reads `$1` as a parameter, not a dollar-quote tag.
        assert_eq!(accepted("SELECT $1$ x $1$"), "SELECT ' x '");
        assert_eq!(
            accepted("select 'it''s', E'a\\\\b', 'a\\b', $$x$$"),
            "SELECT $q$it's$q$, $q$a\\b$q$, $q$a\\b$q$, 'x'"
        );
        // The tag must not occur in the value, not even at its end.
        assert_eq!(
            accepted("select $a$'$q$'$a$, $a$'$q$a$, $a$\\$q$a$"),
            "SELECT $q1$'$q$'$q1$, $q1$'$q$q1$, $q1$\\$q$q1$"
        );
        assert_eq!(accepted("select E'\\x41\\n'"), "SELECT 'A\n'");
        refused("select $1", "placeholder");
        refused("select * from events where x = $2", "placeholder");
        refused("select X'ff'", "literal");
        refused("select B'0101'", "literal");
        refused("select N'x'", "literal");
        refused("select 'a\0b'", "NUL");
    }

    #[test]
    fn the_test_lexer_sees_what_postgresql_sees() {
        // What sqlparser prints for `SELECT '\'', pg_sleep(10) --'`.
        assert!(pg_lexemes("SELECT '\\', pg_sleep(10) --'").is_err());
        assert!(pg_lexemes("SELECT --1, x").is_err());
        assert_eq!(
            pg_lexemes(r#"SELECT 'a''b', "c""d", $q$e'$q$, x$y, $1"#),
            Ok(vec![
                "'a'b".to_string(),
                "\"c\"d".to_string(),
                "'e'".to_string()
            ])
        );
    }

    #[test]
    fn casts_are_limited_to_plain_types() {
        refused_all(&[
            ("select 'pg_authid'::regclass", "regclass"),
            ("select '1'::oid", "oid"),
            ("select CAST('x' AS regproc)", "regproc"),
            ("select 'now()'::regprocedure", "regprocedure"),
            ("select '+'::regoper", "regoper"),
            ("select 'int4'::regtype", "regtype"),
            ("select 'postgres'::regrole", "regrole"),
            ("select 'pg_catalog'::regnamespace", "regnamespace"),
            ("select 'english'::regconfig", "regconfig"),
            ("select 'simple'::regdictionary", "regdictionary"),
            ("select 'C'::regcollation", "regcollation"),
            ("select regclass 'pg_authid'", "regclass"),
            ("select x::bytea from events", "bytea"),
            ("select x::pg_catalog.int4 from events", "pg_catalog.int4"),
            (r#"select x::"int4" from events"#, "int4"),
            ("select '{}'::oid[]", "oid"),
            ("select x::xml from events", "xml"),
            ("select x collate \"C\" from events", "COLLATE"),
            ("select try_cast(x as int) from events", "try_cast"),
        ]);
        assert_eq!(
            accepted(
                "select 1::int4, 1::bigint, x::numeric(12, 2), x::double precision, x::text[], \
                 x::timestamptz, x::timestamp with time zone, x::varchar(10), x::jsonb, \
                 x::uuid, date '2024-01-01', interval '1 day' from events"
            ),
            r#"SELECT 1::INT4, 1::BIGINT, x::NUMERIC(12,2), x::DOUBLE PRECISION, x::TEXT[], x::TIMESTAMPTZ, x::TIMESTAMP WITH TIME ZONE, x::VARCHAR(10), x::JSONB, x::UUID, DATE '2024-01-01', INTERVAL '1 day' FROM "shop"."events""#
        );
    }

    #[test]
    fn write_lock_and_dialect_clauses_are_refused() {
        refused_all(&[
            ("select x from events for update", "FOR UPDATE"),
            ("select x from events for share", "FOR UPDATE / FOR SHARE"),
            (
                "select * from (select x from events for update) s",
                "FOR UPDATE",
            ),
            ("select x into newtable from events", "INTO"),
            (
                "with x as (delete from events returning *) select * from x",
                "DELETE",
            ),
            (
                "with x as (insert into events values (1) returning *) select * from x",
                "INSERT",
            ),
            (
                "with x as (update events set a = 1 returning *) select * from x",
                "UPDATE",
            ),
            (
                "select * from events tablesample system (10)",
                "TABLESAMPLE",
            ),
            (
                "select * from events tablesample bernoulli (10)",
                "TABLESAMPLE",
            ),
            ("select 1 minus select 2", "MINUS"),
            ("select top 5 x from events", "dialect"),
            ("select x from events qualify x > 1", "dialect"),
            ("select * from events limit 1, 2", "parse"),
            (
                "select x from events e left semi join users u on true",
                "join",
            ),
            ("select * from events where x like any ('a')", "like"),
        ]);
    }

    #[test]
    fn oversized_and_deeply_nested_input_is_refused() {
        let long = format!("select 1 as x{}", " ".repeat(MAX_SQL_BYTES));
        refused(&long, "too long");
        // None of these may panic or overflow the stack.
        refused(&"(".repeat(100_000), "nested too deeply");
        refused(
            &format!("select {}1", "(".repeat(99_990)),
            "nested too deeply",
        );
        refused(
            &format!("select {}1{}", "(".repeat(200), ")".repeat(200)),
            "nested too deeply",
        );
        refused(
            &format!("{}select 1{}", "select (".repeat(60), ")".repeat(60)),
            "nested too deeply",
        );
        refused(
            &format!(
                "{}select 1{}",
                "select * from (".repeat(60),
                ") s".repeat(60)
            ),
            "nested too deeply",
        );
        refused(
            &format!("select {}true", "not ".repeat(20_000)),
            "nested too deeply",
        );
        refused(
            &format!("select {}1", "- ".repeat(45_000)),
            "nested too deeply",
        );
        refused(
            &format!("select {}1{}", "array[".repeat(12_000), "]".repeat(12_000)),
            "nested too deeply",
        );
        // Left-deep chains are built without recursion in the parser but
        // dropped and printed recursively.
        refused(
            &format!("select 1{}", "+1".repeat(30_000)),
            "chains too many",
        );
        refused(
            &format!("select x{}", "::int".repeat(15_000)),
            "chains too many",
        );
        refused(
            &format!("select x::int{}", "[]".repeat(30_000)),
            "chains too many",
        );
        refused(
            &format!("select 1, 2{}", " union select 1, 2".repeat(5_000)),
            "chains too many",
        );
        refused(
            &format!("select 1{} +", "+1".repeat(30_000)),
            "chains too many",
        );
        assert_eq!(unique_output_key(&"(".repeat(100_000)), None);
        assert_eq!(
            unique_output_key(&format!("select 1{}", "+1".repeat(30_000))),
            None
        );
    }

    #[test]
    fn nesting_within_the_limits_is_accepted() {
        let parens = format!("select {}1{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(accepted(&parens), parens.to_uppercase());
        let subqueries = format!("{}select 1{}", "select (".repeat(30), ")".repeat(30));
        accepted(&subqueries);
        // The deepest chain allowed: walked, printed and dropped at ~990
        // levels on a test thread's stack.
        let chain = format!("select 1{}", "+1".repeat(MAX_NESTING_COST - 10));
        let rewritten = accepted(&chain);
        assert_eq!(rewritten.matches(" + 1").count(), MAX_NESTING_COST - 10);
        accepted(&format!(
            "select 1, 2{}",
            " union select 1, 2".repeat(MAX_NESTING_COST - 10)
        ));
        // A long but flat query: 12,000 values in an IN list.
        let values: Vec<String> = (0..12_000).map(|i| i.to_string()).collect();
        let long = format!("select x from events where x in ({})", values.join(", "));
        assert!(long.len() > 70_000 && long.len() < MAX_SQL_BYTES);
        let rewritten = accepted(&long);
        assert!(rewritten.starts_with(r#"SELECT x FROM "shop"."events" WHERE x IN (0, 1, 2"#));
        // A large CASE counts its WHENs but stays well below the limit.
        let whens: String = (0..200)
            .map(|i| format!(" when kind = 'k{i}' then {i}"))
            .collect();
        accepted(&format!("select case{whens} else -1 end as k from events"));
    }

    #[test]
    fn realistic_queries_are_accepted_and_rewritten() {
        let cases: &[(&str, &str)] = &[
            (
                "select date_trunc('day', ts) as day, count(*) from events group by 1 order by 1",
                r#"SELECT pg_catalog."date_trunc"('day', ts) AS day, pg_catalog."count"(*) FROM "shop"."events" GROUP BY 1 ORDER BY 1"#,
            ),
            (
                "select u.country, count(distinct e.user_id) from events e join users as u \
                 on u.id = e.user_id group by u.country",
                r#"SELECT u.country, pg_catalog."count"(DISTINCT e.user_id) FROM "shop"."events" e JOIN "shop"."users" AS u ON u.id = e.user_id GROUP BY u.country"#,
            ),
            (
                "select user_id, ts, row_number() over (partition by user_id order by ts) as n \
                 from events",
                r#"SELECT user_id, ts, pg_catalog."row_number"() OVER (PARTITION BY user_id ORDER BY ts) AS n FROM "shop"."events""#,
            ),
            (
                "with daily as (select date_trunc('day', ts) as day, count(*) as n from events \
                 group by 1) select day, n, avg(n) over (order by day rows between 6 preceding \
                 and current row) from daily",
                r#"WITH daily AS (SELECT pg_catalog."date_trunc"('day', ts) AS day, pg_catalog."count"(*) AS n FROM "shop"."events" GROUP BY 1) SELECT day, n, pg_catalog."avg"(n) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) FROM daily"#,
            ),
            (
                "select name from users union select name from admins order by 1",
                r#"SELECT name FROM "shop"."users" UNION SELECT name FROM "shop"."admins" ORDER BY 1"#,
            ),
            (
                "select props->>'plan' as plan, count(*) filter (where kind = 'signup') as \
                 signups from events where props ? 'plan' group by 1",
                r#"SELECT props ->> 'plan' AS plan, pg_catalog."count"(*) FILTER (WHERE kind = 'signup') AS signups FROM "shop"."events" WHERE props ? 'plan' GROUP BY 1"#,
            ),
            (
                "select percentile_cont(0.5) within group (order by amount) as median from orders",
                r#"SELECT pg_catalog."percentile_cont"(0.5) WITHIN GROUP (ORDER BY amount) AS median FROM "shop"."orders""#,
            ),
            (
                "select e.id, item->>'sku' from events e cross join lateral \
                 jsonb_array_elements(e.props->'items') as item",
                r#"SELECT e.id, item ->> 'sku' FROM "shop"."events" e CROSS JOIN LATERAL pg_catalog."jsonb_array_elements"(e.props -> 'items') AS item"#,
            ),
            (
                "select substring(name from 1 for 3), trim(both ' ' from name), position('a' in \
                 name), substr(name, 2, 3), ceil(x), floor(x), coalesce(a, 1), greatest(a, b) \
                 from users",
                r#"SELECT SUBSTRING(name FROM 1 FOR 3), TRIM(BOTH ' ' FROM name), POSITION('a' IN name), pg_catalog."substr"(name, 2, 3), pg_catalog."ceil"(x), pg_catalog."floor"(x), coalesce(a, 1), greatest(a, b) FROM "shop"."users""#,
            ),
            (
                "select approx_count_distinct(user_id), beacon.approx_count_distinct(x) from events",
                r#"SELECT beacon."approx_count_distinct"(user_id), beacon."approx_count_distinct"(x) FROM "shop"."events""#,
            ),
            (
                "select * from unnest(array[1,2]) with ordinality u(a, n)",
                r#"SELECT * FROM pg_catalog."unnest"(ARRAY[1, 2]) WITH ORDINALITY u (a, n)"#,
            ),
            (
                "select * from json_to_recordset('[]') as x(a int, b text)",
                r#"SELECT * FROM pg_catalog."json_to_recordset"('[]') AS x (a INT, b TEXT)"#,
            ),
            (
                "SELECT Lower(Name) FROM Users",
                r#"SELECT pg_catalog."lower"(Name) FROM "shop"."users""#,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(&accepted(sql), expected, "for {sql:?}");
        }
        for sql in [
            "select d::date as day, count(e.ts) from generate_series(now() - interval '30 days', \
             now(), interval '1 day') as d left join events e on date_trunc('day', e.ts) = d \
             group by 1 order by 1",
            "select * from users u where exists (select 1 from events e where e.user_id = u.id) \
             and u.id in (select user_id from orders) and u.id not in (1, 2, 3)",
            "select extract(hour from ts) as h, extract(epoch from ts)::bigint, count(*) from \
             events group by 1, 2",
            "select extract('epoch' from ts), extract(\"epoch\" from ts), extract(isodow from ts) \
             from events",
            "select case when amount > 100 then 'big' when amount > 10 then 'medium' else \
             'small' end as size, count(*), sum(amount), avg(amount)::numeric(10, 2) from orders \
             group by 1 having count(*) > 5 order by 2 desc",
            "select * from events where ts >= current_date - interval '7 days' and ts < now()",
            "select * from events order by ts desc nulls last limit 10 offset 5",
            "select * from events fetch first 10 rows only",
            "select distinct country from users",
            "select distinct on (user_id) user_id, ts from events order by user_id, ts desc",
            "values (1, 'a'), (2, 'b')",
            "select * from (values (1), (2)) as v(x)",
            "select ntile(4) over (order by amount), lag(amount, 1) over w, \
             first_value(amount) over w from orders window w as (order by ts)",
            "select to_char(ts, 'YYYY-MM') as month, sum(amount) from orders group by 1",
            "select string_agg(name, ', ' order by name), array_agg(distinct id), \
             jsonb_agg(props) from users",
            "select * from events where kind like 'sign%' and name ilike '%x%' and name not \
             similar to 'a%' and name ~* '^a'",
            "select * from events where id = any(array[1, 2, 3]) and id <> all(array[4])",
            "select a, b, count(*) from t group by rollup(a, b)",
            "select a, b, count(*) from t group by grouping sets ((a), (b), ())",
            "select (props->'a')::int, props #>> '{a,b}', props @> '{\"a\": 1}' from events",
            "select x from events where ts at time zone 'UTC' > '2024-01-01'",
            "select jsonb_build_object('a', 1, 'b', x), to_jsonb(e) from events e",
            "select count(*) from events e natural join users u",
            "select * from events e left join users u using (user_id) full join orders o on \
             o.user_id = e.user_id",
            "select 1 except select 2 intersect select 3",
            "select x from events where x is not distinct from 1 and y is null and z is true",
            "select make_interval(days => 1), round(x, 2), mod(a, b), power(2, 3) from t",
            "select make_interval(days => 1, hours => 2)",
            "select width_bucket(amount, 0, 100, 10) as bucket, count(*) from orders group by 1",
            "select lead(x, 2, 0) over (partition by a order by b range between unbounded \
             preceding and unbounded following) from t",
            "select split_part(email, '@', 2) as domain, count(*) from users group by 1",
            "select cardinality(tags), array_length(tags, 1), tags[1], tags[2:3] from t",
            "select date_bin('15 minutes', ts, timestamp '2024-01-01'), age(a, b) from t",
            "select u.name, o.total from users u join lateral (select sum(amount) as total \
             from orders where orders.user_id = u.id) o on true",
            "select * from events e, generate_series(1, 3) with ordinality as g(i, n)",
            "select x from events where x in (select x from events)",
            "select count(*) as n, count(t.*) from t",
            "select e.* from events e",
            "select row_number() over () from t",
            "select array(select id from users)",
            "select row(1, 'a')",
            "select ctid, xmin from events",
            "select md5('a'), format('%s-%s', a, b) from t",
            "select /* a comment */ 1 -- and another",
        ] {
            accepted(sql);
        }
    }

    #[test]
    fn accepted_queries_carry_no_comment_or_raw_name() {
        assert_eq!(
            accepted("/* /* */ select pg_sleep(1) */ select 1"),
            "SELECT 1"
        );
        assert_eq!(accepted("select 1 -- ; drop table events"), "SELECT 1");
        assert_eq!(
            accepted("select /* ; */ x from events"),
            r#"SELECT x FROM "shop"."events""#
        );
    }

    #[test]
    fn unique_output_key_cases() {
        let key = |sql: &str| unique_output_key(sql);
        let names = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            key("select date_trunc('day', ts) as day, count(*) as n from events group by 1"),
            names(&["day"])
        );
        assert_eq!(
            key("select country, count(*) from users group by country"),
            names(&["country"])
        );
        assert_eq!(
            key("select u.country, count(*) from users u group by u.country"),
            names(&["country"])
        );
        assert_eq!(
            key("select u.country, count(*) from users u group by country"),
            names(&["country"])
        );
        assert_eq!(
            key(
                "select date_trunc('day', ts) as day, count(*) from events group by \
                 date_trunc('day', ts)"
            ),
            names(&["day"])
        );
        assert_eq!(
            key("select date_trunc('day', ts) as day, count(*) from events group by day"),
            names(&["day"])
        );
        assert_eq!(
            key("select country as c, count(*) from users group by country"),
            names(&["c"])
        );
        assert_eq!(
            key("select a, b, count(*) from t group by b, a, 1"),
            names(&["b", "a"])
        );
        assert_eq!(
            key(r#"select "Country", count(*) from users group by 1"#),
            names(&["Country"])
        );
        assert_eq!(
            key("select Country, count(*) from users group by 1"),
            names(&["country"])
        );
        assert_eq!(
            key("select a, count(*) from t group by 1 having count(*) > 1 order by 2 limit 5"),
            names(&["a"])
        );
        assert_eq!(
            key("with d as (select * from events) select kind, count(*) from d group by kind"),
            names(&["kind"])
        );
        assert_eq!(key("select distinct a, b as c from t"), names(&["a", "c"]));
        assert_eq!(
            key("select distinct a, count(*) as n from t group by a"),
            names(&["a"])
        );
        // The key of the rewritten query is the same.
        let sql = "select date_trunc('day', ts) as day, count(*) from events group by \
                   date_trunc('day', ts)";
        assert_eq!(key(&check_query(sql, PROJECT).unwrap()), names(&["day"]));

        // No GROUP BY, or keys that are not (named) outputs.
        assert_eq!(key("select count(*) from events"), None);
        assert_eq!(key("select a from t"), None);
        assert_eq!(
            key("select date_trunc('day', ts), count(*) from events group by 1"),
            None
        );
        assert_eq!(key("select a, count(*) from t group by a, b"), None);
        assert_eq!(key("select a, count(*) from t group by 3"), None);
        assert_eq!(key("select a, count(*) from t group by lower(a)"), None);
        // `day` is also a column here, which PostgreSQL groups by instead.
        assert_eq!(
            key("select date_trunc('day', day) as day, count(*) from events group by day"),
            None
        );
        assert_eq!(
            key("select lower(name) as name, count(*) from users group by name"),
            None
        );
        // Ambiguous output names.
        assert_eq!(key("select a, a, count(*) from t group by 1"), None);
        assert_eq!(key("select a as x, b as x from t group by 1, 2"), None);
        assert_eq!(key("select a, a::text, count(*) from t group by a"), None);
        // Several rows per group, or no single SELECT.
        assert_eq!(
            key("select a, generate_series(1, 3) as g from t group by a"),
            None
        );
        assert_eq!(key("select a, count(*) from t group by rollup(a)"), None);
        assert_eq!(key("select a from t union select a from u"), None);
        assert_eq!(key("select * from t group by a"), None);
        assert_eq!(key("select distinct a, lower(b) from t"), None);
        assert_eq!(key("select distinct * from t"), None);
        assert_eq!(key("values (1)"), None);
        assert_eq!(
            key("select a, count(*) from pg_catalog.pg_class group by a; select 1"),
            None
        );
        assert_eq!(key("select pg_sleep(1) as a group by 1"), None);
        assert_eq!(key("not sql"), None);
    }

    #[test]
    fn nesting_cost_bounds_chains() {
        let cost = |sql: &str| {
            let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize_with_location()
                .unwrap();
            nesting_cost(&tokens)
        };
        assert!(cost("select a, b, c, d, e, f from t") < 10);
        assert!(cost(&format!("select 1{}", "+1".repeat(500))) >= 500);
        // Commas end operator chains, but not chains of set operations.
        assert!(cost(&format!("select {}", "1+1, ".repeat(500))) < 10);
        assert!(cost(&format!("select 1, 2{}", " union select 1, 2".repeat(500))) >= 500);
        // The chain outside a group adds to the chain inside it.
        assert!(
            cost(&format!(
                "select ({}) {}",
                "1+".repeat(300) + "1",
                "+1".repeat(300)
            )) >= 600
        );
    }

    #[test]
    fn allow_lists_hold_no_dangerous_names() {
        let lists = [
            AGGREGATE_FUNCTIONS,
            WINDOW_FUNCTIONS,
            SCALAR_FUNCTIONS,
            SET_RETURNING_FUNCTIONS,
            RECORD_FUNCTIONS,
            BEACON_FUNCTIONS,
            KEYWORD_CONSTRUCTS,
            CLOCK_KEYWORDS,
        ];
        for name in lists.iter().flat_map(|list| list.iter()) {
            assert!(!name.starts_with("pg_"), "{name}");
            assert!(!name.contains("xml") && !name.contains("lo_"), "{name}");
            assert!(
                ![
                    "dblink",
                    "setval",
                    "nextval",
                    "currval",
                    "set_config",
                    "current_setting"
                ]
                .contains(name),
                "{name}"
            );
            assert!(!SESSION_KEYWORDS.contains(name), "{name}");
            assert_eq!(name.to_ascii_lowercase(), **name);
        }
    }

    #[test]
    fn a_bad_project_name_is_refused() {
        assert!(check_query("select 1", "").is_err());
        assert!(check_query("select 1", "a\"b").is_err());
        assert_eq!(
            check_query("select * from t", "other").unwrap(),
            r#"SELECT * FROM "other"."t""#
        );
        assert!(check_query("select * from shop.t", "other").is_err());
    }

    #[test]
    fn refusal_displays_its_message() {
        let refusal = check_query("select pg_sleep(1)", PROJECT).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "the function pg_sleep() is not allowed: only built-in functions from the \
             allow-list can be called"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(refusal.clone());
        assert_eq!(boxed.to_string(), refusal.0);
    }
}
