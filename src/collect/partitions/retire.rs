//! Retention and the archive: a partition past its collection's `keep` (or before
//! `archive_now`'s bound) is written to Parquet, when asked, and then dropped.
//!
//! One partition per transaction, in this order:
//! 1. the partition is locked EXCLUSIVE (late events for it wait; reads go on);
//! 2. its rows are written to `<project>/<collection>/date=<lower>/part-<n>.parquet`
//!    under `beacon.archive_dir`: a hidden temporary file, fsynced, renamed, the directory
//!    fsynced, then read back and checked (row count and checksum, `archive::write_table`),
//!    and the row count compared with the partition's;
//! 3. the file is recorded in `beacon.archive_file` and the partition dropped, in the same
//!    transaction.
//!
//! A crash before the commit leaves the partition and no record (a file written by the
//! failed attempt has no record and is written over by the next one, which takes the same
//! `n`); after it, a complete, verified file and no partition. So an event is in the
//! partition or in a recorded file, never neither, and never in two recorded files.
//!
//! Continuous queries are not told: dropping old raw events does not change them.
//! Document views reading the collection are rebuilt from the rows kept.

use super::calendar;
use super::{micros, partitioned, timestamp};
use crate::collect::archive;
use crate::collect::schema::table;
use crate::error::{BeaconError, BeaconResult};
use crate::names::quote_ident;
use crate::security::catalog;
use crate::spi::{run, text_pairs};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use std::collections::HashMap;

fn lowers(sql: &str, args: &[pgrx::datum::DatumWithOid]) -> BeaconResult<Vec<i64>> {
    catalog(|| {
        Spi::connect(|client| {
            client
                .select(sql, None, args)?
                .map(|row| Ok(row.get::<TimestampWithTimeZone>(1)?.map(micros)))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
        .map(|l| l.into_iter().flatten().collect())
        .map_err(BeaconError::from)
    })
}

/// Partitions whose whole range is older than the collection's retention.
pub(super) fn due(project: &str, collection: &str) -> BeaconResult<Vec<i64>> {
    lowers(
        "SELECT p.lower FROM beacon.partition p
           JOIN beacon.collection c ON c.project = p.project AND c.name = p.collection
          WHERE p.project = $1 AND p.collection = $2 AND c.retention_keep IS NOT NULL
            AND p.upper <= pg_catalog.now() - c.retention_keep
          ORDER BY p.lower",
        &[project.into(), collection.into()],
    )
}

/// Partitions whose whole range is before `before`.
pub(super) fn partitions_before(
    project: &str,
    collection: &str,
    before: i64,
) -> BeaconResult<Vec<i64>> {
    lowers(
        "SELECT lower FROM beacon.partition
          WHERE project = $1 AND collection = $2 AND upper <= $3 ORDER BY lower",
        &[project.into(), collection.into(), timestamp(before)?.into()],
    )
}

/// Test hook: crash the server at a step of the archive (superuser sessions only).
fn crash_point(step: &str) {
    let wanted = Spi::get_one::<String>(
        "SELECT pg_catalog.current_setting('pg_beacon.archive_crash_point', true)",
    )
    .ok()
    .flatten();
    // SAFETY: reads the session's user id and its catalog attribute, as superuser() does
    let superuser = unsafe { pg_sys::superuser_arg(pg_sys::GetSessionUserId()) };
    if superuser && wanted.as_deref() == Some(step) {
        std::process::abort();
    }
}

fn skip_busy() -> BeaconResult<bool> {
    Ok(Spi::get_one::<String>(
        "SELECT pg_catalog.current_setting('pg_beacon.compact_skip_busy', true)",
    )?
    .as_deref()
        == Some("on"))
}

/// Archives (when `archive`) and drops the partition starting at `lower`; returns how
/// many events it held. Runs as the owner.
pub(super) fn retire(
    project: &str,
    collection: &str,
    lower: i64,
    archive: bool,
) -> BeaconResult<i64> {
    let period = partitioned(project, collection)?;
    let name = calendar::partition_name(collection, lower);
    let partition = format!("{}.{}", quote_ident(project), quote_ident(&name));
    let forget = || {
        catalog(|| {
            run(
                "DELETE FROM beacon.partition WHERE project = $1 AND collection = $2 AND lower = $3",
                &[project.into(), collection.into(), timestamp(lower)?.into()],
            )
        })
    };
    if !crate::spi::exists(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[partition.as_str().into()],
    )? {
        return forget().map(|_| 0);
    }
    let nowait = if skip_busy()? { " NOWAIT" } else { "" };
    run(
        &format!("LOCK TABLE {partition} IN EXCLUSIVE MODE{nowait}"),
        &[],
    )?;
    let rows = Spi::get_one::<i64>(&format!("SELECT count(*) FROM {partition}"))?.unwrap_or(0);
    if archive && rows > 0 {
        let n = catalog(|| {
            Ok(Spi::get_one_with_args::<i64>(
                "SELECT count(*) FROM beacon.archive_file
                  WHERE project = $1 AND collection = $2 AND lower = $3",
                &[project.into(), collection.into(), timestamp(lower)?.into()],
            )?
            .unwrap_or(0))
        })?;
        let relative = calendar::archive_path(project, collection, lower, n);
        let written = archive::write_table(&partition, &archive::archive_root().join(&relative))?;
        if written.rows != rows {
            return Err(BeaconError::Unsupported(format!(
                "archive of {partition} holds {} rows, the partition {rows}: nothing was dropped",
                written.rows
            )));
        }
        crash_point("written");
        catalog(|| {
            run(
                "INSERT INTO beacon.archive_file (project, collection, lower, upper, file, rows,
                        min_time, max_time, bytes, checksum)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    project.into(),
                    collection.into(),
                    timestamp(lower)?.into(),
                    timestamp(period.next(lower))?.into(),
                    relative.as_str().into(),
                    written.rows.into(),
                    written.min_time.into(),
                    written.max_time.into(),
                    written.bytes.into(),
                    written.checksum.as_str().into(),
                ],
            )
        })?;
    }
    // DROP locks the parent first, then the partition (already held)
    run(
        &format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE{nowait}",
            table(project, collection)
        ),
        &[],
    )?;
    run(&format!("DROP TABLE {partition}"), &[])?;
    forget()?;
    crash_point("dropped");
    for view in crate::documents::views_reading(project, collection)? {
        crate::documents::rebuild_all(project, &view)?;
    }
    Ok(rows)
}

