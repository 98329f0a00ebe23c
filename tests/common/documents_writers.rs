//! Concurrent writers of the seed schema for the document view tests: transactions of
//! random statements (tests/common/documents_olist.rs, `Writes`), retried on 40001/40P01
//! with a random backoff, every other error a failure; under REPEATABLE READ a writer now
//! and then compares every view with the oracle inside its own open transaction (one
//! snapshot, its own writes included).
#![allow(dead_code)]

use crate::common::{Rng, Server};
use crate::documents::{self, DocView};
use crate::olist::{Scale, Writes};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attempts of a transaction failing with 40001/40P01 before the writer gives up.
pub const RETRIES: u64 = 100;

/// `BEACON_SEED`, or the time: printed, and named in every failure.
pub fn seed() -> u64 {
    std::env::var("BEACON_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("BEACON_SEED: an unsigned integer"))
        .unwrap_or_else(|| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            now.as_secs() * 1000 + u64::from(now.subsec_millis())
        })
}

#[derive(Default)]
pub struct Tally {
    pub failures: Vec<String>,
    pub committed: u64,
    pub retried: BTreeMap<String, u64>,
    pub own_reads: u64,
}

pub struct Run<'a> {
    pub server: &'a Server,
    pub db: &'a str,
    pub scale: Scale,
    pub isolation: &'a str,
    pub views: &'a [DocView],
    pub tally: &'a Mutex<Tally>,
    /// Set when the writers are to stop (a crash under way): errors are then expected.
    pub stop: &'a AtomicBool,
    pub done: &'a AtomicU64,
}

/// One writer: `transactions` transactions of 1–3 statements (or until `stop`).
pub fn writer(run: &Run, seed: u64, no: u64, transactions: u64) {
    let mut client = run.server.connect(run.db);
    client.batch_execute(&documents::settings(run.db)).unwrap();
    let mut rng = Rng::new(seed ^ (no + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut jitter = Rng::new(seed.wrapping_add(no));
    let mut writes = Writes::new(run.scale, no);
    let repeatable = run.isolation != "READ COMMITTED";
    for _ in 0..transactions {
        let statements: Vec<String> = (0..1 + rng.below(3))
            .map(|_| writes.statement(&mut rng))
            .collect();
        let own_read = repeatable && rng.below(8) == 0;
        for attempt in 0.. {
            if run.stop.load(Ordering::SeqCst) {
                return;
            }
            // Err((the SQLSTATE when retryable, the error))
            let result = (|| -> Result<(), (Option<String>, String)> {
                let fail = |e: postgres::Error, what: &str| {
                    (
                        documents::retryable(&e).then(|| documents::sqlstate(&e)),
                        format!("{what}: {}", documents::describe(&e)),
                    )
                };
                client
                    .batch_execute(&format!("BEGIN ISOLATION LEVEL {}", run.isolation))
                    .map_err(|e| fail(e, "BEGIN"))?;
                for sql in &statements {
                    client.batch_execute(sql).map_err(|e| fail(e, sql))?;
                }
                if own_read {
                    let wrong = documents::mismatches_in(&mut client, run.views, false, true)
                        .map_err(|e| (None, format!("reading the views: {e}")))?;
                    run.tally.lock().unwrap().own_reads += 1;
                    if !wrong.is_empty() {
                        return Err((
                            None,
                            format!(
                                "inside a writer's open transaction ({}), after:\n  {}\n{}",
                                run.isolation,
                                statements.join(";\n  "),
                                wrong.join("\n")
                            ),
                        ));
                    }
                }
                client
                    .batch_execute("COMMIT")
                    .map_err(|e| fail(e, "COMMIT"))
            })();
            match result {
                Ok(()) => {
                    run.tally.lock().unwrap().committed += 1;
                    run.done.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Err(_) if run.stop.load(Ordering::SeqCst) => return,
                Err((retry, e)) => {
                    let _ = client.batch_execute("ROLLBACK");
                    if let Some(code) = retry.clone().filter(|_| attempt < RETRIES) {
                        *run.tally.lock().unwrap().retried.entry(code).or_default() += 1;
                        let ceiling = 1u64 << attempt.min(7);
                        std::thread::sleep(Duration::from_millis(1 + jitter.below(ceiling)));
                        continue;
                    }
                    let e = if retry.is_some() {
                        format!("{e}\n  failed on each of {RETRIES} attempts")
                    } else {
                        e
                    };
                    run.tally.lock().unwrap().failures.push(format!(
                        "writer {no}: {e}\n  transaction:\n  {}",
                        statements.join(";\n  ")
                    ));
                    break;
                }
            }
        }
    }
}

/// A reader comparing every view with the oracle in snapshots of its own (REPEATABLE
/// READ) while the writers and the worker run, until `stop`: reads are exact at every
/// moment, not only once everything settled. Returns how many comparisons it made.
pub fn reader(run: &Run, finished: &AtomicBool) -> u64 {
    let mut client = run.server.connect(run.db);
    client.batch_execute(&documents::settings(run.db)).unwrap();
    let mut comparisons = 0;
    while !finished.load(Ordering::SeqCst) {
        match documents::mismatches_in(&mut client, run.views, false, false) {
            Ok(wrong) if wrong.is_empty() => comparisons += 1,
            Ok(wrong) => {
                run.tally.lock().unwrap().failures.push(format!(
                    "a reader's snapshot while the writers ran:\n{}",
                    wrong.join("\n")
                ));
                return comparisons;
            }
            Err(e) => {
                run.tally
                    .lock()
                    .unwrap()
                    .failures
                    .push(format!("a reader failed: {e}"));
                return comparisons;
            }
        }
    }
    comparisons
}

// ---------------------------------------------------------------------------------------
// Crash

/// A server of the test's own, stopped and removed however the test ends.
pub struct OwnServer(pub Server);

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = crate::common::pg_command("pg_ctl")
            .args([
                "-D",
                self.0.data.to_str().unwrap(),
                "stop",
                "-m",
                "immediate",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.0.data);
    }
}

/// The processes whose parent is `pid` (a postmaster's children).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may contain spaces, so read after its ')'
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists
    unsafe { libc::kill(pid, 0) == 0 }
}
