//! Thin helpers so that every SPI call site propagates errors the same way.

use crate::error::BeaconResult;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// Runs a statement whose result is not needed (DDL, INSERT without RETURNING).
pub fn run(sql: &str, args: &[DatumWithOid]) -> BeaconResult<()> {
    Spi::run_with_args(sql, args)?;
    Ok(())
}

pub fn exists(sql: &str, args: &[DatumWithOid]) -> BeaconResult<bool> {
    Ok(Spi::get_one_with_args::<bool>(sql, args)?.unwrap_or(false))
}

/// The first value of a data-modifying statement's RETURNING list. Unlike
/// `Spi::get_one_with_args`, it runs the statement without a row limit: with a limit,
/// PostgreSQL skips the statement-level AFTER triggers (continuous-query capture and
/// event streams) of an INSERT … RETURNING.
pub fn returning_one<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> BeaconResult<Option<T>> {
    Ok(Spi::connect_mut(|client| {
        client.update(sql, None, args)?.first().get_one::<T>()
    })?)
}

/// The first two columns of every row, as text: (project, name)-style lists. Runs as a
/// possibly data-modifying statement (`DELETE … RETURNING` included).
pub fn text_pairs(sql: &str, args: &[DatumWithOid]) -> BeaconResult<Vec<(String, String)>> {
    Ok(Spi::connect_mut(|client| {
        client
            .update(sql, None, args)?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })?)
}

/// The first column of every row, as text.
pub fn texts(sql: &str, args: &[DatumWithOid]) -> BeaconResult<Vec<String>> {
    Ok(text_pairs(
        &format!("SELECT t, NULL::pg_catalog.text FROM ({sql}) AS q (t)"),
        args,
    )?
    .into_iter()
    .map(|(t, _)| t)
    .collect())
}

/// Whether the function or relation `name` (qualified and quoted; a function without
/// arguments when `function`) exists: `DROP … IF EXISTS` of a missing object would NOTICE
/// that it skipped it, which only clutters what pg_beacon itself says.
pub fn present(name: &str, function: bool) -> BeaconResult<bool> {
    exists(
        if function {
            "SELECT pg_catalog.to_regproc($1) IS NOT NULL"
        } else {
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL"
        },
        &[name.into()],
    )
}

/// Whether `table` (qualified and quoted) has a trigger named `trigger`.
pub fn has_trigger(table: &str, trigger: &str) -> BeaconResult<bool> {
    exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                         WHERE tgrelid = pg_catalog.to_regclass($1) AND tgname = $2)",
        &[table.into(), trigger.into()],
    )
}

/// Plans of statements run on every event, prepared once per backend and kept
/// (`SPI_keepplan`): parsing and planning them again on each call cost more than running
/// them. PostgreSQL's plan cache revalidates a kept plan when what it reads changes (a
/// table altered, dropped and created again, another search_path), exactly as for
/// PL/pgSQL's statements; privileges are checked at each execution, as the current user.
/// Keyed by text and parameter types; texts are pg_beacon's own, rendered from checked
/// names, and the cache is emptied when it holds `MAX_KEPT_PLANS` of them (a collection's
/// INSERT differs with each set of properties its events carry).
mod kept {
    use super::*;
    use pgrx::spi::{OwnedPreparedStatement, SpiClient};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::mem::ManuallyDrop;
    use std::rc::Rc;

    const MAX_KEPT_PLANS: usize = 256;

    type Key = (String, Vec<pg_sys::Oid>, bool);

    thread_local! {
        // ManuallyDrop: the backend's exit must not free plans after PostgreSQL has shut
        // its memory down; plans evicted while running stay alive through their Rc
        static PLANS: ManuallyDrop<RefCell<HashMap<Key, Rc<OwnedPreparedStatement>>>> =
            ManuallyDrop::new(RefCell::new(HashMap::new()));
    }

    pub(super) fn plan(
        client: &SpiClient<'_>,
        sql: &str,
        args: &[DatumWithOid],
        mutating: bool,
    ) -> pgrx::spi::Result<Rc<OwnedPreparedStatement>> {
        let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
        let key = (sql.to_string(), types, mutating);
        // the borrow ends before the plan runs: running it can fire triggers that come back
        if let Some(plan) = PLANS.with(|p| p.borrow().get(&key).cloned()) {
            return Ok(plan);
        }
        let oids: Vec<pg_sys::PgOid> = key.1.iter().map(|&o| pg_sys::PgOid::from(o)).collect();
        let prepared = if mutating {
            client.prepare_mut(sql, &oids)?
        } else {
            client.prepare(sql, &oids)?
        };
        let plan = Rc::new(prepared.keep());
        PLANS.with(|p| {
            let mut plans = p.borrow_mut();
            if plans.len() >= MAX_KEPT_PLANS {
                plans.clear();
            }
            plans.insert(key, plan.clone());
        });
        Ok(plan)
    }
}

/// `Spi::get_one_with_args` through a kept plan (see `kept`): for pg_beacon's fixed
/// catalog reads on the per-event path.
pub fn kept_one<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
) -> BeaconResult<Option<T>> {
    Ok(Spi::connect(|client| {
        let plan = kept::plan(client, sql, args, false)?;
        client.select(&*plan, Some(1), args)?.first().get_one::<T>()
    })?)
}

/// The rows of a read-only statement through a kept plan, each turned into a value by
/// `row`.
pub fn kept_rows<R>(
    sql: &str,
    args: &[DatumWithOid],
    mut row: impl FnMut(pgrx::spi::SpiHeapTupleData<'_>) -> pgrx::spi::Result<R>,
) -> BeaconResult<Vec<R>> {
    Ok(Spi::connect(|client| {
        let plan = kept::plan(client, sql, args, false)?;
        client
            .select(&*plan, None, args)?
            .map(&mut row)
            .collect::<pgrx::spi::Result<Vec<R>>>()
    })?)
}

/// A data-modifying statement through a kept plan, without a row limit (see
/// `returning_one`), and the first value of its RETURNING list when `returning`.
pub fn kept_write<T: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid],
    returning: bool,
) -> BeaconResult<Option<T>> {
    Ok(Spi::connect_mut(|client| {
        let plan = kept::plan(client, sql, args, true)?;
        let table = client.update(&*plan, None, args)?;
        if returning {
            table.first().get_one::<T>()
        } else {
            Ok(None)
        }
    })?)
}
