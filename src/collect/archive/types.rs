//! The pure half of the archive: which Parquet type a PostgreSQL column becomes, and the
//! value conversions that need no server (numeric text to decimals, PostgreSQL's
//! 2000-01-01 epoch to Unix's, rendering timestamps as `to_jsonb` does, checksums).

use sha2::{Digest, Sha256};

/// Largest decimal precision Parquet readers agree on (Decimal128).
pub const MAX_DECIMAL_DIGITS: u32 = 38;

/// How one value is stored. Every kind is nullable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Bool,
    /// timestamptz: micros since the Unix epoch, UTC-adjusted.
    TimestampTz,
    /// timestamp without time zone: micros since the Unix epoch, not UTC-adjusted.
    Timestamp,
    /// date: days since the Unix epoch.
    Date,
    /// numeric whose values in this file are all finite and fit 38 digits at the scale.
    Decimal {
        scale: i8,
    },
    /// numeric that does not fit a decimal (NaN, ±Infinity, or too many digits): its text.
    NumericText,
    /// text, varchar, char, name.
    Text,
    /// json or jsonb as JSON text, with Parquet's JSON logical type.
    Json,
    /// bytea: its bytes.
    Binary,
    /// Any other type: its text output (as `to_jsonb` renders it, a string).
    Other,
}

/// How one column is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Scalar(Kind),
    /// A one-dimensional array: a Parquet LIST with nullable elements.
    List(Kind),
    /// `to_jsonb(column)` as JSON text: multi-dimensional arrays, composites, types with a
    /// cast to json, arrays of those — whatever a flat Parquet type would misrender.
    ToJsonb,
}

/// What the catalog says of a column's type, domains already resolved to their base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgType {
    /// The base type's name in pg_catalog (`int8`, `_int8` for arrays…), or None for a
    /// type outside pg_catalog.
    pub catalog_name: Option<String>,
    /// The element type's catalog name, for arrays.
    pub element: Option<Option<String>>,
    /// Composite, or has a cast to json/jsonb: `to_jsonb` renders it as structure.
    pub renders_as_json: bool,
}

/// The kind of a built-in scalar type (a type outside pg_catalog is `Other`).
pub fn scalar_kind(catalog_name: Option<&str>) -> Kind {
    match catalog_name {
        Some("int2") => Kind::Int16,
        Some("int4") => Kind::Int32,
        Some("int8") => Kind::Int64,
        Some("float4") => Kind::Float32,
        Some("float8") => Kind::Float64,
        Some("bool") => Kind::Bool,
        Some("timestamptz") => Kind::TimestampTz,
        Some("timestamp") => Kind::Timestamp,
        Some("date") => Kind::Date,
        // decided per file once the values are known (see `NumericStats`)
        Some("numeric") => Kind::NumericText,
        Some("text" | "varchar" | "bpchar" | "name" | "char") => Kind::Text,
        Some("json" | "jsonb") => Kind::Json,
        Some("bytea") => Kind::Binary,
        _ => Kind::Other,
    }
}

/// The shape of a column, before the numeric decision; `multi_dimensional` says whether any
/// value of the file has more than one dimension.
pub fn shape_of(ty: &PgType, multi_dimensional: bool) -> Shape {
    if ty.renders_as_json {
        return Shape::ToJsonb;
    }
    match &ty.element {
        None => Shape::Scalar(scalar_kind(ty.catalog_name.as_deref())),
        Some(_) if multi_dimensional => Shape::ToJsonb,
        // casting bpchar[] to text[] would strip the padding to_jsonb keeps
        Some(Some(element)) if element == "bpchar" => Shape::ToJsonb,
        // bytea elements render as their text (`\x…`) in to_jsonb, and a list of binaries
        // would gain nothing: the text is what readers compare
        Some(element) => match scalar_kind(element.as_deref()) {
            Kind::Binary => Shape::List(Kind::Other),
            kind => Shape::List(kind),
        },
    }
}

/// What a first pass over a numeric column found, to decide between a decimal and text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumericStats {
    /// Largest scale of the finite values.
    pub max_scale: i32,
    /// Largest count of integer digits of the finite values (0 counts as one).
    pub max_integer_digits: i32,
    /// Any NaN or ±Infinity.
    pub non_finite: bool,
}

/// DECIMAL(38, scale) when every value fits, else the text fallback.
pub fn numeric_kind(stats: NumericStats) -> Kind {
    let fits = !stats.non_finite
        && stats.max_scale >= 0
        && stats.max_scale <= i8::MAX as i32
        && stats.max_integer_digits + stats.max_scale <= MAX_DECIMAL_DIGITS as i32;
    if fits {
        Kind::Decimal {
            scale: stats.max_scale as i8,
        }
    } else {
        Kind::NumericText
    }
}

/// Parses PostgreSQL's numeric text output (`-12.340`, never an exponent) as an unscaled
/// integer at `scale`; None if it is not finite, has more fractional digits than `scale`
/// or needs more than 38 digits.
pub fn parse_decimal(text: &str, scale: i8) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    if frac_part.len() > scale {
        return None;
    }
    let int_part = int_part.trim_start_matches('0');
    if int_part.len() + scale > MAX_DECIMAL_DIGITS as usize {
        return None;
    }
    let mut value: i128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        value = value * 10 + i128::from(b - b'0');
    }
    for _ in frac_part.len()..scale {
        value *= 10;
    }
    Some(if negative { -value } else { value })
}

