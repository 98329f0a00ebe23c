//! Every `tide.*` setting lives here so the README's table has one source.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Upper bound on property columns a collection may grow; PostgreSQL's own hard limit is 1,600
/// columns per table, and hitting that mid-batch would fail the whole batch instead of
/// rejecting only the events that bring new properties.
pub static MAX_FIELDS: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// How often the scheduler applies async continuous queries' pending deltas.
pub static COMPACT_INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub fn init() {
    GucRegistry::define_int_guc(
        c"tide.max_fields",
        c"Maximum number of property columns per collection.",
        c"Events that would add a column beyond this limit are stored in <project>._rejected.",
        &MAX_FIELDS,
        1,
        1500,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"tide.compact_interval",
        c"How often the background worker compacts async continuous queries.",
        c"Pending deltas are merged into each query's state this often; reads are exact either way.",
        &COMPACT_INTERVAL_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
}
