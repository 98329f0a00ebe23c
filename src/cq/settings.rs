//! Settings that change what a continuous query's expressions compute, fixed for the
//! query wherever they are evaluated: capture (the trigger function's SET clauses),
//! backfill and compaction (set locally inside the owner guard), and the view's
//! recompute of dirty groups (its function's SET clauses). Without this, a key such as
//! `x::text` over a float (extra_float_digits), `d::text` (DateStyle) or
//! `date_trunc('day', t)` (TimeZone) puts one value into two groups, depending on who
//! wrote or read it. DateStyle and IntervalStyle are among the owner settings already.

use crate::error::BeaconResult;
use crate::names::quote_literal;
use crate::spi::run;

pub const RESULT_SETTINGS: [(&str, &str); 5] = [
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("lc_numeric", "C"),
    ("lc_time", "C"),
];

/// `SET` clauses for a generated function, the query's time zone included.
pub fn set_clauses(time_zone: &str) -> String {
    format!(
        "SET TimeZone = {} {}",
        quote_literal(time_zone),
        constant_clauses()
    )
}

/// `SET` clauses for everything but the time zone (for functions that set it per query).
pub fn constant_clauses() -> String {
    RESULT_SETTINGS
        .iter()
        .map(|(name, value)| format!("SET {name} = {}", quote_literal(value)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sets them for the rest of the current owner guard (`AsOwner` opened a GUC nest level:
/// local settings made inside it are rolled back when it ends).
pub fn apply(time_zone: &str) -> BeaconResult<()> {
    run(
        "SELECT pg_catalog.set_config('TimeZone', $1, true)",
        &[time_zone.into()],
    )?;
    for (name, value) in RESULT_SETTINGS {
        run(
            "SELECT pg_catalog.set_config($1, $2, true)",
            &[name.into(), value.into()],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn clauses_quote_the_zone_and_cover_every_setting() {
        let clauses = super::set_clauses("Asia/Kathmandu");
        assert!(clauses.starts_with("SET TimeZone = 'Asia/Kathmandu' "));
        for (name, _) in super::RESULT_SETTINGS {
            assert!(clauses.contains(&format!("SET {name} = ")), "{clauses}");
        }
        assert!(super::set_clauses("a'b").contains("'a''b'"));
    }
}
