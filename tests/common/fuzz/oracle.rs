//! Comparing a view with its defining query, in SQL. The view is read (into a temporary
//! table) by a session with random settings, like any reader; the query then runs with the
//! creator's settings and the two are joined on the keys with IS NOT DISTINCT FROM.
//!
//! Exact: keys, integers, booleans, dates, timestamps, text, min/max (by equality: of
//! equal values such as 1.0 and 1.000 PostgreSQL may return either), numeric and interval
//! results (by text, so the scale counts). Floats: NaN and ±Infinity exactly; sums and
//! averages within 1e-9 (real: 1e-5) of the sum or average of the remaining rows' absolute
//! values, variances and standard deviations within 1e-9 relative plus 64 ε·mean|x|·σ
//! (resp. 32 ε·mean|x|), the rounding of PostgreSQL's own algorithm, whose result depends
//! on the order rows are added in; other float results within 1e-9 relative. approx_count_distinct within 2% of
//! the query's own estimate (the same sketch over the same values: equal unless the
//! hashing differs).

use super::classes::FIXED_SETTINGS;
use super::gen::{OutKind, QuerySpec};
use super::{describe, quote_literal};
use postgres::Client;

/// name, type (format_type) and collation of each column.
pub type Attributes = Vec<(String, String, String)>;

fn attributes(client: &mut Client, relation: &str) -> Result<Attributes, postgres::Error> {
    Ok(client
        .query(
            "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
                    coalesce(c.collname::text, '')
               FROM pg_catalog.pg_attribute a
               LEFT JOIN pg_catalog.pg_collation c ON c.oid = a.attcollation
              WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
            &[&relation],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// The session a query was created in and is compared in.
pub fn creator_settings(client: &mut Client, time_zone: &str) {
    client
        .batch_execute(&format!(
            "SET search_path = fz, public; SET TimeZone = {}; {FIXED_SETTINGS}",
            quote_literal(time_zone)
        ))
        .expect("creator settings");
}

/// The view's column names, types and collations must be the query's.
pub fn check_columns(
    client: &mut Client,
    view: &str,
    spec: &QuerySpec,
    time_zone: &str,
) -> Result<Attributes, String> {
    creator_settings(client, time_zone);
    client
        .batch_execute(&format!(
            "DROP VIEW IF EXISTS pg_temp.fz_oracle; CREATE TEMP VIEW fz_oracle AS {}",
            spec.sql
        ))
        .map_err(|e| format!("the query itself fails: {}", describe(&e)))?;
    let expected = attributes(client, "pg_temp.fz_oracle").map_err(|e| describe(&e))?;
    let got = attributes(client, view).map_err(|e| describe(&e))?;
    client
        .batch_execute("DROP VIEW pg_temp.fz_oracle")
        .map_err(|e| describe(&e))?;
    if expected != got {
        return Err(format!(
            "columns differ:\n  view  {got:?}\n  query {expected:?}"
        ));
    }
    Ok(got)
}

pub struct Mismatch {
    /// The output columns that differ (their classes name the failure).
    pub columns: Vec<String>,
    pub text: String,
}

fn float_ok(v: &str, o: &str, tolerance: f64, scale: Option<&str>) -> String {
    let scale = match scale {
        Some(s) => format!("o.{s}"),
        None => {
            format!("greatest(pg_catalog.abs({v}::float8), pg_catalog.abs({o}::float8))")
        }
    };
    format!(
        "coalesce(({v} IS NULL AND {o} IS NULL) OR {v} = {o} OR \
         (pg_catalog.abs({v}::float8) < 'Infinity' AND pg_catalog.abs({o}::float8) < 'Infinity' \
          AND pg_catalog.abs({v}::float8 - {o}::float8) <= {tolerance:e} * {scale}), false)"
    )
}

/// Per output column: the SQL that says it matches.
fn column_ok(spec: &QuerySpec, i: usize, ty: &str) -> String {
    let output = &spec.outputs[i];
    let (v, o) = (format!("v.{}", output.name), format!("o.{}", output.name));
    match &output.kind {
        OutKind::Key { key } => {
            if !key.ambiguous {
                return "true".into();
            }
            // of equal keys that print differently, the view must show one that exists
            let filter = spec
                .filter_sql
                .as_ref()
                .map(|f| format!("({f}) AND "))
                .unwrap_or_default();
            format!(
                "({v} IS NULL OR EXISTS (SELECT 1 FROM {} s WHERE {filter}\
                 (({})::text COLLATE \"C\") = ({v}::text COLLATE \"C\")))",
                spec.table, key.sql
            )
        }
        OutKind::Aggregate { name, scale, .. } => {
            if name.starts_with("beacon.approx") {
                format!("coalesce({v} = {o} OR pg_catalog.abs({v} - {o}) <= 0.02 * {o}, false)")
            } else if name.starts_with("min") || name.starts_with("max") {
                format!("{v} IS NOT DISTINCT FROM {o}")
            } else if ty == "double precision" {
                float_ok(&v, &o, 1e-9, scale.as_deref())
            } else if ty == "real" {
                float_ok(&v, &o, 1e-5, scale.as_deref())
            } else if ty == "numeric" || ty == "interval" {
                format!("{v}::text IS NOT DISTINCT FROM {o}::text")
            } else {
                format!("{v} IS NOT DISTINCT FROM {o}")
            }
        }
    }
}

fn rows(client: &mut Client, sql: &str) -> Result<Vec<(String, String, Vec<String>)>, String> {
    client
        .query(sql, &[])
        .map_err(|e| format!("the comparison failed: {}\n{sql}", describe(&e)))
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r.get::<_, Option<String>>(0).unwrap_or_else(|| "-".into()),
                        r.get::<_, Option<String>>(1).unwrap_or_else(|| "-".into()),
                        r.get::<_, Vec<String>>(2),
                    )
                })
                .collect()
        })
}

