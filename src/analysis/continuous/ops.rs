//! What is done with an existing continuous analysis: regenerate, read, refresh, drop.

use super::{
    install_captures, install_functions, lock_tables, stored, Kind, Mode, EVENTS, REFRESH_BATCH,
};
use crate::analysis::sql::Range;
use crate::analysis::{FunnelRow, RetentionRow};
use crate::error::{BeaconError, BeaconResult};
use crate::project::require_project;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::{exists, run};
use pgrx::prelude::*;

/// Regenerates an analysis's functions and captures with the running code.
pub(crate) fn regenerate(project: &str, name: &str) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    let a = stored(project, name)?;
    install_functions(&a)?;
    install_captures(&a)
}

/// The project's continuous analyses reading `collection` (none before the catalog).
pub(crate) fn analyses_reading(project: &str, collection: &str) -> BeaconResult<Vec<String>> {
    if !exists(
        "SELECT pg_catalog.to_regclass('beacon.continuous_analysis') IS NOT NULL",
        &[],
    )? {
        return Ok(Vec::new());
    }
    catalog(|| {
        crate::spi::texts(
            "SELECT name FROM beacon.continuous_analysis
              WHERE project = $1 AND $2 = ANY (collections) ORDER BY name",
            &[project.into(), collection.into()],
        )
    })
}

/// Drops the project's analyses one of whose collections or hidden tables is gone (DROP
/// … CASCADE by hand), each with a NOTICE. As the project's owner role.
pub(crate) fn drop_broken(project: &str) -> BeaconResult<()> {
    if !exists(
        "SELECT pg_catalog.to_regclass('beacon.continuous_analysis') IS NOT NULL",
        &[],
    )? {
        return Ok(());
    }
    let broken = catalog(|| {
        crate::spi::texts(
            "SELECT a.name FROM beacon.continuous_analysis a
              WHERE a.project = $1
                AND EXISTS (SELECT 1 FROM pg_catalog.unnest(a.collections
                                  || ARRAY['_ca_' || a.name, '_ca_' || a.name || '_pending', '_ca_' || a.name || '_users']) t
                             WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', a.project, t)) IS NULL)
              ORDER BY a.name",
            &[project.into()],
        )
    })?;
    for name in broken {
        notice!("continuous analysis {project}.{name} lost a table: it is dropped");
        drop_one(project, &name)?;
    }
    Ok(())
}

/// Drops an analysis's objects (those still there) and its catalog entry; the caller
/// checked the right to. As the project's owner role.
pub(crate) fn drop_one(project: &str, name: &str) -> BeaconResult<()> {
    let a = stored(project, name)?;
    let present: Vec<String> = a
        .collections()
        .into_iter()
        .filter(|c| {
            exists(
                "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                &[crate::analysis::table(project, c).as_str().into()],
            )
            .unwrap_or(false)
        })
        .collect();
    lock_tables(project, &present)?;
    for c in &present {
        for (event, _, _) in EVENTS {
            run(
                &format!(
                    "DROP TRIGGER IF EXISTS {} ON {}",
                    a.names.trigger(event),
                    crate::analysis::table(project, c)
                ),
                &[],
            )?;
        }
    }
    for f in [
        "capture()",
        "recompute(text[])",
        "refresh(integer)",
        "rebuild_all()",
    ] {
        let (suffix, args) = f.split_once('(').unwrap_or((f, ")"));
        run(
            &format!(
                "DROP FUNCTION IF EXISTS {}({args}",
                a.names.function(suffix)
            ),
            &[],
        )?;
    }
    for table in [a.names.state(), a.names.pending(), a.names.users()] {
        run(&format!("DROP TABLE IF EXISTS {table}"), &[])?;
    }
    catalog(|| {
        run(
            "DELETE FROM beacon.continuous_analysis WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )
    })
}

pub(super) fn drop_analysis(project: &str, name: &str) -> BeaconResult<()> {
    require_level(project, Level::Admin)?;
    let _owner = AsOwner::for_project(project)?;
    require_project(project)?;
    drop_one(project, name)
}

/// Applies the pending users of one async analysis now; returns how many pending
/// entries it took. The scheduler calls it (through refresh_continuous_analysis).
pub(super) fn refresh_one(project: &str, name: &str) -> BeaconResult<i64> {
    require_level(project, Level::Write)?;
    let _owner = AsOwner::for_project(project)?;
    let a = stored(project, name)?;
    if a.mode == Mode::Immediate {
        return Ok(0);
    }
    // one refresher per analysis at a time: a second one, with an older snapshot, could
    // otherwise write an older state over a newer one; the scheduler waits for nothing
    let lock = format!("beacon.continuous_analysis {project}.{name}");
    if exists(
        "SELECT pg_catalog.current_setting('pg_beacon.compact_skip_busy', true) = 'on'",
        &[],
    )? {
        if !exists(
            "SELECT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
            &[lock.as_str().into()],
        )? || !try_lock_tables(project, &a.collections())?
        {
            return Ok(0);
        }
    } else {
        run(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
            &[lock.as_str().into()],
        )?;
    }
    let refresh = a.names.function("refresh");
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
            "UPDATE beacon.continuous_analysis
                SET entries_applied = entries_applied + $3, last_refresh = pg_catalog.now(),
                    last_error = NULL
              WHERE project = $1 AND name = $2",
            &[project.into(), name.into(), applied.into()],
        )
    })?;
    Ok(applied)
}

/// Takes ACCESS SHARE on each of the tables if it is free now (name order); false when
/// one is not (DDL waits for it: the scheduler skips the analysis this time).
fn try_lock_tables(project: &str, collections: &[String]) -> BeaconResult<bool> {
    for c in collections {
        let Some(oid) = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[crate::analysis::table(project, c).as_str().into()],
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

/// The statement reading analysis `name` for `[from, to)`, checked to be of `kind`.
fn read_statement(
    project: &str,
    name: &str,
    funnel: bool,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> BeaconResult<String> {
    let a = stored(project, name)?;
    if matches!(a.kind, Kind::Funnel(_)) != funnel {
        return Err(crate::analysis::invalid(format!(
            "continuous analysis \"{name}\" is a {}: read it with beacon.continuous_{}",
            if funnel { "retention" } else { "funnel" },
            if funnel { "retention" } else { "funnel" },
        )));
    }
    let range = Range {
        from: crate::analysis::timestamp(from)?,
        to: crate::analysis::timestamp(to)?,
        zone: a.zone(),
    };
    Ok(a.read(&range))
}

fn select<T>(
    sql: &str,
    each: impl Fn(&pgrx::spi::SpiHeapTupleData) -> BeaconResult<T>,
) -> BeaconResult<Vec<T>> {
    Spi::connect(|client| {
        let mut rows = Vec::new();
        for row in client.select(sql, None, &[])? {
            rows.push(each(&row)?);
        }
        Ok::<_, BeaconError>(rows)
    })
}

pub(super) fn read_funnel(
    project: &str,
    name: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> BeaconResult<Vec<FunnelRow>> {
    require_level(project, Level::Read)?;
    let _owner = AsOwner::for_project(project)?;
    let sql = read_statement(project, name, true, from, to)?;
    select(&sql, crate::analysis::funnel_row)
}

pub(super) fn read_retention(
    project: &str,
    name: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> BeaconResult<Vec<RetentionRow>> {
    require_level(project, Level::Read)?;
    let _owner = AsOwner::for_project(project)?;
    let sql = read_statement(project, name, false, from, to)?;
    select(&sql, crate::analysis::retention_row)
}
