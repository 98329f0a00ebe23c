//! Time partitions of event collections: `beacon.partition_collection`,
//! `beacon.set_retention`, `beacon.archive_now`, `beacon.archived_events`, and the
//! scheduler's maintenance (sql/partitions.sql holds the catalog and the views).
//!
//! A partitioned collection is a table `PARTITION BY RANGE (_time)` with one partition per
//! UTC day, ISO week or month, named `_p<YYYYMMDD>_<collection>` (calendar.rs). Nothing
//! else changes for its users: collect writes through the parent, and continuous queries,
//! document views and subscriptions keep their statement-level triggers on the parent,
//! which see the rows of every partition. Partitions are granted to no one, so no write
//! can go around those triggers.
//!
//! An event is never refused for lack of a partition: collect computes each event's
//! period from its `_time` (or the transaction's start), looks the partition up by name
//! in the syscache, and creates the missing ones before it inserts (`ensure`). The
//! scheduler creates them ahead so that this is rare. A partition is created standalone
//! and then attached, which takes SHARE UPDATE EXCLUSIVE on the parent and so lets other
//! writers go on.

mod calendar;
mod convert;
mod retire;

pub use calendar::Period;

use crate::collect::schema::{collection_partitioning, table};
use crate::error::{report, BeaconError, BeaconResult};
use crate::names::{quote_ident, quote_literal, validate_collection_name};
use crate::project::require_project;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::run;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use std::collections::BTreeSet;
use std::ffi::CString;

/// Partitions the scheduler keeps ready beyond the current one.
pub const AHEAD: usize = 2;

fn micros(t: TimestampWithTimeZone) -> i64 {
    pg_sys::TimestampTz::from(t)
}

fn timestamp(micros: i64) -> BeaconResult<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(micros)
        .map_err(|_| BeaconError::InvalidArgument(format!("timestamp {micros} is out of range")))
}

fn transaction_start() -> i64 {
    // SAFETY: a plain read of the transaction's start time, on the backend's only thread
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// The project's schema, by the syscache (None when it is gone).
fn namespace(project: &str) -> Option<pg_sys::Oid> {
    let name = CString::new(project).ok()?;
    // SAFETY: a syscache lookup by name; missing_ok, so it raises no error
    let oid = unsafe { pg_sys::get_namespace_oid(name.as_ptr(), true) };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

/// Whether the relation exists now (the latest committed catalog, whatever the snapshot).
fn relation_in(namespace: pg_sys::Oid, name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: a syscache lookup by name and namespace; it raises no error
    unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) != pg_sys::InvalidOid }
}

/// Locks the collection's table as the INSERT will (ROW EXCLUSIVE), before its events'
/// partitions are computed, and returns its period as the table now is. A writer that
/// waited for `partition_collection` finds the new, partitioned table under the name
/// (PostgreSQL resolves it again after the wait) and the period in the catalog; under
/// REPEATABLE READ its snapshot may predate the conversion, which is a serialization
/// failure to retry. Runs as the owner.
pub(crate) fn lock_for_insert(
    project: &str,
    collection: &str,
    period: Option<Period>,
) -> BeaconResult<Option<Period>> {
    let (Ok(schema), Ok(name)) = (CString::new(project), CString::new(collection)) else {
        return Ok(period);
    };
    // SAFETY: a RangeVar of two C strings that outlive the call; the lookup raises an
    // ERROR (as the INSERT would) when the table is gone, and otherwise returns it locked
    let relkind = unsafe {
        let range = pg_sys::makeRangeVar(schema.as_ptr().cast_mut(), name.as_ptr().cast_mut(), -1);
        let oid = pg_sys::RangeVarGetRelidExtended(
            range,
            pg_sys::RowExclusiveLock as pg_sys::LOCKMODE,
            0,
            None,
            std::ptr::null_mut(),
        );
        pg_sys::get_rel_relkind(oid) as u8
    };
    match (relkind, period) {
        (b'p', None) => match collection_partitioning(project, collection)? {
            Some(Some(period)) => Ok(Some(period)),
            _ => Err(BeaconError::SerializationFailure(format!(
                "collection {project}.{collection} was partitioned after this transaction's \
                 snapshot was taken"
            ))),
        },
        (b'p', Some(period)) => Ok(Some(period)),
        _ => Ok(None),
    }
}

