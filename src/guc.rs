//! Every `beacon.*` setting lives here so the README's table has one source.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Upper bound on property columns a collection may grow; PostgreSQL's own hard limit is 1,600
/// columns per table, and hitting that mid-batch would fail the whole batch instead of
/// rejecting only the events that bring new properties.
pub static MAX_FIELDS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// Subscriptions per collection: each one's filter is evaluated in every insert.
pub static MAX_SUBSCRIPTIONS: GucSetting<i32> = GucSetting::<i32>::new(100);

/// Length of a subscription filter, which bounds what one filter costs each insert.
pub static MAX_FILTER_BYTES: GucSetting<i32> = GucSetting::<i32>::new(2048);

/// How often the scheduler applies async continuous queries' pending deltas.
pub static COMPACT_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// How often the scheduler rebuilds the documents of async document views' pending
/// changes: documents are pushed to listeners, so they wait less than aggregates.
pub static DOCUMENT_REFRESH_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(200);

/// Statement timeout of `beacon.query`. Superuser-only, because the callers it protects
/// against are the ones who would raise it.
pub static QUERY_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// Size of `beacon.query`'s result (its jsonb rows, as stored), besides its row limit.
pub static QUERY_MAX_BYTES: GucSetting<i32> = GucSetting::<i32>::new(64 * 1024 * 1024);

/// Where archived partitions are written (relative to the data directory unless absolute).
/// SIGHUP: the worker that archives and every backend that reads archives back
/// (`archived_events`) must agree on it.
pub static ARCHIVE_DIR: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"pg_beacon_archive"));

pub fn init() {
    GucRegistry::define_int_guc(
        c"beacon.max_fields",
        c"Maximum number of property columns per collection.",
        c"Events that would add a column beyond this limit are stored in <project>._rejected.",
        &MAX_FIELDS,
        1,
        1500,
        // a limit the callers it protects against could raise would be no limit
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"beacon.max_subscriptions",
        c"Maximum number of subscriptions per collection.",
        c"Every subscription's filter is evaluated for every event inserted into its collection.",
        &MAX_SUBSCRIPTIONS,
        1,
        100_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"beacon.max_filter_bytes",
        c"Maximum length of a subscription filter.",
        c"A filter is evaluated for every event inserted into its collection.",
        &MAX_FILTER_BYTES,
        16,
        8192,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"beacon.compact_interval",
        c"How often the background worker compacts async continuous queries.",
        c"Pending deltas are merged into each query's state this often; reads are exact either way.",
        &COMPACT_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"beacon.document_refresh_interval",
        c"How often the background worker rebuilds documents of async document views.",
        c"Pending changes are applied this often (or every beacon.compact_interval, if shorter); reads are exact either way.",
        &DOCUMENT_REFRESH_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"beacon.query_max_bytes",
        c"Maximum size of a beacon.query result.",
        c"A beacon.query call whose rows add up to more is refused with SQLSTATE 54000.",
        &QUERY_MAX_BYTES,
        1024,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"beacon.query_timeout",
        c"Statement timeout of beacon.query.",
        c"A beacon.query call running longer is cancelled with SQLSTATE 57014.",
        &QUERY_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"beacon.archive_dir",
        c"Directory of the Parquet archive of event partitions.",
        c"A relative path is relative to the data directory. Files are written by the server's OS user.",
        &ARCHIVE_DIR,
        GucContext::Sighup,
        GucFlags::default(),
    );
}
