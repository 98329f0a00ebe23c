//! Every supported aggregate, as one entry: its partial columns, how partials are computed
//! from rows (and negated for deleted rows), merged, and finalized for the view. Capture,
//! compaction and the view are generated from these entries only, so adding an aggregate
//! means adding an entry here.
//!
//! An entry depends on the argument's type, because PostgreSQL's own aggregates do: the
//! view must give what the defining query gives, digit for digit.
//! - Integers: `avg`, `var*` and `stddev*` are numeric in PostgreSQL, computed from exact
//!   sums; the partials are exact numeric sums too, so deletes subtract them exactly.
//! - numeric: the result's scale is the largest scale among the *remaining* rows, which a
//!   subtraction cannot know: sums are recomputed for groups that lost rows.
//! - Floating point: NaN and ±Infinity cannot be subtracted back out, and subtracting a
//!   large value cancels the small ones: recomputed on delete too. Variances keep
//!   PostgreSQL's own transition state (Youngs–Cramer, `float8_accum`), merged with its
//!   own combine function, so {1e9+1, 1e9+2, 1e9+3} has variance 1, as in PostgreSQL.
//! - interval: no zero to start from (`coalesce(a, 0)` fails), and infinite intervals
//!   cannot be subtracted: merged null-safely, recomputed on delete.
//!
//! Templates: `{x}` is the aggregate's argument, `{p}` a partial column of this aggregate
//! (`{p:s}` names partial `s`), `{a}`/`{b}` two partial values being merged.

use super::analyze::AggKind;

/// What decides an aggregate's arithmetic: the argument's type (domains by their base).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArgType {
    /// smallint, integer, bigint
    Integer,
    Numeric,
    /// real, double precision
    Float,
    Interval,
    /// Anything else (money, a type an aggregate has no special case for).
    #[default]
    Other,
}

impl ArgType {
    pub fn of_type_oid(oid: u32) -> ArgType {
        // pg_type.h's fixed OIDs
        match oid {
            20 | 21 | 23 => ArgType::Integer,
            1700 => ArgType::Numeric,
            700 | 701 => ArgType::Float,
            1186 => ArgType::Interval,
            _ => ArgType::Other,
        }
    }
}

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
    pub partials: Vec<&'static Partial>,
    /// Final value from the partials; `{count}` is the group's row count.
    pub finalize: String,
}

/// Null-safe for every type with a `+`: an absent partial (a delete's, for a partial it
/// does not subtract) leaves the other one as it is.
const MERGE_SUM: &str = "coalesce({a} + {b}, {a}, {b})";

const fn additive(suffix: &'static str, compute: &'static str, negate: &'static str) -> Partial {
    Partial {
        suffix,
        compute,
        negate: Some(negate),
        merge_agg: "sum({a})",
        merge_two: MERGE_SUM,
    }
}

const fn recomputed_sum(suffix: &'static str, compute: &'static str) -> Partial {
    Partial {
        suffix,
        compute,
        negate: None,
        merge_agg: "sum({a})",
        merge_two: MERGE_SUM,
    }
}

const COUNT: Partial = additive("n", "count({x})", "-count({x})");
/// Integer sums are exact: bigint for smallint/integer, numeric for bigint (PostgreSQL's
/// own result types of `sum`).
const SUM: Partial = additive("s", "sum({x})", "-sum({x})");
const EXACT_SUM: Partial = additive(
    "s",
    "sum(({x})::pg_catalog.numeric)",
    "-sum(({x})::pg_catalog.numeric)",
);
const EXACT_SQUARES: Partial = additive(
    "q",
    "sum(({x})::pg_catalog.numeric * ({x})::pg_catalog.numeric)",
    "-sum(({x})::pg_catalog.numeric * ({x})::pg_catalog.numeric)",
);
const NUMERIC_SUM: Partial = recomputed_sum("s", "sum({x})");
const NUMERIC_SQUARES: Partial = recomputed_sum("q", "sum(({x}) * ({x}))");
/// `sum(real)` is real in PostgreSQL, accumulated in real; accumulating in double
/// precision and rounding once is at least as close to the exact sum.
const FLOAT_SUM: Partial = recomputed_sum("s", "sum(({x})::pg_catalog.float8)");
const INTERVAL_SUM: Partial = recomputed_sum("s", "sum({x})");
/// PostgreSQL's own float8 transition state {N, Sx, Sxx}: what var/stddev of real and
/// double precision compute with.
const FLOAT_STATE: Partial = Partial {
    suffix: "y",
    compute: "beacon._float8_state(({x})::pg_catalog.float8)",
    negate: None,
    merge_agg: "beacon._float8_merge({a})",
    merge_two: "coalesce(pg_catalog.float8_combine({a}, {b}), {a}, {b})",
};

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
/// Squares in the argument's own type: for types with no exact path (money and such).
const SQUARES: Partial = additive("q", "sum(({x}) * ({x}))", "-sum(({x}) * ({x}))");

