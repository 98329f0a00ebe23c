//! What each surface of user SQL may call, in one place: both barriers read these lists
//! (the sqlparser walkers by name as written, the analyzed check by name of what
//! PostgreSQL resolved in `pg_catalog`), so allowing a function is one line here.

/// Aggregates of `beacon.query` and materialized views, rendered `pg_catalog."name"`.
#[rustfmt::skip]
pub(crate) const AGGREGATE_FUNCTIONS: &[&str] = &[
    "count", "sum", "avg", "min", "max", "stddev", "stddev_pop", "stddev_samp", "variance",
    "var_pop", "var_samp", "bool_and", "bool_or", "every", "bit_and", "bit_or", "string_agg",
    "array_agg", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg",
    "percentile_cont", "percentile_disc", "mode", "corr", "covar_pop", "covar_samp",
    "regr_avgx", "regr_avgy", "regr_count", "regr_intercept", "regr_r2", "regr_slope",
    "regr_sxx", "regr_sxy", "regr_syy",
];

/// Window functions of `beacon.query`, rendered `pg_catalog."name"`.
#[rustfmt::skip]
pub(crate) const WINDOW_FUNCTIONS: &[&str] = &[
    "row_number", "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
    "first_value", "last_value", "nth_value",
];

/// Scalar functions of `beacon.query` that only compute from their arguments (or read the
/// clock or the random generator), rendered `pg_catalog."name"`. Anything reading files,
/// settings, catalogs, sequences, locks or other sessions is absent on purpose, and so are
/// repeat, lpad and rpad: one call can allocate a gigabyte before the statement timeout
/// gets a chance to cancel it.
#[rustfmt::skip]
pub(crate) const SCALAR_FUNCTIONS: &[&str] = &[
    // math
    "abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "sqrt", "cbrt", "exp", "ln",
    "log", "log10", "power", "pow", "mod", "div", "width_bucket", "random", "pi", "degrees",
    "radians",
    // strings
    "lower", "upper", "initcap", "length", "char_length", "character_length",
    "octet_length", "bit_length", "substr", "substring", "position", "strpos", "left", "right",
    "ltrim", "rtrim", "btrim", "replace", "split_part", "concat", "concat_ws", "reverse",
    "starts_with", "md5", "regexp_replace", "regexp_match", "translate", "to_char",
    "to_number", "format", "ascii", "chr",
    // date and time
    "date_trunc", "date_part", "to_timestamp", "to_date", "make_date", "make_time",
    "make_timestamp", "make_timestamptz", "make_interval", "age", "date_bin", "justify_days",
    "justify_hours", "justify_interval", "isfinite", "now", "clock_timestamp",
    "statement_timestamp", "transaction_timestamp",
    // json
    "jsonb_extract_path", "jsonb_extract_path_text", "json_extract_path",
    "json_extract_path_text", "jsonb_array_length", "json_array_length", "jsonb_typeof",
    "json_typeof", "to_jsonb", "to_json", "jsonb_build_object", "json_build_object",
    "jsonb_build_array", "json_build_array", "jsonb_strip_nulls", "json_strip_nulls",
    // arrays
    "array_length", "cardinality", "array_position", "array_positions", "array_to_string",
    "string_to_array", "array_upper", "array_lower",
];

/// Set-returning functions of `beacon.query`, allowed in FROM and in expressions.
#[rustfmt::skip]
pub(crate) const SET_RETURNING_FUNCTIONS: &[&str] = &[
    "generate_series", "unnest", "regexp_matches", "regexp_split_to_table",
    "jsonb_array_elements", "jsonb_array_elements_text", "json_array_elements",
    "json_array_elements_text", "jsonb_object_keys", "json_object_keys", "jsonb_each",
    "jsonb_each_text", "json_each", "json_each_text",
];

/// Functions returning `record`, usable only in FROM with a column definition list
/// (`AS x(a int, b text)`).
#[rustfmt::skip]
pub(crate) const RECORD_FUNCTIONS: &[&str] = &[
    "json_to_record", "jsonb_to_record", "json_to_recordset", "jsonb_to_recordset",
];

