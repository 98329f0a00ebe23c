//! The archive's conversions that need no server.

use super::types::*;

fn pg_type(name: &str, element: Option<&str>, json: bool) -> PgType {
    PgType {
        catalog_name: Some(name.to_owned()),
        element: element.map(|e| Some(e.to_owned())),
        renders_as_json: json,
    }
}

#[test]
fn archive_type_mapping() {
    let scalar = |name| shape_of(&pg_type(name, None, false), false);
    assert_eq!(scalar("int2"), Shape::Scalar(Kind::Int16));
    assert_eq!(scalar("int4"), Shape::Scalar(Kind::Int32));
    assert_eq!(scalar("int8"), Shape::Scalar(Kind::Int64));
    assert_eq!(scalar("float4"), Shape::Scalar(Kind::Float32));
    assert_eq!(scalar("float8"), Shape::Scalar(Kind::Float64));
    assert_eq!(scalar("bool"), Shape::Scalar(Kind::Bool));
    assert_eq!(scalar("timestamptz"), Shape::Scalar(Kind::TimestampTz));
    assert_eq!(scalar("timestamp"), Shape::Scalar(Kind::Timestamp));
    assert_eq!(scalar("date"), Shape::Scalar(Kind::Date));
    assert_eq!(scalar("numeric"), Shape::Scalar(Kind::NumericText));
    for text in ["text", "varchar", "bpchar", "name", "char"] {
        assert_eq!(scalar(text), Shape::Scalar(Kind::Text), "{text}");
    }
    assert_eq!(scalar("jsonb"), Shape::Scalar(Kind::Json));
    assert_eq!(scalar("json"), Shape::Scalar(Kind::Json));
    assert_eq!(scalar("bytea"), Shape::Scalar(Kind::Binary));
    assert_eq!(scalar("interval"), Shape::Scalar(Kind::Other));
    assert_eq!(scalar("uuid"), Shape::Scalar(Kind::Other));
    let outside = PgType {
        catalog_name: None,
        element: None,
        renders_as_json: false,
    };
    assert_eq!(shape_of(&outside, false), Shape::Scalar(Kind::Other));
    assert_eq!(
        shape_of(&pg_type("record", None, true), false),
        Shape::ToJsonb
    );

    let array = |element, multi| shape_of(&pg_type("_x", Some(element), false), multi);
    assert_eq!(array("int8", false), Shape::List(Kind::Int64));
    assert_eq!(array("float8", false), Shape::List(Kind::Float64));
    assert_eq!(array("text", false), Shape::List(Kind::Text));
    assert_eq!(array("timestamptz", false), Shape::List(Kind::TimestampTz));
    assert_eq!(array("jsonb", false), Shape::List(Kind::Json));
    assert_eq!(array("bytea", false), Shape::List(Kind::Other));
    assert_eq!(array("bpchar", false), Shape::ToJsonb);
    assert_eq!(array("int8", true), Shape::ToJsonb);
}

#[test]
fn archive_numeric_decision() {
    let stats = |max_scale, max_integer_digits, non_finite| NumericStats {
        max_scale,
        max_integer_digits,
        non_finite,
    };
    assert_eq!(numeric_kind(stats(3, 5, false)), Kind::Decimal { scale: 3 });
    assert_eq!(
        numeric_kind(stats(0, 38, false)),
        Kind::Decimal { scale: 0 }
    );
    assert_eq!(numeric_kind(stats(0, 39, false)), Kind::NumericText);
    assert_eq!(numeric_kind(stats(20, 19, false)), Kind::NumericText);
    assert_eq!(numeric_kind(stats(2, 3, true)), Kind::NumericText);
    assert_eq!(
        numeric_kind(NumericStats::default()),
        Kind::Decimal { scale: 0 }
    );
}

