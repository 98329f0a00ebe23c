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
    Offset, OrderBy, OrderByExpr, OrderByKind, Query, Select, SelectFlavor, SelectItem,
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

    fn enter(&mut self) -> Result<(), Refusal> {
        self.depth += 1;
        if self.depth > MAX_WALK_DEPTH {
            return Err(too_deep());
        }
        Ok(())
    }

    fn query(&mut self, query: &mut Query) -> Result<(), Refusal> {
        self.enter()?;
        self.query_depth += 1;
        let scope = self.ctes.len();
        let result = self.query_inner(query);
        self.ctes.truncate(scope);
        self.query_depth -= 1;
        self.depth -= 1;
        result
    }

    fn query_inner(&mut self, query: &mut Query) -> Result<(), Refusal> {
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

    fn with(&mut self, with: &mut With) -> Result<(), Refusal> {
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

    fn set_expr(&mut self, set_expr: &mut SetExpr) -> Result<(), Refusal> {
        self.enter()?;
        let result = self.set_expr_inner(set_expr);
        self.depth -= 1;
        result
    }

    fn set_expr_inner(&mut self, set_expr: &mut SetExpr) -> Result<(), Refusal> {
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
    fn set_operation_chain(&mut self, mut set_expr: &mut SetExpr) -> Result<(), Refusal> {
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

    fn select(&mut self, select: &mut Select) -> Result<(), Refusal> {
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

    fn select_item(&mut self, item: &mut SelectItem) -> Result<(), Refusal> {
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

    fn table_with_joins(&mut self, table: &mut TableWithJoins) -> Result<(), Refusal> {
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

    fn table_factor(&mut self, factor: &mut TableFactor) -> Result<(), Refusal> {
        self.enter()?;
        let result = self.table_factor_inner(factor);
        self.depth -= 1;
        result
    }

    fn table_factor_inner(&mut self, factor: &mut TableFactor) -> Result<(), Refusal> {
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
    ) -> Result<(), Refusal> {
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
    fn relation(&mut self, name: &mut ObjectName) -> Result<(), Refusal> {
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
    ) -> Result<(), Refusal> {
        match alias {
            Some(alias) => self.table_alias(alias, typed_columns),
            None => Ok(()),
        }
    }

    fn table_alias(&mut self, alias: &TableAlias, typed_columns: bool) -> Result<(), Refusal> {
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
    fn expr_or_output_name(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        match expr {
            Expr::Identifier(ident) => self.identifier(ident, false),
            other => self.expr(other),
        }
    }

    fn order_by_expr(&mut self, item: &mut OrderByExpr, top: bool) -> Result<(), Refusal> {
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

    fn identifier(&mut self, ident: &Ident, record: bool) -> Result<(), Refusal> {
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

    fn expr(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
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
    fn expr_step<'e>(&mut self, expr: &'e mut Expr) -> Result<Option<&'e mut Expr>, Refusal> {
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

    fn pair(&mut self, left: &mut Expr, right: &mut Expr) -> Result<(), Refusal> {
        self.expr(left)?;
        self.expr(right)
    }

    fn opt_expr(&mut self, expr: &mut Option<Box<Expr>>) -> Result<(), Refusal> {
        match expr {
            Some(expr) => self.expr(expr),
            None => Ok(()),
        }
    }

    fn opt_pair(
        &mut self,
        first: &mut Option<Box<Expr>>,
        second: &mut Option<Box<Expr>>,
    ) -> Result<(), Refusal> {
        self.opt_expr(first)?;
        self.opt_expr(second)
    }

    fn exprs(&mut self, exprs: &mut [Expr]) -> Result<(), Refusal> {
        for expr in exprs {
            self.expr(expr)?;
        }
        Ok(())
    }

    fn expr_sets(&mut self, sets: &mut [Vec<Expr>]) -> Result<(), Refusal> {
        for set in sets {
            self.exprs(set)?;
        }
        Ok(())
    }

    fn binary(&mut self, op: &BinaryOperator, right: &mut Expr) -> Result<(), Refusal> {
        check_binary_operator(op)?;
        self.expr(right)
    }

    fn any_all(&mut self, op: &BinaryOperator, right: &mut Expr) -> Result<(), Refusal> {
        check_comparison(op)?;
        self.expr(right)
    }

    fn like(&mut self, pattern: &mut Expr, escape: &mut Option<Box<Expr>>) -> Result<(), Refusal> {
        self.expr(pattern)?;
        self.opt_expr(escape)
    }

    fn trim(
        &mut self,
        what: &mut Option<Box<Expr>>,
        characters: &mut Option<Vec<Expr>>,
    ) -> Result<(), Refusal> {
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
    ) -> Result<(), Refusal> {
        self.pair(what, from)?;
        self.opt_expr(length)
    }

    fn case(
        &mut self,
        operand: &mut Option<Box<Expr>>,
        conditions: &mut [CaseWhen],
        else_result: &mut Option<Box<Expr>>,
    ) -> Result<(), Refusal> {
        self.opt_expr(operand)?;
        for CaseWhen { condition, result } in conditions {
            self.pair(condition, result)?;
        }
        self.opt_expr(else_result)
    }

    fn compound_identifier(&mut self, parts: &[Ident]) -> Result<(), Refusal> {
        for part in parts {
            check_ident(part)?;
        }
        if let Some(last) = parts.last() {
            self.columns.insert(fold(last));
        }
        Ok(())
    }

    fn access_chain(&mut self, chain: &mut [AccessExpr]) -> Result<(), Refusal> {
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
    fn unary(&mut self, op: UnaryOperator, operand: &mut Box<Expr>) -> Result<(), Refusal> {
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

    fn function(&mut self, function: &mut Function) -> Result<(), Refusal> {
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
    fn resolve_call(&mut self, function: &Function) -> Result<Call, Refusal> {
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
    fn call_parts(&mut self, function: &mut Function) -> Result<(), Refusal> {
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

    fn order_by_exprs(&mut self, items: &mut [OrderByExpr]) -> Result<(), Refusal> {
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
    ) -> Result<(), Refusal> {
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

    fn function_arg(&mut self, arg: &mut FunctionArg) -> Result<(), Refusal> {
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

    fn function_arg_expr(&mut self, arg: &mut FunctionArgExpr) -> Result<(), Refusal> {
        match arg {
            FunctionArgExpr::Expr(expr) => self.expr(expr),
            // count(*)
            FunctionArgExpr::Wildcard => Ok(()),
            // count(t.*): names a FROM item, which is checked on its own.
            FunctionArgExpr::QualifiedWildcard(name) => name_parts(name).map(|_| ()),
            other => Err(argument_refused(other)),
        }
    }

    fn window_spec(&mut self, spec: &mut WindowSpec) -> Result<(), Refusal> {
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

fn wildcard_options(options: &WildcardAdditionalOptions) -> Result<(), Refusal> {
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
mod tests;
