//! Names, types, operators and literals as every surface checks them, and the small
//! rewrites the walk makes.

use super::super::super::Refusal;
use super::super::parse::excerpt;
use crate::sqlident::fold;
use sqlparser::ast::{
    ArrayElemTypeDef, BinaryOperator, DataType, DateTimeField, DollarQuotedString, ExactNumberInfo,
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    Interval, ObjectName, ObjectNamePart, TimezoneInfo, Value, ValueWithSpan,
};
use std::fmt;

pub(crate) fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::object(message))
}

/// Constructs PostgreSQL's grammar turns into expressions before any function lookup
/// (there is no `pg_catalog.coalesce`), so they stay unqualified and must be written
/// unquoted (`"coalesce"(x)` is an ordinary function lookup).
pub const KEYWORD_CONSTRUCTS: &[&str] =
    &["coalesce", "nullif", "greatest", "least", "row", "array"];

/// Keywords that read the clock: harmless, and often needed to bound time.
pub const CLOCK_KEYWORDS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
];

/// Keywords that read the session's identity or settings, which are none of an end
/// user's business (they would show the server's role names). Unquoted, they are never
/// column names, though sqlparser reads some of them as identifiers.
pub const SESSION_KEYWORDS: &[&str] = &[
    "current_user",
    "session_user",
    "user",
    "current_role",
    "current_schema",
    "current_catalog",
    "system_user",
];

pub const ALLOWED_TYPES_HINT: &str = "int, integer, smallint, bigint, int2, int4, int8, numeric, \
     decimal, real, double precision, float4, float8, text, varchar, char, boolean, date, time, \
     timestamp, timestamptz, interval, json, jsonb, uuid and arrays of these";

pub fn quoted(value: &str) -> Ident {
    Ident::with_quote('"', value)
}

/// Refuses identifiers that sqlparser would not print back as PostgreSQL read them: its
/// printer does not double a `"` that follows a backslash, so a quoted identifier
/// containing `\"` would end early when printed.
pub fn check_ident(ident: &Ident) -> Result<(), Refusal> {
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

/// The name's parts, each checked; `pg_catalog.pg_sleep` and `"pg_catalog"."pg_sleep"`
/// come out the same after [`fold`].
pub fn name_parts(name: &ObjectName) -> Result<Vec<&Ident>, Refusal> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => check_ident(ident).map(|()| ident),
            ObjectNamePart::Function(_) => refuse(format!("the name {} is not allowed", name)),
        })
        .collect()
}

pub fn label(parts: &[&Ident]) -> String {
    parts.iter().map(|p| fold(p)).collect::<Vec<_>>().join(".")
}

pub fn catalog_name(schema: &str, function: &str) -> ObjectName {
    ObjectName::from(vec![Ident::new(schema), quoted(function)])
}

pub fn catalog_call(function: &str, args: Vec<Expr>) -> Expr {
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

pub fn take(expr: &mut Expr) -> Expr {
    std::mem::replace(expr, Expr::Value(Value::Null.into()))
}

pub fn parenthesize(expr: &mut Box<Expr>) {
    let inner = take(expr);
    **expr = Expr::Nested(Box::new(inner));
}

/// Whether the printed form of `expr` starts with an operator character. sqlparser
/// prints prefix operators without a space, so `- -1` would come out as the comment
/// `--1`, and `@ -1` as the operator `@-`.
pub fn starts_with_operator(expr: &Expr) -> bool {
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

/// The built-in types `beacon.query` and continuous queries may cast to.
pub fn check_type(data_type: &DataType) -> Result<(), Refusal> {
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

pub fn check_datetime_field(field: &DateTimeField) -> Result<(), Refusal> {
    match field {
        // EXTRACT('epoch' FROM x) is valid PostgreSQL; a plain word prints back exactly
        // even in single quotes.
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

pub fn check_interval(interval: &Interval) -> Result<(), Refusal> {
    for field in [&interval.leading_field, &interval.last_field]
        .into_iter()
        .flatten()
    {
        check_datetime_field(field)?;
    }
    Ok(())
}

/// Whether an interval is the plain `interval '...'` form: a string, no fields.
pub fn plain_interval(interval: &Interval) -> bool {
    interval.leading_field.is_none()
        && interval.leading_precision.is_none()
        && interval.last_field.is_none()
        && interval.fractional_seconds_precision.is_none()
        && matches!(&*interval.value, Expr::Value(value) if value.value.clone().into_string().is_some())
}

/// `beacon.query`'s operators (OPERATOR(schema.op), which picks an operator by schema,
/// is not among them).
pub fn query_operator(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(
        op,
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
            | B::Overlaps
    )
}

/// `beacon.query`'s prefix operators.
pub fn query_unary_operator(op: sqlparser::ast::UnaryOperator) -> bool {
    use sqlparser::ast::UnaryOperator as U;
    matches!(
        op,
        U::Plus | U::Minus | U::Not | U::BitwiseNot | U::PGAbs | U::PGSquareRoot | U::PGCubeRoot
    )
}

pub fn is_comparison(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(op, B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq)
}

/// Checks a literal of `beacon.query` and keeps strings of every spelling as their value,
/// which the renderer prints.
pub fn query_literal(value: &mut ValueWithSpan) -> Result<(), Refusal> {
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
