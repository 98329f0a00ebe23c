//! `partition_collection` on an existing collection. A plain table cannot become
//! partitioned in place, so its events are copied, under ACCESS EXCLUSIVE, into a new
//! partitioned table that then takes its name:
//!
//! - writers wait for the lock instead of failing, and PostgreSQL resolves their table
//!   name again once they have it, so they write into the new table: nothing is lost, and
//!   nothing is copied twice (the copy sees every committed event and no later one);
//! - `_id`s are kept and the new sequence continues the old one;
//! - what pg_beacon generated on the old table (capture and stream triggers, the column
//!   views of continuous queries and document views, continuous analyses' captures) goes
//!   with it and is generated again on the new one; the queries' and views' state is
//!   kept, as it describes the same rows.
//!   Its other indexes are built again. Anything else that depends on the table (a
//!   materialized view, a view of the user's, a foreign key, a trigger of the user's, a
//!   unique index without `_time`) makes the conversion refuse, naming it.

use super::calendar::Period;
use super::{create_ahead, micros};
use crate::collect::schema::{
    collection_partitioning, comment_partitioned, ensure_collection_as, table,
};
use crate::error::{BeaconError, BeaconResult};
use crate::names::quote_ident;
use crate::security::catalog;
use crate::spi::{run, texts};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

pub(super) fn partition(project: &str, collection: &str, period: Period) -> BeaconResult<i64> {
    match collection_partitioning(project, collection)? {
        None => {
            ensure_collection_as(project, collection, Some(period))?;
            create_ahead(project, collection, period)?;
            return Ok(0);
        }
        Some(Some(existing)) if existing == period => return Ok(0),
        Some(Some(existing)) => {
            return Err(BeaconError::Unsupported(format!(
                "collection {project}.{collection} is already partitioned by {}",
                existing.as_str()
            )))
        }
        Some(None) => {}
    }
    let old = table(project, collection);
    run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[format!("beacon.collection {project}.{collection}").into()],
    )?;
    run(&format!("LOCK TABLE {old} IN ACCESS EXCLUSIVE MODE"), &[])?;
    refuse_foreign_dependents(project, collection)?;
    let dependents = crate::lifecycle::dependents(project, collection)?;

    let indexes = other_indexes(&old)?;
    let lowers = period_starts(&old, period)?;
    let temporary = format!("_beacon_partitioning_{}", std::process::id());
    let new = format!("{}.{}", quote_ident(project), quote_ident(&temporary));
    run(
        &format!(
            "CREATE TABLE {new} ({}, PRIMARY KEY (_id, _time)) PARTITION BY RANGE (_time)",
            column_definitions(&old)?.join(", ")
        ),
        &[],
    )?;
    run(&format!("CREATE INDEX ON {new} USING brin (_time)"), &[])?;
    for lower in &lowers {
        let name = super::calendar::partition_name(collection, *lower);
        run(
            &format!(
                "CREATE TABLE {}.{} PARTITION OF {new} FOR VALUES FROM ({}) TO ({})",
                quote_ident(project),
                quote_ident(&name),
                super::calendar::timestamp_sql(*lower),
                super::calendar::timestamp_sql(period.next(*lower))
            ),
            &[],
        )?;
    }
    let columns = texts(
        "SELECT pg_catalog.quote_ident(attname) FROM pg_catalog.pg_attribute
          WHERE attrelid = pg_catalog.to_regclass($1) AND attnum > 0 AND NOT attisdropped
          ORDER BY attnum",
        &[old.as_str().into()],
    )?
    .join(", ");
    let moved = Spi::get_one::<i64>(&format!(
        "WITH moved AS (INSERT INTO {new} ({columns}) SELECT {columns} FROM {old} RETURNING 1)
         SELECT count(*) FROM moved"
    ))?
    .unwrap_or(0);
    continue_sequence(&old, &new)?;

    // the generated objects on the old table go with it; the catalog stays
    run(&format!("DROP TABLE {old} CASCADE"), &[])?;
    run(
        &format!("ALTER TABLE {new} RENAME TO {}", quote_ident(collection)),
        &[],
    )?;
    // the same definitions, rendered by PostgreSQL, name the table now partitioned
    for definition in &indexes {
        run(definition, &[])?;
    }
    let sequence = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.pg_get_serial_sequence($1, '_id')",
        &[old.as_str().into()],
    )?
    .unwrap_or_default();
    run(
        &format!(
            "ALTER SEQUENCE {sequence} RENAME TO {}",
            quote_ident(&format!("{collection}__id_seq"))
        ),
        &[],
    )?;
    comment_partitioned(project, collection, period)?;
    catalog(|| {
        run(
            "UPDATE beacon.collection SET partition_period = $3 WHERE project = $1 AND name = $2",
            &[project.into(), collection.into(), period.as_str().into()],
        )?;
        run(
            "DELETE FROM beacon.partition WHERE project = $1 AND collection = $2",
            &[project.into(), collection.into()],
        )
    })?;
    for lower in &lowers {
        super::record_partition(project, collection, period, *lower)?;
        super::revoke_partition(
            project,
            &super::calendar::partition_name(collection, *lower),
        )?;
    }
    create_ahead(project, collection, period)?;

    for query in &dependents.queries {
        crate::cq::regenerate_view(project, query)?;
    }
    if !dependents.queries.is_empty() {
        crate::cq::install_capture(project, collection)?;
    }
    for view in &dependents.documents {
        crate::documents::regenerate(project, view)?;
    }
    for analysis in &dependents.analyses {
        crate::analysis::continuous::regenerate(project, analysis)?;
    }
    if !dependents.subscriptions.is_empty() {
        crate::stream::install_trigger(project, collection)?;
    }
    Ok(moved)
}

