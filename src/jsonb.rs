//! `jsonb` arguments decoded by walking their binary form with PostgreSQL's own iterator.
//! pgrx's `JsonB` prints the document to text (`jsonb_out`) and parses that text again;
//! on the ingest path that round trip costs as much as storing the events.

use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable,
};
use pgrx::prelude::*;
use serde_json::{Map, Number, Value};

/// A `jsonb` argument as a `serde_json::Value` (numbers keep their exact text).
pub struct JsonbArg(pub Value);

enum Frame {
    Array(Vec<Value>),
    Object(Map<String, Value>, Option<String>),
    /// jsonb stores a top-level scalar as a one-element array flagged rawScalar.
    Scalar(Option<Value>),
}

unsafe fn text(value: &pg_sys::JsonbValue) -> String {
    let s = value.val.string;
    let bytes = std::slice::from_raw_parts(s.val as *const u8, s.len as usize);
    String::from_utf8_lossy(bytes).into_owned()
}

unsafe fn scalar(value: &pg_sys::JsonbValue) -> Value {
    match value.type_ {
        pg_sys::jbvType::jbvString => Value::String(text(value)),
        pg_sys::jbvType::jbvBool => Value::Bool(value.val.boolean),
        pg_sys::jbvType::jbvNumeric => {
            let digits = pgrx::direct_function_call::<&core::ffi::CStr>(
                pg_sys::numeric_out,
                &[Some(pg_sys::Datum::from(value.val.numeric))],
            )
            .expect("numeric_out returns a string");
            digits
                .to_str()
                .ok()
                .and_then(|d| d.parse::<Number>().ok())
                .map_or(Value::Null, Value::Number)
        }
        _ => Value::Null,
    }
}

unsafe fn decode(datum: pg_sys::Datum) -> Value {
    let jsonb = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::Jsonb;
    let mut iterator = pg_sys::JsonbIteratorInit(&mut (*jsonb).root);
    let mut value: pg_sys::JsonbValue = std::mem::zeroed();
    let mut stack: Vec<Frame> = Vec::new();
    let mut result = Value::Null;
    loop {
        let token = pg_sys::JsonbIteratorNext(&mut iterator, &mut value, false);
        let finished = match token {
            pg_sys::JsonbIteratorToken::WJB_DONE => break,
            pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY => {
                let array = value.val.array;
                stack.push(if array.rawScalar {
                    Frame::Scalar(None)
                } else {
                    Frame::Array(Vec::with_capacity(array.nElems.max(0) as usize))
                });
                continue;
            }
            pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT => {
                stack.push(Frame::Object(Map::new(), None));
                continue;
            }
            pg_sys::JsonbIteratorToken::WJB_KEY => {
                if let Some(Frame::Object(_, key)) = stack.last_mut() {
                    *key = Some(text(&value));
                }
                continue;
            }
            pg_sys::JsonbIteratorToken::WJB_VALUE | pg_sys::JsonbIteratorToken::WJB_ELEM => {
                scalar(&value)
            }
            _ => match stack.pop() {
                Some(Frame::Array(items)) => Value::Array(items),
                Some(Frame::Object(map, _)) => Value::Object(map),
                Some(Frame::Scalar(item)) => item.unwrap_or(Value::Null),
                None => Value::Null,
            },
        };
        match stack.last_mut() {
            None => result = finished,
            Some(Frame::Array(items)) => items.push(finished),
            Some(Frame::Object(map, key)) => {
                map.insert(key.take().unwrap_or_default(), finished);
            }
            Some(Frame::Scalar(item)) => *item = Some(finished),
        }
    }
    result
}

impl FromDatum for JsonbArg {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<JsonbArg> {
        (!is_null).then(|| JsonbArg(decode(datum)))
    }
}

impl IntoDatum for JsonbArg {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        pgrx::JsonB(self.0).into_datum()
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

unsafe impl<'fcx> pgrx::callconv::ArgAbi<'fcx> for JsonbArg {
    unsafe fn unbox_arg_unchecked(arg: pgrx::callconv::Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        arg.unbox_arg_using_from_datum()
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(
        arg: pgrx::callconv::Arg<'_, 'fcx>,
    ) -> pgrx::nullable::Nullable<Self> {
        arg.unbox_arg_using_from_datum().into()
    }
}

unsafe impl SqlTranslatable for JsonbArg {
    const TYPE_IDENT: &'static str = pgrx::pgrx_resolved_type!(JsonbArg);
    const TYPE_ORIGIN: pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin =
        pgrx::pgrx_sql_entity_graph::metadata::TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_extern]
    fn jsonb_roundtrip(value: crate::jsonb::JsonbArg) -> String {
        value.0.to_string()
    }

    #[pg_test]
    fn decodes_every_json_shape_like_jsonb_out() {
        let docs = [
            r#"{"a": 1, "b": [true, false, null, "x\"y\\z"], "c": {"d": {"e": []}}, "f": {}}"#,
            r#"[1, -2.50, 1e3, 123456789012345678901234567890.000001, "ünï", [[]]]"#,
            r#""just a string""#,
            "42",
            "null",
            "true",
            r#"{"": "", "Name": 1, "name": 2, "a\u0001b": "\t"}"#,
        ];
        for doc in docs {
            let ours = Spi::get_one_with_args::<String>(
                "SELECT tests.jsonb_roundtrip($1::jsonb)",
                &[doc.into()],
            )
            .unwrap()
            .unwrap();
            let theirs = Spi::get_one_with_args::<bool>(
                "SELECT $1::jsonb = $2::jsonb",
                &[ours.as_str().into(), doc.into()],
            )
            .unwrap();
            assert_eq!(theirs, Some(true), "{doc} came back as {ours}");
        }
    }
}
