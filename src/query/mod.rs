//! `beacon.query`: analysis SQL from untrusted callers, confined to one project by two
//! independent barriers.
//!
//! 1. `analyze` parses the text and refuses anything outside a read-only subset that
//!    names only the project's tables and allow-listed functions, and the query run is
//!    its rewritten, fully qualified form, never the caller's text. `sql_policy::check`
//!    then judges what PostgreSQL itself resolves that text to (functional notation,
//!    types and operators found through search_path), right before it runs.
//! 2. That query runs as the project's read role (a restricted security context, as
//!    inside SECURITY DEFINER code, so it cannot SET ROLE back), with `search_path` set
//!    to the project schema, with the transaction flagged read-only and under its own
//!    statement timeout. A query the parser wrongly accepts still cannot read another
//!    project, write anything, or run forever.
//!
//! Everything changed for the call (user, GUCs, read-only flag, timer) is restored when
//! it returns or fails, so the caller's transaction goes on as before.

pub mod analyze;

use crate::error::{report, BeaconError, BeaconResult};
use crate::guc;
use crate::names::quote_ident;
use crate::project::require_project;
use crate::security::{pin_settings, require_level, role_name, AsOwner, Level};
use crate::sql_policy::{self, Policy};
use pgrx::prelude::*;
use pgrx::JsonB;

/// Returns the query rewritten by `analyze`, or why it is refused.
pub fn checked_query(project: &str, sql: &str) -> BeaconResult<String> {
    analyze::check_query(sql, project)
        .map_err(|refusal| BeaconError::refused("query refused", refusal))
}

// PostgreSQL's timeout.h, which pgrx does not bind.
const STATEMENT_TIMEOUT: i32 = 3;
extern "C-unwind" {
    fn enable_timeout_after(id: i32, delay_ms: i32);
    fn enable_timeout_at(id: i32, fin_time: pg_sys::TimestampTz);
    fn disable_timeout(id: i32, keep_indicator: bool);
    fn get_timeout_active(id: i32) -> bool;
    fn get_timeout_finish_time(id: i32) -> pg_sys::TimestampTz;
}

/// The confinement of barrier 2, undone on drop (also when an ERROR unwinds through it).
struct Confined {
    previous_user: pg_sys::Oid,
    previous_context: i32,
    previous_read_only: bool,
    guc_level: i32,
    /// The statement timeout that was armed before ours, to re-arm afterwards.
    outer_timeout: Option<pg_sys::TimestampTz>,
    armed: bool,
}

impl Confined {
    fn enter(project: &str, role: pg_sys::Oid, timeout_ms: i32) -> BeaconResult<Confined> {
        let search_path = format!("pg_catalog, {}, pg_temp", quote_ident(project));
        if search_path.contains('\0') {
            return Err(BeaconError::InvalidArgument(
                "project name contains NUL".into(),
            ));
        }
        // the rendered query is read under pg_beacon's settings, never the caller's
        let guc_level = pin_settings(Some(&search_path));
        // SAFETY: what PostgreSQL does around a SECURITY DEFINER call and a statement
        // timeout, on the backend's only thread: the user id and XactReadOnly are saved
        // here and restored on drop (and by (sub)transaction abort); the timeout calls use
        // PostgreSQL's own STATEMENT_TIMEOUT id and are undone on drop.
        unsafe {
            let mut confined = Confined {
                previous_user: pg_sys::InvalidOid,
                previous_context: 0,
                previous_read_only: pg_sys::XactReadOnly,
                guc_level,
                outer_timeout: None,
                armed: false,
            };
            pg_sys::GetUserIdAndSecContext(
                &mut confined.previous_user,
                &mut confined.previous_context,
            );
            pg_sys::SetUserIdAndSecContext(
                role,
                confined.previous_context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
            pg_sys::XactReadOnly = true;
            let now = pg_sys::GetCurrentTimestamp();
            let ours = now + i64::from(timeout_ms) * 1000;
            if get_timeout_active(STATEMENT_TIMEOUT) {
                let outer = get_timeout_finish_time(STATEMENT_TIMEOUT);
                if outer > ours {
                    confined.outer_timeout = Some(outer);
                    enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
                    confined.armed = true;
                }
            } else {
                enable_timeout_after(STATEMENT_TIMEOUT, timeout_ms);
                confined.armed = true;
            }
            Ok(confined)
        }
    }
}

impl Drop for Confined {
    fn drop(&mut self) {
        // SAFETY: restores exactly what `enter` saved, in reverse order; the GUC level is
        // the one `pin_settings` opened for this guard.
        unsafe {
            if self.armed {
                match self.outer_timeout {
                    Some(fin) => enable_timeout_at(STATEMENT_TIMEOUT, fin),
                    None => disable_timeout(STATEMENT_TIMEOUT, false),
                }
            }
            pg_sys::XactReadOnly = self.previous_read_only;
            pg_sys::SetUserIdAndSecContext(self.previous_user, self.previous_context);
            pg_sys::AtEOXact_GUC(true, self.guc_level);
        }
    }
}

fn read_role(project: &str) -> BeaconResult<pg_sys::Oid> {
    let _owner = AsOwner::enter()?;
    require_project(project)?;
    Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[role_name(project, Level::Read).into()],
    )?
    .ok_or_else(|| BeaconError::UnknownProject(project.to_string()))
}

