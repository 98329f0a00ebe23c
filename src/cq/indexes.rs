//! The unique indexes of a query's hidden tables: which columns they hold as digests
//! (see `plan::Digest`), decided from the columns' types when a query is created and read
//! back from the indexes afterwards; the refusals of key types and collations that the
//! generated comparisons cannot keep exact.

use super::plan::{Digest, Plan};
use crate::error::{BeaconError, BeaconResult};
use crate::spi::{exists, run};
use pgrx::prelude::*;
use std::collections::BTreeMap;

/// Which columns the existing unique indexes hold as digests: their expression columns
/// (a key is `k<i>` at position i, a distinct value `v` after the keys). Read from the
/// indexes rather than decided anew, so the conflict targets match whatever version made
/// them.
pub(super) fn indexed_digests(plan: &Plan) -> BeaconResult<BTreeMap<String, Digest>> {
    let mut tables = vec![(plan.state_table(), None)];
    tables.extend(
        plan.distinct_table_names()
            .into_iter()
            .map(|(table, i)| (table, Some(i))),
    );
    let mut digests = BTreeMap::new();
    for (table, distinct) in tables {
        let columns: Vec<(String, bool)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT a.attname::text, t.typname OPERATOR(pg_catalog.=) 'bytea'
                       FROM pg_catalog.pg_index i
                      CROSS JOIN LATERAL pg_catalog.generate_series(0, i.indnatts - 1) g(j)
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid
                        AND a.attnum OPERATOR(pg_catalog.=) g.j + 1
                       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                      WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisunique
                        AND i.indkey[g.j] OPERATOR(pg_catalog.=) 0",
                    None,
                    &[table.as_str().into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<bool>(2)?.unwrap_or(false),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })?;
        for (column, bytes) in columns {
            let digest = if bytes { Digest::Bytes } else { Digest::Text };
            match distinct {
                None => digests.insert(column, digest),
                // its keys are the state's, digested alike
                Some(i) if column == "v" => digests.insert(format!("d{i}"), digest),
                Some(_) => None,
            };
        }
    }
    Ok(digests)
}

/// Checks the columns of a new query's tables (made by `create_state`, before their
/// indexes), which hold exactly its keys, min/max values and distinct values with their
/// types and collations, and decides which to index as digests. `refuse` false only
/// decides (an existing query being regenerated).
pub(super) fn new_table_digests(
    plan: &Plan,
    refuse: bool,
) -> BeaconResult<BTreeMap<String, Digest>> {
    let mut tables = vec![(plan.state_table(), None)];
    tables.extend(
        plan.distinct_table_names()
            .into_iter()
            .map(|(table, i)| (table, Some(i))),
    );
    let mut digests = BTreeMap::new();
    // the new library before ALTER EXTENSION UPDATE made the function: plain indexes
    let text_digest = exists(
        "SELECT pg_catalog.to_regprocedure('beacon._text_digest(pg_catalog.text)') IS NOT NULL",
        &[],
    )?;
    for (table, distinct) in tables {
        // (column, type, type in pg_catalog, collation name, deterministic)
        type Column = (String, String, bool, Option<String>, bool);
        let columns: Vec<Column> = Spi::connect(|client| {
            client
                .select(
                    "SELECT a.attname::text, t.typname::text,
                            t.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace,
                            c.collname::text, coalesce(c.collisdeterministic, true)
                       FROM pg_catalog.pg_attribute a
                       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                       LEFT JOIN pg_catalog.pg_collation c ON c.oid = a.attcollation
                      WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0
                        AND NOT a.attisdropped
                        AND (a.attname ~ '^(k[0-9]+|a[0-9]+_m)$' OR a.attname = 'v')
                      ORDER BY a.attnum",
                    None,
                    &[table.as_str().into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<bool>(3)?.unwrap_or(false),
                        row.get::<String>(4)?,
                        row.get::<bool>(5)?.unwrap_or(true),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })?;
        for (column, type_name, in_catalog, collation, deterministic) in columns {
            let what = match (distinct, column.as_str()) {
                (Some(_), "v") => "a count(DISTINCT) argument",
                (Some(_), _) => continue,
                (None, c) if c.starts_with('k') => "a key",
                (None, _) => "a min/max argument",
            };
            // generated SQL compares them with `=` and IS NOT DISTINCT FROM, resolved in
            // pg_catalog: a type of another schema would be compared with whatever `=`
            // the capture finds, or none
            if refuse && !in_catalog {
                return Err(BeaconError::Unsupported(format!(
                    "{what} of type {type_name} is not supported: continuous queries group, \
                     count and compare only PostgreSQL's own types"
                )));
            }
            // equal values under such a collation can differ ('a' and 'A'): the state would
            // keep the representative of a deleted row
            if refuse && !deterministic {
                return Err(BeaconError::Unsupported(format!(
                    "{what} under the nondeterministic collation {} is not supported: \
                     use COLLATE with a deterministic collation, or a function such as lower()",
                    collation.unwrap_or_default()
                )));
            }
            let digest = match type_name.as_str() {
                "text" | "varchar" if text_digest => Digest::Text,
                "bytea" => Digest::Bytes,
                _ => continue,
            };
            match distinct {
                Some(i) => digests.insert(format!("d{i}"), digest),
                None if what == "a key" => digests.insert(column, digest),
                None => None,
            };
        }
    }
    Ok(digests)
}

/// Rebuilds the unique indexes of a query made by an older version when this one indexes
/// some columns differently (digests of text keys): the capture, regenerated after the
/// views, then finds conflict targets that match.
pub(super) fn rebuild_indexes(plan: &mut Plan) -> BeaconResult<()> {
    let wanted = new_table_digests(plan, false)?;
    if wanted == plan.digests {
        return Ok(());
    }
    let mut tables = vec![plan.state_table()];
    tables.extend(plan.distinct_table_names().into_iter().map(|(t, _)| t));
    for table in tables {
        let indexes: Vec<String> = Spi::connect(|client| {
            client
                .select(
                    "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
                       FROM pg_catalog.pg_index i
                       JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
                       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                      WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisunique",
                    None,
                    &[table.as_str().into()],
                )?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()
        })?;
        for index in indexes {
            run(&format!("DROP INDEX {index}"), &[])?;
        }
    }
    plan.digests = wanted;
    for statement in plan.create_indexes() {
        run(&statement, &[])?;
    }
    Ok(())
}
