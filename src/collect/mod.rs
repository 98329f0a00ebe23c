//! JSON events in, typed rows out: `beacon.collect`, `beacon.collect_batch`, `beacon.define_collection`.
//!
//! Per collection and call: one catalog read, at most one schema change, one set-based
//! INSERT for the accepted events (`jsonb_populate_recordset` into the table's row type)
//! and one for the rejected ones. Nothing is done per event over SPI.

pub mod archive;
pub(crate) mod columns;
pub mod infer;
pub mod partitions;
pub(crate) mod schema;

use crate::error::{report, BeaconError, BeaconResult};
use crate::jsonb::JsonbArg;
use crate::names::{quote_ident, validate_collection_name};
use crate::security::{require_level, AsOwner, Level};
use crate::spi::run;
use columns::Column;
use infer::{fit, infer, json_kind, ColumnType, ScalarType};
use pgrx::prelude::*;
use pgrx::JsonB;
use schema::Fields;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

type Properties = Map<String, Value>;

struct Rejection {
    collection: String,
    properties: Properties,
    reason: String,
}

struct Stored {
    count: i64,
    /// `_id` of the first stored event, when asked for.
    first_id: Option<i64>,
}

fn checked_collection(collection: &str) -> BeaconResult<()> {
    validate_collection_name(collection).map_err(|e| BeaconError::InvalidName(e.to_string()))
}

fn into_properties(value: Value, what: &str) -> BeaconResult<Properties> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(BeaconError::InvalidArgument(format!(
            "{what} must be a JSON object, not {}",
            json_kind(&other)
        ))),
    }
}

/// New properties in `events`, each typed from its first non-null value.
fn discover(fields: &Fields, events: &[Properties]) -> Vec<(String, ColumnType)> {
    let mut seen = HashSet::new();
    let mut wanted = Vec::new();
    for event in events {
        for (property, value) in event {
            if is_system(property) || fields.contains_key(property) || seen.contains(property) {
                continue;
            }
            if let Some(ty) = infer(value) {
                seen.insert(property.clone());
                wanted.push((property.clone(), ty));
            }
        }
    }
    wanted
}

fn is_system(property: &str) -> bool {
    property == "_time" || property == "_user"
}

/// The event's values with their columns and types, or every reason it does not fit.
fn to_row<'f>(
    event: &Properties,
    fields: &'f Fields,
) -> Result<Vec<(&'f str, ColumnType, Value)>, String> {
    let mut row = Vec::with_capacity(event.len());
    let mut reasons = Vec::new();
    for (property, value) in event {
        if value.is_null() {
            continue;
        }
        let (column, ty) = match property.as_str() {
            "_time" => ("_time", ColumnType::Scalar(ScalarType::Timestamptz)),
            "_user" => ("_user", ColumnType::Scalar(ScalarType::Text)),
            _ => match fields.get(property) {
                Some(schema::Field {
                    column,
                    ty: Some(ty),
                }) => (column.as_str(), *ty),
                Some(schema::Field { column, ty: None }) => {
                    reasons.push(format!(
                        "property \"{property}\": column \"{column}\" has a type pg_beacon does not write"
                    ));
                    continue;
                }
                None => {
                    reasons.push(format!(
                        "property \"{property}\": no column, the collection reached beacon.max_fields"
                    ));
                    continue;
                }
            },
        };
        match fit(value, ty) {
            Ok(fitted) => row.push((column, ty, fitted)),
            Err(misfit) => reasons.push(format!("property \"{property}\": {}", misfit.0)),
        }
    }
    if reasons.is_empty() {
        Ok(row)
    } else {
        Err(reasons.join("; "))
    }
}

