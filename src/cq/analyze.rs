//! Parses and checks the query behind a continuous query.
//!
//! pg_beacon can only maintain `SELECT <keys>, <aggregates> FROM <one table>
//! [WHERE ...] GROUP BY ...` incrementally, and the capture code re-evaluates
//! every key, aggregate argument and filter against a transition table. So
//! anything that would make those expressions mean something else there
//! (other tables, subqueries, volatile functions, qualifiers) is refused here,
//! with a message that names the offending part, rather than surfacing later
//! as a wrong result.

use std::collections::BTreeSet;
use std::fmt;

use crate::sql_policy::lists::{CQ_CALL_SYNTAX, CQ_FUNCTIONS};
use crate::sql_policy::text;
use crate::sql_policy::Refusal;
use crate::sqlident::{fold, folded_parts, unparenthesized};
use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DateTimeField, Distinct, DuplicateTreatment, Expr,
    Function, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, LimitClause,
    ObjectName, ObjectNamePart, Query, Select, SelectFlavor, SelectItem, SetExpr, Statement,
    TableFactor, TableWithJoins, TrimWhereField, UnaryOperator, Value,
};

/// An accepted query. Identifiers are given as PostgreSQL resolves them
/// (unquoted ones lower-cased); SQL text has its column references
/// unqualified, so it runs as is against a transition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuousQuery {
    pub source_schema: Option<String>,
    pub source_table: String,
    /// The WHERE condition as SQL.
    pub filter: Option<String>,
    /// GROUP BY expressions as SQL, deduplicated, in GROUP BY order; empty
    /// for a query without GROUP BY, which has one global group.
    pub keys: Vec<String>,
    /// The select list, in order.
    pub outputs: Vec<Output>,
    /// Every source column the query references, sorted.
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Key {
        name: String,
        /// Index into [`ContinuousQuery::keys`].
        key: usize,
    },
    Aggregate {
        name: String,
        kind: AggKind,
        /// The argument as SQL; `None` only for `count(*)`.
        arg: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AggKind {
    CountStar,
    Count,
    CountDistinct,
    ApproxCountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    StddevSamp,
    StddevPop,
    VarSamp,
    VarPop,
    BoolAnd,
    BoolOr,
}

/// Why a query cannot be a continuous query, naming the offending part: most of what
/// the walk refuses is allowed SQL that cannot be maintained incrementally.
fn refusal(message: impl Into<String>) -> Refusal {
    Refusal::unsupported(message)
}

fn not_supported(what: impl fmt::Display) -> Refusal {
    refusal(format!("{what} is not supported in a continuous query"))
}

fn subqueries_refused(found: impl fmt::Display) -> Refusal {
    refusal(format!(
        "subqueries are not supported in a continuous query ({found})"
    ))
}

/// Aggregates PostgreSQL has but pg_beacon cannot maintain from deltas; listed so
/// the refusal can say "aggregate" instead of treating them as unknown functions.
const UNSUPPORTED_AGGREGATES: &[&str] = &[
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_agg_strict",
    "jsonb_agg_strict",
    "json_object_agg",
    "jsonb_object_agg",
    "json_object_agg_strict",
    "jsonb_object_agg_strict",
    "json_object_agg_unique",
    "jsonb_object_agg_unique",
    "json_object_agg_unique_strict",
    "jsonb_object_agg_unique_strict",
    "json_arrayagg",
    "json_objectagg",
    "xmlagg",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "bit_and",
    "bit_or",
    "bit_xor",
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
    "range_agg",
    "range_intersect_agg",
    "any_value",
];

/// Keywords PostgreSQL evaluates as the current time, user or schema; unquoted,
/// they are never column names. sqlparser reads most of them as calls, but
/// some (`current_role`, `current_schema`) as identifiers, which would
/// otherwise pass for columns; the full list keeps that from depending on
/// which ones a sqlparser version special-cases.
const SQL_VALUE_FUNCTIONS: &[&str] = &[
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

/// Words PostgreSQL's date/time input reads as the moment the value is
/// parsed: `'today'::date` or `ts > 'now'` mean something else in each
/// transaction, so the incrementally maintained result would drift.
const MOVING_DATETIME_WORDS: &[&str] = &["now", "today", "tomorrow", "yesterday"];

/// Allowed functions whose untyped literal arguments may be read as dates or
/// times (`coalesce(closed_at, 'now')`).
const DATETIME_COERCING_FUNCTIONS: &[&str] = &[
    "date_trunc",
    "date_part",
    "coalesce",
    "nullif",
    "greatest",
    "least",
];

const SUPPORTED_AGGREGATES_HINT: &str =
    "count, sum, avg, min, max, stddev, variance, bool_and, bool_or, approx_count_distinct";

/// Folding before rendering makes `Country` and `country` render (and so
/// compare as keys) identically, as they are the same column to PostgreSQL.
fn folded(ident: &Ident) -> Ident {
    Ident {
        value: fold(ident),
        ..ident.clone()
    }
}

fn aggregate_kind(name: &ObjectName) -> Option<AggKind> {
    let parts = folded_parts(name)?;
    let base = match parts.as_slice() {
        [name] => name.as_str(),
        [schema, name] if schema == "beacon" && name == "approx_count_distinct" => name.as_str(),
        _ => return None,
    };
    Some(match base {
        "count" => AggKind::Count,
        "approx_count_distinct" => AggKind::ApproxCountDistinct,
        "sum" => AggKind::Sum,
        "avg" => AggKind::Avg,
        "min" => AggKind::Min,
        "max" => AggKind::Max,
        "stddev" | "stddev_samp" => AggKind::StddevSamp,
        "stddev_pop" => AggKind::StddevPop,
        "variance" | "var_samp" => AggKind::VarSamp,
        "var_pop" => AggKind::VarPop,
        "bool_and" | "every" => AggKind::BoolAnd,
        "bool_or" => AggKind::BoolOr,
        _ => return None,
    })
}

/// How a call is named in refusals: `random()`, but `current_timestamp`,
/// which PostgreSQL writes without parentheses.
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

/// Refuses `expr` if it is a string literal PostgreSQL could read as the
/// current date or time. Only called where a literal's type comes from its
/// context, so plain text such as a LIKE pattern stays allowed.
fn reject_moving_literal(expr: &Expr) -> Result<(), Refusal> {
    let literal = match unparenthesized(expr) {
        Expr::Value(value) => value.value.clone().into_string(),
        Expr::TypedString(typed) => typed.value.value.clone().into_string(),
        _ => None,
    };
    let Some(literal) = literal else {
        return Ok(());
    };
    // PostgreSQL accepts these words next to other fields ('tomorrow 10:00'),
    // separated by white space.
    let lower = literal.to_ascii_lowercase();
    if lower
        .split_whitespace()
        .any(|word| MOVING_DATETIME_WORDS.contains(&word))
    {
        return Err(refusal(format!(
            "the literal '{literal}' is not allowed: read as a date or time it means the \
             current time, and continuous queries need deterministic expressions"
        )));
    }
    Ok(())
}

fn reject_window(f: &Function) -> Result<(), Refusal> {
    if f.over.is_none() {
        return Ok(());
    }
    let mut call = f.clone();
    call.over = None;
    Err(refusal(format!(
        "window functions are not supported ({call} OVER ...)"
    )))
}

#[derive(Clone, Copy)]
enum Place<'a> {
    Where,
    GroupBy,
    /// A select item or an aggregate's argument; holds the enclosing select
    /// item or aggregate call as written, to show where a nested aggregate was.
    SelectList(&'a str),
}

impl Place<'_> {
    fn misplaced_aggregate(self, found: &Function) -> Refusal {
        match self {
            Place::Where => refusal(format!(
                "aggregate functions are not allowed in WHERE ({found})"
            )),
            Place::GroupBy => refusal(format!(
                "aggregate functions are not allowed in GROUP BY ({found})"
            )),
            Place::SelectList(outer) => refusal(format!(
                "aggregates must be top-level select items; compute expressions over them \
                 when reading (found {found} in {outer})"
            )),
        }
    }
}

struct Source {
    schema: Option<String>,
    table: String,
    alias: Option<String>,
}

impl Source {
    /// PostgreSQL hides the table name once an alias is given, so only the
    /// alias (or, without one, `table` / `schema.table`) may qualify a column.
    fn check_qualifier(&self, qualifier: &[Ident], reference: &[Ident]) -> Result<(), Refusal> {
        let qualifier: Vec<String> = qualifier.iter().map(fold).collect();
        let accepted = match (&self.alias, qualifier.as_slice()) {
            (Some(alias), [name]) => name == alias,
            (None, [table]) => *table == self.table,
            (None, [schema, table]) => Some(schema) == self.schema.as_ref() && *table == self.table,
            _ => false,
        };
        if accepted {
            return Ok(());
        }
        let expected = self.alias.as_ref().unwrap_or(&self.table);
        Err(refusal(format!(
            "column reference {} does not refer to the source table: qualify columns with \
             {expected} or not at all",
            Expr::CompoundIdentifier(reference.to_vec())
        )))
    }
}

/// Collects what the whole query references while its expressions are
/// normalized one by one.
struct Cx {
    source: Source,
    columns: BTreeSet<String>,
}

impl Cx {
    /// Validates `expr` and rewrites it in place into the form the capture code
    /// can run against a transition table: column references unqualified and
    /// case-folded, function names case-folded.
    fn normalize(&mut self, expr: &mut Expr, place: Place) -> Result<(), Refusal> {
        match expr {
            Expr::Identifier(ident)
                if ident.quote_style.is_none()
                    && SQL_VALUE_FUNCTIONS.contains(&fold(ident).as_str()) =>
            {
                return Err(not_deterministic(&fold(ident)));
            }
            Expr::Identifier(ident) => {
                *ident = folded(ident);
                self.columns.insert(ident.value.clone());
            }
            Expr::CompoundIdentifier(parts) => {
                let (column, qualifier) = parts
                    .split_last()
                    .ok_or_else(|| refusal("empty column reference"))?;
                self.source.check_qualifier(qualifier, parts)?;
                let column = folded(column);
                self.columns.insert(column.value.clone());
                *expr = Expr::Identifier(column);
            }
            Expr::Value(value) => reencode_literal(&mut value.value)?,
            Expr::TypedString(_) => {
                reject_moving_literal(expr)?;
                if let Expr::TypedString(typed) = expr {
                    reencode_literal(&mut typed.value.value)?;
                }
            }
            Expr::Interval(interval) => self.normalize(&mut interval.value, place)?,
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
                op: UnaryOperator::Plus | UnaryOperator::Minus | UnaryOperator::Not,
                expr: inner,
            }
            | Expr::Ceil {
                expr: inner,
                field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            }
            | Expr::Floor {
                expr: inner,
                field: CeilFloorKind::DateTimeField(DateTimeField::NoDateTime),
            } => self.normalize(inner, place)?,
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type,
                format: None,
                ..
            } => {
                // built-in types only: a type of the caller's (a domain with a CHECK
                // function) would run inside the owner's capture trigger
                crate::query::analyze::check_type(data_type)
                    .map_err(|e| refusal(format!("{e} in a continuous query")))?;
                self.operand(inner, place)?
            }
            Expr::Extract { expr: inner, .. } => self.operand(inner, place)?,
            Expr::BinaryOp { left, op, right } => {
                if !is_allowed_operator(op) {
                    return Err(refusal(format!(
                        "operator {op} is not supported in a continuous query"
                    )));
                }
                if is_datetime_operator(op) {
                    self.operand(left, place)?;
                    self.operand(right, place)?;
                } else {
                    self.normalize(left, place)?;
                    self.normalize(right, place)?;
                }
            }
            // `ts AT TIME ZONE 'UTC'` pins a key to a zone independent of any session
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                self.operand(timestamp, place)?;
                self.operand(time_zone, place)?;
            }
            Expr::IsDistinctFrom(left, right) | Expr::IsNotDistinctFrom(left, right) => {
                self.operand(left, place)?;
                self.operand(right, place)?;
            }
            Expr::InList {
                expr: inner, list, ..
            } => {
                self.operand(inner, place)?;
                for item in list {
                    self.operand(item, place)?;
                }
            }
            Expr::Between {
                expr: inner,
                low,
                high,
                ..
            } => {
                self.operand(inner, place)?;
                self.operand(low, place)?;
                self.operand(high, place)?;
            }
            Expr::Like {
                any: false,
                expr: inner,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                any: false,
                expr: inner,
                pattern,
                escape_char,
                ..
            } => {
                self.normalize(inner, place)?;
                self.normalize(pattern, place)?;
                if let Some(escape) = escape_char {
                    self.normalize(escape, place)?;
                }
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    self.normalize(operand, place)?;
                }
                for when in conditions {
                    self.normalize(&mut when.condition, place)?;
                    self.normalize(&mut when.result, place)?;
                }
                if let Some(else_result) = else_result {
                    self.normalize(else_result, place)?;
                }
            }
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                ..
            } => {
                self.normalize(inner, place)?;
                for bound in [substring_from, substring_for].into_iter().flatten() {
                    self.normalize(bound, place)?;
                }
            }
            Expr::Trim {
                expr: inner,
                trim_what,
                trim_characters,
                ..
            } => {
                self.normalize(inner, place)?;
                if let Some(what) = trim_what {
                    self.normalize(what, place)?;
                }
                for characters in trim_characters.iter_mut().flatten() {
                    self.normalize(characters, place)?;
                }
            }
            Expr::Function(f) => self.normalize_call(f, place)?,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                return Err(subqueries_refused(expr));
            }
            other => {
                return Err(refusal(format!(
                    "expression {other} is not supported in a continuous query"
                )));
            }
        }
        Ok(())
    }

    fn normalize_call(&mut self, f: &mut Function, place: Place) -> Result<(), Refusal> {
        reject_window(f)?;
        if aggregate_kind(&f.name).is_some() {
            return Err(place.misplaced_aggregate(f));
        }
        let label = call_label(f);
        let name = match folded_parts(&f.name).as_deref() {
            Some([name]) => name.clone(),
            _ => return Err(not_deterministic(&label)),
        };
        if UNSUPPORTED_AGGREGATES.contains(&name.as_str()) {
            return Err(refusal(format!(
                "aggregate {label} is not supported in a continuous query \
                 (supported: {SUPPORTED_AGGREGATES_HINT})"
            )));
        }
        if !CQ_FUNCTIONS.contains(&name.as_str()) && !CQ_CALL_SYNTAX.contains(&name.as_str()) {
            return Err(not_deterministic(&label));
        }
        let FunctionArguments::List(list) = &mut f.args else {
            return Err(refusal(format!(
                "{label} must be called with an argument list"
            )));
        };
        if list.duplicate_treatment.is_some()
            || !list.clauses.is_empty()
            || f.filter.is_some()
            || !f.within_group.is_empty()
            || f.null_treatment.is_some()
            || !matches!(f.parameters, FunctionArguments::None)
        {
            return Err(refusal(format!(
                "{label} is not an aggregate: DISTINCT, ORDER BY, FILTER and WITHIN GROUP \
                 do not apply to it"
            )));
        }
        let coerces = DATETIME_COERCING_FUNCTIONS.contains(&name.as_str());
        for arg in &mut list.args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) if coerces => {
                    self.operand(arg, place)?
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) => self.normalize(arg, place)?,
                other => {
                    return Err(refusal(format!(
                        "argument {other} of {label} is not supported in a continuous query"
                    )));
                }
            }
        }
        for part in &mut f.name.0 {
            if let ObjectNamePart::Identifier(ident) = part {
                *ident = folded(ident);
            }
        }
        Ok(())
    }

    /// Normalizes an expression whose type may come from its context, where
    /// an untyped literal may be read as a date or time.
    fn operand(&mut self, expr: &mut Expr, place: Place) -> Result<(), Refusal> {
        reject_moving_literal(expr)?;
        self.normalize(expr, place)
    }

    /// The expression as SQL the capture code can run, or the reason it can't.
    fn render(&mut self, expr: &Expr, place: Place) -> Result<String, Refusal> {
        let mut expr = unparenthesized(expr).clone();
        self.normalize(&mut expr, place)?;
        text::render::expression(&expr, &crate::query::analyze::LIMITS)
    }

    fn aggregate(&mut self, f: &Function, kind: AggKind) -> Result<Item, Refusal> {
        let call = f.to_string();
        if f.filter.is_some() {
            return Err(refusal(format!(
                "FILTER is not supported on aggregates in a continuous query ({call}); \
                 aggregate over a CASE expression instead"
            )));
        }
        if !f.within_group.is_empty() {
            return Err(not_supported(format!("WITHIN GROUP ({call})")));
        }
        if f.null_treatment.is_some() || !matches!(f.parameters, FunctionArguments::None) {
            return Err(not_supported(format!("the aggregate call {call}")));
        }
        let list = match &f.args {
            FunctionArguments::List(list) => list,
            FunctionArguments::Subquery(_) => return Err(subqueries_refused(&call)),
            FunctionArguments::None => {
                return Err(refusal(format!("{call} needs exactly one argument")));
            }
        };
        if !list.clauses.is_empty() {
            return Err(refusal(format!(
                "ORDER BY and other clauses inside an aggregate are not supported in a \
                 continuous query ({call})"
            )));
        }
        let [arg] = list.args.as_slice() else {
            return Err(refusal(format!(
                "{call}: aggregates in a continuous query take exactly one argument"
            )));
        };
        let distinct = list.duplicate_treatment == Some(DuplicateTreatment::Distinct);
        let arg = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
                if kind == AggKind::Count && !distinct =>
            {
                return Ok(Item::Aggregate {
                    kind: AggKind::CountStar,
                    arg: None,
                });
            }
            FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) => arg,
            _ => return Err(not_supported(format!("the aggregate argument in {call}"))),
        };
        let kind = match (kind, distinct) {
            (kind, false) => kind,
            (AggKind::Count, true) => AggKind::CountDistinct,
            (_, true) => {
                return Err(refusal(format!(
                    "DISTINCT is only supported in count(DISTINCT ...), not in {call}"
                )));
            }
        };
        Ok(Item::Aggregate {
            kind,
            arg: Some(self.render(arg, Place::SelectList(&call))?),
        })
    }
}

