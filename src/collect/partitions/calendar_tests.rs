use super::*;

const DAY: i64 = MICROS_PER_DAY;

/// PostgreSQL micros of a UTC date, by counting days the slow way.
fn micros_of(y: i64, m: u32, d: u32) -> i64 {
    let mut days = 0i64;
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = |y: i64, m: u32| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if y >= 2000 {
        for year in 2000..y {
            days += if leap(year) { 366 } else { 365 };
        }
    } else {
        for year in y..2000 {
            days -= if leap(year) { 366 } else { 365 };
        }
    }
    for month in 1..m {
        days += month_days(y, month);
    }
    (days + i64::from(d) - 1) * DAY
}

#[test]
fn parses_periods_and_their_interval_spellings() {
    for (text, period) in [
        ("day", Period::Day),
        (" 1 DAY ", Period::Day),
        ("week", Period::Week),
        ("7 days", Period::Week),
        ("1 week", Period::Week),
        ("Month", Period::Month),
        ("1 mon", Period::Month),
    ] {
        assert_eq!(Period::parse(text), Some(period), "{text}");
    }
    for text in ["", "hour", "2 days", "1 year", "day; drop table x"] {
        assert_eq!(Period::parse(text), None, "{text}");
    }
}

#[test]
fn floors_and_nexts_agree_with_a_day_count() {
    for (y, m, d) in [
        (2026, 12, 1),
        (2000, 1, 1),
        (1999, 12, 31),
        (1, 1, 1),
        (1900, 3, 1),
        (2024, 2, 29),
        (9999, 12, 31),
        (1970, 1, 1),
    ] {
        let midnight = micros_of(y, m, d);
        assert_eq!(date_of(midnight), (y, m, d));
        for offset in [0, 1, DAY - 1] {
            let t = midnight + offset;
            assert_eq!(Period::Day.floor(t), midnight, "{y}-{m}-{d}");
            assert_eq!(Period::Day.next(midnight), midnight + DAY);
            assert_eq!(Period::Month.floor(t), micros_of(y, m, 1));
        }
        let next_month = if m == 12 {
            micros_of(y + 1, 1, 1)
        } else {
            micros_of(y, m + 1, 1)
        };
        assert_eq!(Period::Month.next(micros_of(y, m, 1)), next_month);
    }
}

#[test]
fn weeks_start_on_monday() {
    // 2026-11-30 is a Monday, 2026-12-06 a Sunday
    let monday = micros_of(2026, 11, 30);
    for day in 0..7 {
        let t = monday + day * DAY + 12 * 3_600_000_000;
        assert_eq!(Period::Week.floor(t), monday, "day {day}");
    }
    assert_eq!(Period::Week.floor(monday - 1), monday - 7 * DAY);
    assert_eq!(Period::Week.next(monday), monday + 7 * DAY);
    // 2000-01-01 (PostgreSQL's epoch) was a Saturday: its week began 1999-12-27
    assert_eq!(Period::Week.floor(0), micros_of(1999, 12, 27));
}

#[test]
fn names_fit_identifiers_and_stay_distinct() {
    let t = micros_of(2026, 12, 1);
    assert_eq!(partition_name("events", t), "_p20261201_events");
    let long = "e".repeat(63);
    let other = format!("{}f", "e".repeat(62));
    let (a, b) = (partition_name(&long, t), partition_name(&other, t));
    assert!(a.len() <= MAX_IDENT_BYTES && b.len() <= MAX_IDENT_BYTES);
    assert_ne!(a, b);
    let unicode = "é".repeat(31);
    assert!(partition_name(&unicode, t).len() <= MAX_IDENT_BYTES);
    assert_eq!(
        archive_path("shop", "events", t, 0),
        "shop/events/date=2026-12-01/part-0.parquet"
    );
    assert_eq!(
        timestamp_sql(t),
        "pg_catalog.make_timestamptz(2026, 12, 1, 0, 0, 0, 'UTC')"
    );
}
