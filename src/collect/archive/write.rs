//! Reading one table through an SPI cursor into Arrow record batches.

use super::types::{numeric_kind, parse_decimal, pg_to_unix_days, pg_to_unix_micros};
use super::types::{shape_of, Kind, NumericStats, PgType, Shape};
use crate::error::{BeaconError, BeaconResult};
use crate::names::quote_ident;
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use pgrx::datum::{Date, Timestamp, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::SpiHeapTupleData;
use std::collections::HashMap;
use std::sync::Arc;

/// Field metadata key: the column's type as `format_type` wrote it.
pub const PG_TYPE_KEY: &str = "pg_beacon.type";
/// Field metadata key, set to `numeric` on the text fallback of numeric values, which
/// read back as numbers.
pub const KIND_KEY: &str = "pg_beacon.kind";

/// One column of the table as the archive stores it.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub pg_type: String,
    pub shape: Shape,
    /// bpchar, whose cast to text would strip the padding its output function keeps.
    pub padded: bool,
}

impl Column {
    /// The select-list expression reading it in the form `append` expects.
    pub fn expression(&self) -> String {
        let c = quote_ident(&self.name);
        let cast = |ty: &str| format!("{c}::pg_catalog.{ty}");
        match self.shape {
            Shape::ToJsonb => format!("pg_catalog.to_jsonb({c})::pg_catalog.text"),
            Shape::Scalar(kind) => match native_type(kind) {
                Some(ty) => cast(ty),
                // the output function keeps the padding that a cast to text strips
                None if self.padded => {
                    format!("pg_catalog.textin(pg_catalog.bpcharout({c}))")
                }
                None => cast("text"),
            },
            Shape::List(kind) => match native_type(kind) {
                Some(ty) => cast(&format!("{ty}[]")),
                None => cast("text[]"),
            },
        }
    }

    pub fn field(&self) -> Field {
        let metadata = HashMap::from([(PG_TYPE_KEY.to_owned(), self.pg_type.clone())]);
        let field = match self.shape {
            Shape::Scalar(kind) => scalar_field(&self.name, kind),
            Shape::ToJsonb => scalar_field(&self.name, Kind::Json),
            Shape::List(kind) => Field::new(
                &self.name,
                DataType::List(Arc::new(scalar_field("element", kind))),
                true,
            ),
        };
        let mut all = field.metadata().clone();
        all.extend(metadata);
        field.with_metadata(all)
    }
}

/// The type a value of this kind is fetched as over SPI, when not as text.
fn native_type(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Int16 => "int2",
        Kind::Int32 => "int4",
        Kind::Int64 => "int8",
        Kind::Float32 => "float4",
        Kind::Float64 => "float8",
        Kind::Bool => "bool",
        Kind::TimestampTz => "timestamptz",
        Kind::Timestamp => "timestamp",
        Kind::Date => "date",
        Kind::Binary => "bytea",
        Kind::Decimal { .. } | Kind::NumericText | Kind::Text | Kind::Json | Kind::Other => {
            return None
        }
    })
}

pub fn data_type(kind: Kind) -> DataType {
    match kind {
        Kind::Int16 => DataType::Int16,
        Kind::Int32 => DataType::Int32,
        Kind::Int64 => DataType::Int64,
        Kind::Float32 => DataType::Float32,
        Kind::Float64 => DataType::Float64,
        Kind::Bool => DataType::Boolean,
        Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        Kind::Date => DataType::Date32,
        Kind::Decimal { scale } => DataType::Decimal128(38, scale),
        Kind::Binary => DataType::Binary,
        Kind::NumericText | Kind::Text | Kind::Json | Kind::Other => DataType::Utf8,
    }
}

fn scalar_field(name: &str, kind: Kind) -> Field {
    let field = Field::new(name, data_type(kind), true);
    match kind {
        // parquet's arrow_canonical_extension_types maps it to the JSON logical type
        Kind::Json => field.with_extension_type(arrow_schema::extension::Json::default()),
        Kind::NumericText => {
            field.with_metadata(HashMap::from([(KIND_KEY.to_owned(), "numeric".to_owned())]))
        }
        _ => field,
    }
}