/// Creates the partitions that events at `times` (None: the transaction's start, which
/// is what the `_time` default gives) fall in and that do not exist yet. Runs as the owner.
pub(crate) fn ensure(
    project: &str,
    collection: &str,
    period: Period,
    times: impl Iterator<Item = Option<i64>>,
) -> BeaconResult<()> {
    let now = transaction_start();
    let lowers: BTreeSet<i64> = times.map(|t| period.floor(t.unwrap_or(now))).collect();
    let Some(namespace) = namespace(project) else {
        return Ok(());
    };
    for lower in lowers {
        if !relation_in(namespace, &calendar::partition_name(collection, lower)) {
            create_partition(project, collection, period, lower)?;
        }
    }
    Ok(())
}

/// Creates and attaches the partition starting at `lower` unless another session did it
/// first; true when this call created it. Runs as the owner.
pub(crate) fn create_partition(
    project: &str,
    collection: &str,
    period: Period,
    lower: i64,
) -> BeaconResult<bool> {
    let name = calendar::partition_name(collection, lower);
    run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[format!("beacon.partition {project}.{name}").into()],
    )?;
    // the other session's partition, committed while this one waited for the lock
    // SAFETY: processes pending invalidations, as every lock acquisition does
    unsafe { pg_sys::AcceptInvalidationMessages() };
    let namespace =
        namespace(project).ok_or_else(|| BeaconError::UnknownProject(project.into()))?;
    if relation_in(namespace, &name) {
        return Ok(false);
    }
    let upper = period.next(lower);
    let parent = table(project, collection);
    let partition = format!("{}.{}", quote_ident(project), quote_ident(&name));
    run(
        &format!("CREATE TABLE {partition} (LIKE {parent} INCLUDING DEFAULTS)"),
        &[],
    )?;
    run(
        &format!(
            "ALTER TABLE {parent} ATTACH PARTITION {partition} FOR VALUES FROM ({}) TO ({})",
            calendar::timestamp_sql(lower),
            calendar::timestamp_sql(upper)
        ),
        &[],
    )?;
    revoke_partition(project, &name)?;
    run(
        &format!(
            "COMMENT ON TABLE {partition} IS {}",
            quote_literal(&format!(
                "pg_beacon partition of {collection}: {} to {}",
                calendar::date_label(lower),
                calendar::date_label(upper)
            ))
        ),
        &[],
    )?;
    record_partition(project, collection, period, lower)?;
    Ok(true)
}

pub(crate) fn record_partition(
    project: &str,
    collection: &str,
    period: Period,
    lower: i64,
) -> BeaconResult<()> {
    catalog(|| {
        run(
            "INSERT INTO beacon.partition (project, collection, lower, upper, relname)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                project.into(),
                collection.into(),
                timestamp(lower)?.into(),
                timestamp(period.next(lower))?.into(),
                calendar::partition_name(collection, lower).into(),
            ],
        )
    })
}

/// The default privileges gave a new partition to the project's roles: writes through
/// the parent need none, and a direct write would go around the parent's triggers.
pub(crate) fn revoke_partition(project: &str, name: &str) -> BeaconResult<()> {
    let role = |level: &str| quote_ident(&format!("beacon_{project}_{level}"));
    run(
        &format!(
            "REVOKE ALL ON {}.{} FROM PUBLIC, {}, {}",
            quote_ident(project),
            quote_ident(name),
            role("read"),
            role("write")
        ),
        &[],
    )
}

