//! What creation reads from the database: the tables' columns, the fields each table
//! shows, the key's unique index, the lookup columns and each edge's lock hash.

use super::relation;
use super::spec::Spec;
use crate::error::{BeaconError, BeaconResult};
use crate::spi::exists;
use pgrx::prelude::*;

/// (field, column) or (column, type) pairs of one table.
pub type Pairs = Vec<(String, String)>;

/// (column, type) of a table, in column order.
pub fn columns_with_types(project: &str, table: &str) -> BeaconResult<Vec<(String, String)>> {
    let rel = relation(project, table);
    Ok(Spi::connect(|client| {
        client
            .select(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                None,
                &[rel.as_str().into()],
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })?)
}

fn unknown_column(table: &str, column: &str, what: &str) -> BeaconError {
    BeaconError::UnknownObject(format!(
        "{what}: column \"{column}\" of table \"{table}\" does not exist"
    ))
}

/// The fields each position shows, from its table's columns and the spec's selection.
pub fn resolve_fields(project: &str, spec: &Spec) -> BeaconResult<(Vec<Pairs>, Vec<Pairs>)> {
    let mut all_fields = Vec::new();
    let mut all_columns = Vec::new();
    for position in 0..=spec.lookups.len() {
        let table = spec.table_at(position);
        let columns = columns_with_types(project, table)?;
        let has = |c: &str| columns.iter().any(|(n, _)| n == c);
        let what = if position == 0 {
            "the spec".to_string()
        } else {
            format!("lookup \"{}\"", spec.lookups[position - 1].path)
        };
        let f = spec.fields_at(position);
        let shown: Vec<String> = match &f.columns {
            Some(list) => {
                for c in list {
                    if !has(c) {
                        return Err(unknown_column(table, c, &format!("{what}.columns")));
                    }
                }
                list.clone()
            }
            None => {
                for c in &f.exclude {
                    if !has(c) {
                        return Err(unknown_column(table, c, &format!("{what}.exclude")));
                    }
                }
                columns
                    .iter()
                    .map(|(n, _)| n.clone())
                    .filter(|n| !f.exclude.contains(n))
                    .collect()
            }
        };
        for (c, _) in &f.rename {
            if !shown.contains(c) {
                return Err(BeaconError::InvalidArgument(format!(
                    "{what}.rename: column \"{c}\" is not among the columns shown"
                )));
            }
        }
        let fields: Vec<(String, String)> = shown
            .into_iter()
            .map(|c| {
                let field = f
                    .rename
                    .iter()
                    .find(|(from, _)| *from == c)
                    .map(|(_, to)| to.clone())
                    .unwrap_or_else(|| c.clone());
                (field, c)
            })
            .collect();
        all_fields.push(fields);
        all_columns.push(columns);
    }
    Ok((all_fields, all_columns))
}

/// Checks the key (its columns exist and carry a unique index, so one root row is one
/// document), the lookups' columns, and computes each edge's lock hash.
pub fn resolve_joins(
    project: &str,
    spec: &Spec,
    columns: &[Vec<(String, String)>],
) -> BeaconResult<Vec<String>> {
    let has = |position: usize, c: &str| columns[position].iter().any(|(n, _)| n == c);
    for k in &spec.key {
        if !has(0, k) {
            return Err(unknown_column(&spec.table, k, "key"));
        }
    }
    let unique = exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index x
                         WHERE x.indrelid = $1::regclass AND x.indisunique AND x.indisvalid
                           AND x.indpred IS NULL AND x.indexprs IS NULL
                           AND (SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attname)
                                  FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey))
                               = (SELECT pg_catalog.array_agg(k ORDER BY k) FROM pg_catalog.unnest($2::text[]) k))",
        &[
            relation(project, &spec.table).as_str().into(),
            spec.key.clone().into(),
        ],
    )?;
    if !unique {
        return Err(BeaconError::Unsupported(format!(
            "the key ({}) of \"{}\" has no unique index: a document is one row of the root, \
             so its key must be unique (add a primary key or a unique index on exactly these columns)",
            spec.key.join(", "),
            spec.table
        )));
    }
    let mut hashes = Vec::new();
    for (i, lookup) in spec.lookups.iter().enumerate() {
        let parent = spec.parent_position(i);
        let what = format!("lookup \"{}\"", lookup.path);
        for (parent_column, own) in &lookup.on {
            if !has(parent, parent_column) {
                return Err(unknown_column(
                    spec.table_at(parent),
                    parent_column,
                    &format!("{what}.on"),
                ));
            }
            if !has(i + 1, own) {
                return Err(unknown_column(&lookup.table, own, &format!("{what}.on")));
            }
        }
        for (c, _) in &lookup.order_by {
            if !has(i + 1, c) {
                return Err(unknown_column(
                    &lookup.table,
                    c,
                    &format!("{what}.order_by"),
                ));
            }
        }
        for (parent_column, own) in lookup.on.iter().skip(1) {
            let a =
                crate::cq::hash_traits(&relation(project, spec.table_at(parent)), parent_column)?;
            let b = crate::cq::hash_traits(&relation(project, &lookup.table), own)?;
            if crate::cq::lock_hash(Some(a), Some(b))?.is_none() && a.0 != b.0 {
                return Err(BeaconError::Unsupported(format!(
                    "{what} compares {}.{parent_column} and {}.{own}, of different types: \
                     lookup columns must be of one type, or both integers, or both text",
                    spec.table_at(parent),
                    lookup.table
                )));
            }
        }
        let (parent_column, own) = &lookup.on[0];
        let a = crate::cq::hash_traits(&relation(project, spec.table_at(parent)), parent_column)?;
        let b = crate::cq::hash_traits(&relation(project, &lookup.table), own)?;
        let hash = match crate::cq::lock_hash(Some(a), Some(b))? {
            Some(hash) => hash,
            None if a.0 != b.0 => {
                return Err(BeaconError::Unsupported(format!(
                    "{what} compares {}.{parent_column} and {}.{own}, of different types: \
                     lookup columns must be of one type, or both integers, or both text",
                    spec.table_at(parent),
                    lookup.table
                )))
            }
            None => {
                notice!(
                    "document view lookup \"{}\": the values of {}.{own} cannot be hashed, so \
                     writers of these tables lock the whole lookup instead of its keys",
                    lookup.path,
                    lookup.table
                );
                "0".to_string()
            }
        };
        hashes.push(hash);
    }
    Ok(hashes)
}
