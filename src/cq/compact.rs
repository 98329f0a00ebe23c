//! Compaction of one async query (`beacon._compact_one`, called by `beacon.compact` in
//! sql/cq.sql): its deltas merged into the state in one statement, under its tables' locks.

use super::*;

/// Set (transaction-local) by the scheduler before it compacts a query.
const SKIP_BUSY: &str = "pg_beacon.compact_skip_busy";

fn skips_busy_tables() -> BeaconResult<bool> {
    Ok(Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.current_setting($1, true)",
        &[SKIP_BUSY.into()],
    )?
    .as_deref()
        == Some("on"))
}

/// Takes compaction's lock on each of the query's tables if it is free now; false when one
/// is not.
fn try_lock_tables(plan: &Plan) -> BeaconResult<bool> {
    let mut tables = plan.tables();
    tables.sort();
    for table in tables {
        let relation = format!("{}.{}", quote_ident(&plan.project), quote_ident(&table));
        let Some(oid) = Spi::get_one_with_args::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            &[relation.as_str().into()],
        )?
        else {
            continue;
        };
        // SAFETY: a relation lock by OID, held to the end of the transaction like LOCK TABLE's
        let locked = unsafe {
            pg_sys::ConditionalLockRelationOid(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE)
        };
        if !locked {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(super) fn compact_one(project: &str, name: &str) -> BeaconResult<i64> {
    require_level(project, Level::Admin)?;
    let _owner = AsOwner::for_project(project)?;
    let (query, mode, time_zone) = stored(project, name)?;
    if mode != Mode::Async {
        return Ok(0);
    }
    // dirty groups are recomputed with the keys the writers computed
    settings::apply(&time_zone)?;
    // concurrent compactions of one query would only wait on each other's rows
    run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[format!("beacon.compact {project}.{name}").into()],
    )?;
    // writers' mode: compaction runs alongside them, and waits for a drop (which takes
    // the source first too) instead of locking the delta before it. Taken before anything
    // reads the source (the type probe, the recompute of dirty groups): a weaker lock
    // first would have to be upgraded, and a drop waiting for it would deadlock with us
    let plan = plan_of(project, name, &query, mode)?;
    // the scheduler skips a query whose tables someone is changing the shape of (a create
    // or drop of a query, a TRUNCATE, which take its tables in their own order) rather than
    // wait for them while holding some: it comes back next round
    if skips_busy_tables()? && !try_lock_tables(&plan)? {
        return Ok(0);
    }
    lock_source(&plan, "ROW EXCLUSIVE")?;
    if !catalog(|| {
        exists(
            "SELECT EXISTS (SELECT 1 FROM beacon.continuous_query WHERE project = $1 AND name = $2)",
            &[project.into(), name.into()],
        )
    })? {
        return Ok(0);
    }
    let plan = typed_plan_of(project, name, &query, mode)?;
    let mut statements = plan.compaction().into_iter();
    let applied = match statements.next() {
        Some(first) => Spi::get_one::<i64>(&first)?.unwrap_or(0),
        None => 0,
    };
    for statement in statements {
        run(&statement, &[])?;
    }
    catalog(|| {
        run(
            "UPDATE beacon.continuous_query
                SET rows_applied = rows_applied + $3, last_compaction = pg_catalog.now(), last_error = NULL
              WHERE project = $1 AND name = $2",
            &[project.into(), name.into(), applied.into()],
        )
    })?;
    Ok(applied)
}