const TRUES: Partial = additive(
    "t",
    "count(*) FILTER (WHERE {x})",
    "-count(*) FILTER (WHERE {x})",
);
const FALSES: Partial = additive(
    "f",
    "count(*) FILTER (WHERE NOT ({x}))",
    "-count(*) FILTER (WHERE NOT ({x}))",
);
const SKETCH: Partial = Partial {
    suffix: "h",
    compute: "beacon.hll_sketch({x})",
    negate: None,
    merge_agg: "beacon.hll_union_agg({a})",
    merge_two: "beacon.hll_union({a}, {b})",
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Spread {
    Variance,
    Stddev,
}

/// numeric_stddev_internal's arithmetic over exact sums, in SQL: NULL for too few rows
/// (NaN and infinities count), then NaN from NaN or infinities, else N·Σx² − (Σx)² over
/// N(N−1) (or N²), 0 when rounding would make it negative;
/// numeric division picks the result's scale exactly as the C code does. The square root
/// is taken 30 digits beyond that scale and rounded to it once.
fn numeric_spread(spread: Spread, sample: bool) -> String {
    let n = "({p:n})::pg_catalog.numeric";
    let numerator = format!("({n} * {{p:q}} - {{p:s}} * {{p:s}})");
    let denominator = if sample {
        format!("({n} * ({n} - 1))")
    } else {
        format!("({n} * {n})")
    };
    let variance = format!("({numerator} / {denominator})");
    let value = match spread {
        Spread::Variance => variance,
        Spread::Stddev => format!(
            "pg_catalog.round(pg_catalog.sqrt(pg_catalog.round({variance}, pg_catalog.scale({variance}) + 30)), pg_catalog.scale({variance}))"
        ),
    };
    let least = if sample { 1 } else { 0 };
    format!(
        "CASE WHEN coalesce({{p:n}}, 0) <= {least} THEN NULL \
              WHEN {numerator} = 'NaN'::pg_catalog.numeric THEN 'NaN'::pg_catalog.numeric \
              WHEN {numerator} <= 0 THEN 0::pg_catalog.numeric \
              ELSE {value} END"
    )
}

/// The naive formula, for argument types with no exact path.
fn naive_spread(spread: Spread, sample: bool) -> String {
    let (least, divisor) = if sample {
        (1, "({p:n} - 1)")
    } else {
        (0, "{p:n}")
    };
    let variance = format!("greatest(({{p:q}} - {{p:s}} * {{p:s}} / {{p:n}}) / {divisor}, 0)");
    let value = match spread {
        Spread::Variance => variance,
        Spread::Stddev => format!("sqrt({variance})"),
    };
    format!("CASE WHEN {{p:n}} > {least} THEN {value} END")
}

fn spread(spread: Spread, sample: bool, ty: ArgType) -> Spec {
    match ty {
        ArgType::Integer => Spec {
            partials: vec![&COUNT, &EXACT_SUM, &EXACT_SQUARES],
            finalize: numeric_spread(spread, sample),
        },
        ArgType::Numeric => Spec {
            partials: vec![&COUNT, &NUMERIC_SUM, &NUMERIC_SQUARES],
            finalize: numeric_spread(spread, sample),
        },
        ArgType::Float => {
            let function = match (spread, sample) {
                (Spread::Variance, true) => "float8_var_samp",
                (Spread::Variance, false) => "float8_var_pop",
                (Spread::Stddev, true) => "float8_stddev_samp",
                (Spread::Stddev, false) => "float8_stddev_pop",
            };
            Spec {
                partials: vec![&FLOAT_STATE],
                finalize: format!("pg_catalog.{function}({{p:y}})"),
            }
        }
        ArgType::Interval | ArgType::Other => Spec {
            partials: vec![&COUNT, &SUM, &SQUARES],
            finalize: naive_spread(spread, sample),
        },
    }
}

fn sum_partial(ty: ArgType) -> &'static Partial {
    match ty {
        ArgType::Integer | ArgType::Other => &SUM,
        ArgType::Numeric => &NUMERIC_SUM,
        ArgType::Float => &FLOAT_SUM,
        ArgType::Interval => &INTERVAL_SUM,
    }
}