fn not_deterministic(label: &str) -> Refusal {
    refusal(format!(
        "function {label} is not allowed: continuous queries need deterministic expressions"
    ))
}

fn is_allowed_operator(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(
        op,
        B::Plus
            | B::Minus
            | B::Multiply
            | B::Divide
            | B::Modulo
            | B::PGExp
            | B::StringConcat
            | B::Eq
            | B::NotEq
            | B::Lt
            | B::LtEq
            | B::Gt
            | B::GtEq
            | B::And
            | B::Or
            | B::Arrow
            | B::LongArrow
            | B::HashArrow
            | B::HashLongArrow
    )
}

/// Operators whose untyped literal operand may be read as a date or time.
fn is_datetime_operator(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(
        op,
        B::Plus | B::Minus | B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq
    )
}

/// PostgreSQL's default output column name (FigureColnameInternal), with its
/// strength: 2 for a name taken from a column or function, 1 for a fallback
/// that an enclosing cast or CASE replaces. Where PostgreSQL would fall back to
/// a type's internal name (`1::int` is `int4`), this gives no name, so the
/// caller asks for an alias instead of guessing.
fn figure_colname(expr: &Expr) -> (Option<String>, u8) {
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
enum Item {
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

struct NamedItem {
    name: String,
    item: Item,
}

fn select_item(item: &SelectItem, cx: &mut Cx) -> Result<NamedItem, Refusal> {
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

fn single_select(sql: &str) -> Result<Select, Refusal> {
    let mut statements = crate::query::analyze::parse_guarded(sql)?;
    let statement = match statements.len() {
        1 => statements.remove(0),
        0 => return Err(refusal("no statement found; expected one SELECT")),
        n => {
            return Err(refusal(format!(
                "a continuous query is exactly one SELECT statement, found {n} statements"
            )));
        }
    };
    let Statement::Query(query) = statement else {
        let rendered = statement.to_string();
        let kind = rendered.split_whitespace().next().unwrap_or_default();
        return Err(refusal(format!(
            "a continuous query must be a SELECT statement, not {kind}"
        )));
    };
    // Destructured in full so that a clause added by a future sqlparser fails
    // to compile here instead of being silently ignored.
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
    } = *query;
    if with.is_some() {
        return Err(not_supported("WITH"));
    }
    if order_by.is_some() {
        return Err(not_supported("ORDER BY"));
    }
    match limit_clause {
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if limit.is_some() {
                return Err(not_supported("LIMIT"));
            }
            if offset.is_some() {
                return Err(not_supported("OFFSET"));
            }
            if !limit_by.is_empty() {
                return Err(not_supported("LIMIT BY"));
            }
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => return Err(not_supported("LIMIT")),
        None => {}
    }
    if fetch.is_some() {
        return Err(not_supported("FETCH"));
    }
    if !locks.is_empty() {
        return Err(not_supported("FOR UPDATE / FOR SHARE"));
    }
    if for_clause.is_some() || settings.is_some() || format_clause.is_some() {
        return Err(not_supported("FOR / SETTINGS / FORMAT"));
    }
    if !pipe_operators.is_empty() {
        return Err(not_supported("the pipe operator |>"));
    }
    match *body {
        SetExpr::Select(select) => Ok(*select),
        SetExpr::SetOperation { op, .. } => Err(not_supported(op)),
        SetExpr::Query(_) => Err(not_supported("a parenthesized query")),
        other => Err(refusal(format!(
            "a continuous query must be a plain SELECT, not {other}"
        ))),
    }
}

/// The clauses of a SELECT that a continuous query may use.
struct SelectParts {
    projection: Vec<SelectItem>,
    from: Vec<TableWithJoins>,
    selection: Option<Expr>,
    group_by: Vec<Expr>,
}

/// Refuses every clause of the SELECT that pg_beacon cannot maintain.
fn select_parts(select: Select) -> Result<SelectParts, Refusal> {
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
    match distinct {
        Some(Distinct::Distinct) => return Err(not_supported("DISTINCT")),
        Some(Distinct::On(_)) => return Err(not_supported("DISTINCT ON")),
        Some(Distinct::All) | None => {}
    }
    if top.is_some() {
        return Err(not_supported("TOP"));
    }
    if into.is_some() {
        return Err(not_supported("SELECT INTO"));
    }
    if having.is_some() {
        return Err(not_supported("HAVING"));
    }
    if !named_window.is_empty() {
        return Err(not_supported("WINDOW"));
    }
    if qualify.is_some() {
        return Err(not_supported("QUALIFY"));
    }
    if !lateral_views.is_empty() {
        return Err(not_supported("LATERAL VIEW"));
    }
    if !optimizer_hints.is_empty()
        || select_modifiers.is_some()
        || exclude.is_some()
        || prewhere.is_some()
        || !connect_by.is_empty()
        || !cluster_by.is_empty()
        || !distribute_by.is_empty()
        || !sort_by.is_empty()
        || value_table_mode.is_some()
        || flavor != SelectFlavor::Standard
    {
        return Err(refusal(
            "a continuous query must be a plain PostgreSQL SELECT; this one uses syntax \
             from another SQL dialect",
        ));
    }
    let group_by = match group_by {
        GroupByExpr::All(_) => return Err(not_supported("GROUP BY ALL")),
        GroupByExpr::Expressions(_, modifiers) if !modifiers.is_empty() => {
            return Err(not_supported("GROUP BY ... WITH ROLLUP / CUBE / TOTALS"));
        }
        GroupByExpr::Expressions(exprs, _) => exprs,
    };
    Ok(SelectParts {
        projection,
        from,
        selection,
        group_by,
    })
}

fn not_a_plain_table(source: &TableFactor) -> Refusal {
    refusal(format!(
        "the source {source} is not supported in a continuous query; name a plain table"
    ))
}

fn source_table(from: &[TableWithJoins]) -> Result<Source, Refusal> {
    let table = match from {
        [table] => table,
        [] => return Err(refusal("a continuous query needs a source table in FROM")),
        _ => {
            return Err(refusal(
                "joins are not supported in a continuous query (FROM lists more than one table)",
            ));
        }
    };
    if !table.joins.is_empty() {
        return Err(refusal("joins are not supported in a continuous query"));
    }
    let (name, alias) = match &table.relation {
        // Destructured in full so that a new table modifier fails to compile
        // here instead of being silently accepted.
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
            if args.is_some() {
                return Err(refusal(format!(
                    "table functions are not supported in a continuous query ({})",
                    table.relation
                )));
            }
            if sample.is_some() {
                return Err(not_supported("TABLESAMPLE"));
            }
            if !with_hints.is_empty()
                || version.is_some()
                || *with_ordinality
                || !partitions.is_empty()
                || json_path.is_some()
                || !index_hints.is_empty()
            {
                return Err(not_a_plain_table(&table.relation));
            }
            (name, alias)
        }
        TableFactor::Derived { lateral: true, .. } => return Err(not_supported("LATERAL")),
        TableFactor::Derived { .. } => {
            return Err(subqueries_refused(format!("in FROM: {}", table.relation)));
        }
        TableFactor::NestedJoin { .. } => {
            return Err(refusal("joins are not supported in a continuous query"));
        }
        TableFactor::TableFunction { .. }
        | TableFactor::Function { .. }
        | TableFactor::UNNEST { .. }
        | TableFactor::JsonTable { .. }
        | TableFactor::OpenJsonTable { .. }
        | TableFactor::XmlTable { .. } => {
            return Err(refusal(format!(
                "table functions are not supported in a continuous query ({})",
                table.relation
            )));
        }
        other => return Err(not_a_plain_table(other)),
    };
    let parts = name
        .0
        .iter()
        .map(|part| part.as_ident())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| not_supported(format!("the table name {name}")))?;
    let (schema, table_name) = match parts.as_slice() {
        // sqlparser reads `FROM ONLY t` as table `ONLY` aliased `t`; an
        // unquoted table cannot be called `only` in PostgreSQL, so this is
        // always the ONLY keyword.
        [only] if only.quote_style.is_none() && only.value.eq_ignore_ascii_case("only") => {
            return Err(not_supported("FROM ONLY"));
        }
        [table] => (None, fold(table)),
        [schema, table] => (Some(fold(schema)), fold(table)),
        _ => {
            return Err(refusal(format!(
                "table name {name} has too many parts; use table or schema.table"
            )));
        }
    };
    let alias = match alias {
        Some(alias) if !alias.columns.is_empty() || alias.at.is_some() => {
            return Err(refusal(format!(
                "the table alias {alias} is not supported in a continuous query; use a plain \
                 alias without column names"
            )));
        }
        Some(alias) => Some(fold(&alias.name)),
        None => None,
    };
    Ok(Source {
        schema,
        table: table_name,
        alias,
    })
}

