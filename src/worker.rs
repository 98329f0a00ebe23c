//! The background worker: a launcher, registered at start-up, that starts one scheduler
//! per database; each scheduler compacts that database's async continuous queries every
//! `beacon.compact_interval`.
//!
//! The launcher cannot read other databases' catalogs, so it starts a scheduler for every
//! database that accepts connections and restarts any that stopped, rescanning every
//! `LAUNCHER_RESCAN` (new databases are found by themselves). A scheduler in a database
//! without pg_beacon exits at once: a connection and one catalog lookup per rescan, the
//! price of not needing any registration step. A session-level advisory lock makes a
//! second scheduler for the same database exit: there is never more than one.
//! Each unit of work runs in its own transaction, so a crash loses nothing and applies
//! nothing twice (compaction deletes and merges its deltas in one statement).

use crate::guc;
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const LAUNCHER_RESCAN: Duration = Duration::from_secs(5);
pub const SCHEDULER_TYPE: &str = "pg_beacon scheduler";

pub fn register_launcher() {
    BackgroundWorkerBuilder::new("pg_beacon launcher")
        .set_type("pg_beacon launcher")
        .set_function("beacon_launcher_main")
        .set_library("pg_beacon")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

fn databases() -> Vec<String> {
    BackgroundWorker::transaction(|| {
        Spi::connect(|client| {
            client
                .select(
                    "SELECT datname::text FROM pg_catalog.pg_database
                      WHERE datallowconn AND NOT datistemplate ORDER BY 1",
                    None,
                    &[],
                )
                .map(|rows| {
                    rows.filter_map(|row| row.get::<String>(1).ok().flatten())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    })
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn beacon_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    let mut started: HashMap<String, DynamicBackgroundWorker> = HashMap::new();
    // Databases whose scheduler was found gone at the last scan. A scheduler is restarted
    // one rescan after it was found gone, never at once: DROP DATABASE stops the scheduler
    // and then needs the database to stay free of sessions for a moment.
    let mut found_gone: HashSet<String> = HashSet::new();
    let mut next_scan = Instant::now();
    loop {
        // the latch is also set when a scheduler starts or stops; only rescan on schedule
        let now = Instant::now();
        if now < next_scan {
            if !BackgroundWorker::wait_latch(Some(next_scan - now)) {
                break;
            }
            if BackgroundWorker::sighup_received() {
                // SAFETY: what a backend does on SIGHUP, outside any transaction, in the
                // worker's own (only) thread, as PostgreSQL's own workers do
                unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            }
            continue;
        }
        next_scan = now + LAUNCHER_RESCAN;
        let mut gone_now = HashSet::new();
        for db in databases() {
            match started.get(&db) {
                Some(worker) if worker.pid().is_ok() => continue,
                Some(_) if !found_gone.contains(&db) => {
                    gone_now.insert(db);
                    continue;
                }
                _ => {}
            }
            match BackgroundWorkerBuilder::new(&format!("{SCHEDULER_TYPE} {db}"))
                .set_type(SCHEDULER_TYPE)
                .set_function("beacon_scheduler_main")
                .set_library("pg_beacon")
                .set_extra(&db)
                .enable_spi_access()
                .set_restart_time(None)
                // SAFETY: MyProcPid is set once at backend start and only read here
                .set_notify_pid(unsafe { pg_sys::MyProcPid })
                .load_dynamic()
            {
                Ok(worker) => {
                    started.insert(db, worker);
                }
                Err(_) => log!("pg_beacon launcher: no background worker slot for database {db}"),
            }
        }
        found_gone = gone_now;
    }
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
    let owns_database = BackgroundWorker::transaction(|| {
        extension_installed()
            && Spi::get_one::<bool>(
                "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pg_beacon scheduler'))",
            )
            .ok()
            .flatten()
            .unwrap_or(false)
    });
    if !owns_database {
        return;
    }
    log!("pg_beacon scheduler started for database {db}");
    loop {
        let interval = Duration::from_millis(guc::COMPACT_INTERVAL_MS.get().max(10) as u64);
        if !BackgroundWorker::wait_latch(Some(interval)) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: as in the launcher: outside a transaction, on the worker's only thread
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let still_installed = BackgroundWorker::transaction(|| {
            let installed = extension_installed();
            if installed && function_present("beacon.compact(text,text)") {
                if let Err(e) = Spi::run("SELECT beacon.compact()") {
                    log!("pg_beacon scheduler: compaction failed: {e}");
                }
            }
            installed
        });
        if !still_installed {
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
        refresh_due_materialized_views();
    }
    log!("pg_beacon scheduler for database {db} exiting");
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

static mut PREVIOUS_UTILITY_HOOK: pg_sys::ProcessUtility_hook_type = None;

/// DROP DATABASE refuses to run while any other session is connected, and PostgreSQL 15
/// only clears autovacuum workers out of the way. This hook stops the database's
/// scheduler first (it exits at its next latch wake-up; DROP DATABASE waits up to five
/// seconds for sessions to leave), so dropping a database with pg_beacon just works.
pub fn install_drop_database_hook() {
    // SAFETY: hooks are installed from _PG_init, single-threaded, before any utility
    // statement runs; the previous hook is kept and called, as the hook protocol requires
    unsafe {
        PREVIOUS_UTILITY_HOOK = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(beacon_process_utility);
    }
}

/// PostgreSQL's own entry point, declared without pgrx's guard: an error it raises must
/// reach the caller exactly as PostgreSQL raised it. Through the guard it would be caught,
/// turned into a Rust panic and re-raised, with a Rust backtrace in its DETAIL whenever the
/// server's environment has RUST_BACKTRACE.
mod unguarded {
    use pgrx::pg_sys;

    extern "C-unwind" {
        #[allow(clippy::too_many_arguments)]
        pub fn standard_ProcessUtility(
            statement: *mut pg_sys::PlannedStmt,
            query: *const std::ffi::c_char,
            read_only_tree: bool,
            context: pg_sys::ProcessUtilityContext::Type,
            params: pg_sys::ParamListInfo,
            environment: *mut pg_sys::QueryEnvironment,
            destination: *mut pg_sys::DestReceiver,
            completion: *mut pg_sys::QueryCompletion,
        );
    }
}

/// Not `#[pg_guard]`ed, on purpose (see `unguarded`): our own work runs in the guarded
/// `before_utility`, and by the time the statement runs this frame owns nothing that
/// needs dropping, so PostgreSQL's longjmp out of it skips no Rust destructor.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn beacon_process_utility(
    statement: *mut pg_sys::PlannedStmt,
    query: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    environment: *mut pg_sys::QueryEnvironment,
    destination: *mut pg_sys::DestReceiver,
    completion: *mut pg_sys::QueryCompletion,
) {
    before_utility(statement);
    // SAFETY: the arguments are PostgreSQL's own, passed on unchanged to the next hook or
    // to standard_ProcessUtility, which is what PostgreSQL would have called without us.
    match PREVIOUS_UTILITY_HOOK {
        Some(previous) => previous(
            statement,
            query,
            read_only_tree,
            context,
            params,
            environment,
            destination,
            completion,
        ),
        None => unguarded::standard_ProcessUtility(
            statement,
            query,
            read_only_tree,
            context,
            params,
            environment,
            destination,
            completion,
        ),
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn before_utility(statement: *mut pg_sys::PlannedStmt) {
    // SAFETY: `statement` is the PlannedStmt PostgreSQL is about to run; a DropdbStmt's
    // dbname is a NUL-terminated string owned by it.
    let node = (*statement).utilityStmt;
    crate::cq::guard::before_utility(node);
    if !node.is_null() && (*node).type_ == pg_sys::NodeTag::T_DropdbStmt {
        let name = (*(node as *mut pg_sys::DropdbStmt)).dbname;
        if !name.is_null() {
            stop_scheduler(&std::ffi::CStr::from_ptr(name).to_string_lossy());
        }
    }
}

fn stop_scheduler(database: &str) {
    // Only for a caller PostgreSQL will let drop the database (its owner, or a superuser):
    // anyone else's DROP DATABASE fails anyway, and must not stop the scheduler on its way.
    let may_drop = Spi::get_one_with_args::<bool>(
        "SELECT pg_catalog.pg_has_role(current_user, d.datdba, 'USAGE')
           FROM pg_catalog.pg_database d WHERE d.datname OPERATOR(pg_catalog.=) $1::pg_catalog.name",
        &[database.into()],
    );
    if !matches!(may_drop, Ok(Some(true))) {
        return;
    }
    let pids: Vec<i32> = Spi::connect(|client| {
        client
            .select(
                "SELECT pid FROM pg_catalog.pg_stat_activity WHERE backend_type = $1 AND datname = $2",
                None,
                &[SCHEDULER_TYPE.into(), database.into()],
            )
            .map(|rows| rows.filter_map(|row| row.get::<i32>(1).ok().flatten()).collect())
            .unwrap_or_default()
    });
    for &pid in &pids {
        // the scheduler runs as the same OS user as every backend, so no SQL-level
        // privilege is involved in asking it to stop
        // SAFETY: kill(2) takes plain integers; the pid came from pg_stat_activity and the
        // worst a stale one can do is fail with ESRCH (PIDs are not reused that fast)
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    // Wait for them to be gone before DROP DATABASE looks: the launcher may start a new
    // scheduler at its next rescan, and the sooner DROP DATABASE checks for other sessions
    // after the old one left, the smaller that window is.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // SAFETY: signal 0 only checks that the process exists
    while pids.iter().any(|&pid| unsafe { libc::kill(pid, 0) } == 0)
        && std::time::Instant::now() < deadline
    {
        pgrx::check_for_interrupts!();
        std::thread::sleep(Duration::from_millis(5));
    }
}