/// The table's columns (pg_attribute, attnum order) and how each is stored in this file:
/// the numeric and multi-dimensional decisions take one aggregate pass per such column.
pub fn columns(relation: &str) -> BeaconResult<Vec<Column>> {
    let oid = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
        &[relation.into()],
    )?
    .ok_or_else(|| BeaconError::UnknownObject(format!("archive: no relation {relation}")))?;
    let attributes: Vec<(String, pg_sys::Oid, String)> = Spi::connect(|client| {
        let rows = client.select(
            &String::from(
                "SELECT a.attname::pg_catalog.text, a.atttypid, \
                        pg_catalog.format_type(a.atttypid, a.atttypmod) \
                   FROM pg_catalog.pg_attribute a \
                  WHERE a.attrelid = $1 AND a.attnum > 0 \
                    AND NOT a.attisdropped ORDER BY a.attnum",
            ),
            None,
            &[oid.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
                row.get::<String>(3)?.unwrap_or_default(),
            ));
        }
        Ok::<_, BeaconError>(out)
    })?;
    let mut columns = Vec::with_capacity(attributes.len());
    for (name, type_oid, pg_type) in attributes {
        let ty = describe_type(type_oid)?;
        let column = quote_ident(&name);
        let multi_dimensional = ty.element.is_some()
            && !ty.renders_as_json
            && Spi::get_one::<bool>(&format!(
                "SELECT coalesce(pg_catalog.max(pg_catalog.array_ndims({column})), 0) > 1 FROM {relation}"
            ))?
            .unwrap_or(false);
        let padded = ty.element.is_none() && ty.catalog_name.as_deref() == Some("bpchar");
        let mut shape = shape_of(&ty, multi_dimensional);
        shape = match shape {
            Shape::Scalar(Kind::NumericText) => Shape::Scalar(numeric_kind(numeric_stats(
                &format!("SELECT {column}::pg_catalog.numeric AS v FROM {relation}"),
            )?)),
            Shape::List(Kind::NumericText) => Shape::List(numeric_kind(numeric_stats(&format!(
                "SELECT e AS v FROM {relation}, pg_catalog.unnest({column}::pg_catalog.numeric[]) AS u(e)"
            ))?)),
            other => other,
        };
        columns.push(Column {
            name,
            pg_type,
            shape,
            padded,
        });
    }
    Ok(columns)
}

/// The catalog facts `shape_of` needs, domains resolved to their base types.
fn describe_type(type_oid: pg_sys::Oid) -> BeaconResult<PgType> {
    // SAFETY: catalog lookups by OID; both return InvalidOid (or the input) rather than
    // erroring for types that are not domains or arrays.
    let (base, element) = unsafe {
        let base = pg_sys::getBaseType(type_oid);
        let element = pg_sys::get_element_type(base);
        let element = (element != pg_sys::InvalidOid).then(|| pg_sys::getBaseType(element));
        (base, element)
    };
    let (name, json) = type_facts(base)?;
    match element {
        None => Ok(PgType {
            catalog_name: name,
            element: None,
            renders_as_json: json,
        }),
        Some(element) => {
            let (element_name, element_json) = type_facts(element)?;
            Ok(PgType {
                catalog_name: name,
                element: Some(element_name),
                renders_as_json: element_json,
            })
        }
    }
}

