//! Literals and types as a filter may write them, and as they are rendered.

use super::*;
use crate::sqlident::folded_parts;
use sqlparser::ast::{CharacterLength, ExactNumberInfo, ObjectName, TimezoneInfo};

pub(super) const TYPES_HINT: &str = "text, varchar, integer, bigint, smallint, numeric, real, \
     double precision, boolean, date, timestamp, timestamptz, interval, json, jsonb";

/// The literal as it will be rendered. String literals of every spelling
/// (E'..', $$..$$) are kept as their value, which the one renderer prints.
pub(super) fn literal(value: &Value) -> Result<Value, Refusal> {
    match value {
        Value::Number(written, false) => {
            // sqlparser accepts `1_000`, which PostgreSQL reads only from
            // version 16 on; the separators carry no meaning, so drop them.
            let digits: String = written.chars().filter(|&c| c != '_').collect();
            let numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                && digits
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
            if !numeric {
                return Err(refusal(format!(
                    "the number {} is not allowed in a filter",
                    excerpt(written)
                )));
            }
            Ok(Value::Number(digits, false))
        }
        Value::Boolean(_) | Value::Null => Ok(value.clone()),
        Value::Placeholder(placeholder) => Err(refusal(format!(
            "parameters ({}) are not allowed in a filter; write the value inline",
            excerpt(placeholder)
        ))),
        _ => Ok(Value::SingleQuotedString(string_literal(value)?)),
    }
}

pub(super) fn string_literal(value: &Value) -> Result<String, Refusal> {
    let text = match value {
        Value::SingleQuotedString(text)
        | Value::EscapedStringLiteral(text)
        | Value::UnicodeStringLiteral(text) => text,
        Value::DollarQuotedString(dollar) => &dollar.value,
        other => {
            return Err(refusal(format!(
                "the literal {} is not allowed in a filter; use a number, a single-quoted \
                 string, TRUE, FALSE or NULL",
                excerpt(other)
            )));
        }
    };
    if text.contains('\0') {
        return Err(refusal(
            "string literals in a filter cannot contain NUL characters",
        ));
    }
    Ok(text.clone())
}

pub(super) fn catalog_type(name: &str) -> DataType {
    DataType::Custom(
        ObjectName::from(vec![Ident::new("pg_catalog"), Ident::new(name)]),
        vec![],
    )
}

/// The type as it will be rendered, if a filter may use it. Types PostgreSQL
/// spells as keywords (INTEGER, TIMESTAMP, ...) always mean the built-in type;
/// the others are qualified with pg_catalog so the search path cannot
/// substitute a same-named type.
pub(super) fn allowed_type(data_type: &DataType) -> Result<DataType, Refusal> {
    use DataType as T;
    let refused = || {
        refusal(format!(
            "the type {} is not allowed in a filter (allowed: {TYPES_HINT})",
            excerpt(data_type.to_string().to_ascii_lowercase())
        ))
    };
    Ok(match data_type {
        T::Text => catalog_type("text"),
        T::Varchar(length) | T::CharacterVarying(length) => match length {
            None | Some(CharacterLength::IntegerLength { unit: None, .. }) => T::Varchar(*length),
            Some(_) => return Err(refused()),
        },
        T::Int(None) | T::Integer(None) | T::Int4(None) => T::Integer(None),
        T::BigInt(None) | T::Int8(None) => T::BigInt(None),
        T::SmallInt(None) | T::Int2(None) => T::SmallInt(None),
        T::Numeric(info) | T::Decimal(info) => T::Numeric(*info),
        T::Real | T::Float4 => T::Real,
        T::DoublePrecision | T::Float8 => T::DoublePrecision,
        T::Bool | T::Boolean => T::Boolean,
        T::Date => catalog_type("date"),
        T::Timestamp(precision, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            T::Timestamp(*precision, TimezoneInfo::None)
        }
        T::Timestamp(precision, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => {
            T::Timestamp(*precision, TimezoneInfo::WithTimeZone)
        }
        T::Interval {
            fields: None,
            precision: None,
        } => data_type.clone(),
        T::JSON => catalog_type("json"),
        T::JSONB => catalog_type("jsonb"),
        // Quoted or schema-qualified names, and names sqlparser has no
        // variant for.
        T::Custom(name, modifiers) if modifiers.is_empty() => {
            let spelled = match folded_parts(name).as_deref() {
                Some([name]) => name.clone(),
                Some([schema, name]) if schema == "pg_catalog" => name.clone(),
                _ => return Err(refused()),
            };
            let builtin = match spelled.as_str() {
                "text" => T::Text,
                "varchar" => T::Varchar(None),
                "int" | "integer" | "int4" => T::Integer(None),
                "bigint" | "int8" => T::BigInt(None),
                "smallint" | "int2" => T::SmallInt(None),
                "numeric" | "decimal" => T::Numeric(ExactNumberInfo::None),
                "real" | "float4" => T::Real,
                "float8" => T::DoublePrecision,
                "bool" | "boolean" => T::Boolean,
                "date" => T::Date,
                "timestamp" => T::Timestamp(None, TimezoneInfo::None),
                "timestamptz" => T::Timestamp(None, TimezoneInfo::Tz),
                "interval" => T::Interval {
                    fields: None,
                    precision: None,
                },
                "json" => T::JSON,
                "jsonb" => T::JSONB,
                _ => return Err(refused()),
            };
            allowed_type(&builtin)?
        }
        _ => return Err(refused()),
    })
}
