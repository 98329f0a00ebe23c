//! Customer profiles: `<project>._users`, one row per user id. Properties become columns
//! exactly as a collection's do (same inference, same lossless-fit rules, same
//! catalog in `beacon.field`), so events join their profile through `_user = id`.
//!
//! Every write is one `INSERT … ON CONFLICT (id) DO UPDATE`: the row lock it takes makes
//! concurrent increments of one user add up exactly, and touches no other user.

use crate::collect::columns::Column;
use crate::collect::infer::{fit, infer, json_kind, ColumnType, ScalarType};
use crate::collect::schema::{self, Fields};
use crate::error::{report, BeaconError, BeaconResult};
use crate::jsonb::JsonbArg;
use crate::names::{quote_ident, quote_literal};
use crate::project::require_project;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::run;
use pgrx::prelude::*;
use serde_json::{Map, Number, Value};

pub const TABLE: &str = "_users";
const SYSTEM_COLUMNS: [&str; 3] = ["id", "created_at", "updated_at"];

/// Called by `create_project`, as the owner.
pub fn create_table(project: &str) -> BeaconResult<()> {
    let table = schema::table(project, TABLE);
    run(
        &format!(
            "CREATE TABLE {table} (
                id text PRIMARY KEY,
                created_at timestamptz NOT NULL DEFAULT now(),
                updated_at timestamptz NOT NULL DEFAULT now())"
        ),
        &[],
    )?;
    run(
        &format!(
            "COMMENT ON TABLE {table} IS {}",
            quote_literal("pg_beacon customer profiles; events link to them through _user")
        ),
        &[],
    )?;
    // registered like a collection so that its properties share beacon.field and beacon.fields
    catalog(|| {
        run(
            "INSERT INTO beacon.collection (project, name) VALUES ($1, $2)",
            &[project.into(), TABLE.into()],
        )
    })
}

fn enter(project: &str) -> BeaconResult<AsOwner> {
    require_level(project, Level::Write)?;
    let owner = AsOwner::for_project(project)?;
    require_project(project)?;
    Ok(owner)
}

fn checked_id(id: Option<&str>) -> BeaconResult<&str> {
    id.ok_or_else(|| BeaconError::InvalidArgument("the user id must not be NULL".into()))
}

fn checked_property(property: &str) -> BeaconResult<()> {
    if SYSTEM_COLUMNS.contains(&property) {
        return Err(BeaconError::InvalidArgument(format!(
            "\"{property}\" is a system column of _users and cannot be set as a property"
        )));
    }
    Ok(())
}

/// Returns the fields, after adding the columns that `properties` need.
fn fields_for(project: &str, properties: &Map<String, Value>) -> BeaconResult<Fields> {
    let fields = schema::load_fields(project, TABLE)?;
    let wanted: Vec<(String, ColumnType)> = properties
        .iter()
        .filter(|(property, _)| !fields.contains_key(*property))
        .filter_map(|(property, value)| infer(value).map(|ty| (property.clone(), ty)))
        .collect();
    if wanted.is_empty() {
        Ok(fields)
    } else {
        schema::add_fields(project, TABLE, &wanted)
    }
}

