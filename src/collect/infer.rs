//! Column types for JSON values: which type a new column gets, and whether a
//! later value can be stored in an existing column without losing anything.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarType {
    BigInt,
    Double,
    Numeric,
    Boolean,
    Timestamptz,
    Text,
    Jsonb,
}

use ScalarType::*;

/// `Array(Jsonb)` is never inferred: arrays that do not share one scalar
/// type are stored whole as `Scalar(Jsonb)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Scalar(ScalarType),
    Array(ScalarType),
}

use ColumnType::{Array, Scalar};

impl ColumnType {
    pub fn sql(self) -> &'static str {
        match self {
            Scalar(BigInt) => "bigint",
            Scalar(Double) => "double precision",
            Scalar(Numeric) => "numeric",
            Scalar(Boolean) => "boolean",
            Scalar(Timestamptz) => "timestamptz",
            Scalar(Text) => "text",
            Scalar(Jsonb) => "jsonb",
            Array(BigInt) => "bigint[]",
            Array(Double) => "double precision[]",
            Array(Numeric) => "numeric[]",
            Array(Boolean) => "boolean[]",
            Array(Timestamptz) => "timestamptz[]",
            Array(Text) => "text[]",
            // Not a type pg_beacon creates, but naming it honestly beats a panic.
            Array(Jsonb) => "jsonb[]",
        }
    }

    /// Accepts what `sql()` produces, PostgreSQL's `format_type()` spelling of
    /// the same types (read back from the catalog), and the short aliases users
    /// write in collection definitions.
    pub fn from_sql(s: &str) -> Option<ColumnType> {
        let s = s.trim().to_ascii_lowercase();
        let (base, array) = match s.strip_suffix("[]") {
            Some(base) => (base.trim_end(), true),
            None => (s.as_str(), false),
        };
        let t = match base {
            "bigint" | "int8" => BigInt,
            "double precision" | "float8" => Double,
            "numeric" => Numeric,
            "boolean" | "bool" => Boolean,
            "timestamptz" | "timestamp with time zone" => Timestamptz,
            "text" => Text,
            "jsonb" if !array => Jsonb,
            _ => return None,
        };
        Some(if array { Array(t) } else { Scalar(t) })
    }
}

/// The type a column gets when `value` is the first value seen for it; `None`
/// for null, which says nothing about the type.
pub fn infer(value: &Value) -> Option<ColumnType> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => Scalar(Boolean),
        Value::Number(n) => Scalar(number_type(n.as_str())),
        Value::String(s) if normalize_timestamp(s).is_some() => Scalar(Timestamptz),
        Value::String(_) => Scalar(Text),
        Value::Array(items) => infer_array(items),
        Value::Object(_) => Scalar(Jsonb),
    })
}

fn infer_array(items: &[Value]) -> ColumnType {
    let mut elems = items
        .iter()
        .filter(|v| !v.is_null())
        .map(|v| match infer(v) {
            Some(Scalar(t)) if t != Jsonb => Some(t),
            _ => None,
        });
    let Some(Some(first)) = elems.next() else {
        return Scalar(Jsonb);
    };
    match elems.try_fold(first, |acc, t| unify(acc, t?)) {
        // Integers were allowed to join a double array, but only those a
        // double holds exactly.
        Some(Double) if !items.iter().all(|v| v.is_null() || fits(v, Double)) => Array(Numeric),
        Some(t) => Array(t),
        None => Scalar(Jsonb),
    }
}

fn unify(a: ScalarType, b: ScalarType) -> Option<ScalarType> {
    match (a, b) {
        _ if a == b => Some(a),
        (BigInt, Double) | (Double, BigInt) => Some(Double),
        (Numeric, BigInt | Double) | (BigInt | Double, Numeric) => Some(Numeric),
        (Timestamptz, Text) | (Text, Timestamptz) => Some(Text),
        _ => None,
    }
}

/// With `arbitrary_precision` the number keeps its literal text, so nothing
/// has been rounded yet and the decision can be exact.
fn number_type(literal: &str) -> ScalarType {
    if is_integer_literal(literal) {
        if fits_bigint(literal) {
            BigInt
        } else {
            Numeric
        }
    } else if fits_double(literal) {
        Double
    } else {
        Numeric
    }
}

fn is_integer_literal(literal: &str) -> bool {
    !literal.contains(['.', 'e', 'E'])
}

fn fits_bigint(literal: &str) -> bool {
    is_integer_literal(literal) && literal.parse::<i64>().is_ok()
}

/// Fractions are rarely exact in binary and that is the accepted nature of
/// double precision; integers, though, must survive exactly (2^53 + 1 would
/// silently become 2^53), and nothing may overflow or vanish into zero.
fn fits_double(literal: &str) -> bool {
    let Ok(f) = literal.parse::<f64>() else {
        return false;
    };
    let mantissa = literal.split(['e', 'E']).next().unwrap_or_default();
    f.is_finite()
        && if is_integer_literal(literal) {
            // `{:.0}` prints the exact integer value of the double.
            format!("{f:.0}") == literal
        } else {
            f != 0.0 || !mantissa.bytes().any(|b| matches!(b, b'1'..=b'9'))
        }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit(pub String);

/// Returns the JSON to hand to `jsonb_populate_record` for a column of type
/// `column`, or why `value` cannot be stored there without loss.
pub fn fit(value: &Value, column: ColumnType) -> Result<Value, Misfit> {
    match (value, column) {
        (Value::Null, _) => Ok(Value::Null),
        (_, Scalar(t)) => fit_scalar(value, t),
        (Value::Array(items), Array(t)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                match item {
                    Value::Null => Ok(Value::Null),
                    Value::Array(_) | Value::Object(_) => Err(misfit(item, Scalar(t))),
                    _ => fit_scalar(item, t),
                }
                .map_err(|Misfit(reason)| Misfit(format!("array element {i}: {reason}")))
            })
            .collect::<Result<_, _>>()
            .map(Value::Array),
        _ => Err(misfit(value, column)),
    }
}

