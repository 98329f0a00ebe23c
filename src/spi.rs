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