/// The current partition and `AHEAD` more. Runs as the owner.
pub(crate) fn create_ahead(project: &str, collection: &str, period: Period) -> BeaconResult<i64> {
    let mut lower = period.floor(transaction_start());
    let mut created = 0;
    let namespace =
        namespace(project).ok_or_else(|| BeaconError::UnknownProject(project.into()))?;
    for _ in 0..=AHEAD {
        if !relation_in(namespace, &calendar::partition_name(collection, lower)) {
            created += i64::from(create_partition(project, collection, period, lower)?);
        }
        lower = period.next(lower);
    }
    Ok(created)
}

fn checked(project: &str, collection: &str, level: Level) -> BeaconResult<AsOwner> {
    validate_collection_name(collection).map_err(|e| BeaconError::InvalidName(e.to_string()))?;
    require_level(project, level)?;
    let owner = AsOwner::for_project(project)?;
    require_project(project)?;
    Ok(owner)
}

/// The collection's period; an error when it is missing or not partitioned.
fn partitioned(project: &str, collection: &str) -> BeaconResult<Period> {
    match collection_partitioning(project, collection)? {
        None => Err(BeaconError::UnknownCollection(
            project.into(),
            collection.into(),
        )),
        Some(None) => Err(BeaconError::Unsupported(format!(
            "collection {project}.{collection} is not partitioned: call \
             beacon.partition_collection first"
        ))),
        Some(Some(period)) => Ok(period),
    }
}

/// Makes `collection` partitioned by `_time` per `period` ('day', 'week' or 'month'): a
/// new collection is created so, an existing one is converted (its events move into the
/// partitions while writers wait, and its continuous queries, document views and
/// subscriptions are generated again on the new table). Returns how many events moved.
/// Requires admin.
#[pg_extern]
fn partition_collection(project: &str, collection: &str, period: &str) -> i64 {
    report((|| {
        let period = Period::parse(period).ok_or_else(|| {
            BeaconError::InvalidArgument(format!(
                "unsupported partition period {}: use 'day', 'week' or 'month'",
                quote_literal(period)
            ))
        })?;
        let _owner = checked(project, collection, Level::Admin)?;
        convert::partition(project, collection, period)
    })())
}

/// Most periods `create_partitions` covers in one call: each new partition holds a few
/// locks to the end of the transaction, and the lock table is shared and bounded.
const MAX_CREATED: i64 = 1_000;

