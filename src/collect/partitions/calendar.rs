//! Partition arithmetic on PostgreSQL timestamps (microseconds since 2000-01-01 00:00
//! UTC), in UTC: which period an event falls in, the next period, and the names pg_beacon
//! gives partitions and archive files. Pure, so collect can find an event's partition
//! without asking the server.

use crate::names::MAX_IDENT_BYTES;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    /// 'day', 'week' or 'month', or the equal intervals '1 day', '7 days', '1 week',
    /// '1 month', '1 mon' (any case, spaces trimmed).
    pub fn parse(text: &str) -> Option<Period> {
        let text = text.trim().to_ascii_lowercase();
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["day"] | ["1", "day"] | ["daily"] => Some(Period::Day),
            ["week"] | ["1", "week"] | ["7", "days"] | ["weekly"] => Some(Period::Week),
            ["month"] | ["1", "month"] | ["1", "mon"] | ["monthly"] => Some(Period::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The start of the period holding `micros` (weeks start on Monday, as ISO and
    /// `date_trunc('week', …)` have it).
    pub fn floor(self, micros: i64) -> i64 {
        let day = micros.div_euclid(MICROS_PER_DAY);
        let start = match self {
            Period::Day => day,
            // 2000-01-03, PostgreSQL's day 2, was a Monday
            Period::Week => day - (day - 2).rem_euclid(7),
            Period::Month => {
                let (y, m, _) = civil_from_days(day + PG_EPOCH_DAYS);
                days_from_civil(y, m, 1) - PG_EPOCH_DAYS
            }
        };
        start * MICROS_PER_DAY
    }

    /// The start of the period after the one starting at `lower`.
    pub fn next(self, lower: i64) -> i64 {
        let day = lower.div_euclid(MICROS_PER_DAY);
        let next = match self {
            Period::Day => day + 1,
            Period::Week => day + 7,
            Period::Month => {
                let (y, m, _) = civil_from_days(day + PG_EPOCH_DAYS);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) - PG_EPOCH_DAYS
            }
        };
        next * MICROS_PER_DAY
    }
}

/// (year, month, day) of a partition start, in UTC.
pub fn date_of(micros: i64) -> (i64, u32, u32) {
    civil_from_days(micros.div_euclid(MICROS_PER_DAY) + PG_EPOCH_DAYS)
}

/// `YYYY-MM-DD`, the Hive-style `date=` value of an archive.
pub fn date_label(micros: i64) -> String {
    let (y, m, d) = date_of(micros);
    format!("{y:04}-{m:02}-{d:02}")
}

/// SQL for the timestamptz `micros`, built from numbers only.
pub fn timestamp_sql(micros: i64) -> String {
    let (y, m, d) = date_of(micros);
    let rest = micros.rem_euclid(MICROS_PER_DAY);
    let seconds = rest as f64 / 1e6;
    let (h, rest) = ((seconds / 3600.0) as i64, seconds % 3600.0);
    let (min, s) = ((rest / 60.0) as i64, rest % 60.0);
    format!("pg_catalog.make_timestamptz({y}, {m}, {d}, {h}, {min}, {s}, 'UTC')")
}

/// The name of a collection's partition starting at `lower`: `_p<YYYYMMDD>_<collection>`.
/// Collection names cannot start with `_`, so no collection can take it; a name too long
/// for an identifier keeps a prefix of the collection and a hash of the whole.
pub fn partition_name(collection: &str, lower: i64) -> String {
    let (y, m, d) = date_of(lower);
    let prefix = format!("_p{y:04}{m:02}{d:02}_");
    let full = format!("{prefix}{collection}");
    if full.len() <= MAX_IDENT_BYTES {
        return full;
    }
    let hash = format!("_{:08x}", fnv1a(collection.as_bytes()) as u32);
    let mut keep = MAX_IDENT_BYTES - prefix.len() - hash.len();
    while !collection.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{prefix}{}{hash}", &collection[..keep])
}

/// The archive file of the `n`th archive of a partition, relative to `beacon.archive_dir`.
pub fn archive_path(project: &str, collection: &str, lower: i64, n: i64) -> String {
    format!(
        "{project}/{collection}/date={}/part-{n}.parquet",
        date_label(lower)
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// Howard Hinnant's `days_from_civil`: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;
