//! Accepted events as one typed array per column, so a whole batch is one
//! `INSERT … SELECT unnest($1), unnest($2), …`: PostgreSQL receives binary arrays instead
//! of re-parsing JSON row by row, which is where a JSON-record insert spends its time.
//! Set-returning calls in the select list run in lockstep without materializing rows.

use super::infer::{timestamp_micros, ColumnType, ScalarType};
use crate::names::quote_ident;
use pgrx::datum::DatumWithOid;
use pgrx::datum::TimestampWithTimeZone;
use serde_json::Value;

enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<TimestampWithTimeZone>>),
    /// Text input, cast in SQL: text, numeric, jsonb and every array type.
    Text(Vec<Option<String>>),
}

pub struct Column {
    pub name: String,
    ty: ColumnType,
    values: Values,
}

impl Column {
    pub fn new(name: String, ty: ColumnType) -> Column {
        let values = match ty {
            ColumnType::Scalar(ScalarType::BigInt) => Values::Int(Vec::new()),
            ColumnType::Scalar(ScalarType::Double) => Values::Float(Vec::new()),
            ColumnType::Scalar(ScalarType::Boolean) => Values::Bool(Vec::new()),
            ColumnType::Scalar(ScalarType::Timestamptz) => Values::Time(Vec::new()),
            _ => Values::Text(Vec::new()),
        };
        Column { name, ty, values }
    }

    fn len(&self) -> usize {
        match &self.values {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Time(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }

    /// Pads with NULLs up to `rows`: events that lack this property.
    pub fn fill_to(&mut self, rows: usize) {
        match &mut self.values {
            Values::Int(v) => v.resize(rows, None),
            Values::Float(v) => v.resize(rows, None),
            Values::Bool(v) => v.resize(rows, None),
            Values::Time(v) => v.resize(rows, None),
            Values::Text(v) => v.resize(rows, None),
        }
    }

    /// Appends a value already checked by `infer::fit` for this column's type.
    pub fn push(&mut self, rows_before: usize, value: &Value) {
        if self.len() < rows_before {
            self.fill_to(rows_before);
        }
        match &mut self.values {
            Values::Int(v) => v.push(value.as_i64()),
            Values::Float(v) => v.push(value.as_f64()),
            Values::Bool(v) => v.push(value.as_bool()),
            Values::Time(v) => v.push(
                value
                    .as_str()
                    .and_then(timestamp_micros)
                    .and_then(|micros| TimestampWithTimeZone::try_from(micros).ok()),
            ),
            Values::Text(v) => v.push(text_input(value, self.ty)),
        }
    }

    /// The values of a timestamptz column as PostgreSQL microseconds (None: NULL, which
    /// `_time` turns into the transaction's start); nothing for other columns.
    pub fn time_micros(&self) -> Option<impl Iterator<Item = Option<i64>> + '_> {
        match &self.values {
            Values::Time(v) => Some(v.iter().map(|t| t.map(pgrx::pg_sys::TimestampTz::from))),
            _ => None,
        }
    }

    pub fn param(self) -> DatumWithOid<'static> {
        match self.values {
            Values::Int(v) => v.into(),
            Values::Float(v) => v.into(),
            Values::Bool(v) => v.into(),
            Values::Time(v) => v.into(),
            Values::Text(v) => v.into(),
        }
    }

    /// The column's first value, for a one-event INSERT: a scalar of the type `param`'s
    /// array holds.
    pub fn first_param(self) -> DatumWithOid<'static> {
        fn first<T>(values: Vec<Option<T>>) -> Option<T> {
            values.into_iter().next().flatten()
        }
        match self.values {
            Values::Int(v) => first(v).into(),
            Values::Float(v) => first(v).into(),
            Values::Bool(v) => first(v).into(),
            Values::Time(v) => first(v).into(),
            Values::Text(v) => first(v).into(),
        }
    }

    /// The SQL expression that turns unnest's element into the column's type.
    pub fn select_expr(&self, element: &str) -> String {
        match self.values {
            Values::Text(_) if self.ty != ColumnType::Scalar(ScalarType::Text) => {
                format!("{element}::{}", self.ty.sql())
            }
            _ => element.to_string(),
        }
    }

    pub fn array_type(&self) -> String {
        match self.ty {
            ColumnType::Scalar(ScalarType::BigInt) => "bigint[]".into(),
            ColumnType::Scalar(ScalarType::Double) => "double precision[]".into(),
            ColumnType::Scalar(ScalarType::Boolean) => "boolean[]".into(),
            ColumnType::Scalar(ScalarType::Timestamptz) => "timestamptz[]".into(),
            _ => "text[]".into(),
        }
    }

    pub fn quoted(&self) -> String {
        quote_ident(&self.name)
    }
}

fn text_input(value: &Value, ty: ColumnType) -> Option<String> {
    match (value, ty) {
        (Value::Null, _) => None,
        (_, ColumnType::Scalar(ScalarType::Jsonb)) => Some(value.to_string()),
        (Value::Array(items), ColumnType::Array(_)) => Some(array_literal(items)),
        _ => Some(scalar_text(value)),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "true".into(),
        Value::Bool(false) => "false".into(),
        other => other.to_string(),
    }
}

/// A PostgreSQL array literal: every element double-quoted with `"` and `\` escaped, so
/// no element text can end the literal early or change its shape.
fn array_literal(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if item.is_null() {
            out.push_str("NULL");
            continue;
        }
        out.push('"');
        for ch in scalar_text(item).chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn array_literals_escape_quotes_and_backslashes() {
        assert_eq!(
            array_literal(&[json!("a\"b"), json!("c\\d"), Value::Null, json!("}{,")]),
            r#"{"a\"b","c\\d",NULL,"}{,"}"#
        );
        assert_eq!(array_literal(&[json!(1), json!(2.5)]), r#"{"1","2.5"}"#);
        assert_eq!(array_literal(&[]), "{}");
    }

    #[test]
    fn text_inputs_by_type() {
        let jsonb = ColumnType::Scalar(ScalarType::Jsonb);
        assert_eq!(text_input(&json!("x"), jsonb).as_deref(), Some("\"x\""));
        assert_eq!(
            text_input(&json!({"a": [1]}), jsonb).as_deref(),
            Some("{\"a\":[1]}")
        );
        let text = ColumnType::Scalar(ScalarType::Text);
        assert_eq!(text_input(&json!("x"), text).as_deref(), Some("x"));
        assert_eq!(text_input(&Value::Null, text), None);
        let numeric = ColumnType::Scalar(ScalarType::Numeric);
        assert_eq!(
            text_input(&json!(123456789012345678901234567890u128), numeric).as_deref(),
            Some("123456789012345678901234567890")
        );
    }

    #[test]
    fn missing_values_pad_with_nulls() {
        let mut c = Column::new("n".into(), ColumnType::Scalar(ScalarType::BigInt));
        c.push(2, &json!(7));
        c.fill_to(4);
        match c.values {
            Values::Int(v) => assert_eq!(v, vec![None, None, Some(7), None]),
            _ => unreachable!(),
        }
    }
}
