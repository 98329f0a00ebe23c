//! The background workers: a launcher, registered at start-up, that starts one scheduler
//! per database with pg_beacon (`launcher`, rotating slots when they are short:
//! `rotation`); each scheduler compacts that database's async continuous queries every
//! `beacon.compact_interval`, cleans up subscriptions and refreshes materialized views that
//! are due (`scheduler`). The shared-memory `board` shows the whole cluster's maintenance.
//!
//! Also here: the ProcessUtility hook, which stops a database's scheduler before
//! DROP DATABASE, and runs the other modules' checks before utility statements.

mod board;
mod launcher;
mod rotation;
mod scheduler;
mod status;

use pgrx::prelude::*;
use std::time::Duration;

pub use board::init as init_board;
pub use launcher::register as register_launcher;
pub const SCHEDULER_TYPE: &str = "pg_beacon scheduler";

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
