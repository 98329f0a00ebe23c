//! Thin helpers so that every SPI call site propagates errors the same way.

use crate::error::TideResult;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

/// Runs a statement whose result is not needed (DDL, INSERT without RETURNING).
pub fn run(sql: &str, args: &[DatumWithOid]) -> TideResult<()> {
    Spi::run_with_args(sql, args)?;
    Ok(())
}

pub fn exists(sql: &str, args: &[DatumWithOid]) -> TideResult<bool> {
    Ok(Spi::get_one_with_args::<bool>(sql, args)?.unwrap_or(false))
}