#[test]
fn archive_decimal_parsing() {
    assert_eq!(parse_decimal("12.34", 2), Some(1234));
    assert_eq!(parse_decimal("12.3", 3), Some(12300));
    assert_eq!(parse_decimal("-0.001", 3), Some(-1));
    assert_eq!(parse_decimal("0", 0), Some(0));
    assert_eq!(parse_decimal("-7", 2), Some(-700));
    assert_eq!(parse_decimal("007.50", 2), Some(750));
    assert_eq!(parse_decimal("1.234", 2), None);
    assert_eq!(parse_decimal("NaN", 2), None);
    assert_eq!(parse_decimal("Infinity", 0), None);
    assert_eq!(parse_decimal("-Infinity", 0), None);
    assert_eq!(parse_decimal("", 0), None);
    assert_eq!(parse_decimal("1e5", 0), None);
    let max = "9".repeat(38);
    assert_eq!(parse_decimal(&max, 0), Some(max.parse().unwrap()));
    assert_eq!(parse_decimal(&format!("{max}9"), 0), None);
    assert_eq!(parse_decimal("1", 38), None);
    assert_eq!(parse_decimal("0.5", 38), Some(5 * 10i128.pow(37)));

    for (value, scale, text) in [
        (1234, 2, "12.34"),
        (-1, 3, "-0.001"),
        (0, 0, "0"),
        (0, 2, "0.00"),
        (-700, 2, "-7.00"),
        (5, 1, "0.5"),
    ] {
        assert_eq!(format_decimal(value, scale), text);
        assert_eq!(parse_decimal(text, scale), Some(value));
    }
}

#[test]
fn archive_timestamp_epochs() {
    assert_eq!(pg_to_unix_micros(0), PG_EPOCH_OFFSET_MICROS);
    assert_eq!(pg_to_unix_micros(-PG_EPOCH_OFFSET_MICROS), 0);
    assert_eq!(pg_to_unix_micros(i64::MAX), i64::MAX);
    assert_eq!(pg_to_unix_micros(i64::MIN), -i64::MAX);
    for pg in [0, 1, -1, 123_456_789_012, -211_813_488_000_000_000] {
        assert_eq!(unix_to_pg_micros(pg_to_unix_micros(pg)), pg);
    }
    assert_eq!(unix_to_pg_micros(i64::MAX), i64::MAX);
    assert_eq!(unix_to_pg_micros(-i64::MAX), i64::MIN);
    assert_eq!(pg_to_unix_days(0), PG_EPOCH_OFFSET_DAYS);
    assert_eq!(pg_to_unix_days(i32::MAX), i32::MAX);
    assert_eq!(pg_to_unix_days(i32::MIN), -i32::MAX);
}

#[test]
fn archive_timestamp_rendering() {
    assert_eq!(format_timestamp(0, true), "1970-01-01T00:00:00+00:00");
    assert_eq!(format_timestamp(0, false), "1970-01-01T00:00:00");
    // 2026-12-01 10:00:00.5 UTC
    let t = 1_796_119_200_000_000 + 500_000;
    assert_eq!(format_timestamp(t, true), "2026-12-01T10:00:00.5+00:00");
    assert_eq!(
        format_timestamp(t + 1, true),
        "2026-12-01T10:00:00.500001+00:00"
    );
    assert_eq!(
        format_timestamp(-1, true),
        "1969-12-31T23:59:59.999999+00:00"
    );
    assert_eq!(format_timestamp(i64::MAX, true), "infinity");
    assert_eq!(format_timestamp(-i64::MAX, true), "-infinity");
    // 2000-02-29 and the first day of 1 BC (year 0)
    assert_eq!(format_date(PG_EPOCH_OFFSET_DAYS + 59), "2000-02-29");
    assert_eq!(format_date(PG_EPOCH_OFFSET_DAYS + 60), "2000-03-01");
    assert_eq!(format_date(-719_528), "0001-01-01 BC");
    assert_eq!(format_date(-719_162), "0001-01-01");
    assert_eq!(
        format_timestamp(-719_528 * 86_400_000_000, true),
        "0001-01-01T00:00:00+00:00 BC"
    );
    assert_eq!(format_date(i32::MAX), "infinity");
    assert_eq!(format_date(-i32::MAX), "-infinity");
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
}

#[test]
fn archive_json_rendering() {
    use serde_json::json;
    assert_eq!(float_json(f64::NAN, String::new()), json!("NaN"));
    assert_eq!(float_json(f64::INFINITY, String::new()), json!("Infinity"));
    assert_eq!(
        float_json(f64::NEG_INFINITY, String::new()),
        json!("-Infinity")
    );
    assert_eq!(float_json(0.1, 0.1f32.to_string()).to_string(), "0.1");
    assert_eq!(numeric_json("1.50").to_string(), "1.50");
    assert_eq!(numeric_json("NaN"), json!("NaN"));
    assert_eq!(numeric_json("-Infinity"), json!("-Infinity"));
    assert_eq!(bytea_text(&[0, 0xab, 0x10]), "\\x00ab10");
    assert_eq!(bytea_text(&[]), "\\x");
}

#[test]
fn archive_checksum() {
    assert_eq!(
        checksum_of(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        checksum_of(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(temp_name("part-0.parquet"), ".part-0.parquet.tmp");
}
