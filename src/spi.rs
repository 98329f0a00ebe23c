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