/// Renders an unscaled decimal as PostgreSQL's numeric text at `scale`.
pub fn format_decimal(value: i128, scale: i8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let sign = if value < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int_part, frac_part) = padded.split_at(padded.len() - scale);
    format!("{sign}{int_part}.{frac_part}")
}

/// Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
pub const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
pub const PG_EPOCH_OFFSET_DAYS: i32 = 10_957;

/// PostgreSQL timestamp (micros since 2000-01-01; i64::MIN/MAX are ∓infinity) to Parquet
/// micros since the Unix epoch. The infinities become DuckDB's: i64::MAX and -i64::MAX,
/// which no finite PostgreSQL timestamp (years 4713 BC to 294276 AD) reaches.
pub fn pg_to_unix_micros(pg: i64) -> i64 {
    match pg {
        i64::MAX => i64::MAX,
        i64::MIN => -i64::MAX,
        finite => finite + PG_EPOCH_OFFSET_MICROS,
    }
}

/// The inverse of `pg_to_unix_micros`; values beyond PostgreSQL's range saturate to its
/// infinities.
pub fn unix_to_pg_micros(unix: i64) -> i64 {
    if unix == i64::MAX {
        i64::MAX
    } else if unix == -i64::MAX || unix == i64::MIN {
        i64::MIN
    } else {
        unix.saturating_sub(PG_EPOCH_OFFSET_MICROS)
    }
}

/// PostgreSQL date (days since 2000-01-01; i32::MIN/MAX are ∓infinity) to days since the
/// Unix epoch, infinities as DuckDB's (i32::MAX, -i32::MAX).
pub fn pg_to_unix_days(pg: i32) -> i32 {
    match pg {
        i32::MAX => i32::MAX,
        i32::MIN => -i32::MAX,
        finite => finite + PG_EPOCH_OFFSET_DAYS,
    }
}

/// Proleptic Gregorian (year, month, day) of days since 1970-01-01 (year 0 is 1 BC).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days_from_civil inverse
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The date part as PostgreSQL's ISO output writes it, and whether it is BC (which
/// PostgreSQL puts after everything else).
fn iso_date(days: i64) -> (String, bool) {
    let (year, month, day) = civil_from_days(days);
    let (year, bc) = if year <= 0 {
        (1 - year, true)
    } else {
        (year, false)
    };
    (format!("{year:04}-{month:02}-{day:02}"), bc)
}

/// A timestamp (Unix micros, infinities as in `pg_to_unix_micros`) as `to_jsonb` renders
/// it: `2026-12-01T10:00:00.5+00:00` with `utc`, without the offset otherwise.
pub fn format_timestamp(unix_micros: i64, utc: bool) -> String {
    if unix_micros == i64::MAX {
        return "infinity".into();
    }
    if unix_micros <= -i64::MAX {
        return "-infinity".into();
    }
    let days = unix_micros.div_euclid(86_400_000_000);
    let in_day = unix_micros.rem_euclid(86_400_000_000);
    let (date, bc) = iso_date(days);
    let secs = in_day / 1_000_000;
    let micros = in_day % 1_000_000;
    let mut out = format!(
        "{date}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if micros != 0 {
        let fraction = format!("{micros:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    if utc {
        out.push_str("+00:00");
    }
    if bc {
        out.push_str(" BC");
    }
    out
}

/// A date (Unix days, infinities as in `pg_to_unix_days`) as `to_jsonb` renders it.
pub fn format_date(unix_days: i32) -> String {
    if unix_days == i32::MAX {
        return "infinity".into();
    }
    if unix_days <= -i32::MAX {
        return "-infinity".into();
    }
    let (date, bc) = iso_date(i64::from(unix_days));
    if bc {
        format!("{date} BC")
    } else {
        date
    }
}

/// A float as `to_jsonb` renders it: a number, or the strings PostgreSQL writes for the
/// values JSON has no number for. `shortest` is Rust's shortest round-trip text of the
/// value at its own width, which is what PostgreSQL's float output gives by default.
pub fn float_json(value: f64, shortest: String) -> serde_json::Value {
    if value.is_nan() {
        serde_json::Value::String("NaN".into())
    } else if value.is_infinite() {
        serde_json::Value::String(if value > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        number_json(&shortest)
    }
}

/// A JSON number of exactly this text (serde_json keeps it verbatim: arbitrary_precision).
pub fn number_json(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Number>(text) {
        Ok(number) => serde_json::Value::Number(number),
        Err(_) => serde_json::Value::String(text.to_owned()),
    }
}

/// Numeric text as `to_jsonb` renders it: a number, or a string for NaN and ±Infinity.
pub fn numeric_json(text: &str) -> serde_json::Value {
    match text {
        "NaN" | "Infinity" | "-Infinity" => serde_json::Value::String(text.to_owned()),
        _ => number_json(text),
    }
}

/// bytea as `to_jsonb` renders it under the default `bytea_output = hex`.
pub fn bytea_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// SHA-256 as lowercase hex: the checksum recorded for a file.
pub fn hex_digest(hasher: Sha256) -> String {
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The checksum of a byte string (what `hex_digest` gives for a file of those bytes).
#[cfg(any(test, feature = "pg_test"))]
pub fn checksum_of(bytes: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hex_digest(hasher)
}

/// The name of the temporary file a file is written as before it is renamed into place.
pub fn temp_name(file_name: &str) -> String {
    format!(".{file_name}.tmp")
}