/// Stores one collection's events: accepted ones in one INSERT, misfits returned.
fn store_collection(
    project: &str,
    collection: &str,
    events: Vec<Properties>,
    want_id: bool,
    rejected: &mut Vec<Rejection>,
) -> BeaconResult<Stored> {
    let (period, mut fields) = match schema::collection_state(project, collection)? {
        Some(state) => state,
        None => (
            schema::ensure_collection(project, collection)?,
            Rc::new(schema::load_fields(project, collection)?),
        ),
    };
    let wanted = discover(&fields, &events);
    if !wanted.is_empty() {
        fields = Rc::new(schema::add_fields(project, collection, &wanted)?);
    }
    // after add_fields: a ROW EXCLUSIVE lock held while asking for its ACCESS EXCLUSIVE
    // one would deadlock two writers adding properties
    let period = partitions::lock_for_insert(project, collection, period)?;

    // `_time` is always there, so unnest yields one row per event even for `{}` events.
    let time_type = ColumnType::Scalar(ScalarType::Timestamptz);
    let mut columns =
        BTreeMap::from([("_time".to_string(), Column::new("_time".into(), time_type))]);
    let mut rows = 0;
    for event in events {
        match to_row(&event, &fields) {
            Ok(values) => {
                for (name, ty, value) in values {
                    match columns.get_mut(name) {
                        Some(column) => column.push(rows, &value),
                        None => {
                            let mut column = Column::new(name.to_string(), ty);
                            column.push(rows, &value);
                            columns.insert(name.to_string(), column);
                        }
                    }
                }
                rows += 1;
            }
            Err(reason) => rejected.push(Rejection {
                collection: collection.to_string(),
                properties: event,
                reason,
            }),
        }
    }
    if rows == 0 {
        return Ok(Stored {
            count: 0,
            first_id: None,
        });
    }

    if let Some(period) = period {
        if let Some(times) = columns.get("_time").and_then(|c| c.time_micros()) {
            // events after the last one that carried `_time` are padded with NULLs later
            let times = times.chain(std::iter::repeat(None)).take(rows);
            partitions::ensure(project, collection, period, times)?;
        }
    }

    // one event: plain VALUES with one scalar per column, which PostgreSQL plans and runs
    // more cheaply than unnest over one-element arrays
    let single = rows == 1;
    let mut targets = Vec::with_capacity(columns.len());
    let mut values = Vec::with_capacity(columns.len());
    let mut arrays = Vec::with_capacity(columns.len());
    let mut params = Vec::with_capacity(columns.len());
    for (i, mut column) in columns.into_values().enumerate() {
        column.fill_to(rows);
        let element = if single {
            format!("${}", i + 1)
        } else {
            arrays.push(format!(
                "pg_catalog.unnest(${}::{}) AS e{i}",
                i + 1,
                column.array_type()
            ));
            format!("u.e{i}")
        };
        targets.push(column.quoted());
        values.push(if column.name == "_time" {
            format!(
                "coalesce({}, pg_catalog.now())",
                column.select_expr(&element)
            )
        } else {
            column.select_expr(&element)
        });
        params.push(if single {
            column.first_param()
        } else {
            column.param()
        });
    }
    let source = if single {
        format!("VALUES ({})", values.join(", "))
    } else {
        format!(
            "SELECT {} FROM (SELECT {}) AS u",
            values.join(", "),
            arrays.join(", ")
        )
    };
    let sql = format!(
        "INSERT INTO {} ({}) {source}{}",
        schema::table(project, collection),
        targets.join(", "),
        if want_id { " RETURNING _id" } else { "" }
    );
    let first_id = crate::spi::kept_write::<i64>(&sql, &params, want_id)?;
    Ok(Stored {
        count: rows as i64,
        first_id,
    })
}

fn store_rejections(project: &str, rejected: Vec<Rejection>) -> BeaconResult<()> {
    if rejected.is_empty() {
        return Ok(());
    }
    let count = rejected.len();
    let first_reason = rejected[0].reason.clone();
    let rows: Vec<Value> = rejected
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "collection": r.collection,
                "properties": Value::Object(r.properties),
                "reason": r.reason,
            })
        })
        .collect();
    run(
        &format!(
            "INSERT INTO {}._rejected (collection, properties, reason) \
             SELECT r.collection, r.properties, r.reason \
               FROM pg_catalog.jsonb_to_recordset($1) AS r (collection text, properties jsonb, reason text)",
            quote_ident(project)
        ),
        &[JsonB(Value::Array(rows)).into()],
    )?;
    let table = format!("{}._rejected", quote_ident(project));
    if count == 1 {
        warning!("event rejected and stored in {table}: {first_reason}");
    } else {
        warning!("{count} events rejected and stored in {table}; first reason: {first_reason}");
    }
    Ok(())
}

fn enter_project(project: &str) -> BeaconResult<AsOwner> {
    require_level(project, Level::Write)?;
    // which also finds the project in the catalog, or fails
    AsOwner::for_project(project)
}

fn collect_one(
    project: &str,
    collection: &str,
    properties: Option<JsonbArg>,
) -> BeaconResult<Option<i64>> {
    checked_collection(collection)?;
    let properties = into_properties(properties.map(|j| j.0).unwrap_or(Value::Null), "properties")?;
    let _owner = enter_project(project)?;
    let mut rejected = Vec::new();
    let stored = store_collection(project, collection, vec![properties], true, &mut rejected)?;
    store_rejections(project, rejected)?;
    Ok(stored.first_id)
}