/// `_id`, `_time`, `_user` and the other properties of an archived event.
pub(super) type ArchivedRow = (i64, TimestampWithTimeZone, Option<String>, pgrx::JsonB);

/// The archived events of a collection with `_time` in [from, to), oldest first.
pub(super) fn read_archived(
    project: &str,
    collection: &str,
    from: Option<TimestampWithTimeZone>,
    to: Option<TimestampWithTimeZone>,
) -> BeaconResult<Vec<ArchivedRow>> {
    let files = catalog(|| {
        crate::spi::texts(
            "SELECT file FROM beacon.archive_file
              WHERE project = $1 AND collection = $2
                AND ($3::timestamptz IS NULL OR max_time >= $3)
                AND ($4::timestamptz IS NULL OR min_time < $4)
              ORDER BY lower, file",
            &[project.into(), collection.into(), from.into(), to.into()],
        )
    })?;
    let names: HashMap<String, String> = catalog(|| {
        text_pairs(
            "SELECT column_name, property FROM beacon.field WHERE project = $1 AND collection = $2",
            &[project.into(), collection.into()],
        )
    })?
    .into_iter()
    .collect();
    let root = archive::archive_root();
    let mut rows = Vec::new();
    for file in files {
        // recorded by pg_beacon itself; refused anyway if it could leave the archive
        if file.starts_with('/') || file.split('/').any(|part| part == "..") {
            return Err(BeaconError::Unsupported(format!(
                "archive entry {file} is not a relative path inside beacon.archive_dir"
            )));
        }
        rows.extend(archive::read_rows(&root.join(&file), from, to, &names)?);
    }
    rows.sort_by_key(|(id, time, _, _)| (micros(*time), *id));
    Ok(rows)
}