fn spec_of(partials: Vec<&'static Partial>, finalize: &str) -> Spec {
    Spec {
        partials,
        finalize: finalize.to_string(),
    }
}

pub fn spec(kind: AggKind, ty: ArgType) -> Spec {
    match kind {
        AggKind::CountStar => spec_of(vec![], "{count}"),
        AggKind::Count => spec_of(vec![&COUNT], "coalesce({p:n}, 0)"),
        AggKind::Sum => spec_of(
            vec![&COUNT, sum_partial(ty)],
            "CASE WHEN {p:n} > 0 THEN {p:s} END",
        ),
        AggKind::Avg => spec_of(
            vec![&COUNT, sum_partial(ty)],
            match ty {
                // numeric_div picks the scale, as PostgreSQL's int*_avg and numeric_avg do
                ArgType::Integer | ArgType::Numeric => {
                    "CASE WHEN {p:n} > 0 THEN ({p:s})::pg_catalog.numeric / ({p:n})::pg_catalog.numeric END"
                }
                ArgType::Float | ArgType::Interval => {
                    "CASE WHEN {p:n} > 0 THEN {p:s} / ({p:n})::pg_catalog.float8 END"
                }
                ArgType::Other => "CASE WHEN {p:n} > 0 THEN {p:s} / {p:n} END",
            },
        ),
        AggKind::Min => spec_of(vec![&MIN], "{p:m}"),
        AggKind::Max => spec_of(vec![&MAX], "{p:m}"),
        AggKind::VarSamp => spread(Spread::Variance, true, ty),
        AggKind::VarPop => spread(Spread::Variance, false, ty),
        AggKind::StddevSamp => spread(Spread::Stddev, true, ty),
        AggKind::StddevPop => spread(Spread::Stddev, false, ty),
        AggKind::BoolAnd => spec_of(
            vec![&TRUES, &FALSES],
            "CASE WHEN coalesce({p:t}, 0) + coalesce({p:f}, 0) > 0 THEN coalesce({p:f}, 0) = 0 END",
        ),
        AggKind::BoolOr => spec_of(
            vec![&TRUES, &FALSES],
            "CASE WHEN coalesce({p:t}, 0) + coalesce({p:f}, 0) > 0 THEN coalesce({p:t}, 0) > 0 END",
        ),
        AggKind::ApproxCountDistinct => spec_of(
            vec![&SKETCH],
            "coalesce(beacon.hll_estimate({p:h}), 0)",
        ),
        // Exact distinct counts: a hidden (keys, value, multiplicity) table, kept by the
        // capture code, whose 0 ↔ positive transitions are this additive partial; rows
        // themselves contribute nothing to it directly.
        AggKind::CountDistinct => spec_of(vec![&DISTINCT], "coalesce({p:d}, 0)"),
    }
}

/// Whether deleting rows can be expressed as negative partials for this aggregate.
pub fn invertible(kind: AggKind, ty: ArgType) -> bool {
    spec(kind, ty).partials.iter().all(|p| p.negate.is_some())
}

#[cfg(test)]
mod tests;
