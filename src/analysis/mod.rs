//! Product analysis on demand: funnels, retention, segmentation and user timelines, for
//! `read` roles and untrusted callers.
//!
//! Callers give structure (collections, property names, periods) and conditions. Names
//! are looked up in the catalog and quoted; conditions pass the filter checker and are
//! pasted as it rendered them; values become rendered literals. The statement built from
//! those parts (`sql`) then runs exactly like a `beacon.query` statement: through the
//! query checker, the decisive check, as the read role, read-only, under
//! `beacon.query_timeout` (`query::run_generated`).

pub(crate) mod continuous;
mod continuous_sql;
pub mod sql;

use crate::error::{report, BeaconError, BeaconResult};
use crate::names::{quote_ident, quote_literal};
use crate::security::{require_level, Level, Pinned};
use crate::spi::texts;
use crate::stream::filter::check_filter;
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;
use sql::{Breakdown, Cursor, Measure, Period, Range, Source};

/// Most steps of a funnel.
const MAX_STEPS: usize = 20;

fn invalid(message: impl Into<String>) -> BeaconError {
    BeaconError::InvalidArgument(message.into())
}

fn table(project: &str, collection: &str) -> String {
    format!("{}.{}", quote_ident(project), quote_ident(collection))
}

/// The collection's columns, from the catalog views (which show the caller only what
/// it may see), with the property each holds.
fn fields(project: &str, collection: &str) -> BeaconResult<Vec<(String, String)>> {
    let _pinned = Pinned::enter();
    let rows = crate::spi::text_pairs(
        "SELECT property, column_name FROM beacon.fields
          WHERE project OPERATOR(pg_catalog.=) $1 AND collection OPERATOR(pg_catalog.=) $2
          ORDER BY 2",
        &[project.into(), collection.into()],
    )?;
    if rows.is_empty() {
        return Err(BeaconError::UnknownCollection(
            project.into(),
            collection.into(),
        ));
    }
    Ok(rows)
}

fn collections(project: &str) -> BeaconResult<Vec<String>> {
    let _pinned = Pinned::enter();
    texts(
        "SELECT DISTINCT collection FROM beacon.fields
          WHERE project OPERATOR(pg_catalog.=) $1 AND collection OPERATOR(pg_catalog.<>) '_users'
          ORDER BY 1",
        &[project.into()],
    )
}

fn source(project: &str, collection: &str, condition: Option<&str>) -> BeaconResult<Source> {
    if collection == "_users" {
        return Err(invalid(
            "_users holds profiles, not events: name a collection",
        ));
    }
    let fields = fields(project, collection)?;
    let condition = match condition {
        None => None,
        Some(text) => {
            let columns: Vec<&str> = fields.iter().map(|(_, c)| c.as_str()).collect();
            Some(check_filter(text, &columns).map_err(|refusal| {
                BeaconError::refused(&format!("invalid condition on {collection}"), refusal)
            })?)
        }
    };
    Ok(Source {
        table: table(project, collection),
        collection: collection.to_string(),
        condition,
    })
}

/// A step or action: `{"collection": "...", "where": "..."}`.
fn source_of(project: &str, value: &Value, what: &str) -> BeaconResult<Source> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(format!("{what} must be an object with a \"collection\"")))?;
    if let Some(key) = object.keys().find(|k| *k != "collection" && *k != "where") {
        return Err(invalid(format!(
            "{what} has an unknown key \"{key}\" (expected \"collection\" and \"where\")"
        )));
    }
    let collection = object
        .get("collection")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} needs \"collection\": a collection name")))?;
    let condition = match object.get("where") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid(format!("\"where\" of {what} must be a string"))),
    };
    source(project, collection, condition)
}

/// The column holding `property` of `collection` (system columns by their own names).
fn column(project: &str, collection: &str, property: &str) -> BeaconResult<String> {
    fields(project, collection)?
        .into_iter()
        .find(|(p, _)| p == property)
        .map(|(_, c)| quote_ident(&c))
        .ok_or_else(|| {
            BeaconError::UnknownObject(format!(
                "collection \"{collection}\" of project \"{project}\" has no property \"{property}\""
            ))
        })
}

/// `property` of the events of `collection`, or `_users.property` of the user's profile.
fn breakdown(
    project: &str,
    collection: &str,
    text: Option<&str>,
) -> BeaconResult<Option<Breakdown>> {
    Ok(match text {
        None => None,
        Some(text) => Some(match text.strip_prefix("_users.") {
            Some(property) => Breakdown::User(column(project, "_users", property)?),
            None => Breakdown::Event(column(project, collection, text)?),
        }),
    })
}

