//! The launcher: registered at start-up, it starts one scheduler per database that has
//! pg_beacon, restarts any that stopped, and rotates the slots when there are fewer
//! background worker slots than databases (see `rotation`).
//!
//! The launcher cannot read other databases' catalogs: a scheduler tells the board whether
//! its database has pg_beacon, and `CREATE EXTENSION` announces itself there and wakes the
//! launcher, so a new database is served within a second or two. Databases without
//! pg_beacon are looked at again only every `board::ABSENT_RECHECK`.

use super::board::{self, Extension, BOARD};
use super::rotation::{self, Candidate, Running};
use super::SCHEDULER_TYPE;
use pgrx::bgworkers::*;
use pgrx::prelude::*;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const LAUNCHER_RESCAN: Duration = Duration::from_secs(5);

pub fn register() {
    BackgroundWorkerBuilder::new("pg_beacon launcher")
        .set_type("pg_beacon launcher")
        .set_function("beacon_launcher_main")
        .set_library("pg_beacon")
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// The databases that accept connections, and the ones whose scheduler is running (by any
/// launcher: one restarted after a crash has no handles for its predecessor's schedulers).
fn databases() -> (Vec<(u32, String)>, HashSet<u32>) {
    BackgroundWorker::transaction(|| {
        Spi::connect(|client| {
            let databases = client
                .select(
                    "SELECT oid::pg_catalog.int8, datname::text FROM pg_catalog.pg_database
                      WHERE datallowconn AND NOT datistemplate ORDER BY 1",
                    None,
                    &[],
                )
                .map(|rows| {
                    rows.filter_map(|row| {
                        let oid = row.get::<i64>(1).ok().flatten()?;
                        let name = row.get::<String>(2).ok().flatten()?;
                        Some((oid as u32, name))
                    })
                    .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let live = client
                .select(
                    "SELECT datid::pg_catalog.int8 FROM pg_catalog.pg_stat_activity
                      WHERE backend_type OPERATOR(pg_catalog.=) $1",
                    None,
                    &[SCHEDULER_TYPE.into()],
                )
                .map(|rows| {
                    rows.filter_map(|row| row.get::<i64>(1).ok().flatten().map(|o| o as u32))
                        .collect::<HashSet<_>>()
                })
                .unwrap_or_default();
            (databases, live)
        })
    })
}

fn start_scheduler(name: &str) -> Option<DynamicBackgroundWorker> {
    BackgroundWorkerBuilder::new(&format!("{SCHEDULER_TYPE} {name}"))
        .set_type(SCHEDULER_TYPE)
        .set_function("beacon_scheduler_main")
        .set_library("pg_beacon")
        .set_extra(name)
        .enable_spi_access()
        .set_restart_time(None)
        // SAFETY: MyProcPid is set once at backend start and only read here
        .set_notify_pid(unsafe { pg_sys::MyProcPid })
        .load_dynamic()
        .ok()
}

struct Launcher {
    started: HashMap<u32, DynamicBackgroundWorker>,
    /// Databases whose scheduler was found gone, and since when. A scheduler is restarted
    /// `LAUNCHER_RESCAN` after it was found gone, never at once: DROP DATABASE stops the
    /// scheduler and then needs the database to stay free of sessions for a moment.
    found_gone: HashMap<u32, Instant>,
    /// Databases that found no slot at the last scan: while there are any, every
    /// scheduler's exit (which sets the latch) gets a scan, so a slot given up is taken
    /// at once.
    waiting: usize,
}

impl Launcher {
    fn scan(&mut self) {
        let (databases, live) = databases();
        let now = board::now();
        let oids: Vec<u32> = databases.iter().map(|(oid, _)| *oid).collect();
        self.started.retain(|oid, _| oids.contains(oid));
        self.found_gone.retain(|oid, _| oids.contains(oid));
        let mut candidates = Vec::new();
        {
            let mut board = BOARD.exclusive();
            board.keep_only(&oids);
            for (oid, _) in &databases {
                let starting = self.started.get(oid).is_some_and(|w| w.pid().is_ok());
                if live.contains(oid) || starting {
                    continue;
                }
                // a scheduler that exited on an error left its pid behind
                if let Some(entry) = board.find_mut(*oid) {
                    entry.pid = 0;
                }
                if self.started.contains_key(oid) {
                    let since = *self.found_gone.entry(*oid).or_insert_with(Instant::now);
                    if since.elapsed() < LAUNCHER_RESCAN {
                        continue;
                    }
                }
                self.found_gone.remove(oid);
                self.started.remove(oid);
                let entry = board.find(*oid);
                if !board::wanted(entry, now) {
                    continue;
                }
                candidates.push(Candidate::of(*oid, entry));
            }
        }
        let names: HashMap<u32, &String> = databases.iter().map(|(o, n)| (*o, n)).collect();
        let mut waiting = 0;
        for candidate in rotation::start_order(candidates) {
            let database = candidate.database;
            // after one failure the others would fail as well: they wait their turn
            let worker = if waiting == 0 {
                start_scheduler(names[&database])
            } else {
                None
            };
            let mut board = BOARD.exclusive();
            match worker {
                Some(worker) => {
                    self.started.insert(database, worker);
                    board.entry(database).waiting_since = 0;
                }
                None => {
                    waiting += 1;
                    board.last_shortage = now;
                    let entry = board.entry(database);
                    if entry.waiting_since == 0 {
                        entry.waiting_since = now;
                    }
                }
            }
        }
        if waiting > 0 {
            self.rotate(waiting);
        }
        self.waiting = waiting;
    }

    fn rotate(&mut self, waiting: usize) {
        let running: Vec<Running> = {
            let board = BOARD.share();
            self.started
                .keys()
                .filter_map(|oid| board.find(*oid))
                .filter(|e| e.pid != 0 && e.extension == Extension::Installed)
                .map(|e| Running {
                    database: e.database,
                    started: e.started,
                    rounds: e.rounds,
                })
                .collect()
        };
        for database in rotation::to_yield(running, waiting) {
            if let Some(worker) = self.started.remove(&database) {
                // the scheduler finishes the step it is in and exits (see `scheduler`)
                let _ = worker.terminate();
            }
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn beacon_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(Some("postgres"), None);
    BOARD.exclusive().rescan = false;
    let mut launcher = Launcher {
        started: HashMap::new(),
        found_gone: HashMap::new(),
        waiting: 0,
    };
    let mut next_scan = Instant::now();
    loop {
        // the latch is also set when a scheduler starts or stops; rescan on schedule,
        // when CREATE EXTENSION asked for it, or when databases wait for a slot
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
            let requested = std::mem::take(&mut BOARD.exclusive().rescan);
            if !requested && launcher.waiting == 0 {
                continue;
            }
        }
        next_scan = Instant::now() + LAUNCHER_RESCAN;
        launcher.scan();
    }
}
