//! What a continuous query's expressions are: the types of its keys, aggregate arguments
//! and outputs, probed from PostgreSQL itself (they decide the aggregates' arithmetic, the
//! keys' handling and the view's column types).

use super::*;

/// `plan_of` with each aggregate argument's type, which decides its arithmetic (see
/// `aggregates`). For code running as the owner, once the source is known to exist.
pub fn typed_plan_of(project: &str, name: &str, query: &str, mode: Mode) -> BeaconResult<Plan> {
    let mut plan = plan_of(project, name, query, mode)?;
    plan.join_types = super::joins::join_types(&plan)?;
    let args: Vec<(usize, String)> = plan
        .query
        .outputs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            analyze::Output::Aggregate { arg: Some(arg), .. } => Some((i, arg.clone())),
            _ => None,
        })
        .collect();
    plan.arg_types = vec![ArgType::Other; plan.query.outputs.len()];
    let keys = plan.query.keys.clone();
    if args.is_empty() && keys.is_empty() {
        return Ok(plan);
    }
    let probe = format!(
        "SELECT {} FROM {} LIMIT 0",
        keys.iter()
            .chain(args.iter().map(|(_, a)| a))
            .map(|e| format!("({e})"))
            .collect::<Vec<_>>()
            .join(", "),
        plan.relation()
    );
    let oids = Spi::connect(|client| {
        let table = client.select(&probe, None, &[])?;
        (1..=keys.len() + args.len())
            .map(|column| table.column_type_oid(column).map(|oid| oid.value()))
            .collect::<Result<Vec<_>, _>>()
    })?;
    // SAFETY (both): catalog lookups by OID; an OID that is not a domain is returned as is
    let base = |oid: pg_sys::Oid| unsafe { pg_sys::getBaseType(oid) };
    plan.loose_keys = oids[..keys.len()]
        .iter()
        .map(|oid| loose_type(base(*oid)))
        .collect();
    for ((output, _), oid) in args.iter().zip(&oids[keys.len()..]) {
        plan.arg_types[*output] = ArgType::of_type_oid(base(*oid).to_u32());
    }
    Ok(plan)
}

/// Whether equal values of a type can print differently, so that a group's value must
/// come from a remaining row (see `Plan::loose_keys`): numeric (1.0, 1.00), floats (0,
/// -0), interval ('1 day', '24 hours'), jsonb (numbers inside), char(n) (trailing
/// blanks), and arrays and composites, which may hold any of these.
fn loose_type(oid: pg_sys::Oid) -> bool {
    // pg_type.h's fixed OIDs
    if matches!(oid.to_u32(), 1700 | 700 | 701 | 1186 | 3802 | 1042) {
        return true;
    }
    // SAFETY: catalog lookups by OID
    unsafe { pg_sys::get_element_type(oid) != pg_sys::InvalidOid || pg_sys::type_is_rowtype(oid) }
}

/// A relation's column types by name.
pub(super) fn column_types(relation: &str) -> BeaconResult<HashMap<String, String>> {
    Ok(Spi::connect(|client| {
        client
            .select(
                "SELECT attname::text, pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
                  WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                None,
                &[relation.into()],
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<HashMap<_, _>, pgrx::spi::Error>>()
    })?)
}

/// The defining query's column types, probed by creating it as a temporary view, which
/// also checks it against the real table (columns, functions, types).
pub(super) fn probe_types(plan: &Plan) -> BeaconResult<Vec<String>> {
    run(
        &format!(
            "CREATE TEMP VIEW _beacon_probe AS {}",
            plan.defining_query()
        ),
        &[],
    )?;
    let types = Spi::connect(|client| {
        client
            .select(
                "SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
                  WHERE attrelid = 'pg_temp._beacon_probe'::regclass AND attnum > 0 ORDER BY attnum",
                None,
                &[],
            )?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })?;
    run("DROP VIEW pg_temp._beacon_probe", &[])?;
    Ok(types)
}
