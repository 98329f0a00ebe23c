//! One table (a partition of an event collection) as one Parquet file, and back.
//!
//! - [`write_table`] writes every row of a relation to a file atomically: parent
//!   directories created (and their parents fsynced), `<dir>/.<name>.tmp` written and
//!   fsynced, its footer's row count and its checksum checked against what was read and
//!   written, renamed over `path`, the directory fsynced. On any error nothing is left at `path` that was not there before
//!   (a stale `.tmp` is removed, or overwritten by the next attempt); an existing file at
//!   `path` is replaced atomically. The rows are read through an SPI cursor in batches of
//!   [`BATCH_ROWS`]: memory is bounded by a batch plus one row group, never by the table.
//! - [`verify`] re-checks a file against what was recorded: the row count in its footer
//!   and the SHA-256 of its bytes.
//! - [`read_rows`] reads rows back for `archived_events`: `(_id, _time, _user, properties)`
//!   with properties keyed by property name and rendered as `to_jsonb` renders the
//!   original row (with `TimeZone = UTC`).
//!
//! Files are zstd-compressed, with row groups of at most 1M rows or 128 MB, page
//! statistics, and the Arrow schema embedded (each field carries the PostgreSQL type in
//! its `pg_beacon.type` metadata). Columns are the table's non-dropped columns in attnum
//! order, every one nullable. Domains are stored as their base type.
//!
//! | PostgreSQL | Parquet |
//! |---|---|
//! | int2, int4, int8 | INT32 (16-bit int), INT32, INT64 |
//! | float4, float8 | FLOAT, DOUBLE (NaN and ±Infinity kept) |
//! | boolean | BOOLEAN |
//! | timestamptz | INT64 TIMESTAMP(MICROS, isAdjustedToUTC = true) |
//! | timestamp | INT64 TIMESTAMP(MICROS, isAdjustedToUTC = false) |
//! | date | INT32 DATE |
//! | numeric, all values finite and within 38 digits | DECIMAL(38, s), s = the largest scale in the file |
//! | numeric otherwise (NaN, ±Infinity, more digits) | BYTE_ARRAY STRING of PostgreSQL's text output (`pg_beacon.kind = numeric`) |
//! | text, varchar, char(n), name, "char" | BYTE_ARRAY STRING |
//! | json, jsonb | BYTE_ARRAY JSON (its text) |
//! | bytea | BYTE_ARRAY (no logical type) |
//! | one-dimensional arrays of the above | LIST of the element's type, nullable elements |
//! | multi-dimensional arrays, char(n)[], composites, types with a cast to json | JSON: `to_jsonb(value)` |
//! | anything else (interval, uuid, inet, ranges, enums, bytea[]…) | STRING of the text output |
//!
//! PostgreSQL's ±infinity timestamps and dates are stored as DuckDB stores them:
//! `i64::MAX`/`-i64::MAX` micros, `i32::MAX`/`-i32::MAX` days (DuckDB reads them as
//! ±infinity; other readers see out-of-range values). Text output is taken under
//! `DateStyle = ISO`, `IntervalStyle = postgres` and `TimeZone = UTC`, whatever the session
//! set.

mod read;
pub mod types;
mod write;

#[cfg(test)]
mod pure_tests;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

pub use read::read_rows;

use crate::error::{BeaconError, BeaconResult};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::PgMemoryContexts;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Rows fetched from the cursor and converted per Arrow batch.
pub const BATCH_ROWS: i64 = 50_000;
/// Row group bounds: large enough for readers' scans, small enough to buffer.
const ROW_GROUP_ROWS: usize = 1_000_000;
const ROW_GROUP_BYTES: usize = 128 * 1024 * 1024;

/// What `write_table` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedFile {
    pub rows: i64,
    pub bytes: i64,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub checksum: String,
    /// Range of a timestamptz `_time` column (None without one, or when empty).
    pub min_time: Option<TimestampWithTimeZone>,
    pub max_time: Option<TimestampWithTimeZone>,
}

/// `beacon.archive_dir`, relative to the data directory unless absolute.
pub fn archive_root() -> PathBuf {
    let setting = crate::guc::ARCHIVE_DIR
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pg_beacon_archive".to_owned());
    let path = PathBuf::from(setting);
    if path.is_absolute() {
        return path;
    }
    // SAFETY: DataDir is set by the postmaster before any backend or worker runs our code,
    // and is a NUL-terminated string that is never freed.
    let data_dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(data_dir.to_string_lossy().into_owned()).join(path)
}

fn io(what: &str, path: &Path, err: impl std::fmt::Display) -> BeaconError {
    BeaconError::Io(format!(
        "archive: could not {what} \"{}\": {err}",
        path.display()
    ))
}

/// Writes every row of `relation` (schema-qualified and quoted by the caller) to `path`;
/// see the module documentation for the guarantees.
pub fn write_table(relation: &str, path: &Path) -> BeaconResult<ArchivedFile> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BeaconError::InvalidArgument(format!("archive: bad file name {path:?}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // a new directory's own entry must be as durable as the file in it
    let mut created = Vec::new();
    let mut missing = dir;
    while !missing.exists() {
        created.push(missing);
        match missing.parent() {
            Some(parent) => missing = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io("create directory", dir, e))?;
    for parent in created.iter().filter_map(|d| d.parent()) {
        sync_dir(parent)?;
    }
    let temp = TempFile(dir.join(types::temp_name(name)));
    let written = write_temp(relation, &temp.0)?;
    verify(&temp.0, written.rows, &written.checksum)?;
    std::fs::rename(&temp.0, path).map_err(|e| io("rename into place", path, e))?;
    sync_dir(dir)?;
    Ok(written)
}

/// The temporary file, removed when dropped: after an error, and after a PostgreSQL
/// ERROR unwinds through the writer (once renamed it is gone already).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // the next attempt overwrites it; the error that got us here is what matters
            // (no WARNING while a PostgreSQL ERROR unwinds: it is reported next)
            Err(e) if !std::thread::panicking() => {
                pgrx::warning!("archive: could not remove \"{}\": {e}", self.0.display())
            }
            Err(_) => {}
        }
    }
}

