//! A scheduler: one per database with pg_beacon, started by the launcher. Each round
//! compacts the database's async continuous queries, cleans up subscriptions and refreshes
//! the materialized views that are due; a round starts every `beacon.compact_interval`.
//!
//! A session-level advisory lock makes a second scheduler for the same database exit:
//! there is never more than one. Each unit of work runs in its own transaction, so a crash
//! loses nothing and applies nothing twice (compaction deletes and merges its deltas in one
//! statement). SIGTERM (shutdown, DROP DATABASE, or the launcher giving the slot to a
//! waiting database) ends the scheduler after the step it is in.

use super::board::{self, Extension, BOARD};
use crate::guc;
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::time::Duration;

fn database_oid() -> u32 {
    // SAFETY: set when the worker connected to its database, read on its only thread
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Whether `CREATE EXTENSION` announced itself in this database within
/// `board::ANNOUNCEMENT` (it may not have committed yet).
fn just_announced() -> bool {
    let board = BOARD.share();
    board
        .find(database_oid())
        .is_some_and(|e| board::now() - e.announced < board::ANNOUNCEMENT)
}

/// Records on the board what this scheduler found and did.
fn note(update: impl FnOnce(&mut board::Entry)) {
    let database = database_oid();
    let mut board = BOARD.exclusive();
    update(board.entry(database));
}

/// The scheduler leaves the board when it exits, however it exits (an ERROR in a
/// transaction ends a background worker).
#[pg_guard]
unsafe extern "C-unwind" fn scheduler_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: MyProcPid is set at backend start
    let pid = unsafe { pg_sys::MyProcPid };
    note(|e| {
        if e.pid == pid {
            e.pid = 0;
        }
    });
}

fn extension_installed() -> bool {
    Spi::get_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_beacon')",
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// A database may hold the SQL objects of an older pg_beacon than the loaded library; calling
/// a function that is missing would raise an ERROR and kill the scheduler at every tick,
/// so each task is skipped unless its function exists.
fn function_present(signature: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL",
        &[signature.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn beacon_scheduler_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let db = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&db), None);
    let (installed, owns_database) = loop {
        let (installed, owns) = BackgroundWorker::transaction(|| {
            let installed = extension_installed();
            let owns = installed
                && Spi::get_one::<bool>(
                    "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pg_beacon scheduler'))",
                )
                .ok()
                .flatten()
                .unwrap_or(false);
            (installed, owns)
        });
        if installed || !just_announced() {
            break (installed, owns);
        }
        // CREATE EXTENSION wakes the launcher before it commits: the scheduler it started
        // waits for that commit rather than exit and come back a rescan or two later
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(200))) {
            return;
        }
    };
    if !owns_database {
        if !installed {
            note(|e| {
                e.extension = Extension::Absent;
                e.checked = board::now();
            });
        }
        return;
    }
    // SAFETY: registers a callback PostgreSQL calls at process exit; the function is
    // `extern "C-unwind"`, guarded, and takes no pointer from the argument
    unsafe { pg_sys::before_shmem_exit(Some(scheduler_exit), pg_sys::Datum::from(0)) };
    note(|e| {
        e.extension = Extension::Installed;
        // SAFETY: MyProcPid is set at backend start
        e.pid = unsafe { pg_sys::MyProcPid };
        e.started = board::now();
        e.rounds = 0;
        e.waiting_since = 0;
    });
    log!("pg_beacon scheduler started for database {db}");
    let mut last_round = std::time::Instant::now();
    loop {
        let interval = Duration::from_millis(guc::COMPACT_INTERVAL_MS.get().max(10) as u64);
        let documents =
            Duration::from_millis(guc::DOCUMENT_REFRESH_INTERVAL_MS.get().max(10) as u64);
        // between rounds, only document views are refreshed, as often as they ask
        let until_round = interval.saturating_sub(last_round.elapsed());
        if !BackgroundWorker::wait_latch(Some(until_round.min(documents))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: as in the launcher: outside a transaction, on the worker's only thread
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if last_round.elapsed() < interval {
            refresh_document_views(false);
            refresh_continuous_analyses();
            continue;
        }
        last_round = std::time::Instant::now();
        let (still_installed, queries) = BackgroundWorker::transaction(|| {
            let installed = extension_installed();
            let queries = if installed && function_present("beacon.compact(text,text)") {
                async_queries()
            } else {
                Vec::new()
            };
            (installed, queries)
        });
        // one transaction per query: locks of a compaction are held to its transaction's
        // end, and one query's tables held while locking the next one's could wait for a
        // create or drop that waits for them
        for (project, name) in queries {
            BackgroundWorker::transaction(|| {
                if let Err(e) = Spi::run(
                    "SELECT pg_catalog.set_config('pg_beacon.compact_skip_busy', 'on', true)",
                ) {
                    log!("pg_beacon scheduler: {e}");
                }
                if let Err(e) = Spi::run_with_args(
                    "SELECT beacon.compact($1, $2)",
                    &[project.as_str().into(), name.as_str().into()],
                ) {
                    log!("pg_beacon scheduler: compaction of {project}.{name} failed: {e}");
                }
            });
        }
        if !still_installed {
            note(|e| {
                e.extension = Extension::Absent;
                e.checked = board::now();
            });
            break;
        }
        BackgroundWorker::transaction(|| {
            if !function_present("beacon._stream_housekeeping()") {
                return;
            }
            if let Err(e) = Spi::run("SELECT beacon._stream_housekeeping()") {
                log!("pg_beacon scheduler: subscription clean-up failed: {e}");
            }
        });
        refresh_document_views(true);
        refresh_continuous_analyses();
        refresh_due_materialized_views();
        maintain_partitions();
        note(|e| {
            e.rounds += 1;
            e.last_round = board::now();
        });
    }
    log!("pg_beacon scheduler for database {db} exiting");
}