/// The periods the table's events fall in, computed by PostgreSQL (`date_trunc` in UTC,
/// whose weeks start on Monday as `Period::floor`'s do).
fn period_starts(table: &str, period: Period) -> BeaconResult<Vec<i64>> {
    let infinite = Spi::get_one::<i64>(&format!(
        "SELECT count(*) FROM {table} WHERE NOT pg_catalog.isfinite(_time)"
    ))?
    .unwrap_or(0);
    if infinite > 0 {
        return Err(BeaconError::InvalidArgument(format!(
            "{table} has {infinite} events whose _time is infinite: no partition can hold them \
             (give them a finite _time first)"
        )));
    }
    let starts: Vec<i64> = Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT DISTINCT pg_catalog.date_trunc($1, _time, 'UTC') FROM {table} ORDER BY 1"
                ),
                None,
                &[period.as_str().into()],
            )?
            .map(|row| Ok(row.get::<TimestampWithTimeZone>(1)?.map(micros)))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    if let Some(odd) = starts.iter().find(|t| period.floor(**t) != **t) {
        return Err(BeaconError::Unsupported(format!(
            "date_trunc and pg_beacon disagree about the period of {odd}"
        )));
    }
    Ok(starts)
}

/// The old table's columns, `_id` a sequence default instead of an identity (PostgreSQL
/// 15 has no identity columns on partitioned tables).
fn column_definitions(table: &str) -> BeaconResult<Vec<String>> {
    texts(
        "SELECT pg_catalog.quote_ident(a.attname) || ' ' ||
                CASE WHEN a.attname = '_id' THEN 'bigserial'
                     ELSE pg_catalog.format_type(a.atttypid, a.atttypmod)
                          || CASE WHEN a.attcollation <> t.typcollation
                                  THEN ' COLLATE ' || pg_catalog.quote_ident(n.nspname) || '.'
                                       || pg_catalog.quote_ident(co.collname)
                                  ELSE '' END
                END ||
                CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END ||
                CASE WHEN a.attname = '_time' THEN ' DEFAULT pg_catalog.now()' ELSE '' END
           FROM pg_catalog.pg_attribute a
           JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
           LEFT JOIN pg_catalog.pg_namespace n ON n.oid = co.collnamespace
          WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum",
        &[table.into()],
    )
}