fn sync_dir(dir: &Path) -> BeaconResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("fsync directory", dir, e))
}

/// Counts and hashes what the Parquet writer writes.
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_temp(relation: &str, temp: &Path) -> BeaconResult<ArchivedFile> {
    let _settings = OutputSettings::enter();
    let columns = write::columns(relation)?;
    if columns.is_empty() {
        return Err(BeaconError::InvalidArgument(format!(
            "archive: {relation} has no columns"
        )));
    }
    let mut batches = write::BatchBuilder::new(&columns)?;
    let file = File::create(temp).map_err(|e| io("create", temp, e))?;
    let sink = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| io("configure zstd for", temp, e))?,
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("pg_beacon {}", env!("CARGO_PKG_VERSION")))
        .build();
    let mut writer = ArrowWriter::try_new(sink, batches.schema(), Some(props))
        .map_err(|e| io("start writing", temp, e))?;
    let select = columns
        .iter()
        .map(write::Column::expression)
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!("SELECT {select} FROM {relation}");
    let rows = Spi::connect(|client| {
        let mut cursor = client.try_open_cursor(query.as_str(), &[])?;
        let mut rows: i64 = 0;
        // each batch's detoasted values are freed with the batch, not with the connection
        let mut batch_memory = PgMemoryContexts::new("pg_beacon archive batch");
        loop {
            let table = cursor.fetch(BATCH_ROWS)?;
            if table.is_empty() {
                break;
            }
            rows += table.len() as i64;
            // SAFETY: nothing allocated in the context outlives the closure: values are
            // copied into Rust-owned builders before it returns.
            unsafe {
                batch_memory.switch_to(|_| {
                    for row in table {
                        batches.append(&row)?;
                    }
                    Ok::<_, BeaconError>(())
                })?;
            }
            let batch = batches.finish()?;
            writer.write(&batch).map_err(|e| io("write", temp, e))?;
            // SAFETY: the tuple table is consumed and its values copied; SPI would free it
            // only at the end of the connection, so a large table would pile them up.
            unsafe {
                pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
                pg_sys::SPI_tuptable = std::ptr::null_mut();
                batch_memory.reset();
            }
        }
        Ok::<_, BeaconError>(rows)
    })?;
    let mut sink = writer.into_inner().map_err(|e| io("finish", temp, e))?;
    sink.flush().map_err(|e| io("write", temp, e))?;
    let file = sink
        .inner
        .into_inner()
        .map_err(|e| io("write", temp, e.error()))?;
    file.sync_all().map_err(|e| io("fsync", temp, e))?;
    let to_tz = |t: Option<i64>| t.and_then(|t| TimestampWithTimeZone::try_from(t).ok());
    Ok(ArchivedFile {
        rows,
        bytes: sink.bytes as i64,
        checksum: types::hex_digest(sink.hasher),
        min_time: to_tz(batches.min_time),
        max_time: to_tz(batches.max_time),
    })
}

/// Checks that `path` is a Parquet file of `rows` rows (its footer) whose bytes hash to
/// `checksum`.
pub fn verify(path: &Path, rows: i64, checksum: &str) -> BeaconResult<()> {
    let mut file = File::open(path).map_err(|e| io("open", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = types::hex_digest(hasher);
    if actual != checksum {
        return Err(BeaconError::Corrupted(format!(
            "archive file \"{}\" has checksum {actual}, expected {checksum}",
            path.display()
        )));
    }
    let file = File::open(path).map_err(|e| io("open", path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| {
        BeaconError::Corrupted(format!(
            "archive file \"{}\" is not readable Parquet: {e}",
            path.display()
        ))
    })?;
    let metadata = reader.metadata();
    let footer_rows = metadata.file_metadata().num_rows();
    let group_rows: i64 = metadata.row_groups().iter().map(|g| g.num_rows()).sum();
    if footer_rows != rows || group_rows != rows {
        return Err(BeaconError::Corrupted(format!(
            "archive file \"{}\" holds {footer_rows} rows ({group_rows} in its row groups), expected {rows}",
            path.display()
        )));
    }
    Ok(())
}

/// While alive, the settings that change values' text output are fixed (see the module
/// documentation); rolled back on drop or by the transaction's abort.
struct OutputSettings {
    level: i32,
}

impl OutputSettings {
    fn enter() -> OutputSettings {
        let level = crate::security::pin_settings(None);
        // SAFETY: saved at the nest level just opened, which drop rolls back; the name and
        // value are NUL-terminated constants.
        unsafe {
            pg_sys::set_config_option(
                c"TimeZone".as_ptr(),
                c"UTC".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                pg_sys::PGERROR as i32,
                false,
            );
        }
        OutputSettings { level }
    }
}

impl Drop for OutputSettings {
    fn drop(&mut self) {
        // SAFETY: rolls back the nest level `enter` opened (see `pin_settings`).
        unsafe { pg_sys::AtEOXact_GUC(!std::thread::panicking(), self.level) }
    }
}