fn fit_scalar(value: &Value, t: ScalarType) -> Result<Value, Misfit> {
    let fitted = match (value, t) {
        (Value::Bool(b), Text) => Value::String(b.to_string()),
        (Value::Number(n), Text) => Value::String(n.to_string()),
        (Value::String(s), Timestamptz) => match normalize_timestamp(s) {
            Some(normalized) => Value::String(normalized),
            None => return Err(misfit(value, Scalar(t))),
        },
        _ if fits(value, t) => value.clone(),
        _ => return Err(misfit(value, Scalar(t))),
    };
    Ok(fitted)
}

/// Whether `value` can be stored unchanged in a column of scalar type `t`.
fn fits(value: &Value, t: ScalarType) -> bool {
    match (value, t) {
        (_, Jsonb) | (Value::Bool(_), Boolean) | (Value::String(_), Text) => true,
        (Value::Number(n), BigInt) => fits_bigint(n.as_str()),
        (Value::Number(n), Double) => fits_double(n.as_str()),
        (Value::Number(_), Numeric) => true,
        _ => false,
    }
}

fn misfit(value: &Value, column: ColumnType) -> Misfit {
    const MAX_SHOWN_CHARS: usize = 60;
    let text = value.to_string();
    let shown = match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    };
    let kind = json_kind(value);
    Misfit(format!(
        "value {shown} ({kind}) does not fit type {}",
        column.sql()
    ))
}

/// Accepts `YYYY-MM-DD[T| ]HH:MM[:SS[.f{1,9}]][Z|±HH|±HHMM|±HH:MM]`, a subset
/// of what PostgreSQL's timestamptz input takes, and returns it with a `T`
/// separator and an explicit offset: events without a zone are UTC, whatever
/// the session's TimeZone says.
pub fn normalize_timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let field = |start: usize, len: usize| b.get(start..start + len).and_then(digits);

    let (year, month, day) = (field(0, 4)?, field(5, 2)?, field(8, 2)?);
    let (hour, minute) = (field(11, 2)?, field(14, 2)?);
    if !(at(4, b'-') && at(7, b'-') && (at(10, b'T') || at(10, b' ')) && at(13, b':')) {
        return None;
    }
    let mut end = 16;
    if at(end, b':') {
        if field(17, 2)? > 59 {
            return None;
        }
        end = 19;
        if at(end, b'.') {
            let len = b[end + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if !(1..=9).contains(&len) {
                return None;
            }
            end += 1 + len;
        }
    }
    let zone = &s[end..];
    let (zone_hour, zone_minute) = match zone.as_bytes() {
        [] | [b'Z' | b'z'] => (0, 0),
        [b'+' | b'-', h1, h2] => (digits(&[*h1, *h2])?, 0),
        [b'+' | b'-', h1, h2, m1, m2] | [b'+' | b'-', h1, h2, b':', m1, m2] => {
            (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
        }
        _ => return None,
    };
    let valid = year >= 1
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        // PostgreSQL refuses offsets beyond 15 hours.
        && zone_hour <= 15
        && zone_minute <= 59;
    let offset = match zone {
        "" | "Z" | "z" => "+00:00",
        given => given,
    };
    valid.then(|| format!("{}T{}{offset}", &s[..10], &s[11..end]))
}

/// Microseconds since 2000-01-01 00:00 UTC (PostgreSQL's timestamptz) of a string that
/// `normalize_timestamp` produced, so collect can send binary timestamps instead of text.
/// Fractions are rounded the way timestamptz input does: `rint(strtod(fraction) * 1e6)`.
/// The JSON name of a value's kind, for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub fn timestamp_micros(normalized: &str) -> Option<i64> {
    let b = normalized.as_bytes();
    let num = |start: usize, len: usize| b.get(start..start + len).and_then(digits).map(i64::from);
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute) = (num(11, 2)?, num(14, 2)?);
    let mut end = 16;
    let mut second = 0;
    let mut fraction = 0.0;
    if b.get(end) == Some(&b':') {
        second = num(17, 2)?;
        end = 19;
        if b.get(end) == Some(&b'.') {
            let len = b[end + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            fraction = normalized[end..end + 1 + len].parse::<f64>().ok()?;
            end += 1 + len;
        }
    }
    let zone = &b[end..];
    let sign = match zone.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zone_minutes = match zone.len() {
        3 => num(end + 1, 2)? * 60,
        5 => num(end + 1, 2)? * 60 + num(end + 3, 2)?,
        6 => num(end + 1, 2)? * 60 + num(end + 4, 2)?,
        _ => return None,
    };
    let days = days_from_civil(year, month, day) - days_from_civil(2000, 1, 1);
    let seconds = ((days * 24 + hour) * 60 + minute - sign * zone_minutes) * 60 + second;
    Some(seconds * 1_000_000 + (fraction * 1_000_000.0).round_ties_even() as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn digits(d: &[u8]) -> Option<u32> {
    (!d.is_empty() && d.iter().all(u8::is_ascii_digit))
        .then(|| d.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests;