/// A type's name if it is in pg_catalog, and whether `to_jsonb` renders it as structure
/// (a composite, or a type with a cast to json or jsonb, such as hstore; json and jsonb,
/// cast to each other, are stored as themselves).
fn type_facts(type_oid: pg_sys::Oid) -> BeaconResult<(Option<String>, bool)> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT CASE WHEN t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace \
                         THEN t.typname::pg_catalog.text END, \
                    t.typtype = 'c' OR (t.oid NOT IN ('pg_catalog.json'::pg_catalog.regtype, \
                        'pg_catalog.jsonb'::pg_catalog.regtype) \
                      AND EXISTS (SELECT FROM pg_catalog.pg_cast c \
                      WHERE c.castsource = t.oid AND c.casttarget IN \
                        ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype))) \
               FROM pg_catalog.pg_type t WHERE t.oid = $1",
            None,
            &[type_oid.into()],
        )?;
        let row = rows.first();
        Ok((row.get::<String>(1)?, row.get::<bool>(2)?.unwrap_or(false)))
    })
}

/// Scale, integer digits and non-finite values of the numeric column `v` of `source`.
fn numeric_stats(source: &str) -> BeaconResult<NumericStats> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT coalesce(pg_catalog.max(pg_catalog.scale(v)), 0)::pg_catalog.int4, \
                        coalesce(pg_catalog.max(pg_catalog.length(pg_catalog.trunc(pg_catalog.abs(v))::pg_catalog.text)) \
                          FILTER (WHERE pg_catalog.scale(v) IS NOT NULL), 0)::pg_catalog.int4, \
                        coalesce(pg_catalog.bool_or(pg_catalog.scale(v) IS NULL), false) \
                   FROM ({source}) s WHERE v IS NOT NULL"
            ),
            None,
            &[],
        )?;
        let row = rows.first();
        Ok(NumericStats {
            max_scale: row.get::<i32>(1)?.unwrap_or(0),
            max_integer_digits: row.get::<i32>(2)?.unwrap_or(0),
            non_finite: row.get::<bool>(3)?.unwrap_or(false),
        })
    })
}

pub fn schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(Column::field).collect::<Vec<_>>(),
    ))
}

/// Values of one kind being collected for a batch.
enum Values {
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    /// With whether the column is timestamptz (else timestamp).
    Timestamp(TimestampMicrosecondBuilder, bool),
    Date(Date32Builder),
    Decimal(Decimal128Builder, i8),
    Str(StringBuilder),
    Bin(BinaryBuilder),
}