/// Creates the partitions of `collection` that [from, to) needs and that do not exist yet,
/// for SQL written by hand (`INSERT … SELECT` of history, an `UPDATE` of `_time`): only
/// `collect` creates missing partitions by itself. Returns how many it created; at most
/// 1,000 periods per call. Requires admin.
#[pg_extern]
fn create_partitions(
    project: &str,
    collection: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> i64 {
    report((|| {
        let _owner = checked(project, collection, Level::Admin)?;
        let period = partitioned(project, collection)?;
        if from.is_infinity() || from.is_neg_infinity() || to.is_infinity() || to.is_neg_infinity()
        {
            return Err(BeaconError::InvalidArgument(
                "from and to must be finite".into(),
            ));
        }
        let (from, to) = (micros(from), micros(to));
        let namespace =
            namespace(project).ok_or_else(|| BeaconError::UnknownProject(project.into()))?;
        let mut lowers = Vec::new();
        let mut lower = period.floor(from);
        while lower < to {
            if lowers.len() as i64 >= MAX_CREATED {
                return Err(BeaconError::LimitExceeded(format!(
                    "[from, to) spans more than {MAX_CREATED} {}s: create them in several calls",
                    period.as_str()
                )));
            }
            lowers.push(lower);
            lower = period.next(lower);
        }
        let mut created = 0;
        for lower in lowers {
            if !relation_in(namespace, &calendar::partition_name(collection, lower)) {
                created += i64::from(create_partition(project, collection, period, lower)?);
            }
        }
        Ok(created)
    })())
}

/// Keeps `collection`'s partitions for `keep`: the scheduler drops every partition whose
/// whole range is older than `now() - keep`, after writing it to the Parquet archive when
/// `archive`. NULL `keep` keeps everything. Continuous queries keep their history.
/// Requires admin.
#[pg_extern]
fn set_retention(
    project: &str,
    collection: &str,
    keep: Option<pgrx::datum::Interval>,
    archive: default!(bool, false),
) {
    report((|| {
        let _owner = checked(project, collection, Level::Admin)?;
        partitioned(project, collection)?;
        if let Some(keep) = keep {
            if !crate::spi::exists("SELECT $1 > interval '0'", &[keep.into()])? {
                return Err(BeaconError::InvalidArgument(
                    "keep must be a positive interval".into(),
                ));
            }
        }
        catalog(|| {
            run(
                "UPDATE beacon.collection SET retention_keep = $3, retention_archive = $4
                  WHERE project = $1 AND name = $2",
                &[
                    project.into(),
                    collection.into(),
                    keep.into(),
                    archive.into(),
                ],
            )
        })
    })())
}

/// Archives now, to Parquet files under `beacon.archive_dir`, every partition of
/// `collection` whose whole range is before `before`, and drops them; returns how many
/// events were archived. Requires admin.
#[pg_extern]
fn archive_now(project: &str, collection: &str, before: TimestampWithTimeZone) -> i64 {
    report((|| {
        let _owner = checked(project, collection, Level::Admin)?;
        partitioned(project, collection)?;
        let mut archived = 0;
        for lower in retire::partitions_before(project, collection, micros(before))? {
            archived += retire::retire(project, collection, lower, true)?;
        }
        Ok(archived)
    })())
}

/// The archived events of `collection` whose `_time` is in [from, to) (either bound NULL:
/// open), read back from the Parquet files, oldest first: `_id`, `_time`, `_user` and the
/// other properties as jsonb, named as collect received them. Requires read.
#[pg_extern]
fn archived_events(
    project: &str,
    collection: &str,
    from: default!(Option<TimestampWithTimeZone>, "NULL"),
    to: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(_id, i64),
        name!(_time, TimestampWithTimeZone),
        name!(_user, Option<String>),
        name!(properties, pgrx::JsonB),
    ),
> {
    TableIterator::new(report((|| {
        let _owner = checked(project, collection, Level::Read)?;
        retire::read_archived(project, collection, from, to)
    })()))
}

/// The scheduler's work for one partitioned collection: the partitions ahead, then the
/// lower bounds of those retention retires now. Superuser only (REVOKEd in SQL).
#[pg_extern]
fn _maintain_partitions(project: &str, collection: &str) -> Vec<TimestampWithTimeZone> {
    report((|| {
        let _owner = AsOwner::for_project(project)?;
        let Some(Some(period)) = collection_partitioning(project, collection)? else {
            return Ok(Vec::new());
        };
        create_ahead(project, collection, period)?;
        retire::due(project, collection)?
            .into_iter()
            .map(timestamp)
            .collect()
    })())
}

/// Retires (archives when the collection's retention says so, then drops) one partition.
/// Superuser only (REVOKEd in SQL).
#[pg_extern]
fn _retire_partition(project: &str, collection: &str, lower: TimestampWithTimeZone) -> i64 {
    report((|| {
        let _owner = AsOwner::for_project(project)?;
        let archive = catalog(|| {
            Ok(Spi::get_one_with_args::<bool>(
                "SELECT retention_archive FROM beacon.collection WHERE project = $1 AND name = $2",
                &[project.into(), collection.into()],
            )?)
        })?;
        match archive {
            Some(archive) => retire::retire(project, collection, micros(lower), archive),
            None => Ok(0),
        }
    })())
}

extension_sql_file!(
    "../../../sql/partitions.sql",
    name = "partitions_catalog",
    requires = [
        "bootstrap",
        "documents_catalog",
        _maintain_partitions,
        _retire_partition
    ]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;