fn column_of<'f>(fields: &'f Fields, property: &str) -> BeaconResult<(&'f str, ColumnType)> {
    match fields.get(property) {
        Some(schema::Field {
            column,
            ty: Some(ty),
        }) => Ok((column, *ty)),
        Some(schema::Field { column, ty: None }) => Err(BeaconError::TypeMismatch(format!(
            "property \"{property}\": column \"{column}\" has a type pg_beacon does not write"
        ))),
        None => Err(BeaconError::LimitExceeded(format!(
            "cannot add property \"{property}\": _users already has {} property columns (beacon.max_fields)",
            fields.len()
        ))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    Overwrite,
    /// `set_user_once`: a property keeps its value once it has one.
    KeepExisting,
}

fn set(
    project: &str,
    id: Option<&str>,
    properties: Option<JsonbArg>,
    merge: Merge,
) -> BeaconResult<()> {
    let id = checked_id(id)?;
    let properties = match properties.map(|j| j.0) {
        Some(Value::Object(map)) => map,
        other => {
            return Err(BeaconError::InvalidArgument(format!(
                "properties must be a JSON object, not {}",
                other.as_ref().map_or("NULL", json_kind)
            )))
        }
    };
    for property in properties.keys() {
        checked_property(property)?;
    }
    let _owner = enter(project)?;
    let fields = fields_for(project, &properties)?;

    let mut columns = Vec::new();
    for (property, value) in &properties {
        // a null for a property that never had a value has no type and nothing to clear
        if value.is_null() && !fields.contains_key(property) {
            continue;
        }
        if value.is_null() && merge == Merge::KeepExisting {
            continue;
        }
        let (name, ty) = column_of(&fields, property)?;
        let fitted = fit(value, ty)
            .map_err(|m| BeaconError::TypeMismatch(format!("property \"{property}\": {}", m.0)))?;
        let mut column = Column::new(name.to_string(), ty);
        column.push(0, &fitted);
        columns.push(column);
    }
    upsert(project, id, columns, merge)
}

fn upsert(project: &str, id: &str, columns: Vec<Column>, merge: Merge) -> BeaconResult<()> {
    let table = schema::table(project, TABLE);
    if columns.is_empty() {
        return run(
            &format!("INSERT INTO {table} (id) VALUES ($1) ON CONFLICT (id) DO NOTHING"),
            &[id.into()],
        );
    }
    let mut targets = Vec::new();
    let mut values = Vec::new();
    let mut arrays = Vec::new();
    let mut updates = Vec::new();
    let mut params = vec![id.into()];
    for (i, mut column) in columns.into_iter().enumerate() {
        column.fill_to(1);
        let quoted = column.quoted();
        values.push(column.select_expr(&format!("u.e{i}")));
        arrays.push(format!(
            "pg_catalog.unnest(${}::{}) AS e{i}",
            i + 2,
            column.array_type()
        ));
        updates.push(match merge {
            Merge::Overwrite => format!("{quoted} = EXCLUDED.{quoted}"),
            Merge::KeepExisting => {
                format!("{quoted} = coalesce(cur.{quoted}, EXCLUDED.{quoted})")
            }
        });
        targets.push(quoted);
        params.push(column.param());
    }
    run(
        &format!(
            "INSERT INTO {table} AS cur (id, {}) SELECT $1, {} FROM (SELECT {}) AS u
             ON CONFLICT (id) DO UPDATE SET {}, updated_at = pg_catalog.now()",
            targets.join(", "),
            values.join(", "),
            arrays.join(", "),
            updates.join(", ")
        ),
        &params,
    )
}

fn increment(project: &str, id: Option<&str>, property: &str, by: f64) -> BeaconResult<f64> {
    let id = checked_id(id)?;
    checked_property(property)?;
    if !by.is_finite() {
        return Err(BeaconError::InvalidArgument(format!(
            "cannot increment by {by}"
        )));
    }
    // a whole `by` creates a bigint property, like an integer in an event would
    let by_json = if by.fract() == 0.0 && by.abs() < 9.0e15 {
        Value::Number(Number::from(by as i64))
    } else {
        Number::from_f64(by)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    };
    let _owner = enter(project)?;
    let fields = fields_for(
        project,
        &Map::from_iter([(property.to_string(), by_json.clone())]),
    )?;
    let (column, ty) = column_of(&fields, property)?;
    let number_types = [ScalarType::BigInt, ScalarType::Double, ScalarType::Numeric];
    if !matches!(ty, ColumnType::Scalar(t) if number_types.contains(&t)) {
        return Err(BeaconError::TypeMismatch(format!(
            "cannot increment property \"{property}\": its column \"{column}\" is {}, not a number",
            ty.sql()
        )));
    }
    fit(&by_json, ty).map_err(|m| {
        BeaconError::TypeMismatch(format!("cannot increment property \"{property}\": {}", m.0))
    })?;
    let quoted = quote_ident(column);
    let table = schema::table(project, TABLE);
    let result = crate::spi::returning_one::<f64>(
        &format!(
            "INSERT INTO {table} AS cur (id, {quoted}) VALUES ($1, $2::{ty})
             ON CONFLICT (id) DO UPDATE
                SET {quoted} = coalesce(cur.{quoted}, 0) + EXCLUDED.{quoted},
                    updated_at = pg_catalog.now()
             RETURNING {quoted}::double precision",
            ty = ty.sql()
        ),
        &[id.into(), by.into()],
    )?;
    Ok(result.unwrap_or(by))
}

fn unset(project: &str, id: Option<&str>, properties: Vec<Option<String>>) -> BeaconResult<i64> {
    let id = checked_id(id)?;
    let mut names = Vec::with_capacity(properties.len());
    for property in properties {
        let property = property.ok_or_else(|| {
            BeaconError::InvalidArgument("property names must not be NULL".into())
        })?;
        checked_property(&property)?;
        names.push(property);
    }
    let _owner = enter(project)?;
    let fields = schema::load_fields(project, TABLE)?;
    // a property that was never set has nothing to clear
    let mut assignments: Vec<String> = names
        .iter()
        .filter_map(|p| fields.get(p))
        .map(|f| format!("{} = NULL", quote_ident(&f.column)))
        .collect();
    assignments.sort();
    assignments.dedup();
    if assignments.is_empty() {
        return Ok(0);
    }
    let updated = crate::spi::returning_one::<i64>(
        &format!(
            "WITH u AS (UPDATE {} SET {}, updated_at = pg_catalog.now() WHERE id = $1 RETURNING 1)
             SELECT count(*) FROM u",
            schema::table(project, TABLE),
            assignments.join(", ")
        ),
        &[id.into()],
    )?;
    Ok(updated.unwrap_or(0))
}

/// Creates or updates user `id` of `<project>._users` with `properties` (a JSON object);
/// new properties become columns typed from their value, a null clears a property.
/// Requires write access to the project.
#[pg_extern]
fn set_user(project: &str, id: Option<&str>, properties: Option<JsonbArg>) {
    report(set(project, id, properties, Merge::Overwrite))
}

/// Like `set_user`, but only sets properties the user does not have yet (first touch,
/// sign-up source, ...). Requires write access to the project.
#[pg_extern]
fn set_user_once(project: &str, id: Option<&str>, properties: Option<JsonbArg>) {
    report(set(project, id, properties, Merge::KeepExisting))
}

/// Adds `by` to a numeric property of user `id`, creating the user and the property when
/// missing, and returns the new value. Concurrent increments add up exactly. Requires
/// write access to the project.
#[pg_extern]
fn increment_user(project: &str, id: Option<&str>, property: &str, by: default!(f64, 1)) -> f64 {
    report(increment(project, id, property, by))
}

/// Clears the given properties of user `id` and returns 1 if the user exists, else 0.
/// Requires write access to the project.
#[pg_extern]
fn unset_user(project: &str, id: Option<&str>, properties: Vec<Option<String>>) -> i64 {
    report(unset(project, id, properties))
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