/// The pending changes of async document views, each view in its own transaction (its
/// refresh locks it until commit), and (with `housekeeping`, once a round) the end of
/// temporary document subscriptions whose session is gone.
fn refresh_document_views(housekeeping: bool) {
    let views: Vec<(String, String)> = BackgroundWorker::transaction(|| {
        if !function_present("beacon.refresh_document_view(text,text)") {
            return Vec::new();
        }
        crate::spi::text_pairs(
            "SELECT project, name FROM beacon._async_document_views() ORDER BY project, name",
            &[],
        )
        .unwrap_or_else(|e| {
            log!("pg_beacon scheduler: listing document views failed: {e}");
            Vec::new()
        })
    });
    for (project, name) in views {
        if BackgroundWorker::sigterm_received() {
            return;
        }
        BackgroundWorker::transaction(|| {
            if let Err(e) =
                Spi::run("SELECT pg_catalog.set_config('pg_beacon.compact_skip_busy', 'on', true)")
            {
                log!("pg_beacon scheduler: {e}");
            }
            if let Err(e) = Spi::run_with_args(
                "SELECT beacon.refresh_document_view($1, $2)",
                &[project.as_str().into(), name.as_str().into()],
            ) {
                log!("pg_beacon scheduler: refreshing document view {project}.{name} failed: {e}");
            }
        });
    }
    if !housekeeping {
        return;
    }
    BackgroundWorker::transaction(|| {
        if !function_present("beacon._document_housekeeping()") {
            return;
        }
        if let Err(e) = Spi::run("SELECT beacon._document_housekeeping()") {
            log!("pg_beacon scheduler: document subscription clean-up failed: {e}");
        }
    });
}

/// The pending users of async continuous funnels and retention, each analysis in its
/// own transaction (its refresh locks it until commit), as often as document views.
fn refresh_continuous_analyses() {
    let analyses: Vec<(String, String)> = BackgroundWorker::transaction(|| {
        if !function_present("beacon.refresh_continuous_analysis(text,text)") {
            return Vec::new();
        }
        crate::spi::text_pairs(
            "SELECT project, name FROM beacon._async_continuous_analyses() ORDER BY project, name",
            &[],
        )
        .unwrap_or_else(|e| {
            log!("pg_beacon scheduler: listing continuous analyses failed: {e}");
            Vec::new()
        })
    });
    for (project, name) in analyses {
        if BackgroundWorker::sigterm_received() {
            return;
        }
        BackgroundWorker::transaction(|| {
            if let Err(e) =
                Spi::run("SELECT pg_catalog.set_config('pg_beacon.compact_skip_busy', 'on', true)")
            {
                log!("pg_beacon scheduler: {e}");
            }
            if let Err(e) = Spi::run_with_args(
                "SELECT beacon.refresh_continuous_analysis($1, $2)",
                &[project.as_str().into(), name.as_str().into()],
            ) {
                log!("pg_beacon scheduler: refreshing continuous analysis {project}.{name} failed: {e}");
            }
        });
    }
}