impl Values {
    fn new(kind: Kind) -> BeaconResult<Values> {
        Ok(match kind {
            Kind::Int16 => Values::I16(Int16Builder::new()),
            Kind::Int32 => Values::I32(Int32Builder::new()),
            Kind::Int64 => Values::I64(Int64Builder::new()),
            Kind::Float32 => Values::F32(Float32Builder::new()),
            Kind::Float64 => Values::F64(Float64Builder::new()),
            Kind::Bool => Values::Bool(BooleanBuilder::new()),
            Kind::TimestampTz => Values::Timestamp(
                TimestampMicrosecondBuilder::new().with_timezone("UTC"),
                true,
            ),
            Kind::Timestamp => Values::Timestamp(TimestampMicrosecondBuilder::new(), false),
            Kind::Date => Values::Date(Date32Builder::new()),
            Kind::Decimal { scale } => Values::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(38, scale)
                    .map_err(|e| BeaconError::Unsupported(format!("decimal: {e}")))?,
                scale,
            ),
            Kind::NumericText | Kind::Text | Kind::Json | Kind::Other => {
                Values::Str(StringBuilder::new())
            }
            Kind::Binary => Values::Bin(BinaryBuilder::new()),
        })
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Values::I16(b) => Arc::new(b.finish()),
            Values::I32(b) => Arc::new(b.finish()),
            Values::I64(b) => Arc::new(b.finish()),
            Values::F32(b) => Arc::new(b.finish()),
            Values::F64(b) => Arc::new(b.finish()),
            Values::Bool(b) => Arc::new(b.finish()),
            Values::Timestamp(b, _) => Arc::new(b.finish()),
            Values::Date(b) => Arc::new(b.finish()),
            Values::Decimal(b, _) => Arc::new(b.finish()),
            Values::Str(b) => Arc::new(b.finish()),
            Values::Bin(b) => Arc::new(b.finish()),
        }
    }

    /// Appends the column at `ordinal` of `row`; a list's elements go through `push`.
    fn append(&mut self, row: &SpiHeapTupleData, ordinal: usize) -> BeaconResult<()> {
        match self {
            Values::I16(b) => b.append_option(row.get::<i16>(ordinal)?),
            Values::I32(b) => b.append_option(row.get::<i32>(ordinal)?),
            Values::I64(b) => b.append_option(row.get::<i64>(ordinal)?),
            Values::F32(b) => b.append_option(row.get::<f32>(ordinal)?),
            Values::F64(b) => b.append_option(row.get::<f64>(ordinal)?),
            Values::Bool(b) => b.append_option(row.get::<bool>(ordinal)?),
            Values::Timestamp(b, true) => b.append_option(
                row.get::<TimestampWithTimeZone>(ordinal)?
                    .map(|t| pg_to_unix_micros(t.into_inner())),
            ),
            Values::Timestamp(b, false) => b.append_option(
                row.get::<Timestamp>(ordinal)?
                    .map(|t| pg_to_unix_micros(t.into_inner())),
            ),
            Values::Date(b) => b.append_option(
                row.get::<Date>(ordinal)?
                    .map(|d| pg_to_unix_days(d.to_pg_epoch_days())),
            ),
            Values::Decimal(b, scale) => {
                let text = row.get::<String>(ordinal)?;
                b.append_option(text.map(|t| decimal(&t, *scale)).transpose()?)
            }
            Values::Str(b) => b.append_option(row.get::<String>(ordinal)?),
            Values::Bin(b) => b.append_option(row.get::<Vec<u8>>(ordinal)?),
        }
        Ok(())
    }

    /// Appends the elements of the array at `ordinal`; returns how many, or None for NULL.
    fn append_elements(
        &mut self,
        row: &SpiHeapTupleData,
        ordinal: usize,
    ) -> BeaconResult<Option<usize>> {
        fn all<T>(
            values: Option<Vec<Option<T>>>,
            mut push: impl FnMut(Option<T>) -> BeaconResult<()>,
        ) -> BeaconResult<Option<usize>> {
            let Some(values) = values else {
                return Ok(None);
            };
            let n = values.len();
            for v in values {
                push(v)?;
            }
            Ok(Some(n))
        }
        macro_rules! plain {
            ($b:expr, $t:ty) => {
                all(row.get::<Vec<Option<$t>>>(ordinal)?, |v| {
                    $b.append_option(v);
                    Ok(())
                })
            };
        }
        match self {
            Values::I16(b) => plain!(b, i16),
            Values::I32(b) => plain!(b, i32),
            Values::I64(b) => plain!(b, i64),
            Values::F32(b) => plain!(b, f32),
            Values::F64(b) => plain!(b, f64),
            Values::Bool(b) => plain!(b, bool),
            Values::Str(b) => plain!(b, String),
            // shape_of stores bytea[] as its elements' text
            Values::Bin(_) => Err(BeaconError::Unsupported(
                "archive: a list of binary values".into(),
            )),
            Values::Timestamp(b, true) => all(
                row.get::<Vec<Option<TimestampWithTimeZone>>>(ordinal)?,
                |v| {
                    b.append_option(v.map(|t| pg_to_unix_micros(t.into_inner())));
                    Ok(())
                },
            ),
            Values::Timestamp(b, false) => all(row.get::<Vec<Option<Timestamp>>>(ordinal)?, |v| {
                b.append_option(v.map(|t| pg_to_unix_micros(t.into_inner())));
                Ok(())
            }),
            Values::Date(b) => all(row.get::<Vec<Option<Date>>>(ordinal)?, |v| {
                b.append_option(v.map(|d| pg_to_unix_days(d.to_pg_epoch_days())));
                Ok(())
            }),
            Values::Decimal(b, scale) => {
                let scale = *scale;
                all(row.get::<Vec<Option<String>>>(ordinal)?, |v| {
                    b.append_option(v.map(|t| decimal(&t, scale)).transpose()?);
                    Ok(())
                })
            }
        }
    }
}

