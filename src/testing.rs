//! Helpers for `#[pg_test]`s.

use pgrx::prelude::*;

/// Runs `sql` in a subtransaction and returns the SQLSTATE it failed with, or None.
/// The subtransaction is what lets a test go on, and check that a failed call left
/// nothing behind.
pub fn sqlstate_of(sql: &str) -> Option<String> {
    // Created once per session, by whichever role calls first; temporary functions are
    // executable by everyone.
    Spi::run(
        "DO $do$ BEGIN
           IF to_regprocedure('pg_temp.sqlstate_of(text)') IS NULL THEN
             CREATE FUNCTION pg_temp.sqlstate_of(stmt text) RETURNS text
             LANGUAGE plpgsql AS $$
             BEGIN EXECUTE stmt; RETURN NULL;
             EXCEPTION WHEN others THEN RETURN SQLSTATE;
             END $$;
           END IF;
         END $do$",
    )
    .expect("helper function");
    Spi::get_one_with_args::<String>("SELECT pg_temp.sqlstate_of($1)", &[sql.into()])
        .expect("sqlstate_of")
}

/// The single value `sql` returns; None for NULL or no row.
pub fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(&format!("SELECT ({sql})")).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub fn exec(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

pub fn count(sql: &str) -> i64 {
    one::<i64>(&format!("SELECT count(*) FROM ({sql}) q")).unwrap_or(0)
}
