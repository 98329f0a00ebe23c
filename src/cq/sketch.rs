//! SQL surface of the HyperLogLog sketch (hll.rs): `beacon.approx_count_distinct(x)` for
//! anyone, and the partial-aggregate functions continuous queries store and merge.
//! Values are hashed through their type's text output, so equal values of one type hash
//! alike wherever they are aggregated; the capture function fixes the settings that
//! output depends on (TimeZone).

use super::hll::Hll;
use pgrx::datum::Internal;
use pgrx::prelude::*;
use pgrx::{AnyElement, PgMemoryContexts};

/// The sketch inside an aggregate's state, created in the aggregate's memory context so
/// that it lives exactly as long as the aggregation.
unsafe fn state(mut internal: Internal, fcinfo: pg_sys::FunctionCallInfo) -> (Internal, *mut Hll) {
    if internal.get::<Hll>().is_none() {
        let mut context: pg_sys::MemoryContext = std::ptr::null_mut();
        if pg_sys::AggCheckCallContext(fcinfo, &mut context) == 0 {
            error!("pg_beacon sketch functions can only be called as aggregates");
        }
        PgMemoryContexts::For(context).switch_to(|_| {
            internal.insert(Hll::new());
        });
    }
    let sketch = internal.get_mut::<Hll>().expect("initialized above") as *mut Hll;
    (internal, sketch)
}

fn add_value(sketch: &mut Hll, value: &AnyElement) {
    unsafe {
        let mut output: pg_sys::Oid = pg_sys::InvalidOid;
        let mut varlena = false;
        pg_sys::getTypeOutputInfo(value.oid(), &mut output, &mut varlena);
        let text = pg_sys::OidOutputFunctionCall(output, value.datum());
        sketch.add_bytes(std::ffi::CStr::from_ptr(text).to_bytes());
        pg_sys::pfree(text.cast());
    }
}

#[pg_extern(immutable, parallel_safe)]
fn _hll_add(
    state_: Internal,
    value: Option<AnyElement>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let (internal, sketch) = unsafe { state(state_, fcinfo) };
    if let Some(value) = value {
        add_value(unsafe { &mut *sketch }, &value);
    }
    internal
}

#[pg_extern(immutable, parallel_safe)]
fn _hll_merge(
    state_: Internal,
    partial: Option<Vec<u8>>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Internal {
    let (internal, sketch) = unsafe { state(state_, fcinfo) };
    if let Some(bytes) = partial {
        match Hll::from_bytes(&bytes) {
            Ok(other) => unsafe { (*sketch).merge(&other) },
            Err(e) => error!("invalid pg_beacon sketch: {e}"),
        }
    }
    internal
}

#[pg_extern(immutable, parallel_safe)]
fn _hll_estimate_state(state_: Internal) -> i64 {
    unsafe { state_.get::<Hll>() }.map_or(0, |h| h.estimate() as i64)
}

#[pg_extern(immutable, parallel_safe)]
fn _hll_bytes_state(state_: Internal) -> Option<Vec<u8>> {
    unsafe { state_.get::<Hll>() }.map(Hll::to_bytes)
}

/// Estimated number of distinct values in a sketch.
#[pg_extern(immutable, parallel_safe, strict)]
fn hll_estimate(sketch: &[u8]) -> i64 {
    crate::error::report(
        Hll::from_bytes(sketch)
            .map(|h| h.estimate() as i64)
            .map_err(|e| {
                crate::error::BeaconError::InvalidArgument(format!("invalid sketch: {e}"))
            }),
    )
}

/// The union of two sketches (either may be NULL).
#[pg_extern(immutable, parallel_safe)]
fn hll_union(a: Option<&[u8]>, b: Option<&[u8]>) -> Option<Vec<u8>> {
    let parse = |bytes: &[u8]| {
        Hll::from_bytes(bytes).unwrap_or_else(|e| error!("invalid pg_beacon sketch: {e}"))
    };
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.to_vec()),
        (Some(x), Some(y)) => {
            let mut merged = parse(x);
            merged.merge(&parse(y));
            Some(merged.to_bytes())
        }
    }
}

extension_sql!(
    r#"
CREATE AGGREGATE beacon.approx_count_distinct(anyelement) (
    SFUNC = beacon._hll_add, STYPE = internal, FINALFUNC = beacon._hll_estimate_state);
COMMENT ON AGGREGATE beacon.approx_count_distinct(anyelement) IS
  'Approximate number of distinct non-null values (HyperLogLog, 16,384 registers: about 0.8% standard error).';
CREATE AGGREGATE beacon.hll_sketch(anyelement) (
    SFUNC = beacon._hll_add, STYPE = internal, FINALFUNC = beacon._hll_bytes_state);
COMMENT ON AGGREGATE beacon.hll_sketch(anyelement) IS 'A mergeable HyperLogLog sketch of the values.';
CREATE AGGREGATE beacon.hll_union_agg(bytea) (
    SFUNC = beacon._hll_merge, STYPE = internal, FINALFUNC = beacon._hll_bytes_state);
COMMENT ON AGGREGATE beacon.hll_union_agg(bytea) IS 'The union of many sketches.';
"#,
    name = "hll_aggregates",
    requires = [_hll_add, _hll_merge, _hll_estimate_state, _hll_bytes_state]
);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn approx_count_distinct_is_close_and_mergeable() {
        let estimate = Spi::get_one::<i64>(
            "SELECT beacon.approx_count_distinct(i % 50000) FROM generate_series(1, 200000) i",
        )
        .unwrap()
        .unwrap();
        assert!((estimate - 50000).abs() <= 1000, "estimate {estimate}");
        // sketches of parts, merged, equal the sketch of the whole
        let same = Spi::get_one::<bool>(
            "SELECT beacon.hll_union_agg(s) = (SELECT beacon.hll_sketch(i::text) FROM generate_series(1, 5000) i)
               FROM (SELECT beacon.hll_sketch(i::text) AS s FROM generate_series(1, 5000) i GROUP BY i % 7) p",
        )
        .unwrap();
        assert_eq!(same, Some(true));
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT beacon.approx_count_distinct(NULL::int) FROM generate_series(1, 3)"
            )
            .unwrap(),
            Some(0)
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT beacon.hll_estimate(beacon.hll_union(beacon.hll_sketch(1) , NULL)) FROM (SELECT 1) x").unwrap(),
            Some(1)
        );
    }
}