/// Most rows a generated analysis statement may return.
const MAX_GENERATED_ROWS: i64 = 100_000;

/// Runs a statement pg_beacon built for an analysis function (`crate::analysis`) the way
/// `beacon.query` runs a caller's: through the text checker and its renderer, then the
/// decisive check, as the project's read role, read-only, under `beacon.query_timeout`.
/// The user expressions inside it were checked on their own before they were pasted;
/// this makes a mistake in the generator as harmless as one in a caller's query. The
/// caller must have checked read access.
pub(crate) fn run_generated<T>(
    project: &str,
    sql: &str,
    mut each: impl FnMut(&pgrx::spi::SpiHeapTupleData) -> BeaconResult<T>,
) -> BeaconResult<Vec<T>> {
    let read_role = read_role(project)?;
    let rewritten = checked_query(project, sql)?;
    let limited = format!(
        "SELECT * FROM ({rewritten}) AS q LIMIT {}",
        MAX_GENERATED_ROWS + 1
    );
    let _confined = Confined::enter(project, read_role, guc::QUERY_TIMEOUT_MS.get())?;
    if let Err(refusal) = sql_policy::check(&limited, &Policy::query(project)) {
        refusal.raise("analysis refused");
    }
    let rows = Spi::connect(|client| {
        let mut rows = Vec::new();
        for row in client.select(&limited, None, &[])? {
            rows.push(each(&row)?);
        }
        Ok::<_, BeaconError>(rows)
    })?;
    if rows.len() as i64 > MAX_GENERATED_ROWS {
        return Err(BeaconError::LimitExceeded(format!(
            "the result has more than {MAX_GENERATED_ROWS} rows; narrow the time range or the breakdown"
        )));
    }
    Ok(rows)
}

fn run_query(project: &str, sql: &str, row_limit: i32) -> BeaconResult<Vec<JsonB>> {
    if row_limit < 1 {
        return Err(BeaconError::InvalidArgument(format!(
            "row_limit must be at least 1, not {row_limit}"
        )));
    }
    require_level(project, Level::Read)?;
    let read_role = read_role(project)?;
    let rewritten = checked_query(project, sql)?;
    // one row more than allowed tells a complete result from a cut one; a literal, so
    // that the text checked below is exactly the text run (inside pg_beacon's own
    // measurement of each row's size)
    let checked = format!(
        "SELECT pg_catalog.to_jsonb(q) AS j FROM ({rewritten}) AS q LIMIT {}",
        i64::from(row_limit) + 1
    );
    let wrapped =
        format!("SELECT r.j, pg_catalog.pg_column_size(r.j)::bigint FROM ({checked}) AS r");
    let max_bytes = i64::from(guc::QUERY_MAX_BYTES.get());
    let mut rows = {
        let _confined = Confined::enter(project, read_role, guc::QUERY_TIMEOUT_MS.get())?;
        // the decisive check: PostgreSQL's own reading of the statement, in the role and
        // search_path it runs with
        if let Err(refusal) = sql_policy::check(&checked, &Policy::query(project)) {
            refusal.raise("query refused");
        }
        Spi::connect(|client| {
            let mut total = 0i64;
            let mut rows = Vec::new();
            for row in client.select(&wrapped, None, &[])? {
                total += row.get::<i64>(2)?.unwrap_or(0);
                if total > max_bytes {
                    return Err(BeaconError::LimitExceeded(format!(
                        "the result of beacon.query exceeds beacon.query_max_bytes ({max_bytes} \
                         bytes) after {} rows; ask for fewer rows or smaller values",
                        rows.len()
                    )));
                }
                rows.push(
                    row.get::<JsonB>(1)?
                        .unwrap_or(JsonB(serde_json::Value::Null)),
                );
            }
            Ok(rows)
        })?
    };
    if rows.len() > row_limit as usize {
        rows.truncate(row_limit as usize);
        notice!("beacon.query: result cut to row_limit = {row_limit} rows");
    }
    Ok(rows)
}

/// Runs read-only analysis SQL on one project for an untrusted caller and returns each
/// row as a jsonb object. Only one SELECT (or WITH … SELECT) over the project's tables
/// and allow-listed functions is accepted; it runs as the project's read role in a
/// read-only context, under `beacon.query_timeout`, and at most `row_limit` rows are
/// returned (a NOTICE says when the result was cut). Requires read access.
#[pg_extern]
fn query(
    project: &str,
    sql: &str,
    row_limit: default!(i32, 10000),
) -> SetOfIterator<'static, JsonB> {
    SetOfIterator::new(report(run_query(project, sql, row_limit)))
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
