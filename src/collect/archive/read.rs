//! Reading an archive file back as `to_jsonb` would have rendered the archived rows.

use super::types::{
    bytea_text, float_json, format_date, format_decimal, format_timestamp, number_json,
    numeric_json, pg_to_unix_micros, unix_to_pg_micros,
};
use super::write::KIND_KEY;
use crate::error::{BeaconError, BeaconResult};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::JsonB;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

type Row = (i64, TimestampWithTimeZone, Option<String>, JsonB);

fn corrupted(path: &Path, err: impl std::fmt::Display) -> BeaconError {
    BeaconError::Corrupted(format!(
        "archive file \"{}\" could not be read: {err}",
        path.display()
    ))
}

/// Rows of the file whose `_time` is in `[from, to)` (a missing bound is open), in file
/// order, as `(_id, _time, _user, properties)`. `names` maps column names to property
/// names; other columns keep their name; `_id`, `_time` and `_user` are not properties.
/// Row groups whose `_time` statistics lie outside the range are not read.
pub fn read_rows(
    path: &Path,
    from: Option<TimestampWithTimeZone>,
    to: Option<TimestampWithTimeZone>,
    names: &HashMap<String, String>,
) -> BeaconResult<Vec<Row>> {
    let file = File::open(path).map_err(|e| {
        BeaconError::Io(format!(
            "archive: could not open \"{}\": {e}",
            path.display()
        ))
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupted(path, e))?;
    let from = from.map(|t| pg_to_unix_micros(t.into_inner()));
    let to = to.map(|t| pg_to_unix_micros(t.into_inner()));
    let schema = builder.schema().clone();
    let column = |name: &str| schema.fields().iter().position(|f| f.name() == name);
    let (Some(id_col), Some(time_col)) = (column("_id"), column("_time")) else {
        return Err(corrupted(path, "it has no _id or _time column"));
    };
    let user_col = column("_user");
    let groups = {
        let metadata = builder.metadata();
        let leaf = builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().parts() == ["_time"]);
        (0..metadata.num_row_groups())
            .filter(|&g| {
                let stats = leaf.and_then(|l| metadata.row_group(g).column(l).statistics());
                match stats {
                    Some(Statistics::Int64(s)) => {
                        let below =
                            matches!((s.max_opt(), from), (Some(max), Some(from)) if *max < from);
                        let above =
                            matches!((s.min_opt(), to), (Some(min), Some(to)) if *min >= to);
                        !below && !above
                    }
                    _ => true,
                }
            })
            .collect::<Vec<_>>()
    };
    let reader = builder
        .with_row_groups(groups)
        .with_batch_size(8192)
        .build()
        .map_err(|e| corrupted(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| corrupted(path, e))?;
        read_batch(
            &batch,
            (id_col, time_col, user_col),
            from,
            to,
            names,
            &mut out,
        )
        .map_err(|e| corrupted(path, e))?;
    }
    Ok(out)
}

fn read_batch(
    batch: &RecordBatch,
    (id_col, time_col, user_col): (usize, usize, Option<usize>),
    from: Option<i64>,
    to: Option<i64>,
    names: &HashMap<String, String>,
    out: &mut Vec<Row>,
) -> Result<(), String> {
    let ids = batch
        .column(id_col)
        .as_primitive_opt::<Int64Type>()
        .ok_or("_id is not bigint")?;
    let times = batch
        .column(time_col)
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or("_time is not a timestamp")?;
    let users = match user_col {
        Some(c) => Some(
            batch
                .column(c)
                .as_string_opt::<i32>()
                .ok_or("_user is not text")?,
        ),
        None => None,
    };
    let schema = batch.schema();
    let properties: Vec<(usize, String)> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != id_col && *i != time_col && Some(*i) != user_col)
        .map(|(i, f)| {
            let name = names.get(f.name()).unwrap_or(f.name()).clone();
            (i, name)
        })
        .collect();
    for row in 0..batch.num_rows() {
        if times.is_null(row) || ids.is_null(row) {
            return Err("a row has no _id or _time".into());
        }
        let time = times.value(row);
        if from.is_some_and(|f| time < f) || to.is_some_and(|t| time >= t) {
            continue;
        }
        let mut object = Map::new();
        for (i, name) in &properties {
            let field = schema.field(*i);
            object.insert(name.clone(), value(batch.column(*i).as_ref(), field, row)?);
        }
        let time = TimestampWithTimeZone::try_from(unix_to_pg_micros(time))
            .map_err(|e| format!("_time out of range: {e}"))?;
        let user = users.and_then(|u| (!u.is_null(row)).then(|| u.value(row).to_owned()));
        out.push((ids.value(row), time, user, JsonB(Value::Object(object))));
    }
    Ok(())
}

/// The value at `row` of `array` (of `field`'s type) as `to_jsonb` renders it.
fn value(array: &dyn Array, field: &Field, row: usize) -> Result<Value, String> {
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            float_json(f64::from(v), v.to_string())
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            float_json(v, v.to_string())
        }
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => Value::String(format_timestamp(
            array.as_primitive::<TimestampMicrosecondType>().value(row),
            tz.is_some(),
        )),
        DataType::Date32 => {
            Value::String(format_date(array.as_primitive::<Date32Type>().value(row)))
        }
        DataType::Decimal128(_, scale) => number_json(&format_decimal(
            array.as_primitive::<Decimal128Type>().value(row),
            *scale,
        )),
        DataType::Utf8 => {
            let text = array.as_string::<i32>().value(row);
            if field.extension_type_name() == Some("arrow.json") {
                serde_json::from_str(text)
                    .map_err(|e| format!("bad JSON in {}: {e}", field.name()))?
            } else if field.metadata().get(KIND_KEY).map(String::as_str) == Some("numeric") {
                numeric_json(text)
            } else {
                Value::String(text.to_owned())
            }
        }
        DataType::Binary => Value::String(bytea_text(array.as_binary::<i32>().value(row))),
        DataType::List(element) => {
            let values = array.as_list::<i32>().value(row);
            let mut items = Vec::with_capacity(values.len());
            for i in 0..values.len() {
                items.push(value(values.as_ref(), element, i)?);
            }
            Value::Array(items)
        }
        other => {
            return Err(format!(
                "column {} has unexpected type {other}",
                field.name()
            ))
        }
    })
}
