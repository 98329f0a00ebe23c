use super::*;

const ALL: [AggKind; 14] = [
    AggKind::CountStar,
    AggKind::Count,
    AggKind::CountDistinct,
    AggKind::ApproxCountDistinct,
    AggKind::Sum,
    AggKind::Avg,
    AggKind::Min,
    AggKind::Max,
    AggKind::StddevSamp,
    AggKind::StddevPop,
    AggKind::VarSamp,
    AggKind::VarPop,
    AggKind::BoolAnd,
    AggKind::BoolOr,
];

const TYPES: [ArgType; 5] = [
    ArgType::Integer,
    ArgType::Numeric,
    ArgType::Float,
    ArgType::Interval,
    ArgType::Other,
];

#[test]
fn every_partial_named_in_finalize_exists() {
    for kind in ALL {
        for ty in TYPES {
            let s = spec(kind, ty);
            let mut rest = s.finalize.as_str();
            while let Some(at) = rest.find("{p:") {
                let name = &rest[at + 3..at + 3 + rest[at + 3..].find('}').unwrap()];
                assert!(
                    s.partials.iter().any(|p| p.suffix == name),
                    "{kind:?} over {ty:?} finalizes with unknown partial {name}"
                );
                rest = &rest[at + 3..];
            }
            let mut suffixes: Vec<_> = s.partials.iter().map(|p| p.suffix).collect();
            suffixes.dedup();
            assert_eq!(suffixes.len(), s.partials.len(), "{kind:?} {ty:?}");
        }
    }
}

#[test]
fn only_exact_arithmetic_is_subtracted() {
    let recomputed =
        |ty| -> Vec<AggKind> { ALL.into_iter().filter(|k| !invertible(*k, ty)).collect() };
    // integers: everything but extremes and sketches is exact
    assert_eq!(
        recomputed(ArgType::Integer),
        vec![AggKind::ApproxCountDistinct, AggKind::Min, AggKind::Max]
    );
    // numeric scale, NaN and cancellation: sums and spreads are recomputed too
    for ty in [ArgType::Numeric, ArgType::Float] {
        let r = recomputed(ty);
        for kind in [
            AggKind::Sum,
            AggKind::Avg,
            AggKind::VarSamp,
            AggKind::StddevPop,
        ] {
            assert!(r.contains(&kind), "{kind:?} over {ty:?}");
        }
        assert!(!r.contains(&AggKind::Count), "{ty:?}");
    }
    assert!(!invertible(AggKind::Sum, ArgType::Interval));
}

#[test]
fn integer_averages_and_spreads_are_numeric() {
    let avg = spec(AggKind::Avg, ArgType::Integer).finalize;
    assert!(avg.contains("::pg_catalog.numeric / "), "{avg}");
    let var = spec(AggKind::VarSamp, ArgType::Integer);
    assert!(var.partials.iter().any(|p| p
        .compute
        .contains("({x})::pg_catalog.numeric * ({x})::pg_catalog.numeric")));
}

#[test]
fn float_spreads_use_postgres_transition_state() {
    let s = spec(AggKind::StddevSamp, ArgType::Float);
    assert_eq!(s.finalize, "pg_catalog.float8_stddev_samp({p:y})");
    assert_eq!(s.partials[0].merge_agg, "beacon._float8_merge({a})");
}

#[test]
fn merges_need_no_zero_of_the_type() {
    for kind in ALL {
        for ty in TYPES {
            for p in spec(kind, ty).partials {
                assert!(
                    !p.merge_two.contains(", 0)"),
                    "{kind:?} {ty:?}: {}",
                    p.merge_two
                );
            }
        }
    }
}
