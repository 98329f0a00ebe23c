//! The refresh of an async view's pending changes (the scheduler's, or the user's).

use super::{functions, relation, stored, Mode, REFRESH_BATCH};
use crate::error::BeaconResult;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::{exists, run};
use pgrx::prelude::*;

/// Takes ACCESS SHARE on each of the tables if it is free now (name order); false when
/// one is not.
fn try_lock_tables(project: &str, tables: &[String]) -> BeaconResult<bool> {
    let mut sorted = tables.to_vec();
    sorted.sort();
    for table in sorted {
        let Some(oid) = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[relation(project, &table).as_str().into()],
        )?
        else {
            continue;
        };
        // SAFETY: a relation lock by OID, held to the end of the transaction like LOCK TABLE's
        let locked = unsafe {
            pg_sys::ConditionalLockRelationOid(oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE)
        };
        if !locked {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Rebuilds the documents of pending changes of one async view now; returns how many
/// pending entries it applied. The scheduler calls it (through refresh_document_view).
pub(super) fn refresh_one(project: &str, name: &str) -> BeaconResult<i64> {
    require_level(project, Level::Write)?;
    let _owner = AsOwner::for_project(project)?;
    let stored = stored(project, name)?;
    if stored.mode == Mode::Immediate {
        return Ok(0);
    }
    // One refresher per view at a time: a second one, with an older snapshot, could
    // otherwise write an older document over a newer one. The scheduler waits for
    // nothing: it skips a view another refresh holds, or whose tables DDL waits for (a
    // DROP … CASCADE, TRUNCATE), which would deadlock with it.
    let lock_name = functions::refresh_lock_name(&stored.layout);
    if exists(
        "SELECT pg_catalog.current_setting('pg_beacon.compact_skip_busy', true) = 'on'",
        &[],
    )? {
        if !exists(
            "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
            &[lock_name.as_str().into()],
        )? || !try_lock_tables(project, &stored.layout.spec.tables())?
        {
            return Ok(0);
        }
    } else {
        run(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
            &[lock_name.as_str().into()],
        )?;
    }
    let refresh = stored.layout.qualified_function("refresh");
    let mut applied = 0i64;
    loop {
        let taken = Spi::get_one_with_args::<i64>(
            &format!("SELECT {refresh}($1)"),
            &[REFRESH_BATCH.into()],
        )?
        .unwrap_or(0);
        applied += taken;
        if taken < i64::from(REFRESH_BATCH) {
            break;
        }
    }
    catalog(|| {
        run(
            "UPDATE beacon.document_view
                SET entries_applied = entries_applied + $3, last_refresh = pg_catalog.now(),
                    last_error = NULL
              WHERE project = $1 AND name = $2",
            &[project.into(), name.into(), applied.into()],
        )
    })?;
    Ok(applied)
}