fn decimal(text: &str, scale: i8) -> BeaconResult<i128> {
    // the first pass chose the scale from the same rows: a value that no longer fits was
    // written since, and a retry decides again
    parse_decimal(text, scale).ok_or_else(|| {
        BeaconError::SerializationFailure(format!(
            "numeric value {text} does not fit the archive's DECIMAL(38, {scale}): the table changed while it was archived"
        ))
    })
}

enum Builder {
    Scalar(Values),
    List {
        element: FieldRef,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        values: Values,
    },
}

/// Collects rows of the table into record batches of the archive's schema.
pub struct BatchBuilder {
    schema: SchemaRef,
    builders: Vec<Builder>,
    /// Ordinal (0-based) of a timestamptz `_time` column, for the file's time range.
    time_column: Option<usize>,
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

impl BatchBuilder {
    pub fn new(columns: &[Column]) -> BeaconResult<BatchBuilder> {
        let schema = schema(columns);
        let mut builders = Vec::with_capacity(columns.len());
        for (column, field) in columns.iter().zip(schema.fields()) {
            builders.push(match column.shape {
                Shape::Scalar(kind) => Builder::Scalar(Values::new(kind)?),
                Shape::ToJsonb => Builder::Scalar(Values::new(Kind::Json)?),
                Shape::List(kind) => {
                    let DataType::List(element) = field.data_type() else {
                        unreachable!("a list column has a list field")
                    };
                    Builder::List {
                        element: element.clone(),
                        offsets: vec![0],
                        valid: Vec::new(),
                        values: Values::new(kind)?,
                    }
                }
            });
        }
        let time_column = columns
            .iter()
            .position(|c| c.name == "_time" && c.shape == Shape::Scalar(Kind::TimestampTz));
        Ok(BatchBuilder {
            schema,
            builders,
            time_column,
            min_time: None,
            max_time: None,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn append(&mut self, row: &SpiHeapTupleData) -> BeaconResult<()> {
        for (i, builder) in self.builders.iter_mut().enumerate() {
            let ordinal = i + 1;
            match builder {
                Builder::Scalar(values) => values.append(row, ordinal)?,
                Builder::List {
                    offsets,
                    valid,
                    values,
                    ..
                } => {
                    let n = values.append_elements(row, ordinal)?;
                    let last = *offsets.last().expect("offsets start with 0");
                    let next = i32::try_from(n.unwrap_or(0))
                        .ok()
                        .and_then(|n| last.checked_add(n))
                        .ok_or_else(|| {
                            BeaconError::LimitExceeded(
                                "an archive batch holds more than 2^31 array elements".into(),
                            )
                        })?;
                    offsets.push(next);
                    valid.push(n.is_some());
                }
            }
        }
        if let Some(i) = self.time_column {
            if let Some(time) = row.get::<TimestampWithTimeZone>(i + 1)? {
                let time = time.into_inner();
                self.min_time = Some(self.min_time.map_or(time, |m| m.min(time)));
                self.max_time = Some(self.max_time.map_or(time, |m| m.max(time)));
            }
        }
        Ok(())
    }

    /// The rows appended since the last call, as one batch.
    pub fn finish(&mut self) -> BeaconResult<RecordBatch> {
        let mut arrays = Vec::with_capacity(self.builders.len());
        for builder in &mut self.builders {
            arrays.push(match builder {
                Builder::Scalar(values) => values.finish(),
                Builder::List {
                    element,
                    offsets,
                    valid,
                    values,
                } => {
                    let offsets =
                        OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                    let nulls = NullBuffer::from(std::mem::take(valid));
                    let list =
                        ListArray::try_new(element.clone(), offsets, values.finish(), Some(nulls))
                            .map_err(|e| BeaconError::Io(format!("archive list column: {e}")))?;
                    Arc::new(list) as ArrayRef
                }
            });
        }
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| BeaconError::Io(format!("archive batch: {e}")))
    }
}
