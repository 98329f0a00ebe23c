//! The tables a continuous query reads: their columns, kinds and inheritance, checked
//! before anything is created.

use crate::error::{BeaconError, BeaconResult};
use crate::names::quote_ident;
use pgrx::prelude::*;

/// The columns of a table of the project, to qualify a join's bare column names.
pub(crate) fn table_columns(project: &str, table: &str) -> BeaconResult<Option<Vec<String>>> {
    let relation = format!("{}.{}", quote_ident(project), quote_ident(table));
    Ok(Spi::get_one_with_args::<Vec<String>>(
        "SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
        &[relation.as_str().into()],
    )?)
}

pub(crate) fn table_kind(project: &str, table: &str) -> BeaconResult<Option<String>> {
    Ok(Spi::get_one_with_args::<String>(
        "SELECT (SELECT c.relkind::text FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = $1 AND c.relname = $2)",
        &[project.into(), table.into()],
    )?)
}

/// The view is kept from the tables' own capture triggers. A query over a parent table
/// also reads its children's rows, which fire only the children's triggers; a partition
/// also receives rows written through its parent, whose statement-level triggers are the
/// parent's. Neither is captured, so neither is accepted (and the utility hook refuses
/// making a source a parent later, see `guard`).
pub(crate) fn refuse_inheritance(project: &str, table: &str) -> BeaconResult<()> {
    if partitioned_collection(project, table)? {
        return Ok(());
    }
    let (partition, parent) = Spi::get_two_with_args::<bool, bool>(
        "SELECT c.relispartition,
                EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid)
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2",
        &[project.into(), table.into()],
    )?;
    if partition == Some(true) {
        return Err(BeaconError::Unsupported(format!(
            "\"{table}\" is a partition: a continuous query over it would miss the rows \
             written through its parent"
        )));
    }
    if parent == Some(true) {
        return Err(BeaconError::Unsupported(format!(
            "\"{table}\" has inheritance children: a continuous query over it would miss the \
             rows written to them"
        )));
    }
    Ok(())
}

/// A collection pg_beacon partitions itself: rows reach its partitions only through it
/// (the partitions are granted to no one), so its statement-level triggers see them all.
pub(crate) fn partitioned_collection(project: &str, table: &str) -> BeaconResult<bool> {
    Ok(matches!(
        crate::collect::schema::collection_partitioning(project, table)?,
        Some(Some(_))
    ) && table_kind(project, table)?.as_deref() == Some("p"))
}

/// Whether a query or document view may read the table: a plain table, or a partitioned
/// collection.
pub(crate) fn readable_kind(project: &str, table: &str) -> BeaconResult<bool> {
    Ok(match table_kind(project, table)?.as_deref() {
        Some("r") => true,
        Some("p") => partitioned_collection(project, table)?,
        _ => false,
    })
}

pub(crate) fn check_table_kind(project: &str, table: &str) -> BeaconResult<()> {
    match table_kind(project, table)?.as_deref() {
        Some("r") => Ok(()),
        Some("p") if partitioned_collection(project, table)? => Ok(()),
        Some("p") => Err(BeaconError::Unsupported(format!(
            "\"{table}\" is a partitioned table pg_beacon did not partition: rows written \
             to its partitions directly would not be seen (partition a collection with \
             beacon.partition_collection)"
        ))),
        Some(_) => Err(BeaconError::Unsupported(format!(
            "\"{table}\" is not a table: continuous queries read tables"
        ))),
        None => Err(BeaconError::UnknownCollection(
            project.to_string(),
            table.to_string(),
        )),
    }
}

/// Whether the catalog has `continuous_query.joined` (0.2.1): a library newer than the
/// catalog, before `ALTER EXTENSION pg_beacon UPDATE`, serves single-table queries only.
pub fn catalog_has_joins() -> BeaconResult<bool> {
    crate::spi::exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                         WHERE attrelid = pg_catalog.to_regclass('beacon.continuous_query')
                           AND attname = 'joined' AND NOT attisdropped)",
        &[],
    )
}

/// SQL for the tables catalog row `alias` reads (the source and a join's other tables), as
/// an array, whichever catalog this is.
pub fn query_tables_sql(alias: &str) -> BeaconResult<String> {
    Ok(if catalog_has_joins()? {
        format!("pg_catalog.array_prepend({alias}.source, {alias}.joined)")
    } else {
        format!("ARRAY[{alias}.source]")
    })
}

/// Whether this server was built with lz4, which `Plan::delta_compression` uses.
pub(super) fn lz4_available() -> BeaconResult<bool> {
    crate::spi::exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_settings
                         WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))",
        &[],
    )
}

/// Switches the delta of `plan` to lz4 where the server has it, unless it uses lz4
/// already: `ALTER TABLE` takes the delta's strongest lock, which a regeneration of
/// every query should not take for nothing. Runs as the owner.
pub(super) fn compress_delta(plan: &super::plan::Plan) -> BeaconResult<()> {
    let pglz = crate::spi::exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                         WHERE attrelid = $1::pg_catalog.regclass AND attname = ANY ($2::pg_catalog.text[])
                           AND NOT attisdropped AND attcompression <> 'l')",
        &[
            plan.delta_table().as_str().into(),
            plan.delta_packed_columns().into(),
        ],
    )?;
    if pglz && lz4_available()? {
        crate::spi::run(&plan.delta_compression(), &[])?;
    }
    Ok(())
}
