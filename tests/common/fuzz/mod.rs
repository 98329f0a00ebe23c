//! A seeded differential fuzzer for continuous queries: random legal queries over a table
//! with a column of every common type, random DML from concurrent writers with different
//! session settings, and after every round each view compared with its defining query
//! (before and after compaction). The classes it draws from are all in `classes.rs`.
//!
//! `BEACON_FUZZ_SEED` replays a run (the generated queries and statements; not the thread
//! interleaving), `BEACON_FUZZ_SECONDS` runs epochs until the time is up instead of the
//! fixed short run, `BEACON_FUZZ_REPORT` names a file the summary is written to.

pub mod classes;
pub mod dml;
pub mod gen;
pub mod oracle;
pub mod run;

use std::time::{SystemTime, UNIX_EPOCH};

/// splitmix64: tiny, fast, and every seed (0 included) gives a good sequence.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// true with probability `percent`/100
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A name drawn from `(name, weight)` pairs.
    pub fn weighted(&mut self, items: &[(&'static str, u32)]) -> &'static str {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut at = (self.next() % total as u64) as u32;
        for (name, weight) in items {
            if at < *weight {
                return name;
            }
            at -= weight;
        }
        items[0].0
    }

    /// An independent stream for one part of the run, so that what one part draws does
    /// not shift what the others draw.
    pub fn derive(seed: u64, parts: &[u64]) -> Rng {
        let mut rng = Rng::new(seed);
        for part in parts {
            rng = Rng::new(rng.next() ^ part.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        }
        rng
    }
}

pub struct Config {
    pub seed: u64,
    /// The long run: epochs until this many seconds have passed.
    pub seconds: Option<u64>,
    /// The short run: this many epochs of `rounds` rounds.
    pub epochs: u64,
    pub rounds: u64,
    pub report: Option<String>,
}

impl Config {
    pub fn from_env(epochs: u64, rounds: u64) -> Config {
        let seed = std::env::var("BEACON_FUZZ_SEED")
            .ok()
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("BEACON_FUZZ_SEED: an unsigned integer")
            })
            .unwrap_or_else(|| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                now.as_secs() * 1000 + u64::from(now.subsec_millis())
            });
        let seconds = std::env::var("BEACON_FUZZ_SECONDS")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.trim()
                    .parse()
                    .expect("BEACON_FUZZ_SECONDS: a number of seconds")
            });
        Config {
            seed,
            seconds,
            epochs,
            rounds,
            report: std::env::var("BEACON_FUZZ_REPORT").ok(),
        }
    }

    pub fn rerun(&self, epoch_seed: u64) -> String {
        format!(
            "re-run: BEACON_FUZZ_SEED={epoch_seed} BEACON_TEST_PG=<major> ./scripts/test.sh cq_fuzz \
             (or scripts/fuzz.sh --seconds N --seed {epoch_seed}); the run's seed is {}",
            self.seed
        )
    }
}

/// SQLSTATE, message, detail, hint and context of an error.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                text.push_str(&format!(" DETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                text.push_str(&format!(" HINT: {h}"));
            }
            if let Some(w) = db.where_() {
                text.push_str(&format!(" CONTEXT: {w}"));
            }
            text
        }
        None => e.to_string(),
    }
}

pub fn sqlstate(e: &postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| "client".into())
}

/// At most `max` characters (long string values would drown a report).
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    format!("{head}… ({} chars)", text.chars().count())
}

pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An error's SQLSTATE and message without details or numbers: what failure classes of
/// errors are named by.
pub fn error_class(text: &str) -> String {
    let mut message = text;
    for cut in [" DETAIL: ", " HINT: ", " CONTEXT: "] {
        if let Some(at) = message.find(cut) {
            message = &message[..at];
        }
    }
    // generated names and numbers differ from one occurrence to the next
    let mut quoted = false;
    let message: String = message
        .chars()
        .filter_map(|c| match c {
            '"' => {
                quoted = !quoted;
                Some('"')
            }
            _ if quoted => None,
            c if c.is_ascii_digit() => Some('#'),
            c => Some(c),
        })
        .collect();
    let state: String = text.chars().take(5).collect();
    format!("{state}{}", shorten(&message[5.min(message.len())..], 90))
}
