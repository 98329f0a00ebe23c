//! The expressions of a continuous query: checked and normalized into what the capture
//! code can run against a transition table, then rendered.

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

/// Keywords PostgreSQL evaluates as the current time, user or schema; unquoted,
/// they are never column names. sqlparser reads most of them as calls, but
/// some (`current_role`, `current_schema`) as identifiers, which would
/// otherwise pass for columns; the full list keeps that from depending on
/// which ones a sqlparser version special-cases.
pub(super) const SQL_VALUE_FUNCTIONS: &[&str] = &[
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
    pub(super) source: Source,
    pub(super) columns: BTreeSet<String>,
}

impl Cx {
    /// Validates `expr` and rewrites it in place into the form the capture code
    /// can run against a transition table: column references unqualified and
    /// case-folded, function names case-folded.
    pub(super) fn normalize(&mut self, expr: &mut Expr, place: Place) -> Result<(), Refusal> {
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

    pub(super) fn normalize_call(&mut self, f: &mut Function, place: Place) -> Result<(), Refusal> {
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
    pub(super) fn operand(&mut self, expr: &mut Expr, place: Place) -> Result<(), Refusal> {
        reject_moving_literal(expr)?;
        self.normalize(expr, place)
    }

    /// The expression as SQL the capture code can run, or the reason it can't.
    pub(super) fn render(&mut self, expr: &Expr, place: Place) -> Result<String, Refusal> {
        let mut expr = unparenthesized(expr).clone();
        self.normalize(&mut expr, place)?;
        text::render::expression(&expr, &crate::query::analyze::LIMITS)
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

pub(super) fn is_allowed_operator(op: &BinaryOperator) -> bool {
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