/// How one GROUP BY entry names its key before keys are deduplicated.
enum GroupRef {
    Rendered(String),
    /// 1-based position in the select list.
    Position(usize),
    /// A bare name matching the output name of the select item at this index.
    OutputName(usize, Ident),
}

fn group_ref(expr: &Expr, items: &[NamedItem], cx: &mut Cx) -> Result<GroupRef, Refusal> {
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

fn duplicate_name(name: &str) -> Refusal {
    refusal(format!(
        "output column name \"{name}\" appears twice; give one an alias with AS"
    ))
}

/// The key a GROUP BY entry stands for, once every source column the query
/// uses is known.
fn resolve_group_ref(group: GroupRef, items: &[NamedItem], cx: &Cx) -> Result<String, Refusal> {
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

/// Only plain literal kinds are accepted; strings of every spelling are kept as their
/// value, which the one renderer prints in a form that reads the same under any setting.
fn reencode_literal(value: &mut Value) -> Result<(), Refusal> {
    let text = match value {
        Value::Number(..) | Value::Boolean(_) | Value::Null => return Ok(()),
        Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) => std::mem::take(text),
        Value::DollarQuotedString(quoted) => std::mem::take(&mut quoted.value),
        Value::Placeholder(placeholder) => {
            return Err(refusal(format!(
                "placeholders ({placeholder}) are not supported in a continuous query; \
                 write the value inline"
            )))
        }
        other => {
            return Err(refusal(format!(
                "the literal {other} is not supported in a continuous query"
            )))
        }
    };
    // kept as its value; the renderer prints it
    *value = Value::SingleQuotedString(text);
    Ok(())
}

/// Analyzes one SQL statement as a continuous query definition.
pub fn analyze(sql: &str) -> Result<ContinuousQuery, Refusal> {
    let SelectParts {
        projection,
        from,
        selection,
        group_by,
    } = select_parts(single_select(sql)?)?;
    let mut cx = Cx {
        source: source_table(&from)?,
        columns: BTreeSet::new(),
    };
    let filter = selection
        .as_ref()
        .map(|expr| cx.render(expr, Place::Where))
        .transpose()?;
    let items = projection
        .iter()
        .map(|item| select_item(item, &mut cx))
        .collect::<Result<Vec<_>, _>>()?;
    if !items
        .iter()
        .any(|item| matches!(item.item, Item::Aggregate { .. }))
    {
        return Err(refusal(format!(
            "a continuous query needs at least one aggregate in its select list \
             ({SUPPORTED_AGGREGATES_HINT})"
        )));
    }

    // Names are only resolved once all expressions have been seen, so that a
    // name the query uses as a column anywhere is known to be one.
    let group_refs = group_by
        .iter()
        .map(|expr| group_ref(expr, &items, &mut cx))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keys: Vec<String> = Vec::new();
    for group in group_refs {
        let key = resolve_group_ref(group, &items, &cx)?;
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    let mut outputs = Vec::with_capacity(items.len());
    for NamedItem { name, item } in items {
        outputs.push(match item {
            Item::Aggregate { kind, arg } => Output::Aggregate { name, kind, arg },
            Item::Expr { rendered, column } => {
                let Some(key) = keys.iter().position(|key| *key == rendered) else {
                    return Err(refusal(match column {
                        Some(column) => format!(
                            "column \"{column}\" must appear in GROUP BY or be used in an \
                             aggregate"
                        ),
                        None => format!(
                            "expression {rendered} must appear in GROUP BY or be used in an \
                             aggregate"
                        ),
                    }));
                };
                Output::Key { name, key }
            }
        });
    }
    check_output_names(&outputs, &keys)?;

    Ok(ContinuousQuery {
        source_schema: cx.source.schema,
        source_table: cx.source.table,
        filter,
        keys,
        outputs,
        columns: cx.columns.into_iter().collect(),
    })
}

fn check_output_names(outputs: &[Output], keys: &[String]) -> Result<(), Refusal> {
    let mut seen = BTreeSet::new();
    for output in outputs {
        let name = match output {
            Output::Key { name, key } => {
                if name == "?column?" {
                    return Err(refusal(format!(
                        "select item {} has no name; give it an alias with AS",
                        keys[*key]
                    )));
                }
                name
            }
            Output::Aggregate { name, .. } => name,
        };
        if name.starts_with('_') {
            return Err(refusal(format!(
                "output column name \"{name}\" starts with \"_\", which pg_beacon reserves for \
                 its own columns; choose another alias"
            )));
        }
        if !seen.insert(name) {
            return Err(duplicate_name(name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
