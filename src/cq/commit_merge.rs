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
use crate::spi::{kept_one, kept_rows, kept_write};
use pgrx::prelude::*;

/// Merges the current transaction's deltas of immediate query `project`.`name`, as the
/// project owner role (the caller holds an `AsOwner::for_project` guard), and returns how
/// many partials it merged.
fn merge_as_owner(project: &str, name: &str) -> BeaconResult<i64> {
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
        return Ok(0);
    }
    Ok(kept_one::<i64>(&format!("SELECT {function}()"), &[])?.unwrap_or(0))
}

fn merge(project: &str, name: &str) -> BeaconResult<()> {
    let applied = {
        let _owner = AsOwner::for_project(project)?;
        merge_as_owner(project, name)?
    };
    count_applied(&[(project.to_string(), name.to_string(), applied)])
}

/// The commit-time merge of every catalogued immediate query that `pending` lists
/// (`,project.name,…`), in (project, name) order, so that merging transactions lock
/// groups in one global order: one call per commit, one role switch per project and one
/// statement counting what was merged, whatever the number of queries.
fn merge_pending(pending: &str) -> BeaconResult<()> {
    let queries = kept_rows(
        "SELECT c.project, c.name
           FROM pg_catalog.unnest(pg_catalog.string_to_array($1, ',')) AS e (entry)
           JOIN beacon.continuous_query c
             ON c.project OPERATOR(pg_catalog.=) pg_catalog.split_part(e.entry, '.', 1)
            AND c.name OPERATOR(pg_catalog.=) pg_catalog.split_part(e.entry, '.', 2)
            AND c.mode OPERATOR(pg_catalog.=) 'immediate'
          ORDER BY c.project COLLATE \"C\", c.name COLLATE \"C\"",
        &[pending.into()],
        |row| {
            Ok((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
            ))
        },
    )?;
    let mut applied = Vec::with_capacity(queries.len());
    for project_queries in queries.chunk_by(|a, b| a.0 == b.0) {
        let project = &project_queries[0].0;
        let _owner = AsOwner::for_project(project)?;
        for (_, name) in project_queries {
            applied.push((
                project.clone(),
                name.clone(),
                merge_as_owner(project, name)?,
            ));
        }
    }
    count_applied(&applied)
}

/// Adds to each query's count of merged partials in the row of this backend's slot: one
/// counter row per query would make every committing writer of the query queue behind
/// the others' commits (it is locked until commit, WAL flush included).
fn count_applied(applied: &[(String, String, i64)]) -> BeaconResult<()> {
    let applied: Vec<&(String, String, i64)> = applied.iter().filter(|a| a.2 > 0).collect();
    if applied.is_empty() {
        return Ok(());
    }
    let projects: Vec<String> = applied.iter().map(|a| a.0.clone()).collect();
    let names: Vec<String> = applied.iter().map(|a| a.1.clone()).collect();
    let partials: Vec<i64> = applied.iter().map(|a| a.2).collect();
    catalog(|| {
        kept_write::<i64>(
            "INSERT INTO beacon.cq_applied AS a (project, name, slot, partials)
             SELECT u.project, u.name, $3, u.partials
               FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]),
                               pg_catalog.unnest($4::pg_catalog.int8[])) AS u (project, name, partials)
             ON CONFLICT (project, name, slot) DO UPDATE SET partials = a.partials OPERATOR(pg_catalog.+) excluded.partials",
            &[projects.into(), names.into(), backend_slot().into(), partials.into()],
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
/// the `beacon._cq_merge()` of catalogs before 0.2.1, for catalogued immediate queries.
#[pg_extern]
fn _cq_merge_one(project: &str, name: &str) {
    report(merge(project, name))
}

/// Runs the commit-time merges of the immediate queries a transaction lists in its
/// `pg_beacon.pending_merges`. Internal: called by `beacon._cq_merge()`.
#[pg_extern]
fn _cq_merge_pending(pending: &str) {
    report(merge_pending(pending))
}

extension_sql!(
    "REVOKE ALL ON FUNCTION beacon._cq_merge_one(text, text) FROM PUBLIC;
     REVOKE ALL ON FUNCTION beacon._cq_merge_pending(text) FROM PUBLIC;",
    name = "cq_merge_one_private",
    requires = [_cq_merge_one, _cq_merge_pending]
);
