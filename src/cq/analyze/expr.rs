//! The expressions of a continuous query: checked and normalized by the shared walker
//! (see `surface`) into what the capture code can run against a transition table, then
//! rendered; what is a continuous query's own is here: which aggregates it maintains,
//! where they may stand, and which literals would mean the current time.

use super::*;

/// Aggregates PostgreSQL has but pg_beacon cannot maintain from deltas; listed so
/// the refusal can say "aggregate" instead of treating them as unknown functions.
pub(super) const UNSUPPORTED_AGGREGATES: &[&str] = &[
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

/// Words PostgreSQL's date/time input reads as the moment the value is
/// parsed: `'today'::date` or `ts > 'now'` mean something else in each
/// transaction, so the incrementally maintained result would drift.
pub(super) const MOVING_DATETIME_WORDS: &[&str] = &["now", "today", "tomorrow", "yesterday"];

/// Allowed functions whose untyped literal arguments may be read as dates or
/// times (`coalesce(closed_at, 'now')`).
pub(super) const DATETIME_COERCING_FUNCTIONS: &[&str] = &[
    "date_trunc",
    "date_part",
    "coalesce",
    "nullif",
    "greatest",
    "least",
];

pub(super) const SUPPORTED_AGGREGATES_HINT: &str =
    "count, sum, avg, min, max, stddev, variance, bool_and, bool_or, approx_count_distinct";

/// Folding before rendering makes `Country` and `country` render (and so
/// compare as keys) identically, as they are the same column to PostgreSQL.
pub(super) fn folded(ident: &Ident) -> Ident {
    Ident {
        value: fold(ident),
        ..ident.clone()
    }
}

pub(super) fn aggregate_kind(name: &ObjectName) -> Option<AggKind> {
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
pub(super) fn call_label(f: &Function) -> String {
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
pub(super) fn reject_moving_literal(expr: &Expr) -> Result<(), Refusal> {
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

pub(super) fn reject_window(f: &Function) -> Result<(), Refusal> {
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
pub(super) enum Place<'a> {
    Where,
    GroupBy,
    /// A select item or an aggregate's argument; holds the enclosing select
    /// item or aggregate call as written, to show where a nested aggregate was.
    SelectList(&'a str),
}

impl Place<'_> {
    pub(super) fn misplaced_aggregate(self, found: &Function) -> Refusal {
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

/// Collects what the whole query references while its expressions are
/// normalized one by one.
pub(super) struct Cx {
    /// The query's tables, the first one first.
    pub(super) tables: Vec<Source>,
    /// Every column name referenced, of any table.
    pub(super) columns: BTreeSet<String>,
    /// Per table, the columns referenced (joins only).
    pub(super) table_columns: Vec<BTreeSet<String>>,
}

impl Cx {
    pub(super) fn join_mode(&self) -> bool {
        self.tables.len() > 1
    }

    /// The expression as SQL the capture code can run, or the reason it can't.
    pub(super) fn render(&mut self, expr: &Expr, place: Place) -> Result<String, Refusal> {
        let mut expr = unparenthesized(expr).clone();
        Expressions {
            cx: self,
            place,
            walk: Default::default(),
        }
        .normalize(&mut expr)?;
        text::render::expression(&expr, &LIMITS)
    }

    pub(super) fn aggregate(&mut self, f: &Function, kind: AggKind) -> Result<Item, Refusal> {
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

pub(super) fn not_deterministic(label: &str) -> Refusal {
    refusal(format!(
        "function {label} is not allowed: continuous queries need deterministic expressions"
    ))
}

/// Operators whose untyped literal operand may be read as a date or time.
pub(super) fn is_datetime_operator(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(
        op,
        B::Plus | B::Minus | B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq
    )
}

/// Only plain literal kinds are accepted; strings of every spelling are kept as their
/// value, which the one renderer prints in a form that reads the same under any setting.
pub(super) fn reencode_literal(value: &mut Value) -> Result<(), Refusal> {
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
