// TEMPORARY STUB (helper's branch replaces it)
use crate::error::BeaconResult;
use pgrx::datum::TimestampWithTimeZone;
use std::collections::HashMap;
use std::path::Path;
pub struct ArchivedFile {
    pub rows: i64,
    pub bytes: i64,
    pub checksum: String,
    pub min_time: Option<TimestampWithTimeZone>,
    pub max_time: Option<TimestampWithTimeZone>,
}
pub fn write_table(_relation: &str, _path: &Path) -> BeaconResult<ArchivedFile> {
    unimplemented!()
}
#[allow(clippy::type_complexity)]
pub fn read_rows(
    _path: &Path,
    _from: Option<TimestampWithTimeZone>,
    _to: Option<TimestampWithTimeZone>,
    _names: &HashMap<String, String>,
) -> BeaconResult<Vec<(i64, TimestampWithTimeZone, Option<String>, pgrx::JsonB)>> {
    unimplemented!()
}
