//! Collections as tables, and properties as columns that appear on first use.
//!
//! Races: two sessions may create the same collection or add the same property at the
//! same moment. Collection creation is serialized by a transaction advisory lock on the
//! name; column addition by the ACCESS EXCLUSIVE lock ALTER TABLE needs anyway, taken
//! *before* the catalog is re-read. In READ COMMITTED every SPI statement sees what
//! committed before it started, so the second session finds the first one's work and
//! reuses it: both succeed and no event is lost. The first value seen decides a type.

use super::infer::ColumnType;
use super::partitions::Period;
use crate::catalog_cache::{self, Remembered};
use crate::error::{BeaconError, BeaconResult};
use crate::guc;
use crate::names::{column_for_property, quote_ident, quote_literal};
use crate::security::catalog;
use crate::spi::{exists, run};
use pgrx::pg_sys;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;

pub struct Field {
    pub column: String,
    /// None when an administrator changed the column to a type pg_beacon does not produce:
    /// values for it are then rejected rather than guessed at.
    pub ty: Option<ColumnType>,
}

pub type Fields = HashMap<String, Field>;

pub fn table(project: &str, collection: &str) -> String {
    format!("{}.{}", quote_ident(project), quote_ident(collection))
}

pub fn collection_exists(project: &str, collection: &str) -> BeaconResult<bool> {
    catalog(|| {
        exists(
            "SELECT EXISTS (SELECT 1 FROM beacon.collection WHERE project = $1 AND name = $2)",
            &[project.into(), collection.into()],
        )
    })
}

/// None when the collection does not exist, else its partition period (None: a plain
/// table). Read through `to_jsonb` so that a library newer than the catalog (before
/// `ALTER EXTENSION pg_beacon UPDATE` adds the column) reads every collection as plain.
pub fn collection_partitioning(
    project: &str,
    collection: &str,
) -> BeaconResult<Option<Option<Period>>> {
    catalog(|| {
        let periods = crate::spi::kept_rows(
            "SELECT pg_catalog.to_jsonb(c) ->> 'partition_period' FROM beacon.collection c
              WHERE c.project = $1 AND c.name = $2",
            &[project.into(), collection.into()],
            |row| row.get::<String>(1),
        )?;
        Ok(periods
            .into_iter()
            .next()
            .map(|period| period.as_deref().and_then(Period::parse)))
    })
}

/// What `collect` needs of a collection before it inserts: its partition period (None:
/// a plain table) and its fields.
pub type CollectionState = (Option<Period>, Rc<Fields>);

thread_local! {
    /// `collection_state` of the collections this backend wrote to (see `catalog_cache`).
    static STATES: RefCell<Remembered<(String, String), CollectionState>> =
        RefCell::new(Remembered::new());
}

/// The collection's partition period and fields, or None when it does not exist: what
/// every `collect` needs before it inserts. Remembered per backend while the collection's
/// table and pg_beacon's catalog stay unchanged, which every change of either tells.
pub fn collection_state(project: &str, collection: &str) -> BeaconResult<Option<CollectionState>> {
    let now = catalog_cache::generation();
    let key = (project.to_string(), collection.to_string());
    if let Some(state) = STATES.with(|c| c.borrow_mut().get(now, &key)) {
        return Ok(Some(state));
    }
    // watched before it is read: a change committed meanwhile starts a new generation
    let Some(relid) = relation_of(project, collection) else {
        return read_collection_state(project, collection);
    };
    catalog_cache::watch(relid);
    let state = read_collection_state(project, collection)?;
    if let Some(state) = &state {
        STATES.with(|c| c.borrow_mut().put(now, key, state.clone(), 1024));
    }
    Ok(state)
}

/// The table of a collection as the latest committed catalog has it (syscache).
fn relation_of(project: &str, collection: &str) -> Option<pg_sys::Oid> {
    let (schema, name) = (CString::new(project).ok()?, CString::new(collection).ok()?);
    // SAFETY: syscache lookups by name of two C strings that outlive the calls; neither
    // raises an error
    let relid = unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        if namespace == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

fn read_collection_state(project: &str, collection: &str) -> BeaconResult<Option<CollectionState>> {
    let rows = catalog(|| {
        crate::spi::kept_rows(
            "SELECT c.period, f.property, f.column_name, f.type
               FROM (SELECT pg_catalog.to_jsonb(c) ->> 'partition_period' AS period
                       FROM beacon.collection c WHERE c.project = $1 AND c.name = $2) AS c
               LEFT JOIN beacon.field f ON f.project = $1 AND f.collection = $2",
            &[project.into(), collection.into()],
            |row| {
                Ok((
                    row.get::<String>(1)?,
                    row.get::<String>(2)?,
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?.unwrap_or_default(),
                ))
            },
        )
    })?;
    let Some(period) = rows
        .first()
        .map(|(period, ..)| period.as_deref().and_then(Period::parse))
    else {
        return Ok(None);
    };
    let fields = rows
        .into_iter()
        .filter_map(|(_, property, column, ty)| {
            let ty = ColumnType::from_sql(&ty);
            property.map(|property| (property, Field { column, ty }))
        })
        .collect();
    Ok(Some((period, Rc::new(fields))))
}

/// Creates the collection's table unless it exists (plain, or partitioned per `period`
/// when given), and returns its partition period. Runs as the owner.
pub fn ensure_collection(project: &str, collection: &str) -> BeaconResult<Option<Period>> {
    ensure_collection_as(project, collection, None)
}

pub fn ensure_collection_as(
    project: &str,
    collection: &str,
    period: Option<Period>,
) -> BeaconResult<Option<Period>> {
    if let Some(existing) = collection_partitioning(project, collection)? {
        return Ok(existing);
    }
    run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[format!("beacon.collection {project}.{collection}").into()],
    )?;
    if let Some(existing) = collection_partitioning(project, collection)? {
        return Ok(existing);
    }
    if let Some(period) = period {
        create_partitioned(project, collection, period)?;
        return Ok(Some(period));
    }
    let table = table(project, collection);
    run(
        &format!(
            "CREATE TABLE {table} (
                _id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                _time timestamptz NOT NULL DEFAULT now(),
                _user text)"
        ),
        &[],
    )?;
    // Events arrive roughly in time order, which is what BRIN summarizes well at a
    // fraction of a B-tree's insert cost.
    run(&format!("CREATE INDEX ON {table} USING brin (_time)"), &[])?;
    run(
        &format!(
            "COMMENT ON TABLE {table} IS {}",
            quote_literal(&format!("pg_beacon event collection {collection}"))
        ),
        &[],
    )?;
    catalog(|| {
        run(
            "INSERT INTO beacon.collection (project, name) VALUES ($1, $2)",
            &[project.into(), collection.into()],
        )
    })?;
    Ok(None)
}

