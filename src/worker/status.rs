//! What the board says, in SQL: `beacon.workers` (sql/status.sql) reads `beacon._workers()`,
//! and `CREATE EXTENSION` calls `beacon._announce()`, which wakes the launcher and warns
//! when this database will have to wait for a background worker slot.

use super::board::{self, Extension, BOARD};
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{PgLogLevel, PgSqlErrorCode};

fn timestamp(micros: i64) -> Option<TimestampWithTimeZone> {
    if micros == 0 {
        None
    } else {
        TimestampWithTimeZone::try_from(micros).ok()
    }
}

/// The board's entries: one row per database a launcher or scheduler has seen. Internal:
/// read through `beacon.workers`.
#[pg_extern(volatile, parallel_safe)]
#[allow(clippy::type_complexity)]
fn _workers() -> TableIterator<
    'static,
    (
        name!(database, pg_sys::Oid),
        name!(extension, String),
        name!(pid, Option<i32>),
        name!(started, Option<TimestampWithTimeZone>),
        name!(rounds, i64),
        name!(last_round, Option<TimestampWithTimeZone>),
        name!(waiting_since, Option<TimestampWithTimeZone>),
    ),
> {
    if !board::available() {
        return TableIterator::new(Vec::new());
    }
    let board = *BOARD.share();
    let rows: Vec<_> = board
        .entries
        .iter()
        .filter(|e| e.database != 0)
        .map(|e| {
            let extension = match e.extension {
                Extension::Unknown => "unknown",
                Extension::Installed => "installed",
                Extension::Absent => "absent",
            };
            (
                pg_sys::Oid::from(e.database),
                extension.to_string(),
                (e.pid != 0).then_some(e.pid),
                timestamp(if e.pid != 0 { e.started } else { 0 }),
                if e.pid != 0 { e.rounds } else { 0 },
                timestamp(e.last_round),
                timestamp(e.waiting_since),
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Whether the library was preloaded (`shared_preload_libraries`): without it there is no
/// launcher and no scheduler.
#[pg_extern(stable, parallel_safe)]
fn _preloaded() -> bool {
    board::available()
}

/// Background worker slots in use now: every process that is neither a client backend nor
/// one of PostgreSQL's auxiliary processes takes one of `max_worker_processes`.
const SLOTS_IN_USE: &str = "SELECT count(*) FROM pg_catalog.pg_stat_activity
     WHERE backend_type OPERATOR(pg_catalog.<>) ALL (ARRAY['client backend', 'autovacuum launcher',
           'autovacuum worker', 'archiver', 'background writer', 'checkpointer', 'logger',
           'startup', 'walreceiver', 'walsender', 'walwriter', 'wal summarizer', 'io worker',
           'slotsync worker', 'standalone backend', 'dead-end client backend']::pg_catalog.text[])";

fn slot_shortage() -> Option<String> {
    let max: i64 =
        Spi::get_one("SELECT pg_catalog.current_setting('max_worker_processes')::pg_catalog.int8")
            .ok()
            .flatten()?;
    let used: i64 = Spi::get_one(SLOTS_IN_USE).ok().flatten()?;
    let recent = {
        let board = BOARD.share();
        board.last_shortage != 0 && board::now() - board.last_shortage < 60 * board::SECOND
    };
    (used >= max || recent).then(|| {
        format!(
            "{used} of max_worker_processes = {max} background worker slots are in use{}",
            if recent {
                ", and pg_beacon's launcher found none free in the last minute"
            } else {
                ""
            }
        )
    })
}

/// Called at the end of `CREATE EXTENSION`: wakes the launcher so that a scheduler starts
/// within a second or two, and warns when there will not be one for a while.
#[pg_extern(volatile)]
fn _announce() {
    if !board::available() {
        warning!(
            "pg_beacon is not in shared_preload_libraries: no background worker will compact \
             async continuous queries, refresh materialized views or clean up subscriptions \
             (add it, then restart the server)"
        );
        return;
    }
    // SAFETY: set when the backend connected to its database
    let database = unsafe { pg_sys::MyDatabaseId }.to_u32();
    {
        let mut board = BOARD.exclusive();
        board.entry(database).announced = board::now();
        board.rescan = true;
    }
    // the launcher as PostgreSQL lists it now, not a pid remembered from earlier: a pid
    // reused by another process of the OS user would get a signal meant for the launcher
    let launcher = Spi::get_one::<i32>(
        "SELECT pid FROM pg_catalog.pg_stat_activity
          WHERE backend_type OPERATOR(pg_catalog.=) 'pg_beacon launcher' LIMIT 1",
    )
    .ok()
    .flatten();
    if let Some(launcher) = launcher {
        // SIGUSR1 only sets the launcher's latch (PostgreSQL's procsignal handler), and the
        // launcher runs as the same OS user as this backend
        // SAFETY: kill(2) takes plain integers; the pid is a live PostgreSQL background
        // worker's, so at worst (it exited since) the call fails with ESRCH or wakes a
        // PostgreSQL process, whose SIGUSR1 handler only checks for procsignals
        unsafe { libc::kill(launcher, libc::SIGUSR1) };
    }
    if let Some(shortage) = slot_shortage() {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            "no background worker slot is free for pg_beacon's scheduler in this database",
            "pg_beacon",
        )
        .set_detail(format!(
            "{shortage}. Databases with pg_beacon then take turns: each scheduler gives up its \
             slot to a waiting database after a round, so maintenance (compaction, refreshes) \
             is delayed. beacon.workers shows when each database was last maintained."
        ))
        .set_hint("Raise max_worker_processes (it needs a server restart).")
        .report(PgLogLevel::WARNING);
    }
}

extension_sql!(
    "REVOKE ALL ON FUNCTION beacon._announce() FROM PUBLIC;",
    name = "worker_status_private",
    requires = [_announce]
);

extension_sql_file!(
    "../../sql/status.sql",
    name = "status",
    requires = [
        "bootstrap",
        "cq_catalog",
        "stream_catalog",
        "mv_catalog",
        "documents_catalog",
        "partitions_catalog",
        "analysis_catalog",
        _workers,
        _preloaded,
        _announce
    ]
);