/// Reads `view` with `reader` settings, then compares it with the query. `Err` with no
/// columns when reading or comparing itself failed.
pub fn compare(
    client: &mut Client,
    view: &str,
    spec: &QuerySpec,
    types: &Attributes,
    time_zone: &str,
    reader: &str,
) -> Result<(), Mismatch> {
    let failed = |text: String| Mismatch {
        columns: vec![],
        text,
    };
    client
        .batch_execute(&format!(
            "RESET search_path; {reader}; DROP TABLE IF EXISTS pg_temp.fz_v; \
             CREATE TEMP TABLE fz_v AS SELECT * FROM {view}"
        ))
        .map_err(|e| failed(format!("reading the view failed: {}", describe(&e))))?;
    creator_settings(client, time_zone);
    let counts = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM pg_temp.fz_v), (SELECT count(*) FROM ({}) q)",
                spec.sql
            ),
            &[],
        )
        .map_err(|e| failed(format!("the query failed: {}", describe(&e))))?;
    let (view_rows, query_rows): (i64, i64) = (counts.get(0), counts.get(1));
    let found = if spec.hidden_key.is_some() {
        // rows need not have distinct visible keys: compare as multisets of text
        let cols: Vec<String> = spec
            .outputs
            .iter()
            .map(|o| format!("{0}::text COLLATE \"C\" AS {0}", o.name))
            .collect();
        rows(
            client,
            &format!(
                "WITH v AS (SELECT {0} FROM pg_temp.fz_v), o AS (SELECT {0} FROM ({1}) q) \
                 SELECT row_to_json(x)::text, NULL, ARRAY['rows']::text[] FROM (TABLE v EXCEPT ALL TABLE o) x \
                 UNION ALL SELECT NULL, row_to_json(y)::text, ARRAY['rows']::text[] FROM (TABLE o EXCEPT ALL TABLE v) y \
                 LIMIT 20",
                cols.join(", "),
                spec.sql
            ),
        )
        .map_err(failed)?
    } else {
        let join: Vec<String> = spec
            .keys()
            .map(|(o, _)| format!("v.{0} IS NOT DISTINCT FROM o.{0}", o.name))
            .collect();
        let oks: Vec<(String, String)> = spec
            .outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name.clone(), column_ok(spec, i, &types[i].1)))
            .collect();
        let all_ok = oks
            .iter()
            .map(|(_, ok)| format!("({ok})"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let which = oks
            .iter()
            .map(|(name, ok)| format!("CASE WHEN NOT ({ok}) THEN {} END", quote_literal(name)))
            .collect::<Vec<_>>()
            .join(", ");
        // IS NOT DISTINCT FROM cannot drive a FULL JOIN: rows without a partner on
        // either side, then partners that differ
        let on = if join.is_empty() {
            "true".to_string()
        } else {
            join.join(" AND ")
        };
        rows(
            client,
            &format!(
                "WITH v AS (SELECT * FROM pg_temp.fz_v), o AS ({}) \
                 (SELECT row_to_json(v)::text, NULL, ARRAY['rows']::text[] FROM v \
                   WHERE NOT EXISTS (SELECT 1 FROM o WHERE {on}) LIMIT 10) \
                 UNION ALL \
                 (SELECT NULL, row_to_json(o)::text, ARRAY['rows']::text[] FROM o \
                   WHERE NOT EXISTS (SELECT 1 FROM v WHERE {on}) LIMIT 10) \
                 UNION ALL \
                 (SELECT row_to_json(v)::text, row_to_json(o)::text, \
                         pg_catalog.array_remove(ARRAY[{which}]::text[], NULL) \
                    FROM v JOIN o ON {on} WHERE NOT ({all_ok}) LIMIT 10)",
                spec.extended
            ),
        )
        .map_err(failed)?
    };
    if found.is_empty() && view_rows == query_rows {
        return Ok(());
    }
    let mut columns: Vec<String> = found.iter().flat_map(|r| r.2.clone()).collect();
    if view_rows != query_rows && columns.is_empty() {
        columns.push("rows".into());
    }
    columns.sort();
    columns.dedup();
    let mut text =
        format!("the view has {view_rows} rows, the query {query_rows}; differing: {columns:?}\n");
    for (v, o, which) in &found {
        text.push_str(&format!(
            "  view  {}\n  query {}   differs in {which:?}\n",
            super::shorten(v, 600),
            super::shorten(o, 600)
        ));
    }
    Err(Mismatch { columns, text })
}