fn timestamp(value: TimestampWithTimeZone) -> BeaconResult<String> {
    if value.is_infinity() {
        return Ok("'infinity'::timestamptz".into());
    }
    if value.is_neg_infinity() {
        return Ok("'-infinity'::timestamptz".into());
    }
    // ISO 8601 with the offset reads the same under every DateStyle and TimeZone
    let text = Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.to_char(pg_catalog.timezone('UTC', $1), 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
        &[value.into()],
    )?
    .ok_or_else(|| invalid("a time must not be NULL"))?;
    Ok(format!(
        "{}::timestamptz",
        quote_literal(&format!("{text}+00"))
    ))
}

fn window_of(value: Interval) -> sql::Window {
    let micros = value.micros();
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    sql::Window {
        calendar: (value.months() != 0 || value.days() != 0)
            .then(|| format!("make_interval(0, {}, 0, {})", value.months(), value.days())),
        elapsed: format!(
            "make_interval(secs => {sign}{}.{:06})",
            abs / 1_000_000,
            abs % 1_000_000
        ),
    }
}

fn range(
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    time_zone: &str,
) -> BeaconResult<Range> {
    // PostgreSQL's own check of the zone name (22023 with its hint when unknown)
    Spi::get_one_with_args::<TimestampWithTimeZone>(
        "SELECT pg_catalog.timezone($1, pg_catalog.timezone('UTC', pg_catalog.now()))",
        &[time_zone.into()],
    )?;
    Ok(Range {
        from: timestamp(from)?,
        to: timestamp(to)?,
        zone: quote_literal(time_zone),
    })
}

fn steps_of(project: &str, steps: &Value) -> BeaconResult<Vec<Source>> {
    let list = steps
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("steps must be a non-empty JSON array of steps"))?;
    if list.len() > MAX_STEPS {
        return Err(BeaconError::LimitExceeded(format!(
            "a funnel has at most {MAX_STEPS} steps, not {}",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, step)| source_of(project, step, &format!("step {}", i + 1)))
        .collect()
}

type RetentionRow = (pgrx::datum::Date, Option<String>, i32, i64, i64);
type SegmentRow = (TimestampWithTimeZone, Option<String>, Option<AnyNumeric>);

type FunnelRow = (
    i32,
    String,
    Option<String>,
    i64,
    Option<f64>,
    Option<f64>,
    Option<Interval>,
);

#[allow(clippy::too_many_arguments)]
fn run_funnel(
    project: &str,
    steps: &Value,
    window: Interval,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    breakdown_by: Option<&str>,
    time_zone: &str,
) -> BeaconResult<Vec<FunnelRow>> {
    require_level(project, Level::Read)?;
    if window.months() < 0 || window.days() < 0 || window.micros() < 0 {
        return Err(invalid("the window must not be negative"));
    }
    let steps = steps_of(project, steps)?;
    let breakdown = breakdown(project, &steps[0].collection, breakdown_by)?;
    let range = range(from, to, time_zone)?;
    let statement = sql::funnel(
        &quote_ident(project),
        &steps,
        &window_of(window),
        &range,
        breakdown.as_ref(),
    );
    crate::query::run_generated(project, &statement, funnel_row)
}

fn funnel_row(row: &pgrx::spi::SpiHeapTupleData) -> BeaconResult<FunnelRow> {
    Ok((
        row.get::<i32>(1)?.unwrap_or_default(),
        row.get::<String>(2)?.unwrap_or_default(),
        row.get::<String>(3)?,
        row.get::<i64>(4)?.unwrap_or_default(),
        row.get::<f64>(5)?,
        row.get::<f64>(6)?,
        row.get::<Interval>(7)?,
    ))
}

fn retention_row(row: &pgrx::spi::SpiHeapTupleData) -> BeaconResult<RetentionRow> {
    Ok((
        row.get::<pgrx::datum::Date>(1)?
            .ok_or_else(|| invalid("cohort without a date"))?,
        row.get::<String>(2)?,
        row.get::<i32>(3)?.unwrap_or_default(),
        row.get::<i64>(4)?.unwrap_or_default(),
        row.get::<i64>(5)?.unwrap_or_default(),
    ))
}

/// How many users went through `steps` in order: see the README (Analysis) for the exact
/// definition. Requires read access.
#[pg_extern]
#[allow(clippy::type_complexity)]
fn funnel(
    project: &str,
    steps: JsonB,
    window: Interval,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    breakdown: default!(Option<&str>, "NULL"),
    time_zone: default!(&str, "'UTC'"),
) -> TableIterator<
    'static,
    (
        name!(step, i32),
        name!(collection, String),
        name!(breakdown, Option<String>),
        name!(users, i64),
        name!(conversion_from_previous, Option<f64>),
        name!(conversion_from_first, Option<f64>),
        name!(median_time_from_previous, Option<Interval>),
    ),
> {
    TableIterator::new(report(run_funnel(
        project, &steps.0, window, from, to, breakdown, time_zone,
    )))
}

#[allow(clippy::too_many_arguments)]
fn run_retention(
    project: &str,
    first_action: &Value,
    returning_action: &Value,
    period: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    breakdown_by: Option<&str>,
    time_zone: &str,
) -> BeaconResult<Vec<RetentionRow>> {
    require_level(project, Level::Read)?;
    let period = Period::parse(period).ok_or_else(|| {
        invalid(format!(
            "period must be day, week or month, not \"{period}\""
        ))
    })?;
    let first = source_of(project, first_action, "first_action")?;
    let returning = source_of(project, returning_action, "returning_action")?;
    let breakdown = breakdown(project, &first.collection, breakdown_by)?;
    let range = range(from, to, time_zone)?;
    let statement = sql::retention(
        &quote_ident(project),
        &first,
        &returning,
        period,
        &range,
        breakdown.as_ref(),
    );
    crate::query::run_generated(project, &statement, retention_row)
}

/// Cohorts of users by the period of their first `first_action`, and how many came back
/// to do `returning_action` n periods later. Requires read access.
#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn retention(
    project: &str,
    first_action: JsonB,
    returning_action: JsonB,
    period: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    breakdown: default!(Option<&str>, "NULL"),
    time_zone: default!(&str, "'UTC'"),
) -> TableIterator<
    'static,
    (
        name!(cohort, pgrx::datum::Date),
        name!(breakdown, Option<String>),
        name!(period, i32),
        name!(users, i64),
        name!(cohort_size, i64),
    ),