pub fn comment_partitioned(project: &str, collection: &str, period: Period) -> BeaconResult<()> {
    run(
        &format!(
            "COMMENT ON TABLE {} IS {}",
            table(project, collection),
            quote_literal(&format!(
                "pg_beacon event collection {collection}, partitioned by {}",
                period.as_str()
            ))
        ),
        &[],
    )
}

/// A new collection partitioned by `_time`. `_id` is a plain sequence default, not an
/// identity: PostgreSQL 15 has no identity columns on partitioned tables. The primary key
/// must hold the partition key.
fn create_partitioned(project: &str, collection: &str, period: Period) -> BeaconResult<()> {
    let table = table(project, collection);
    run(
        &format!(
            "CREATE TABLE {table} (
                _id bigserial NOT NULL,
                _time timestamptz NOT NULL DEFAULT now(),
                _user text,
                PRIMARY KEY (_id, _time)) PARTITION BY RANGE (_time)"
        ),
        &[],
    )?;
    run(&format!("CREATE INDEX ON {table} USING brin (_time)"), &[])?;
    comment_partitioned(project, collection, period)?;
    catalog(|| {
        run(
            "INSERT INTO beacon.collection (project, name, partition_period) VALUES ($1, $2, $3)",
            &[project.into(), collection.into(), period.as_str().into()],
        )
    })
}

pub fn load_fields(project: &str, collection: &str) -> BeaconResult<Fields> {
    catalog(|| load_fields_here(project, collection))
}

fn load_fields_here(project: &str, collection: &str) -> BeaconResult<Fields> {
    let rows = crate::spi::kept_rows(
        "SELECT property, column_name, type FROM beacon.field WHERE project = $1 AND collection = $2",
        &[project.into(), collection.into()],
        |row| {
            Ok((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<String>(3)?.unwrap_or_default(),
            ))
        },
    )?;
    Ok(rows
        .into_iter()
        .map(|(property, column, ty)| {
            (
                property,
                Field {
                    column,
                    ty: ColumnType::from_sql(&ty),
                },
            )
        })
        .collect())
}

/// Adds the `wanted` properties that are still missing, and returns the collection's full,
/// fresh field map. A property another session added meanwhile keeps that session's type.
/// Properties beyond `beacon.max_fields` get no column (the caller rejects their events).
pub fn add_fields(
    project: &str,
    collection: &str,
    wanted: &[(String, ColumnType)],
) -> BeaconResult<Fields> {
    let table = table(project, collection);
    run(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"), &[])?;
    let mut fields = load_fields(project, collection)?;
    let limit = usize::try_from(guc::MAX_FIELDS.get()).unwrap_or(0);
    let mut additions = Vec::new();
    for (property, ty) in wanted {
        if fields.contains_key(property) {
            continue;
        }
        if fields.len() >= limit {
            break;
        }
        let column = column_for_property(property, |candidate| {
            fields.values().any(|f| f.column == candidate)
        });
        additions.push(format!("ADD COLUMN {} {}", quote_ident(&column), ty.sql()));
        catalog(|| {
            run(
                "INSERT INTO beacon.field (project, collection, property, column_name, type) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    project.into(),
                    collection.into(),
                    property.as_str().into(),
                    column.as_str().into(),
                    ty.sql().into(),
                ],
            )
        })?;
        fields.insert(
            property.clone(),
            Field {
                column,
                ty: Some(*ty),
            },
        );
    }
    if !additions.is_empty() {
        run(
            &format!("ALTER TABLE {table} {}", additions.join(", ")),
            &[],
        )?;
    }
    Ok(fields)
}

/// Reports how a `define_collection` type request compares with what exists.
pub fn check_declared(fields: &Fields, property: &str, declared: ColumnType) -> BeaconResult<()> {
    match fields.get(property) {
        Some(Field { ty: Some(ty), .. }) if *ty == declared => Ok(()),
        Some(Field { ty, column }) => Err(BeaconError::TypeMismatch(format!(
            "property \"{property}\" already exists as column \"{column}\" of type {}, not {}",
            ty.map(|t| t.sql()).unwrap_or("(unsupported)"),
            declared.sql()
        ))),
        None => Err(BeaconError::LimitExceeded(format!(
            "cannot add property \"{property}\": the collection already has {} property columns (beacon.max_fields)",
            fields.len()
        ))),
    }
}
