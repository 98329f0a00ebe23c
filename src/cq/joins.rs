//! What joins need from the database: the joined columns' types (plan/joins.rs turns them
//! into the capture's variables and lock hashes), the index advisor, and the check a
//! REPEATABLE READ capture makes that what it read is still what is committed.

use super::plan::{JoinTypes, Plan};
use crate::error::{BeaconError, BeaconResult};
use crate::names::quote_ident;
use crate::spi::{exists, run};
use pgrx::prelude::*;
use pgrx::AnyArray;
use std::collections::BTreeMap;

/// A column's type as SQL, its type OID (domains resolved) and whether its collation (if
/// any) is deterministic.
fn column_type(relation: &str, column: &str) -> BeaconResult<(String, u32, bool)> {
    let row = Spi::get_three_with_args::<String, i64, bool>(
        "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod),
                (SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
                   FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)::oid::bigint,
                coalesce((SELECT c.collisdeterministic FROM pg_catalog.pg_collation c
                           WHERE c.oid = a.attcollation), true)
           FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped",
        &[relation.into(), column.into()],
    )?;
    match row {
        (Some(ty), Some(oid), Some(deterministic)) => Ok((ty, oid as u32, deterministic)),
        _ => Err(BeaconError::UnknownObject(format!(
            "column \"{column}\" of {relation} does not exist"
        ))),
    }
}

const INTEGERS: [u32; 3] = [20, 21, 23];
const TEXTS: [u32; 2] = [25, 1043];

fn hashable(oid: u32) -> BeaconResult<bool> {
    exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_opclass c
                          JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
                         WHERE a.amname = 'hash' AND c.opcdefault AND c.opcintype = $1::bigint::oid)",
        &[i64::from(oid).into()],
    )
}

/// How equal values of two columns ((type OID, deterministic collation)) hash alike into
/// a lock bucket: an expression of `{v}`; None when they cannot (different types that
/// are not both integers or both text: the caller refuses them; or a type without a hash
/// function, or a nondeterministic collation: the caller locks the whole edge).
pub(crate) fn lock_hash(
    a: Option<(u32, bool)>,
    b: Option<(u32, bool)>,
) -> BeaconResult<Option<String>> {
    Ok(match (a, b) {
        (Some((x, _)), Some((y, _))) if INTEGERS.contains(&x) && INTEGERS.contains(&y) => {
            Some("pg_catalog.hashint8(({v})::pg_catalog.int8)".to_string())
        }
        (Some((x, true)), Some((y, true))) if TEXTS.contains(&x) && TEXTS.contains(&y) => {
            Some("pg_catalog.hashtext(({v})::pg_catalog.text)".to_string())
        }
        (Some((x, true)), Some((y, true))) if x == y && hashable(x)? => {
            Some("pg_catalog.hash_array(ARRAY[{v}])".to_string())
        }
        _ => None,
    })
}

/// A column's (type OID, deterministic collation), for `lock_hash`.
pub(crate) fn hash_traits(relation: &str, column: &str) -> BeaconResult<(u32, bool)> {
    column_type(relation, column).map(|(_, oid, deterministic)| (oid, deterministic))
}

fn parent_alias(plan: &Plan, parent: usize) -> &str {
    match parent {
        0 => plan.query.source_alias.as_deref().unwrap_or(&plan.source),
        i => &plan.query.joins[i - 1].alias,
    }
}

/// The types of every column a join query references, and each join's lock hash; refuses
/// equalities of columns of different types (but integers, and text with varchar).
pub(super) fn join_types(plan: &Plan) -> BeaconResult<JoinTypes> {
    let mut types = JoinTypes::default();
    if !plan.is_join() {
        return Ok(types);
    }
    let tables = std::iter::once((plan.source.clone(), plan.query.columns.clone())).chain(
        plan.query
            .joins
            .iter()
            .map(|j| (j.table.clone(), j.columns.clone())),
    );
    let mut oids: Vec<BTreeMap<String, (u32, bool)>> = Vec::new();
    for (table, columns) in tables {
        let relation = format!("{}.{}", quote_ident(&plan.project), quote_ident(&table));
        let mut named = BTreeMap::new();
        let mut ids = BTreeMap::new();
        for column in columns {
            let (ty, oid, deterministic) = column_type(&relation, &column)?;
            named.insert(column.clone(), ty);
            ids.insert(column, (oid, deterministic));
        }
        types.columns.push(named);
        oids.push(ids);
    }
    for (j, join) in plan.query.joins.iter().enumerate() {
        let (parent_column, own) = &join.pairs[0];
        let a = oids[join.parent].get(parent_column).copied();
        let b = oids[j + 1].get(own).copied();
        let what = || {
            format!(
                "the join with {} compares {}.{} and {}.{}",
                join.alias,
                parent_alias(plan, join.parent),
                parent_column,
                join.alias,
                own
            )
        };
        let hash = match lock_hash(a, b)? {
            Some(hash) => hash,
            None if matches!((a, b), (Some((x, _)), Some((y, _)))
                if x != y && !(TEXTS.contains(&x) && TEXTS.contains(&y))) =>
            {
                return Err(BeaconError::Unsupported(format!(
                    "{}, of different types: join columns must be of one type, or both \
                     integers, or both text",
                    what()
                )));
            }
            None => {
                notice!(
                    "continuous query \"{}\": the values of {}.{} and {}.{} cannot be hashed \
                     alike, so writers of these tables lock the whole join instead of its keys",
                    plan.name,
                    parent_alias(plan, join.parent),
                    parent_column,
                    join.alias,
                    own
                );
                "0".to_string()
            }
        };
        types.lock_hash.push(hash);
    }
    Ok(types)
}