/// Splits `[{"collection": ..., "properties": {...}}, ...]` by collection, in name order so
/// that concurrent batches lock collections in the same order.
fn group_batch(events: Value) -> BeaconResult<BTreeMap<String, Vec<Properties>>> {
    let Value::Array(events) = events else {
        return Err(BeaconError::InvalidArgument(format!(
            "events must be a JSON array of {{\"collection\": ..., \"properties\": {{...}}}} objects, not {}",
            json_kind(&events)
        )));
    };
    let mut groups: BTreeMap<String, Vec<Properties>> = BTreeMap::new();
    for (index, event) in events.into_iter().enumerate() {
        let mut event = into_properties(event, &format!("events[{index}]"))?;
        let collection = match event.remove("collection") {
            Some(Value::String(name)) => name,
            other => {
                return Err(BeaconError::InvalidArgument(format!(
                    "events[{index}].collection must be a string, not {}",
                    other.as_ref().map_or("missing", json_kind)
                )))
            }
        };
        checked_collection(&collection)?;
        let properties = into_properties(
            event
                .remove("properties")
                .unwrap_or_else(|| Value::Object(Map::new())),
            &format!("events[{index}].properties"),
        )?;
        if let Some(extra) = event.keys().next() {
            return Err(BeaconError::InvalidArgument(format!(
                "events[{index}] has unknown key \"{extra}\": an event has only \"collection\" and \"properties\""
            )));
        }
        groups.entry(collection).or_default().push(properties);
    }
    Ok(groups)
}

fn collect_many(project: &str, events: Option<JsonbArg>) -> BeaconResult<i64> {
    let groups = group_batch(events.map(|j| j.0).unwrap_or(Value::Null))?;
    let _owner = enter_project(project)?;
    let mut rejected = Vec::new();
    let mut stored = 0;
    for (collection, events) in groups {
        stored += store_collection(project, &collection, events, false, &mut rejected)?.count;
    }
    store_rejections(project, rejected)?;
    Ok(stored)
}

fn define(project: &str, collection: &str, declared: Option<JsonbArg>) -> BeaconResult<()> {
    checked_collection(collection)?;
    let declared = into_properties(declared.map(|j| j.0).unwrap_or(Value::Null), "fields")?;
    let mut wanted = Vec::with_capacity(declared.len());
    for (property, ty) in &declared {
        if is_system(property) {
            return Err(BeaconError::InvalidArgument(format!(
                "\"{property}\" is a system column of every collection and cannot be declared"
            )));
        }
        let parsed = ty.as_str().and_then(ColumnType::from_sql).ok_or_else(|| {
            BeaconError::InvalidArgument(format!(
                "unsupported type {ty} for property \"{property}\": use bigint, double precision, \
                 numeric, boolean, timestamptz, text, jsonb, or an array of one of the first six"
            ))
        })?;
        wanted.push((property.clone(), parsed));
    }
    let _owner = enter_project(project)?;
    schema::ensure_collection(project, collection)?;
    let fields = schema::add_fields(project, collection, &wanted)?;
    for (property, ty) in wanted {
        schema::check_declared(&fields, &property, ty)?;
    }
    Ok(())
}

/// Stores one event in `<project>.<collection>` (created on first use) and returns its
/// `_id`. New properties become columns typed from their value. An event whose values do
/// not fit their columns is kept in `<project>._rejected` with the reason (a WARNING says
/// so) and NULL is returned. Requires write access to the project.
#[pg_extern]
fn collect(project: &str, collection: &str, properties: Option<JsonbArg>) -> Option<i64> {
    report(collect_one(project, collection, properties))
}

/// Stores `[{"collection": "...", "properties": {...}}, ...]` with one set-based insert per
/// collection, and returns how many events were stored; rejected ones go to
/// `<project>._rejected` and a WARNING reports how many. A malformed array is an error and
/// stores nothing. Requires write access to the project.
#[pg_extern]
fn collect_batch(project: &str, events: Option<JsonbArg>) -> i64 {
    report(collect_many(project, events))
}

/// Declares property types up front, e.g. `{"price": "double precision", "tags": "text[]"}`,
/// creating the collection if needed. A property that exists with another type is an error.
#[pg_extern]
fn define_collection(project: &str, collection: &str, fields: Option<JsonbArg>) {
    report(define(project, collection, fields))
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
