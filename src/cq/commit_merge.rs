//! The commit-time merge of one immediate query, as its project's owner role.
//!
//! `beacon._cq_merge()` (sql/cq.sql) runs as the extension owner, because it reads the
//! catalog of every project the transaction wrote to. It must not call a project's merge
//! function itself: that function belongs to the project owner role, which could make it
//! SECURITY INVOKER (or replace it) between the catalog check and the call, and it would
//! then run as the extension owner. Here the call is made as the project owner role
//! whatever the function's attributes say.

use crate::error::{report, BeaconResult};
use crate::names::quote_ident;
use crate::security::{catalog, AsOwner};
use crate::spi::{kept_one, kept_write};
use pgrx::prelude::*;

fn merge(project: &str, name: &str) -> BeaconResult<()> {
    let applied = {
        let _owner = AsOwner::for_project(project)?;
        let function = format!(
            "{}.{}",
            quote_ident(project),
            quote_ident(&format!("_cq_{name}_merge"))
        );
        // kept plans (see `spi::kept`): this runs at every commit of a writer
        if !kept_one::<bool>(
            "SELECT pg_catalog.to_regprocedure($1 OPERATOR(pg_catalog.||) '()') IS NOT NULL",
            &[function.as_str().into()],
        )?
        .unwrap_or(false)
        {
            return Ok(());
        }
        kept_one::<i64>(&format!("SELECT {function}()"), &[])?.unwrap_or(0)
    };
    if applied > 0 {
        count_applied(project, name, applied)?;
    }
    Ok(())
}

/// Adds to the query's count of merged partials in the row of this backend's slot: one
/// counter row per query would make every committing writer of the query queue behind
/// the others' commits (it is locked until commit, WAL flush included).
fn count_applied(project: &str, name: &str, applied: i64) -> BeaconResult<()> {
    catalog(|| {
        kept_write::<i64>(
            "INSERT INTO beacon.cq_applied AS a (project, name, slot, partials) VALUES ($1, $2, $3, $4)
             ON CONFLICT (project, name, slot) DO UPDATE SET partials = a.partials OPERATOR(pg_catalog.+) excluded.partials",
            &[project.into(), name.into(), backend_slot().into(), applied.into()],
            false,
        )
        .map(|_| ())
    })
}

/// A number no other live backend has: PostgreSQL's own slot number of the backend.
fn backend_slot() -> i32 {
    // SAFETY: set once when the backend starts, read on its only thread
    #[cfg(feature = "pg15")]
    let slot = unsafe { pg_sys::MyBackendId };
    // SAFETY: as above
    #[cfg(not(feature = "pg15"))]
    let slot = unsafe { pg_sys::MyProcNumber };
    slot
}

/// Runs the commit-time merge of immediate query `project`.`name`. Internal: called by
/// `beacon._cq_merge()` for catalogued immediate queries only.
#[pg_extern]
fn _cq_merge_one(project: &str, name: &str) {
    report(merge(project, name))
}

extension_sql!(
    "REVOKE ALL ON FUNCTION beacon._cq_merge_one(text, text) FROM PUBLIC;",
    name = "cq_merge_one_private",
    requires = [_cq_merge_one]
);