/// Whether `column` leads a valid, non-partial index of `relation`: lookups by it are
/// index scans.
pub(crate) fn leads_an_index(relation: &str, column: &str) -> BeaconResult<bool> {
    exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index x
                          JOIN pg_catalog.pg_attribute a
                            ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
                         WHERE x.indrelid = $1::regclass AND a.attname = $2
                           AND x.indpred IS NULL AND x.indisvalid)",
        &[relation.into(), column.into()],
    )
}

/// Says (NOTICE) which lookups of maintenance have no index, and creates the missing
/// indexes when asked to: without one, a change of one table scans the other.
pub(super) fn advise_indexes(plan: &Plan, create: bool) -> BeaconResult<()> {
    for (table, column) in plan.lookup_columns() {
        let relation = format!("{}.{}", quote_ident(&plan.project), quote_ident(&table));
        if leads_an_index(&relation, &column)? {
            continue;
        }
        let ddl = format!("CREATE INDEX ON {relation} ({})", quote_ident(&column));
        if create {
            run(&ddl, &[])?;
            notice!(
                "continuous query \"{}\": created an index on {table} ({column}) for its maintenance",
                plan.name
            );
        } else {
            notice!(
                "continuous query \"{}\": maintenance looks up rows of {table} by column \
                 {column}, which has no index, so each change on the other side of that join \
                 scans {table}; create it with {ddl}, or pass create_indexes => true",
                plan.name
            );
        }
    }
    Ok(())
}

/// Runs `query` ($1 = `keys`) read-only under `snapshot` and returns its one text value.
///
/// # Safety
/// Must be called inside a transaction, outside any SPI connection of the caller's that
/// expects its own state preserved (it connects and finishes its own).
unsafe fn fingerprint_under(
    query: &std::ffi::CStr,
    keys: &AnyArray,
    snapshot: pg_sys::Snapshot,
) -> Option<String> {
    pg_sys::PushActiveSnapshot(snapshot);
    pg_sys::SPI_connect();
    let mut argtypes = [keys.oid()];
    let mut values = [keys.datum()];
    let nulls = [b' ' as std::ffi::c_char];
    let status = pg_sys::SPI_execute_with_args(
        query.as_ptr(),
        1,
        argtypes.as_mut_ptr(),
        values.as_mut_ptr(),
        nulls.as_ptr(),
        true,
        1,
    );
    let mut result = None;
    if status == pg_sys::SPI_OK_SELECT as i32
        && !pg_sys::SPI_tuptable.is_null()
        && pg_sys::SPI_processed == 1
    {
        let table = &*pg_sys::SPI_tuptable;
        let value = pg_sys::SPI_getvalue(*table.vals, table.tupdesc, 1);
        if !value.is_null() {
            result = Some(
                std::ffi::CStr::from_ptr(value)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    pg_sys::SPI_finish();
    pg_sys::PopActiveSnapshot();
    result
}

/// Under REPEATABLE READ or SERIALIZABLE: raises a serialization failure when the rows of
/// `relation` whose `column` is one of `keys` differ between the transaction's snapshot
/// and the latest committed data. A continuous query's capture calls it after locking
/// those keys: a change committed in between was made by a writer whose own capture could
/// not see this transaction's rows, so one of the two must start again.
#[pg_extern(name = "_unchanged_since_snapshot", parallel_unsafe)]
fn unchanged_since_snapshot(relation: pg_sys::Oid, column: &str, keys: Option<AnyArray>) {
    let Some(keys) = keys else {
        return;
    };
    // SAFETY: reads the session's isolation level
    if unsafe { pg_sys::XactIsoLevel } < pg_sys::XACT_REPEATABLE_READ as i32 {
        return;
    }
    // SAFETY: a catalog lookup by OID; returns NULL for an OID that is not a relation
    let name = unsafe { pg_sys::get_rel_name(relation) };
    if name.is_null() {
        return;
    }
    let qualified =
        Spi::get_one_with_args::<String>("SELECT $1::regclass::text", &[relation.into()])
            .ok()
            .flatten()
            .unwrap_or_default();
    let query = format!(
        "SELECT pg_catalog.count(*)::text || '/' || coalesce(pg_catalog.sum(pg_catalog.hashtext(t.ctid::text || ':' || t.xmin::text)::int8), 0)::text \
           FROM {qualified} t WHERE t.{} = ANY ($1)",
        quote_ident(column)
    );
    let query = std::ffi::CString::new(query).unwrap_or_default();
    // SAFETY: inside the caller's transaction; each call connects to SPI and finishes,
    // and pushes and pops its own snapshot. The transaction snapshot is the active one of
    // the calling statement; the latest one is taken now.
    let (mine, latest) = unsafe {
        let mine = fingerprint_under(&query, &keys, pg_sys::GetActiveSnapshot());
        let latest = fingerprint_under(&query, &keys, pg_sys::GetLatestSnapshot());
        (mine, latest)
    };
    if mine != latest {
        crate::error::report::<()>(Err(BeaconError::SerializationFailure(format!(
            "could not serialize access due to a concurrent change of {qualified}, which a \
             continuous query joins"
        ))));
    }
}
