//! Every class the fuzzer draws from, in one place: source columns and their values, key
//! shapes, aggregate arguments, aggregates, filters, DML kinds and session settings. A
//! failure report names the classes involved; to narrow a search, edit these tables.

/// A source column: its values are written as text (SQL literals get `'…'::type`, COPY
/// takes them as they are); `None` is NULL.
pub struct Column {
    pub name: &'static str,
    pub sql_type: &'static str,
    pub values: &'static [Option<&'static str>],
}

/// `LONGn` stands for the n-th long (3,000+ characters, incompressible) string of the run.
pub const LONG_TOKEN: &str = "LONG";

/// The nondeterministic collation of column `tc`; PostgreSQL built without ICU has none,
/// and every class that reads `tc` is then left out.
pub const CI_COLLATION: &str =
    "CREATE COLLATION IF NOT EXISTS public.fz_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)";

#[rustfmt::skip]
pub const COLUMNS: &[Column] = &[
    Column { name: "i2", sql_type: "smallint",
        values: &[Some("0"), Some("1"), Some("-1"), Some("2"), Some("5"), Some("7"), Some("200"), Some("-200"), Some("300"), None] },
    Column { name: "i4", sql_type: "integer",
        values: &[Some("0"), Some("1"), Some("2"), Some("3"), Some("5"), Some("10"), Some("-7"), Some("46341"), Some("-46341"), Some("2147483647"), Some("-2147483648"), None] },
    Column { name: "i8", sql_type: "bigint",
        values: &[Some("0"), Some("1"), Some("-1"), Some("42"), Some("3000000000"), Some("9223372036854775807"), Some("-9223372036854775807"), None] },
    Column { name: "num", sql_type: "numeric",
        values: &[Some("0"), Some("1.5"), Some("2.25"), Some("-3.10"), Some("10"), Some("0.001"), Some("1.000"), Some("100000000000000000000"), Some("0.00000000000000000001"), Some("NaN"), None] },
    Column { name: "f4", sql_type: "real",
        values: &[Some("0"), Some("-0"), Some("0.1"), Some("1.5"), Some("-2.5"), Some("16777217"), Some("1e30"), Some("1e-30"), Some("1.0000001"), Some("NaN"), Some("Infinity"), Some("-Infinity"), None] },
    // 1e300: sums and min/max only (PostgreSQL's own avg/variance overflow on it)
    Column { name: "f8", sql_type: "double precision",
        values: &[Some("0"), Some("-0"), Some("0.1"), Some("1.25"), Some("-3.5"), Some("1e300"), Some("-1e300"), Some("1e-300"), Some("1e20"), Some("1"), Some("2"), Some("NaN"), Some("Infinity"), Some("-Infinity"), None] },
    Column { name: "g8", sql_type: "double precision",
        values: &[Some("0"), Some("-0"), Some("0.1"), Some("0.3"), Some("1"), Some("2"), Some("-3.5"), Some("1e20"), Some("1e-300"), Some("1000000001"), Some("1000000002"), Some("1000000003"), Some("NaN"), Some("Infinity"), Some("-Infinity"), None] },
    Column { name: "t", sql_type: "text",
        values: &[Some(""), Some("a"), Some("A"), Some("b"), Some("abc"), Some("ABC"), Some("é"), Some("e"), Some("LONG0"), Some("LONG1"), None] },
    Column { name: "tc", sql_type: "text COLLATE public.fz_ci",
        values: &[Some("abc"), Some("ABC"), Some("Abc"), Some("x"), Some("X"), Some(""), Some("ß"), Some("ss"), None] },
    Column { name: "b", sql_type: "boolean",
        values: &[Some("true"), Some("false"), Some("true"), None] },
    Column { name: "d", sql_type: "date",
        values: &[Some("2024-03-10"), Some("2024-03-11"), Some("2000-02-29"), Some("1999-12-31"), Some("0044-03-15 BC"), Some("infinity"), None] },
    Column { name: "ts", sql_type: "timestamptz",
        values: &[Some("2024-03-10 01:30:00+00"), Some("2024-03-10 07:30:00+00"), Some("2024-03-09 23:59:59.5+00"), Some("2024-11-03 05:30:00+00"), Some("2023-12-31 18:15:00+00"), Some("2024-03-10 12:00:00+05:45"), Some("infinity"), None] },
    Column { name: "iv", sql_type: "interval",
        values: &[Some("1 day"), Some("24 hours"), Some("1 mon"), Some("30 days"), Some("1 mon -2 days 03:04:05.5"), Some("-1 days"), Some("00:00:00.000001"), Some("100 years"), None] },
    Column { name: "j", sql_type: "jsonb",
        values: &[Some(r#"{"a": 1}"#), Some(r#"{"a": 1.0}"#), Some(r#"{"a": "x", "b": [1, 2]}"#), Some("[]"), Some("null"), Some("{}"), Some(r#""s""#), Some(r#"{"a": null}"#), None] },
];

/// A GROUP BY expression. `refusal_ok`: creation may legitimately be refused with 0A000
/// (the nondeterministic collation); `ambiguous`: equal keys can print differently (1.0 and
/// 1.000, 0 and -0, '1 day' and '24 hours', 'abc' and 'ABC'), so which row's text the
/// group shows is open — such keys are compared by equality, never in hidden-key queries.
pub struct Key {
    pub class: &'static str,
    pub sql: &'static str,
    pub uses_ci: bool,
    pub ambiguous: bool,
}

const fn key(class: &'static str, sql: &'static str) -> Key {
    Key {
        class,
        sql,
        uses_ci: false,
        ambiguous: false,
    }
}
const fn loose(class: &'static str, sql: &'static str) -> Key {
    Key {
        class,
        sql,
        uses_ci: false,
        ambiguous: true,
    }
}
const fn ci(class: &'static str, sql: &'static str) -> Key {
    Key {
        class,
        sql,
        uses_ci: true,
        ambiguous: true,
    }
}

pub const KEYS: &[Key] = &[
    key("column_int2", "i2"),
    key("column_int4", "i4"),
    key("column_int8", "i8"),
    loose("column_numeric", "num"),
    loose("column_real", "f4"),
    loose("column_double", "f8"),
    key("column_text", "t"),
    ci("column_text_ci", "tc"),
    key("column_bool", "b"),
    key("column_date", "d"),
    key("column_timestamptz", "ts"),
    loose("column_interval", "iv"),
    loose("column_jsonb", "j"),
    key("is_null", "i4 IS NULL"),
    key("is_null", "t IS NULL"),
    key("is_not_null", "num IS NOT NULL"),
    key("and", "i4 > 5 AND b"),
    key("or", "f8 > 0 OR b"),
    key("not", "NOT b"),
    key("is_true", "b IS TRUE"),
    key("equality", "i2 = 5"),
    key("coalesce", "coalesce(t, '?')"),
    key("coalesce", "coalesce(i2, -1)"),
    key("nullif", "nullif(i4, 0)"),
    key("greatest", "greatest(i2, 0)"),
    key("date_trunc_tz", "date_trunc('day', ts)"),
    key("date_trunc_tz", "date_trunc('hour', ts)"),
    key("cast_date_tz", "ts::date"),
    key("date_part_tz", "date_part('hour', ts)"),
    key("extract", "extract(year FROM d)"),
    key("to_char", "to_char(d, 'YYYY-MM')"),
    key("text_of_date", "d::text"),
    key("text_of_timestamptz", "ts::text"),
    key("text_of_real", "f4::text"),
    key("text_of_double", "f8::text"),
    key("text_of_interval", "iv::text"),
    key("text_of_numeric", "num::text"),
    key("modulo", "i4 % 3"),
    key("modulo", "i8 % 5"),
    key("arithmetic", "i2 * 2"),
    key("lower", "lower(t)"),
    key("length", "length(t)"),
    ci("lower_ci", "lower(tc)"),
    key("json_text", "j->>'a'"),
    loose("json", "j->'a'"),
];

/// Aggregate families an argument is legal (and meaningful) for.
pub const COUNT: u32 = 1;
pub const DISTINCT: u32 = 2;
pub const APPROX: u32 = 4;
pub const SUM: u32 = 8;
pub const AVG: u32 = 16;
pub const MINMAX: u32 = 32;
pub const VAR: u32 = 64;
pub const BOOL: u32 = 128;
const NUMBER: u32 = COUNT | DISTINCT | APPROX | SUM | AVG | MINMAX | VAR;

/// An aggregate argument. `float`: its sums and averages are compared within float
/// rounding of the remaining rows (a bound scaled by their absolute values); `exact_sum`:
/// safe in hidden-key queries, which compare every column exactly.
pub struct Arg {
    pub class: &'static str,
    pub sql: &'static str,
    pub families: u32,
    pub float: bool,
    pub uses_ci: bool,
    pub exact: bool,
}

const fn arg(class: &'static str, sql: &'static str, families: u32) -> Arg {
    Arg {
        class,
        sql,
        families,
        float: false,
        uses_ci: false,
        exact: true,
    }
}
const fn float(class: &'static str, sql: &'static str, families: u32) -> Arg {
    Arg {
        class,
        sql,
        families,
        float: true,
        uses_ci: false,
        exact: false,
    }
}
const fn inexact(class: &'static str, sql: &'static str, families: u32) -> Arg {
    Arg {
        class,
        sql,
        families,
        float: false,
        uses_ci: false,
        exact: false,
    }
}

pub const ARGS: &[Arg] = &[
    arg("int2", "i2", NUMBER),
    arg("int2_expr", "i2 * 2", SUM | AVG | VAR | MINMAX),
    arg("int4", "i4", NUMBER),
    arg("int4_coalesce", "coalesce(i4, 0)", SUM | AVG | VAR),
    arg("int8", "i8", NUMBER),
    inexact("numeric", "num", NUMBER),
    float("real", "f4", NUMBER),
    float("double", "f8", COUNT | DISTINCT | APPROX | SUM | MINMAX),
    float("double_moderate", "g8", NUMBER),
    arg("text", "t", COUNT | DISTINCT | APPROX | MINMAX),
    arg("text_lower", "lower(t)", DISTINCT | MINMAX),
    Arg {
        class: "text_ci",
        sql: "tc",
        families: COUNT | DISTINCT | APPROX | MINMAX,
        float: false,
        uses_ci: true,
        exact: false,
    },
    arg("bool", "b", COUNT | DISTINCT | BOOL),
    arg("bool_expr", "i4 > 0", BOOL),
    arg("bool_text", "t = ''", BOOL),
    arg("date", "d", COUNT | DISTINCT | APPROX | MINMAX),
    arg("timestamptz", "ts", COUNT | DISTINCT | APPROX | MINMAX),
    inexact("interval", "iv", COUNT | DISTINCT | SUM | AVG | MINMAX),
    arg("jsonb", "j", COUNT | DISTINCT | APPROX),
];

/// An aggregate: `{}` is its argument.
pub struct Aggregate {
    pub class: &'static str,
    pub sql: &'static str,
    pub family: u32,
}

const fn agg(class: &'static str, sql: &'static str, family: u32) -> Aggregate {
    Aggregate { class, sql, family }
}

pub const AGGREGATES: &[Aggregate] = &[
    agg("count_star", "count(*)", 0),
    agg("count", "count({})", COUNT),
    agg("count_distinct", "count(DISTINCT {})", DISTINCT),
    agg(
        "approx_count_distinct",
        "beacon.approx_count_distinct({})",
        APPROX,
    ),
    agg("sum", "sum({})", SUM),
    agg("sum", "sum({})", SUM),
    agg("avg", "avg({})", AVG),
    agg("avg", "avg({})", AVG),
    agg("min", "min({})", MINMAX),
    agg("max", "max({})", MINMAX),
    agg("stddev", "stddev({})", VAR),
    agg("stddev_samp", "stddev_samp({})", VAR),
    agg("stddev_pop", "stddev_pop({})", VAR),
    agg("variance", "variance({})", VAR),
    agg("var_samp", "var_samp({})", VAR),
    agg("var_pop", "var_pop({})", VAR),
    agg("bool_and", "bool_and({})", BOOL),
    agg("bool_or", "bool_or({})", BOOL),
];

/// WHERE conditions; `None` (no WHERE) is drawn a third of the time.
pub const FILTERS: &[(&str, &str)] = &[
    ("int_compare", "i4 > 0"),
    ("bool_column", "b"),
    ("not_bool", "NOT b"),
    ("text_not_empty", "t <> ''"),
    ("double_compare", "f8 < 1e10"),
    ("date_literal", "d >= '2000-01-01'"),
    ("timestamptz_literal", "ts < '2024-03-10 12:00:00+00'"),
    ("null_and_not", "i2 IS NOT NULL AND NOT b"),
    ("id_modulo", "id % 2 = 0"),
    ("is_null", "num IS NULL"),
    ("between", "i4 BETWEEN 0 AND 100"),
    ("or_null", "i8 > 0 OR t IS NULL"),
];

/// DML kinds and their weights. Each writer updates and deletes only the rows it owns
/// (`id % writers = its number`), so writers cannot deadlock among themselves.
pub const DML: &[(&str, u32)] = &[
    ("insert_one", 10),
    ("insert_multi", 14),
    ("insert_select", 6),
    ("copy", 7),
    ("update_move", 14),
    ("update_to_null", 6),
    ("delete_some", 10),
    ("delete_all_own", 2),
    ("savepoint_rolled_back", 8),
    ("transaction_rolled_back", 4),
    ("upsert", 10),
    ("truncate", 1),
    ("add_column", 1),
];

/// Writer session settings: each writer draws one of each per round.
pub const TIME_ZONES: &[&str] = &[
    "UTC",
    "America/New_York",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/St_Johns",
    "Europe/Berlin",
];
pub const DATE_STYLES: &[&str] = &[
    "ISO, MDY",
    "ISO, DMY",
    "SQL, DMY",
    "SQL, MDY",
    "German",
    "Postgres, MDY",
    "Postgres, DMY",
];
pub const EXTRA_FLOAT_DIGITS: &[&str] = &["0", "1", "2", "3", "-5"];
pub const INTERVAL_STYLES: &[&str] = &["postgres", "postgres_verbose", "sql_standard", "iso_8601"];

/// The creator's and the comparing session's settings (its TimeZone is the creator's,
/// drawn from TIME_ZONES).
pub const FIXED_SETTINGS: &str =
    "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1";
