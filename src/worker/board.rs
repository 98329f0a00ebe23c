//! The workers' notice board in shared memory: for every database the launcher knows, whether
//! it has pg_beacon, its scheduler, when that scheduler last finished a round of work, and
//! since when it has been waiting for a background worker slot.
//!
//! The launcher cannot read other databases' catalogs and a session cannot see other
//! databases' tables, so shared memory is the only place where the whole cluster's
//! maintenance can be seen (`beacon.workers`) and where the launcher learns which schedulers
//! have done their share and may give their slot to a waiting database.

use pgrx::lwlock::PgLwLock;
use pgrx::prelude::*;
use pgrx::shmem::PGRXSharedMemory;

/// Databases tracked at once; a cluster with more is served, but the ones beyond this are
/// neither shown nor rotated fairly.
pub const CAPACITY: usize = 256;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Extension {
    /// No scheduler has looked yet, or `CREATE EXTENSION` announced it a moment ago.
    #[default]
    Unknown = 0,
    Installed = 1,
    Absent = 2,
}

#[derive(Copy, Clone, Debug, Default)]
pub struct Entry {
    /// The database's OID; 0 marks a free entry.
    pub database: u32,
    pub extension: Extension,
    /// When a scheduler last found the extension absent, or `CREATE EXTENSION` announced it.
    pub checked: i64,
    pub announced: i64,
    /// The running scheduler (0: none) and when it started.
    pub pid: i32,
    pub started: i64,
    /// Rounds the running scheduler finished; the end of the database's last round, by any
    /// scheduler.
    pub rounds: i64,
    pub last_round: i64,
    /// Since when the database has been waiting for a slot (0: not waiting).
    pub waiting_since: i64,
}

#[derive(Copy, Clone, Debug)]
pub struct Board {
    /// Set by `CREATE EXTENSION` before it wakes the launcher: scan now.
    pub rescan: bool,
    /// When the launcher last found no slot for a scheduler (0: never).
    pub last_shortage: i64,
    pub entries: [Entry; CAPACITY],
}

impl Default for Board {
    fn default() -> Board {
        Board {
            rescan: false,
            last_shortage: 0,
            entries: [Entry::default(); CAPACITY],
        }
    }
}

// SAFETY: plain integers and enums, no pointers: the same bytes mean the same in every process
unsafe impl PGRXSharedMemory for Board {}

// SAFETY: the name is pg_beacon's own and registered once, from _PG_init
pub static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"pg_beacon worker board") };

static mut INITIALIZED: bool = false;

/// Requests the board's shared memory; only while preloading.
// the macro has branches for PostgreSQL majors this crate does not build for
#[allow(unexpected_cfgs)]
pub fn init() {
    pgrx::pg_shmem_init!(BOARD);
    // SAFETY: set once, from _PG_init on the backend's only thread, before any reader
    unsafe { INITIALIZED = true };
}

/// Whether the board exists: only when the library was preloaded.
pub fn available() -> bool {
    // SAFETY: written only in _PG_init, before any reader runs
    unsafe { INITIALIZED }
}

pub fn now() -> i64 {
    // SAFETY: reads the clock; no state
    unsafe { pg_sys::GetCurrentTimestamp() }
}

pub const SECOND: i64 = 1_000_000;

impl Board {
    pub fn find(&self, database: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.database == database)
    }

    pub fn find_mut(&mut self, database: u32) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.database == database)
    }

    /// The database's entry, taking a free one (or the least useful one) when it has none.
    pub fn entry(&mut self, database: u32) -> &mut Entry {
        let index = match self.entries.iter().position(|e| e.database == database) {
            Some(i) => i,
            None => {
                let i = self
                    .entries
                    .iter()
                    .position(|e| e.database == 0)
                    .or_else(|| {
                        self.entries
                            .iter()
                            .position(|e| e.pid == 0 && e.extension == Extension::Absent)
                    })
                    .unwrap_or(CAPACITY - 1);
                self.entries[i] = Entry {
                    database,
                    ..Entry::default()
                };
                i
            }
        };
        &mut self.entries[index]
    }

    /// Forgets databases that no longer exist.
    pub fn keep_only(&mut self, databases: &[u32]) {
        for e in self.entries.iter_mut() {
            if e.database != 0 && !databases.contains(&e.database) {
                *e = Entry::default();
            }
        }
    }
}

/// How often a database where no scheduler found pg_beacon is looked at again: a
/// `CREATE EXTENSION` there announces itself at once, so this only catches installs into
/// a database whose announcement was lost (a crash, a restore).
pub const ABSENT_RECHECK: i64 = 60 * SECOND;

/// How long an announcement keeps a database worth a scheduler at every rescan: the
/// announcing transaction may not have committed when the first scheduler looks.
pub const ANNOUNCEMENT: i64 = 30 * SECOND;

/// Whether the launcher should have a scheduler for the database at `now`.
pub fn wanted(entry: Option<&Entry>, now: i64) -> bool {
    match entry {
        None => true,
        Some(e) => match e.extension {
            Extension::Unknown | Extension::Installed => true,
            Extension::Absent => {
                now - e.checked >= ABSENT_RECHECK || now - e.announced < ANNOUNCEMENT
            }
        },
    }
}