fn continue_sequence(old: &str, new: &str) -> BeaconResult<()> {
    let sequence = |table: &str| {
        Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.pg_get_serial_sequence($1, '_id')",
            &[table.into()],
        )
    };
    let (Some(from), Some(to)) = (sequence(old)?, sequence(new)?) else {
        return Ok(());
    };
    run(
        &format!(
            "SELECT pg_catalog.setval($1::pg_catalog.regclass, s.last_value, s.is_called) FROM {from} s"
        ),
        &[to.as_str().into()],
    )
}

/// The table's indexes besides its primary key and the BRIN index on `_time` (the index
/// advisors' and the users' own), as PostgreSQL renders them, to build again on the
/// partitioned table. A unique index must hold `_time` there: one that does not is refused.
fn other_indexes(table: &str) -> BeaconResult<Vec<String>> {
    let unique = texts(
        "SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisunique AND NOT i.indisprimary
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = i.indrelid AND a.attname = '_time'
                               AND a.attnum = ANY (i.indkey::pg_catalog.int2[]))
          ORDER BY 1",
        &[table.into()],
    )?;
    if !unique.is_empty() {
        return Err(BeaconError::Unsupported(format!(
            "cannot partition {table}: the unique index {} does not hold _time, which every \
             unique index of a partitioned table must",
            unique.join(", ")
        )));
    }
    texts(
        "SELECT pg_catalog.pg_get_indexdef(i.indexrelid) FROM pg_catalog.pg_index i
           JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
           JOIN pg_catalog.pg_am am ON am.oid = c.relam
          WHERE i.indrelid = pg_catalog.to_regclass($1) AND NOT i.indisprimary
            AND NOT (am.amname = 'brin' AND i.indnatts = 1 AND pg_catalog.pg_get_indexdef(i.indexrelid, 1, true) = '_time')
          ORDER BY c.relname",
        &[table.into()],
    )
}

/// Refuses when something pg_beacon did not generate depends on the table: it would be
/// dropped with it.
fn refuse_foreign_dependents(project: &str, collection: &str) -> BeaconResult<()> {
    let foreign = texts(
        "WITH t AS (SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1, $2)) AS oid)
         SELECT DISTINCT what FROM (
           SELECT pg_catalog.format('view %s', v.oid::pg_catalog.regclass) AS what
             FROM t, pg_catalog.pg_depend d
             JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
             JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
            WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
              AND d.refobjid = t.oid AND v.oid <> t.oid
              AND NOT (v.relkind = 'v' AND v.relnamespace = pg_catalog.to_regnamespace(pg_catalog.quote_ident($1))
                       AND (v.relname ~ '^_cq_.*_columns$' OR v.relname ~ '^_dv_.*_source$'))
           UNION ALL
           SELECT pg_catalog.format('foreign key %I of %s', c.conname, c.conrelid::pg_catalog.regclass)
             FROM t, pg_catalog.pg_constraint c WHERE c.contype = 'f' AND c.confrelid = t.oid
           UNION ALL
           SELECT pg_catalog.format('trigger %I', g.tgname)
             FROM t, pg_catalog.pg_trigger g
            WHERE g.tgrelid = t.oid AND NOT g.tgisinternal AND g.tgname !~ '^(_beacon_|_ca_)'
         ) x ORDER BY 1",
        &[project.into(), collection.into()],
    )?;
    if foreign.is_empty() {
        return Ok(());
    }
    Err(BeaconError::StillInUse(
        format!(
            "cannot partition {project}.{collection}: {} depend on it and would be lost",
            foreign.join(", ")
        ),
        "Drop them, partition the collection, then create them again.".into(),
    ))
}