/// What the grammar calls for syntax `beacon.query` accepts: EXTRACT, AT TIME ZONE,
/// OVERLAPS, OVERLAY, LIKE … ESCAPE, SIMILAR TO.
#[rustfmt::skip]
pub(crate) const QUERY_GRAMMAR_FUNCTIONS: &[&str] = &[
    "extract", "timezone", "overlaps", "overlay", "like_escape", "similar_to_escape",
];

/// pg_beacon's own aggregate, in schema `beacon`, rendered `beacon."name"`.
pub(crate) const BEACON_FUNCTIONS: &[&str] = &["approx_count_distinct"];

/// Functions of continuous queries: their result depends only on their arguments, so
/// re-evaluating them in the capture trigger gives the value the query would have.
#[rustfmt::skip]
pub(crate) const CQ_FUNCTIONS: &[&str] = &[
    "date_trunc", "date_part", "lower", "upper", "initcap", "length", "char_length",
    "octet_length", "substr", "substring", "left", "right", "split_part", "btrim", "ltrim",
    "rtrim", "replace", "concat", "concat_ws", "abs", "round", "trunc", "floor", "ceil",
    "ceiling", "sign", "mod", "power", "sqrt", "ln", "log", "exp", "to_char", "md5",
    "jsonb_extract_path_text",
];

/// What continuous queries may write as a call that PostgreSQL's grammar turns into
/// something else: EXTRACT and TRIM (functions it names differently), COALESCE, NULLIF,
/// GREATEST and LEAST (expression nodes, no function at all).
#[rustfmt::skip]
pub(crate) const CQ_CALL_SYNTAX: &[&str] = &[
    "extract", "trim", "coalesce", "nullif", "greatest", "least",
];

/// The aggregates a continuous query can maintain.
#[rustfmt::skip]
pub(crate) const CQ_AGGREGATES: &[&str] = &[
    "count", "sum", "avg", "min", "max", "stddev", "stddev_samp", "stddev_pop", "variance",
    "var_samp", "var_pop", "bool_and", "bool_or", "every",
];

/// EXTRACT and AT TIME ZONE, as PostgreSQL calls them for continuous queries.
pub(crate) const CQ_GRAMMAR_FUNCTIONS: &[&str] = &["extract", "timezone"];

/// Functions a subscription filter may call, with their fewest and most arguments
/// (`None`: no upper bound). They have no side effects and read no database state, so
/// running them in every inserting session is harmless. COALESCE is an expression node to
/// PostgreSQL, not a function, so the analyzed check never meets it as one.
pub(crate) const FILTER_FUNCTIONS: &[(&str, usize, Option<usize>)] = &[
    ("lower", 1, Some(1)),
    ("upper", 1, Some(1)),
    ("length", 1, Some(2)),
    ("abs", 1, Some(1)),
    ("coalesce", 1, None),
    ("date_trunc", 2, Some(3)),
];

/// The names of [`FILTER_FUNCTIONS`].
pub(crate) fn filter_function_names() -> impl Iterator<Item = &'static str> {
    FILTER_FUNCTIONS.iter().map(|(name, ..)| *name)
}

/// `beacon.query`'s operators as PostgreSQL names them (LIKE is `~~`, ILIKE `~~*`,
/// SIMILAR TO `~`; prefix `-`, `+`, `~`, `@`, `|/`, `||/`).
#[rustfmt::skip]
pub(crate) const QUERY_OPERATORS: &[&str] = &[
    "=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "^", "||", "|", "&", "#", "<<", ">>", "~",
    "@", "|/", "||/", "&&", "~*", "!~", "!~*", "~~", "~~*", "!~~", "!~~*", "^@", "->",
    "->>", "#>", "#>>", "@>", "<@", "#-", "@?", "@@", "?", "?&", "?|",
];

/// Continuous queries' operators, LIKE and ILIKE included.
#[rustfmt::skip]
pub(crate) const CQ_OPERATORS: &[&str] = &[
    "=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "^", "||", "->", "->>", "#>", "#>>", "~~",
    "~~*", "!~~", "!~~*",
];

/// Subscription filters' operators, LIKE and ILIKE included.
#[rustfmt::skip]
pub(crate) const FILTER_OPERATORS: &[&str] = &[
    "=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "||", "->", "->>", "~~", "~~*", "!~~", "!~~*",
];