> {
    TableIterator::new(report(run_retention(
        project,
        &first_action.0,
        &returning_action.0,
        period,
        from,
        to,
        breakdown,
        time_zone,
    )))
}

fn measure_of(project: &str, collection: &str, measure: &Value) -> BeaconResult<Measure> {
    let (aggregate, property) = match measure {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => {
            if let Some(key) = o.keys().find(|k| *k != "aggregate" && *k != "property") {
                return Err(invalid(format!(
                    "measure has an unknown key \"{key}\" (expected \"aggregate\" and \"property\")"
                )));
            }
            (
                o.get("aggregate").and_then(Value::as_str).unwrap_or(""),
                o.get("property").and_then(Value::as_str),
            )
        }
        _ => ("", None),
    };
    let of = |name: &'static str| -> BeaconResult<Measure> {
        let property =
            property.ok_or_else(|| invalid(format!("measure \"{name}\" needs a \"property\"")))?;
        Ok(Measure::Of(name, column(project, collection, property)?))
    };
    match (aggregate, property) {
        ("count", None) => Ok(Measure::Count),
        ("users", None) => Ok(Measure::Users),
        ("sum", _) => of("sum"),
        ("avg", _) => of("avg"),
        ("min", _) => of("min"),
        ("max", _) => of("max"),
        _ => Err(invalid(
            "measure must be \"count\", \"users\" (distinct users), or {\"aggregate\": \
             \"sum\"|\"avg\"|\"min\"|\"max\", \"property\": \"...\"}",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_segmentation(
    project: &str,
    collection: &str,
    measure: &Value,
    bucket: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    breakdown_by: Option<&str>,
    condition: Option<&str>,
    time_zone: &str,
) -> BeaconResult<Vec<SegmentRow>> {
    require_level(project, Level::Read)?;
    if !sql::BUCKETS.contains(&bucket) {
        return Err(invalid(format!(
            "bucket must be one of {}, not \"{bucket}\"",
            sql::BUCKETS.join(", ")
        )));
    }
    let source = source(project, collection, condition)?;
    let measure = measure_of(project, collection, measure)?;
    let breakdown = breakdown(project, collection, breakdown_by)?;
    let range = range(from, to, time_zone)?;
    let statement = sql::segmentation(
        &quote_ident(project),
        &source,
        &measure,
        bucket,
        &range,
        breakdown.as_ref(),
    );
    crate::query::run_generated(project, &statement, |row| {
        Ok((
            row.get::<TimestampWithTimeZone>(1)?
                .ok_or_else(|| invalid("bucket without a time"))?,
            row.get::<String>(2)?,
            row.get::<AnyNumeric>(3)?,
        ))
    })
}

/// A measure of one collection's events per time bucket, optionally broken down by a
/// property. Requires read access.
#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn segmentation(
    project: &str,
    collection: &str,
    measure: JsonB,
    bucket: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
    breakdown: default!(Option<&str>, "NULL"),
    r#where: default!(Option<&str>, "NULL"),
    time_zone: default!(&str, "'UTC'"),
) -> TableIterator<
    'static,
    (
        name!(bucket, TimestampWithTimeZone),
        name!(breakdown, Option<String>),
        name!(value, Option<AnyNumeric>),
    ),
> {
    TableIterator::new(report(run_segmentation(
        project, collection, &measure.0, bucket, from, to, breakdown, r#where, time_zone,
    )))
}

/// A timeline page's cursor, as each row gives it: `<microseconds since 2000>/<id>/<collection>`.
fn cursor_of(text: &str) -> BeaconResult<Cursor> {
    let bad = || {
        invalid(format!(
            "\"{text}\" is not a cursor returned by beacon.user_timeline"
        ))
    };
    let mut parts = text.splitn(3, '/');
    let micros: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let id: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let collection = parts.next().ok_or_else(bad)?;
    let time = TimestampWithTimeZone::try_from(micros).map_err(|_| bad())?;
    Ok(Cursor {
        time: timestamp(time)?,
        collection: quote_literal(collection),
        id,
    })
}

type TimelineRow = (String, i64, TimestampWithTimeZone, JsonB, String);

fn run_timeline(
    project: &str,
    user_id: &str,
    from: Option<TimestampWithTimeZone>,
    to: Option<TimestampWithTimeZone>,
    limit: i32,
    before: Option<&str>,
) -> BeaconResult<Vec<TimelineRow>> {
    require_level(project, Level::Read)?;
    if !(1..=10_000).contains(&limit) {
        return Err(invalid(format!(
            "lim must be between 1 and 10000, not {limit}"
        )));
    }
    let tables: Vec<(String, String)> = collections(project)?
        .into_iter()
        .map(|c| (table(project, &c), quote_literal(&c)))
        .collect();
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let from = from.map(timestamp).transpose()?;
    let to = to.map(timestamp).transpose()?;
    let before = before.map(cursor_of).transpose()?;
    let statement = sql::timeline(
        &tables,
        &quote_literal(user_id),
        from.as_deref(),
        to.as_deref(),
        before.as_ref(),
        i64::from(limit),
    );
    crate::query::run_generated(project, &statement, |row| {
        let collection = row.get::<String>(1)?.unwrap_or_default();
        let id = row.get::<i64>(2)?.unwrap_or_default();
        let time = row
            .get::<TimestampWithTimeZone>(3)?
            .ok_or_else(|| invalid("event without a time"))?;
        let event = row.get::<JsonB>(4)?.unwrap_or(JsonB(Value::Null));
        let cursor = format!("{}/{id}/{collection}", time.into_inner());
        Ok((collection, id, time, event, cursor))
    })
}

/// One user's events across the project's collections, newest first, `lim` at a time;
/// pass the last row's `cursor` as `before` for the next page. Requires read access.
#[pg_extern]
fn user_timeline(
    project: &str,
    user_id: &str,
    from: default!(Option<TimestampWithTimeZone>, "NULL"),
    to: default!(Option<TimestampWithTimeZone>, "NULL"),
    lim: default!(i32, 100),
    before: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(collection, String),
        name!(id, i64),
        name!(time, TimestampWithTimeZone),
        name!(event, JsonB),
        name!(cursor, String),
    ),
> {
    TableIterator::new(report(run_timeline(
        project, user_id, from, to, lim, before,
    )))
}

extension_sql!(
    r#"
COMMENT ON FUNCTION beacon.funnel(text, jsonb, interval, timestamptz, timestamptz, text, text) IS
  'Users who did steps 1..n in order, step n within window of their first step-1 event in [from, to): per step (and breakdown value), users, conversion from the previous and the first step, median time from the previous step. Requires read.';
COMMENT ON FUNCTION beacon.retention(text, jsonb, jsonb, text, timestamptz, timestamptz, text, text) IS
  'Cohorts by the day, week or month (in time_zone) of each user''s first first_action in [from, to); per cohort and period n >= 0, users who did returning_action n periods later, and the cohort size. Requires read.';
COMMENT ON FUNCTION beacon.segmentation(text, text, jsonb, text, timestamptz, timestamptz, text, text, text) IS
  'A measure (count, distinct users, sum/avg/min/max of a property) of one collection''s events per time bucket in time_zone, optionally by a property and filtered by a condition. Requires read.';
COMMENT ON FUNCTION beacon.user_timeline(text, text, timestamptz, timestamptz, integer, text) IS
  'One user''s events across the project''s collections, newest first, lim per page; pass the last row''s cursor as before for the next page. Requires read.';
"#,
    name = "analysis_comments",
    requires = [funnel, retention, segmentation, user_timeline]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;
