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

/// Why a query cannot be a continuous query, naming the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

fn refusal(message: impl Into<String>) -> Refusal {
    Refusal(message.into())
}

fn not_supported(what: impl fmt::Display) -> Refusal {
    refusal(format!("{what} is not supported in a continuous query"))
}

fn subqueries_refused(found: impl fmt::Display) -> Refusal {
    refusal(format!(
        "subqueries are not supported in a continuous query ({found})"
    ))
}

/// Functions whose result depends only on their arguments, so re-evaluating
/// them in the capture trigger gives the same value the query would have.
const DETERMINISTIC_FUNCTIONS: &[&str] = &[
    "date_trunc",
    "date_part",
    "extract",
    "lower",
    "upper",
    "initcap",
    "length",
    "char_length",
    "octet_length",
    "substr",
    "substring",
    "left",
    "right",
    "split_part",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "concat",
    "concat_ws",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "abs",
    "round",
    "trunc",
    "floor",
    "ceil",
    "ceiling",
    "sign",
    "mod",
    "power",
    "sqrt",
    "ln",
    "log",
    "exp",
    "to_char",
    "md5",
    "jsonb_extract_path_text",
];

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
        if !DETERMINISTIC_FUNCTIONS.contains(&name.as_str()) {
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
        Ok(expr.to_string())
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
    let mut statements =
        crate::query::analyze::parse_guarded(sql).map_err(|e| refusal(e.to_string()))?;
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

/// Strings are printed back in a form PostgreSQL reads as the same value under any
/// setting (sqlparser's printer does not escape a quote after a backslash, and
/// backslashes mean something else with standard_conforming_strings off): as plain quotes
/// when they hold neither, else dollar-quoted. Only plain literal kinds are accepted.
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
    *value = crate::query::analyze::string_literal(text);
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
mod tests {
    use super::*;

    fn ok(sql: &str) -> ContinuousQuery {
        analyze(sql).unwrap_or_else(|refusal| panic!("{sql}\nwas refused: {refusal}"))
    }

    /// Asserts that `sql` is refused with a message containing every needle.
    fn refused(sql: &str, needles: &[&str]) {
        let message = match analyze(sql) {
            Ok(query) => panic!("{sql}\nwas accepted: {query:?}"),
            Err(refusal) => refusal.to_string(),
        };
        for needle in needles {
            assert!(
                message.contains(needle),
                "{sql}\nrefused with {message:?}, which does not mention {needle:?}"
            );
        }
    }

    #[test]
    fn casts_name_built_in_types_only() {
        ok("SELECT url::text AS u, count(*) FROM t GROUP BY 1");
        ok("SELECT count(*), sum(price::numeric(10, 2)) FROM t");
        for cast in [
            "url::my_domain",
            "url::pg_temp.my_domain",
            "CAST(url AS public.t)",
            "url::regclass",
        ] {
            refused(
                &format!("SELECT {cast} AS u, count(*) FROM t GROUP BY 1"),
                &["is not allowed", "continuous query"],
            );
        }
    }

    /// Whatever the caller's text, every string reaches PostgreSQL as the value that was
    /// checked: no quote or backslash in a single-quoted literal, so no setting can change
    /// where it ends.
    #[test]
    fn string_literals_are_printed_so_they_read_the_same_under_any_setting() {
        let mut refused = 0;
        for sql in [
            r"SELECT url, count(*) FROM t WHERE url = '\'') GROUP BY url; COPY t TO PROGRAM 'id'; --' GROUP BY url",
            r"SELECT url, count(*) FROM t WHERE url = E'\'' GROUP BY url",
            r"SELECT url, count(*) FROM t WHERE url = $x$'\$x$ GROUP BY url",
            r"SELECT url, count(*) FROM t WHERE url = 'it''s' GROUP BY url",
        ] {
            let Ok(query) = analyze(sql) else {
                refused += 1;
                continue;
            };
            let filter = query.filter.expect("a filter");
            let single_quoted: Vec<&str> = filter.split('$').collect();
            assert!(
                !filter.contains('\\') || filter.contains("$q$"),
                "{sql}: backslash outside dollar quotes in {filter}"
            );
            assert!(
                !filter.contains("''"),
                "{sql}: doubled quotes printed in {filter} ({single_quoted:?})"
            );
        }
        assert!(refused <= 1, "the plain literals are accepted");
    }

    #[test]
    fn deep_or_long_queries_are_refused_without_overflowing_the_stack() {
        let chained = format!("SELECT count(*), sum(1{}) FROM t", "+1".repeat(30_000));
        refused(&chained, &["deep"]);
        let nested = format!(
            "SELECT count(*), sum({}1{}) FROM t",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        refused(&nested, &["deep"]);
        let long = format!(
            "SELECT count(*) FROM t WHERE url = '{}'",
            "x".repeat(200_000)
        );
        refused(&long, &["too long"]);
    }

    fn key(name: &str, key: usize) -> Output {
        Output::Key {
            name: name.to_string(),
            key,
        }
    }

    fn agg(name: &str, kind: AggKind, arg: Option<&str>) -> Output {
        Output::Aggregate {
            name: name.to_string(),
            kind,
            arg: arg.map(str::to_string),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn full_query_is_described() {
        let query = ok("SELECT country, count(*), sum(amount) AS revenue \
             FROM orders WHERE status = 'paid' GROUP BY country");
        assert_eq!(
            query,
            ContinuousQuery {
                source_schema: None,
                source_table: "orders".to_string(),
                filter: Some("status = 'paid'".to_string()),
                keys: strings(&["country"]),
                outputs: vec![
                    key("country", 0),
                    agg("count", AggKind::CountStar, None),
                    agg("revenue", AggKind::Sum, Some("amount")),
                ],
                columns: strings(&["amount", "country", "status"]),
            }
        );
    }

    #[test]
    fn every_aggregate_kind_is_recognized() {
        let cases = [
            ("count(*)", "count", AggKind::CountStar, None),
            ("COUNT(*)", "count", AggKind::CountStar, None),
            ("count(x)", "count", AggKind::Count, Some("x")),
            ("count(ALL x)", "count", AggKind::Count, Some("x")),
            (
                "count(DISTINCT x)",
                "count",
                AggKind::CountDistinct,
                Some("x"),
            ),
            (
                "beacon.approx_count_distinct(x)",
                "approx_count_distinct",
                AggKind::ApproxCountDistinct,
                Some("x"),
            ),
            (
                "approx_count_distinct(x)",
                "approx_count_distinct",
                AggKind::ApproxCountDistinct,
                Some("x"),
            ),
            ("sum(x)", "sum", AggKind::Sum, Some("x")),
            ("Sum(x * 2)", "sum", AggKind::Sum, Some("x * 2")),
            ("avg(x)", "avg", AggKind::Avg, Some("x")),
            ("min(x)", "min", AggKind::Min, Some("x")),
            ("max(x)", "max", AggKind::Max, Some("x")),
            ("stddev(x)", "stddev", AggKind::StddevSamp, Some("x")),
            (
                "stddev_samp(x)",
                "stddev_samp",
                AggKind::StddevSamp,
                Some("x"),
            ),
            ("stddev_pop(x)", "stddev_pop", AggKind::StddevPop, Some("x")),
            ("variance(x)", "variance", AggKind::VarSamp, Some("x")),
            ("var_samp(x)", "var_samp", AggKind::VarSamp, Some("x")),
            ("var_pop(x)", "var_pop", AggKind::VarPop, Some("x")),
            (
                "bool_and(x > 0)",
                "bool_and",
                AggKind::BoolAnd,
                Some("x > 0"),
            ),
            ("every(x)", "every", AggKind::BoolAnd, Some("x")),
            ("bool_or(x)", "bool_or", AggKind::BoolOr, Some("x")),
        ];
        for (call, name, kind, arg) in cases {
            let query = ok(&format!("SELECT g, {call} FROM t GROUP BY g"));
            assert_eq!(query.outputs[1], agg(name, kind, arg), "{call}");
        }
    }

    #[test]
    fn expression_keys() {
        let query = ok("SELECT date_trunc('hour', _time) AS hour, lower(country), \
             price > 10 AS expensive, count(*) \
             FROM events GROUP BY date_trunc('hour', _time), lower(country), price > 10");
        assert_eq!(
            query.keys,
            strings(&["date_trunc('hour', _time)", "lower(country)", "price > 10"])
        );
        assert_eq!(
            query.outputs,
            vec![
                key("hour", 0),
                key("lower", 1),
                key("expensive", 2),
                agg("count", AggKind::CountStar, None),
            ]
        );
        assert_eq!(query.columns, strings(&["_time", "country", "price"]));
    }

    #[test]
    fn group_by_position_resolves_to_the_select_item() {
        let query = ok("SELECT date_trunc('day', ts) AS day, sum(x) FROM t GROUP BY 1");
        assert_eq!(query.keys, strings(&["date_trunc('day', ts)"]));
        assert_eq!(query.outputs[0], key("day", 0));
    }

    #[test]
    fn group_by_alias_resolves_to_the_select_item() {
        let query = ok("SELECT lower(country) AS c, count(*) FROM t GROUP BY c");
        assert_eq!(query.keys, strings(&["lower(country)"]));
        assert_eq!(query.outputs[0], key("c", 0));
        assert_eq!(query.columns, strings(&["country"]));
    }

    #[test]
    fn group_by_default_output_name_of_a_column_is_that_column() {
        let query = ok("SELECT t.region, count(*) FROM t GROUP BY region");
        assert_eq!(query.keys, strings(&["region"]));
        assert_eq!(query.outputs[0], key("region", 0));
    }

    #[test]
    fn group_by_name_used_as_column_elsewhere_is_ambiguous() {
        refused(
            "SELECT date_trunc('hour', ts) AS ts, count(*) FROM t GROUP BY ts",
            &["GROUP BY ts is ambiguous", "date_trunc('hour', ts)"],
        );
        refused(
            "SELECT lower(name) AS n, count(*) FROM t WHERE n <> '' GROUP BY n",
            &["GROUP BY n is ambiguous"],
        );
    }

    #[test]
    fn group_by_name_of_an_aggregate_that_is_also_a_column_is_the_column() {
        let query = ok("SELECT g, sum(x) AS x FROM t GROUP BY g, x");
        assert_eq!(query.keys, strings(&["g", "x"]));
        assert_eq!(query.outputs[1], agg("x", AggKind::Sum, Some("x")));
    }

    #[test]
    fn hidden_keys_stay_in_keys() {
        let query = ok("SELECT region, count(*) FROM t GROUP BY region, shop_id");
        assert_eq!(query.keys, strings(&["region", "shop_id"]));
        assert_eq!(
            query.outputs,
            vec![key("region", 0), agg("count", AggKind::CountStar, None)]
        );
        assert_eq!(query.columns, strings(&["region", "shop_id"]));
    }

    #[test]
    fn keys_that_render_identically_are_one_key() {
        let query = ok("SELECT a AS first, t.a AS second, count(*) FROM t GROUP BY a, t.a, (A), 1");
        assert_eq!(query.keys, strings(&["a"]));
        assert_eq!(query.outputs[..2], [key("first", 0), key("second", 0)]);
    }

    #[test]
    fn no_group_by_is_one_global_group() {
        let query = ok("SELECT count(*), max(ts) AS latest FROM t");
        assert!(query.keys.is_empty());
        assert_eq!(
            query.outputs,
            vec![
                agg("count", AggKind::CountStar, None),
                agg("latest", AggKind::Max, Some("ts")),
            ]
        );
        assert_eq!(query.columns, strings(&["ts"]));
    }

    #[test]
    fn qualified_columns_are_rendered_unqualified() {
        let query = ok(
            "SELECT o.country, sum(o.amount * o.qty) AS total FROM shop.orders AS o \
             WHERE o.status IN ('paid', 'shipped') AND o.amount BETWEEN 1 AND 100 \
             AND o.note IS NOT NULL GROUP BY o.country",
        );
        assert_eq!(
            query.filter.as_deref(),
            Some("status IN ('paid', 'shipped') AND amount BETWEEN 1 AND 100 AND note IS NOT NULL")
        );
        assert_eq!(
            query.outputs[1],
            agg("total", AggKind::Sum, Some("amount * qty"))
        );
        assert_eq!(
            query.columns,
            strings(&["amount", "country", "note", "qty", "status"])
        );
    }

    #[test]
    fn table_name_and_schema_qualified_table_name_may_qualify_columns() {
        let query = ok(
            "SELECT shop.orders.country, count(orders.id) FROM Shop.Orders \
             GROUP BY orders.country",
        );
        assert_eq!(query.source_schema.as_deref(), Some("shop"));
        assert_eq!(query.source_table, "orders");
        assert_eq!(query.keys, strings(&["country"]));
        assert_eq!(query.outputs[1], agg("count", AggKind::Count, Some("id")));
    }

    #[test]
    fn schema_qualified_source_with_alias() {
        let query = ok("SELECT e.kind, count(*) FROM analytics.events e GROUP BY e.kind");
        assert_eq!(query.source_schema.as_deref(), Some("analytics"));
        assert_eq!(query.source_table, "events");
        assert_eq!(query.keys, strings(&["kind"]));
    }

    #[test]
    fn quoted_identifiers_keep_case_and_quotes() {
        let query = ok("SELECT \"Country\", Region, sum(\"Amount\") AS \"Total\" \
             FROM \"Sales\".\"Orders\" AS \"O\" WHERE \"O\".\"Amount\" > 0 \
             GROUP BY \"Country\", REGION");
        assert_eq!(query.source_schema.as_deref(), Some("Sales"));
        assert_eq!(query.source_table, "Orders");
        assert_eq!(query.filter.as_deref(), Some("\"Amount\" > 0"));
        assert_eq!(query.keys, strings(&["\"Country\"", "region"]));
        assert_eq!(
            query.outputs,
            vec![
                key("Country", 0),
                key("region", 1),
                agg("Total", AggKind::Sum, Some("\"Amount\"")),
            ]
        );
        assert_eq!(query.columns, strings(&["Amount", "Country", "region"]));
    }

    #[test]
    fn unquoted_identifiers_and_function_names_are_case_folded() {
        let query = ok("SELECT LOWER(Country) AS C, COUNT(*) FROM T GROUP BY lower(country)");
        assert_eq!(query.source_table, "t");
        assert_eq!(query.keys, strings(&["lower(country)"]));
        assert_eq!(query.outputs[0], key("c", 0));
    }

    #[test]
    fn default_output_names_follow_postgres() {
        let query = ok("SELECT t.a, b::text, CAST(c AS int), lower(d), \
             CASE WHEN e THEN 'x' ELSE f END, CASE WHEN g THEN 1 END, trim(h), \
             substring(i from 1 for 2), extract(hour from j), (k), count(*) \
             FROM t GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10");
        let names: Vec<&str> = query
            .outputs
            .iter()
            .map(|output| match output {
                Output::Key { name, .. } | Output::Aggregate { name, .. } => name.as_str(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "a",
                "b",
                "c",
                "lower",
                "f",
                "case",
                "btrim",
                "substring",
                "extract",
                "k",
                "count"
            ]
        );
    }

    #[test]
    fn aliases_are_folded_like_identifiers() {
        let query = ok("SELECT a AS Region, count(*) AS \"N\" FROM t GROUP BY a");
        assert_eq!(
            query.outputs,
            vec![key("region", 0), agg("N", AggKind::CountStar, None)]
        );
    }

    #[test]
    fn allowed_expression_forms_render_back_to_sql() {
        let query = ok("SELECT payload->>'country' AS country, \
             coalesce(nullif(trim(both ' ' from name), ''), 'unknown') AS name, \
             CASE WHEN amount >= 100 THEN 'big' ELSE 'small' END AS size, \
             sum(round(amount::numeric, 2)) AS total \
             FROM t \
             WHERE ts >= timestamptz '2024-01-01' - interval '1 hour' \
             AND NOT (kind ILIKE 'test%' OR kind LIKE '%tmp') \
             AND ref IS DISTINCT FROM 'x' AND flag IS TRUE \
             GROUP BY 1, 2, 3");
        assert_eq!(
            query.keys,
            strings(&[
                "payload ->> 'country'",
                "coalesce(nullif(TRIM(BOTH ' ' FROM name), ''), 'unknown')",
                "CASE WHEN amount >= 100 THEN 'big' ELSE 'small' END",
            ])
        );
        assert_eq!(
            query.outputs[3],
            agg("total", AggKind::Sum, Some("round(amount::NUMERIC, 2)"))
        );
        assert_eq!(
            query.filter.as_deref(),
            Some(
                "ts >= TIMESTAMPTZ '2024-01-01' - INTERVAL '1 hour' \
                 AND NOT (kind ILIKE 'test%' OR kind LIKE '%tmp') \
                 AND ref IS DISTINCT FROM 'x' AND flag IS TRUE"
            )
        );
        assert_eq!(
            query.columns,
            strings(&["amount", "flag", "kind", "name", "payload", "ref", "ts"])
        );
    }

    #[test]
    fn refusal_displays_its_message() {
        let refusal = analyze("SELECT a, count(*) FROM t GROUP BY a LIMIT 5").unwrap_err();
        assert_eq!(refusal.to_string(), refusal.0);
        assert_eq!(refusal.0, "LIMIT is not supported in a continuous query");
    }

    #[test]
    fn refuses_other_statements_and_statement_counts() {
        refused("DELETE FROM t", &["must be a SELECT", "DELETE"]);
        refused("UPDATE t SET a = 1", &["must be a SELECT", "UPDATE"]);
        refused(
            "SELECT count(*) FROM t; SELECT count(*) FROM u",
            &["exactly one SELECT", "2 statements"],
        );
        refused("", &["no statement"]);
        refused("SELECT count(* FROM t", &["could not parse"]);
    }

    #[test]
    fn refuses_query_level_clauses() {
        let base = "SELECT a, count(*) FROM t GROUP BY a";
        refused(&format!("{base} ORDER BY a"), &["ORDER BY"]);
        refused(&format!("{base} LIMIT 10"), &["LIMIT"]);
        refused(&format!("{base} OFFSET 10"), &["OFFSET"]);
        refused(&format!("{base} FETCH FIRST 5 ROWS ONLY"), &["FETCH"]);
        refused(&format!("{base} FOR UPDATE"), &["FOR UPDATE"]);
        refused(&format!("{base} HAVING count(*) > 1"), &["HAVING"]);
        refused(&format!("{base} WINDOW w AS (PARTITION BY a)"), &["WINDOW"]);
        refused(&format!("{base} UNION {base}"), &["UNION"]);
        refused(&format!("{base} EXCEPT {base}"), &["EXCEPT"]);
        refused(&format!("WITH x AS (SELECT 1) {base}"), &["WITH"]);
        refused(&format!("({base})"), &["parenthesized"]);
    }

    #[test]
    fn refuses_select_level_clauses() {
        refused(
            "SELECT DISTINCT a, count(*) FROM t GROUP BY a",
            &["DISTINCT"],
        );
        refused(
            "SELECT DISTINCT ON (a) a, count(*) FROM t GROUP BY a",
            &["DISTINCT ON"],
        );
        refused(
            "SELECT a, count(*) INTO x FROM t GROUP BY a",
            &["SELECT INTO"],
        );
        refused("SELECT a, count(*) FROM t GROUP BY ROLLUP (a)", &["ROLLUP"]);
        refused("SELECT a, count(*) FROM t GROUP BY CUBE (a)", &["CUBE"]);
        refused(
            "SELECT a, count(*) FROM t GROUP BY GROUPING SETS ((a), ())",
            &["GROUPING SETS"],
        );
        refused("SELECT a, count(*) FROM t GROUP BY ALL", &["GROUP BY ALL"]);
        refused(
            "SELECT a, count(*) FROM t GROUP BY 'a'",
            &["non-integer constant 'a'"],
        );
        refused(
            "SELECT a, count(*) FROM t GROUP BY 3",
            &["GROUP BY position 3"],
        );
    }

    #[test]
    fn accepts_harmless_clauses() {
        let query = ok("SELECT ALL a, count(*) FROM t GROUP BY a LIMIT ALL");
        assert_eq!(query.keys, strings(&["a"]));
    }

    #[test]
    fn refuses_anything_but_one_plain_table() {
        refused(
            "SELECT t.a, count(*) FROM t JOIN u ON t.id = u.id GROUP BY t.a",
            &["joins are not supported"],
        );
        refused(
            "SELECT t.a, count(*) FROM t LEFT JOIN u USING (id) GROUP BY t.a",
            &["joins are not supported"],
        );
        refused(
            "SELECT a, count(*) FROM t, u GROUP BY a",
            &["joins are not supported"],
        );
        refused(
            "SELECT a, count(*) FROM (SELECT a FROM t) s GROUP BY a",
            &["subqueries are not supported", "in FROM"],
        );
        refused(
            "SELECT a, count(*) FROM LATERAL (SELECT 1 AS a) s GROUP BY a",
            &["LATERAL"],
        );
        refused(
            "SELECT a, count(*) FROM generate_series(1, 10) AS a GROUP BY a",
            &["table functions are not supported", "generate_series"],
        );
        refused(
            "SELECT a, count(*) FROM t TABLESAMPLE SYSTEM (10) GROUP BY a",
            &["TABLESAMPLE"],
        );
        refused("SELECT a, count(*) FROM ONLY t GROUP BY a", &["FROM ONLY"]);
        refused(
            "SELECT x, count(*) FROM t AS s(x) GROUP BY x",
            &["table alias", "column names"],
        );
        refused("SELECT count(*)", &["needs a source table"]);
        refused(
            "SELECT a, count(*) FROM db.s.t GROUP BY a",
            &["db.s.t", "too many parts"],
        );
    }

    #[test]
    fn refuses_subqueries_in_expressions() {
        refused(
            "SELECT a, count(*) FROM t WHERE b IN (SELECT b FROM u) GROUP BY a",
            &["subqueries are not supported", "b IN (SELECT b FROM u)"],
        );
        refused(
            "SELECT a, count(*) FROM t WHERE EXISTS (SELECT 1 FROM u) GROUP BY a",
            &["subqueries are not supported", "EXISTS"],
        );
        refused(
            "SELECT a, (SELECT max(b) FROM u) AS m, count(*) FROM t GROUP BY a",
            &["subqueries are not supported", "(SELECT max(b) FROM u)"],
        );
        refused(
            "SELECT a, sum((SELECT 1)) FROM t GROUP BY a",
            &["subqueries are not supported"],
        );
    }

    #[test]
    fn refuses_window_functions() {
        refused(
            "SELECT a, row_number() OVER (ORDER BY a) AS rn, count(*) FROM t GROUP BY a",
            &["window functions are not supported (row_number() OVER ...)"],
        );
        refused(
            "SELECT a, sum(x) OVER (PARTITION BY a) FROM t",
            &["window functions are not supported (sum(x) OVER ...)"],
        );
    }

    #[test]
    fn refuses_star() {
        refused("SELECT *, count(*) FROM t", &["SELECT *"]);
        refused("SELECT t.*, count(*) FROM t", &["SELECT t.*"]);
    }

    #[test]
    fn refuses_unsupported_aggregates_by_name() {
        for call in [
            "array_agg(b)",
            "string_agg(b, ',')",
            "json_agg(b)",
            "jsonb_agg(b)",
            "mode() WITHIN GROUP (ORDER BY b)",
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY b)",
            "bit_or(b)",
        ] {
            let name = call.split('(').next().unwrap();
            refused(
                &format!("SELECT a, {call} AS x FROM t GROUP BY a"),
                &[&format!("aggregate {name}() is not supported")],
            );
        }
    }

    #[test]
    fn refuses_aggregate_call_forms_that_cannot_be_maintained() {
        refused(
            "SELECT a, count(*) FILTER (WHERE b > 0) FROM t GROUP BY a",
            &["FILTER", "count(*) FILTER (WHERE b > 0)"],
        );
        refused(
            "SELECT a, sum(DISTINCT b) FROM t GROUP BY a",
            &["DISTINCT is only supported in count", "sum(DISTINCT b)"],
        );
        refused(
            "SELECT a, max(b ORDER BY c) FROM t GROUP BY a",
            &["ORDER BY", "max(b ORDER BY c)"],
        );
        refused(
            "SELECT a, max(b) WITHIN GROUP (ORDER BY c) FROM t GROUP BY a",
            &["WITHIN GROUP"],
        );
        refused(
            "SELECT a, count() FROM t GROUP BY a",
            &["count()", "exactly one argument"],
        );
        refused(
            "SELECT a, avg(b, c) FROM t GROUP BY a",
            &["avg(b, c)", "exactly one argument"],
        );
        refused("SELECT a, sum(*) FROM t GROUP BY a", &["sum(*)"]);
        refused(
            "SELECT a, count(DISTINCT *) FROM t GROUP BY a",
            &["count(DISTINCT *)"],
        );
    }

    #[test]
    fn refuses_nested_and_misplaced_aggregates() {
        refused(
            "SELECT a, sum(x) + 1 AS s FROM t GROUP BY a",
            &["aggregates must be top-level select items", "sum(x) + 1"],
        );
        refused(
            "SELECT a, round(avg(x)) AS r FROM t GROUP BY a",
            &["aggregates must be top-level select items", "round(avg(x))"],
        );
        refused(
            "SELECT a, avg(sum(x)) AS r FROM t GROUP BY a",
            &[
                "aggregates must be top-level select items",
                "found sum(x) in avg(sum(x))",
            ],
        );
        refused(
            "SELECT a, count(*) FROM t WHERE sum(x) > 0 GROUP BY a",
            &["not allowed in WHERE", "sum(x)"],
        );
        refused(
            "SELECT count(*) FROM t GROUP BY max(x)",
            &["not allowed in GROUP BY", "max(x)"],
        );
        refused(
            "SELECT a, count(*) AS n FROM t GROUP BY a, 2",
            &["not allowed in GROUP BY", "GROUP BY 2"],
        );
        refused(
            "SELECT a, count(*) AS n FROM t GROUP BY a, n",
            &["not allowed in GROUP BY", "GROUP BY n"],
        );
    }

    #[test]
    fn parenthesized_top_level_aggregate_is_still_top_level() {
        let query = ok("SELECT a, (count(*)) FROM t GROUP BY a");
        assert_eq!(query.outputs[1], agg("count", AggKind::CountStar, None));
    }

    #[test]
    fn refuses_volatile_and_unknown_functions() {
        for (expr, label) in [
            ("now()", "now()"),
            ("current_timestamp", "current_timestamp"),
            ("CURRENT_DATE", "current_date"),
            ("current_time", "current_time"),
            ("localtimestamp", "localtimestamp"),
            ("clock_timestamp()", "clock_timestamp()"),
            ("statement_timestamp()", "statement_timestamp()"),
            ("transaction_timestamp()", "transaction_timestamp()"),
            ("random()", "random()"),
            ("setseed(0.5)", "setseed()"),
            ("nextval('s')", "nextval()"),
            ("currval('s')", "currval()"),
            ("gen_random_uuid()", "gen_random_uuid()"),
            ("pg_sleep(1)", "pg_sleep()"),
            ("txid_current()", "txid_current()"),
            ("current_setting('x')", "current_setting()"),
            ("set_config('x', 'y', false)", "set_config()"),
            ("my_udf(b)", "my_udf()"),
            ("pg_catalog.lower(b)", "pg_catalog.lower()"),
            ("beacon.sum(b)", "beacon.sum()"),
        ] {
            let message = [
                format!("function {label} is not allowed"),
                "deterministic".into(),
            ];
            let needles: Vec<&str> = message.iter().map(String::as_str).collect();
            refused(
                &format!("SELECT a, count(*) FROM t WHERE b < {expr} GROUP BY a"),
                &needles,
            );
            refused(
                &format!("SELECT a, sum({expr}) FROM t GROUP BY a"),
                &needles,
            );
            refused(
                &format!("SELECT {expr} AS k, count(*) FROM t GROUP BY 1"),
                &needles,
            );
        }
    }

    #[test]
    fn refuses_keywords_that_read_the_session_state() {
        for keyword in ["current_role", "CURRENT_SCHEMA", "current_user", "user"] {
            refused(
                &format!("SELECT a, count(*) FROM t WHERE owner = {keyword} GROUP BY a"),
                &[&format!(
                    "function {} is not allowed",
                    keyword.to_ascii_lowercase()
                )],
            );
        }
        let query = ok("SELECT \"current_role\", count(*) FROM t GROUP BY 1");
        assert_eq!(query.keys, strings(&["\"current_role\""]));
    }

    #[test]
    fn refuses_literals_that_mean_the_current_time() {
        for sql in [
            "SELECT a, count(*) FROM t WHERE ts > 'today'::date GROUP BY a",
            "SELECT a, count(*) FROM t WHERE ts > date 'Today' GROUP BY a",
            "SELECT a, count(*) FROM t WHERE ts >= 'now' GROUP BY a",
            "SELECT a, count(*) FROM t WHERE ts BETWEEN 'yesterday' AND 'tomorrow 10:00' GROUP BY a",
            "SELECT a, count(*) FROM t WHERE day IN ('today') GROUP BY a",
            "SELECT a, max(coalesce(closed_at, 'now')) FROM t GROUP BY a",
            "SELECT date_trunc('day', ' NOW ') AS d, count(*) FROM t GROUP BY 1",
        ] {
            refused(sql, &["is not allowed", "current time"]);
        }
        let query = ok(
            "SELECT CASE WHEN ts > x THEN 'today' ELSE 'older' END AS age, \
             count(*) FROM t WHERE note LIKE '%today%' AND lower(kind) <> 'now-ish' GROUP BY 1",
        );
        assert_eq!(
            query.keys,
            strings(&["CASE WHEN ts > x THEN 'today' ELSE 'older' END"])
        );
    }

    #[test]
    fn refuses_unsupported_expression_forms() {
        refused(
            "SELECT a, count(*) FROM t WHERE b = $1 GROUP BY a",
            &["placeholders ($1)"],
        );
        refused(
            "SELECT a, count(*) FROM t WHERE b ~ 'x' GROUP BY a",
            &["operator ~"],
        );
        refused(
            "SELECT a, count(*) FROM t WHERE lower(DISTINCT b) = 'x' GROUP BY a",
            &["lower() is not an aggregate"],
        );
    }

    #[test]
    fn refuses_non_key_select_items() {
        refused(
            "SELECT a, b, count(*) FROM t GROUP BY a",
            &["column \"b\" must appear in GROUP BY"],
        );
        refused(
            "SELECT b, count(*) FROM t",
            &["column \"b\" must appear in GROUP BY"],
        );
        refused(
            "SELECT lower(a), count(*) FROM t GROUP BY a",
            &["lower(a) must appear in GROUP BY"],
        );
    }

    #[test]
    fn refuses_queries_without_aggregates() {
        refused("SELECT a FROM t GROUP BY a", &["at least one aggregate"]);
        refused("SELECT a, lower(b) FROM t", &["at least one aggregate"]);
    }

    #[test]
    fn refuses_bad_output_names() {
        refused(
            "SELECT count(*), count(x) FROM t",
            &["output column name \"count\" appears twice", "AS"],
        );
        refused(
            "SELECT a AS n, count(*) AS n FROM t GROUP BY a",
            &["\"n\" appears twice"],
        );
        refused(
            "SELECT a AS _a, count(*) FROM t GROUP BY a",
            &["\"_a\"", "reserves"],
        );
        refused(
            "SELECT _a, count(*) FROM t GROUP BY _a",
            &["\"_a\"", "reserves"],
        );
        refused(
            "SELECT a + 1, count(*) FROM t GROUP BY a + 1",
            &["a + 1 has no name", "alias"],
        );
        refused(
            "SELECT a::text || 'x', count(*) FROM t GROUP BY 1",
            &["has no name"],
        );
    }

    #[test]
    fn refuses_columns_of_other_tables() {
        refused(
            "SELECT u.a, count(*) FROM t GROUP BY u.a",
            &[
                "u.a does not refer to the source table",
                "qualify columns with t",
            ],
        );
        refused(
            "SELECT a, count(*) FROM t AS x WHERE t.b > 0 GROUP BY a",
            &[
                "t.b does not refer to the source table",
                "qualify columns with x",
            ],
        );
        refused(
            "SELECT a, count(*) FROM s.t WHERE other.t.b > 0 GROUP BY a",
            &["other.t.b"],
        );
        refused(
            "SELECT a, sum(u.b) FROM t GROUP BY a",
            &["u.b does not refer to the source table"],
        );
    }

    #[test]
    fn at_time_zone_keys_are_allowed() {
        let q = analyze(
            "SELECT date_trunc('minute', _time AT TIME ZONE 'UTC') AS minute, count(*) AS n FROM events GROUP BY 1",
        )
        .unwrap();
        assert_eq!(
            q.keys,
            vec!["date_trunc('minute', _time AT TIME ZONE 'UTC')".to_string()]
        );
        assert_eq!(q.columns, vec!["_time".to_string()]);
    }
}