/// Each view in its own transaction, so a long refresh holds nothing of the others and a
/// failure (recorded in the catalog by the SQL function) rolls back only its own view.
fn refresh_due_materialized_views() {
    let due: Vec<(String, String)> = BackgroundWorker::transaction(|| {
        if !function_present("beacon._due_materialized_views()")
            || !function_present("beacon._refresh_materialized_view(text,text,boolean,boolean)")
        {
            return Vec::new();
        }
        crate::spi::text_pairs(
            "SELECT project, name FROM beacon._due_materialized_views()",
            &[],
        )
        .unwrap_or_else(|e| {
            log!("pg_beacon scheduler: listing due materialized views failed: {e}");
            Vec::new()
        })
    });
    for (project, name) in due {
        if BackgroundWorker::sigterm_received() {
            return;
        }
        BackgroundWorker::transaction(|| {
            if let Err(e) = Spi::run_with_args(
                "SELECT beacon._refresh_materialized_view($1, $2, false, true)",
                &[project.as_str().into(), name.as_str().into()],
            ) {
                log!("pg_beacon scheduler: refreshing {project}.{name} failed: {e}");
            }
        });
    }
}

/// Partitions ahead and retention, one transaction per collection and per retired
/// partition (an archive holds its partition's lock to its end, and a drop its parent's).
/// A failure is recorded in the catalog, in a transaction of its own, and retried next
/// round.
fn maintain_partitions() {
    let collections: Vec<(String, String)> = BackgroundWorker::transaction(|| {
        if !function_present("beacon._partitioned_collections()") {
            return Vec::new();
        }
        crate::spi::text_pairs(
            "SELECT project, name FROM beacon._partitioned_collections()",
            &[],
        )
        .unwrap_or_else(|e| {
            log!("pg_beacon scheduler: listing partitioned collections failed: {e}");
            Vec::new()
        })
    });
    for (project, collection) in collections {
        if BackgroundWorker::sigterm_received() {
            return;
        }
        let (due, mut error) = BackgroundWorker::transaction(|| {
            skip_busy();
            Spi::get_two_with_args::<Vec<pgrx::datum::TimestampWithTimeZone>, String>(
                "SELECT due, error FROM beacon._maintain_partitions_caught($1, $2)",
                &[project.as_str().into(), collection.as_str().into()],
            )
            .unwrap_or_else(|e| (None, Some(e.to_string())))
        });
        for lower in due.unwrap_or_default() {
            if error.is_some() || BackgroundWorker::sigterm_received() {
                break;
            }
            error = BackgroundWorker::transaction(|| {
                skip_busy();
                Spi::get_one_with_args::<String>(
                    "SELECT beacon._retire_partition_caught($1, $2, $3)",
                    &[
                        project.as_str().into(),
                        collection.as_str().into(),
                        lower.into(),
                    ],
                )
                .unwrap_or_else(|e| Some(e.to_string()))
            });
        }
        if let Some(e) = &error {
            log!(
                "pg_beacon scheduler: maintaining partitions of {project}.{collection} failed: {e}"
            );
        }
        BackgroundWorker::transaction(|| {
            if let Err(e) = Spi::run_with_args(
                "SELECT beacon._partition_maintenance_done($1, $2, $3)",
                &[
                    project.as_str().into(),
                    collection.as_str().into(),
                    error.clone().into(),
                ],
            ) {
                log!("pg_beacon scheduler: {e}");
            }
        });
    }
}

/// Locks the work of this transaction cannot have at once are skipped, not waited for.
fn skip_busy() {
    if let Err(e) =
        Spi::run("SELECT pg_catalog.set_config('pg_beacon.compact_skip_busy', 'on', true)")
    {
        log!("pg_beacon scheduler: {e}");
    }
}

/// The async queries to compact, (project, name).
fn async_queries() -> Vec<(String, String)> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT project, name FROM beacon._async_queries() ORDER BY project, name",
                None,
                &[],
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .unwrap_or_else(|e| {
        log!("pg_beacon scheduler: listing the queries to compact failed: {e}");
        Vec::new()
    })
}
