//! Every supported aggregate, as one entry: its partial columns, how partials are computed
//! from rows (and negated for deleted rows), merged, and finalized for the view. Capture,
//! compaction and the view are generated from these entries only, so adding an aggregate
//! means adding an entry here.
//!
//! Templates: `{x}` is the aggregate's argument, `{p}` a partial column of this aggregate
//! (`{p:s}` names partial `s`), `{a}`/`{b}` two partial values being merged.

use super::analyze::AggKind;

pub struct Partial {
    pub suffix: &'static str,
    /// Aggregate over inserted rows.
    pub compute: &'static str,
    /// Aggregate over deleted rows; None when the partial cannot be subtracted and the
    /// group is recomputed from the source instead.
    pub negate: Option<&'static str>,
    /// Aggregate that merges many partial values of one group (compaction, the view).
    pub merge_agg: &'static str,
    /// Expression that merges two partial values (upsert into the state).
    pub merge_two: &'static str,
}

pub struct Spec {
    pub partials: &'static [Partial],
    /// Final value from the partials; `{count}` is the group's row count.
    pub finalize: &'static str,
}

const fn additive(suffix: &'static str, compute: &'static str, negate: &'static str) -> Partial {
    Partial {
        suffix,
        compute,
        negate: Some(negate),
        merge_agg: "sum({a})",
        merge_two: "coalesce({a}, 0) + coalesce({b}, 0)",
    }
}

const COUNT: Partial = additive("n", "count({x})", "-count({x})");
const SUM: Partial = additive("s", "sum({x})", "-sum({x})");
/// Float sums of squares for stddev/variance; numeric arguments keep numeric precision.
const SQUARES: Partial = additive("q", "sum(({x}) * ({x}))", "-sum(({x}) * ({x}))");

const MIN: Partial = Partial {
    suffix: "m",
    compute: "min({x})",
    negate: None,
    merge_agg: "min({a})",
    merge_two: "least({a}, {b})",
};
const MAX: Partial = Partial {
    suffix: "m",
    compute: "max({x})",
    negate: None,
    merge_agg: "max({a})",
    merge_two: "greatest({a}, {b})",
};

const DISTINCT: Partial = additive("d", "0::bigint", "0::bigint");
const VARIANCE_PARTIALS: &[Partial] = &[COUNT, SUM, SQUARES];

pub fn spec(kind: AggKind) -> Spec {
    match kind {
        AggKind::CountStar => Spec {
            partials: &[],
            finalize: "{count}",
        },
        AggKind::Count => Spec {
            partials: &[COUNT],
            finalize: "coalesce({p:n}, 0)",
        },
        AggKind::Sum => Spec {
            partials: &[COUNT, SUM],
            finalize: "CASE WHEN {p:n} > 0 THEN {p:s} END",
        },
        AggKind::Avg => Spec {
            partials: &[COUNT, SUM],
            finalize: "CASE WHEN {p:n} > 0 THEN {p:s} / {p:n} END",
        },
        AggKind::Min => Spec {
            partials: &[MIN],
            finalize: "{p:m}",
        },
        AggKind::Max => Spec {
            partials: &[MAX],
            finalize: "{p:m}",
        },
        AggKind::VarSamp => Spec {
            partials: VARIANCE_PARTIALS,
            finalize: "CASE WHEN {p:n} > 1 THEN greatest(({p:q} - {p:s} * {p:s} / {p:n}) / ({p:n} - 1), 0) END",
        },
        AggKind::VarPop => Spec {
            partials: VARIANCE_PARTIALS,
            finalize: "CASE WHEN {p:n} > 0 THEN greatest(({p:q} - {p:s} * {p:s} / {p:n}) / {p:n}, 0) END",
        },
        AggKind::StddevSamp => Spec {
            partials: VARIANCE_PARTIALS,
            finalize: "CASE WHEN {p:n} > 1 THEN sqrt(greatest(({p:q} - {p:s} * {p:s} / {p:n}) / ({p:n} - 1), 0)) END",
        },
        AggKind::StddevPop => Spec {
            partials: VARIANCE_PARTIALS,
            finalize: "CASE WHEN {p:n} > 0 THEN sqrt(greatest(({p:q} - {p:s} * {p:s} / {p:n}) / {p:n}, 0)) END",
        },
        AggKind::BoolAnd => Spec {
            partials: &[TRUES, FALSES],
            finalize: "CASE WHEN coalesce({p:t}, 0) + coalesce({p:f}, 0) > 0 THEN coalesce({p:f}, 0) = 0 END",
        },
        AggKind::BoolOr => Spec {
            partials: &[TRUES, FALSES],
            finalize: "CASE WHEN coalesce({p:t}, 0) + coalesce({p:f}, 0) > 0 THEN coalesce({p:t}, 0) > 0 END",
        },
        AggKind::ApproxCountDistinct => Spec {
            partials: &[Partial {
                suffix: "h",
                compute: "beacon.hll_sketch({x})",
                negate: None,
                merge_agg: "beacon.hll_union_agg({a})",
                merge_two: "beacon.hll_union({a}, {b})",
            }],
            finalize: "coalesce(beacon.hll_estimate({p:h}), 0)",
        },
        // Exact distinct counts: a hidden (keys, value, multiplicity) table, kept by the
        // capture code, whose 0 ↔ positive transitions are this additive partial; rows
        // themselves contribute nothing to it directly.
        AggKind::CountDistinct => Spec {
            partials: &[DISTINCT],
            finalize: "coalesce({p:d}, 0)",
        },
    }
}

const TRUES: Partial = additive(
    "t",
    "count(*) FILTER (WHERE {x})",
    "-count(*) FILTER (WHERE {x})",
);
const FALSES: Partial = additive(
    "f",
    "count(*) FILTER (WHERE NOT {x})",
    "-count(*) FILTER (WHERE NOT {x})",
);

/// Whether deleting rows can be expressed as negative partials for this aggregate.
pub fn invertible(kind: AggKind) -> bool {
    spec(kind).partials.iter().all(|p| p.negate.is_some())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn every_partial_named_in_finalize_exists() {
        for kind in ALL {
            let s = spec(kind);
            let mut rest = s.finalize;
            while let Some(at) = rest.find("{p:") {
                let name = &rest[at + 3..at + 3 + rest[at + 3..].find('}').unwrap()];
                assert!(
                    s.partials.iter().any(|p| p.suffix == name),
                    "{kind:?} finalizes with unknown partial {name}"
                );
                rest = &rest[at + 3..];
            }
        }
    }

    #[test]
    fn min_max_and_sketches_are_recomputed_not_inverted() {
        let recomputed: Vec<AggKind> = ALL.into_iter().filter(|k| !invertible(*k)).collect();
        assert_eq!(
            recomputed,
            vec![AggKind::ApproxCountDistinct, AggKind::Min, AggKind::Max]
        );
    }

    #[test]
    fn merge_of_extremes_matches_their_aggregate() {
        assert_eq!(spec(AggKind::Min).partials[0].merge_agg, "min({a})");
        assert_eq!(spec(AggKind::Max).partials[0].merge_agg, "max({a})");
    }
}
