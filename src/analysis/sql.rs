//! The statements of the analysis functions, built from parts that are already safe SQL:
//! quoted names, rendered literals, and conditions the filter checker rendered. Names of
//! functions and types are left unqualified: the query checker qualifies them, and the
//! decisive check confirms what they resolve to. Pure, so
//! that their shape is unit-tested; what they compute is tested against an independent
//! oracle in tests/analysis.rs.

/// A funnel's window: months and days count in the analysis's time zone (a day across a
/// DST change is 23 or 25 hours), the rest is elapsed time, as PostgreSQL adds an
/// interval to a timestamptz in the session's zone.
#[derive(Debug, Clone)]
pub struct Window {
    /// `make_interval(...)` of the months and days, when there are any.
    pub calendar: Option<String>,
    /// `make_interval(...)` of the rest.
    pub elapsed: String,
}

impl Window {
    /// The end of the window that starts at `start`.
    pub(crate) fn end(&self, start: &str, zone: &str) -> String {
        match &self.calendar {
            None => format!("{start} + {}", self.elapsed),
            Some(calendar) => format!(
                "((({start}) AT TIME ZONE {zone}) + {calendar}) AT TIME ZONE {zone} + {}",
                self.elapsed
            ),
        }
    }
}

/// One collection an analysis reads, with the condition its events must meet.
#[derive(Debug, Clone)]
pub struct Source {
    /// `"project"."collection"`
    pub table: String,
    pub collection: String,
    /// A rendered boolean expression over the collection's columns (`e` is not needed:
    /// only one table is in scope where it is pasted).
    pub condition: Option<String>,
}

/// What results are broken down by: a column of the events or of the user's profile.
#[derive(Debug, Clone)]
pub enum Breakdown {
    Event(String),
    User(String),
}

/// The time range and zone, as SQL expressions.
#[derive(Debug, Clone)]
pub struct Range {
    pub from: String,
    pub to: String,
    pub zone: String,
}

/// The source's events as a FROM item, its condition applied where only its own columns
/// are in scope (a column named like one of the other tables' would be ambiguous later).
pub(crate) fn events(source: &Source) -> String {
    match &source.condition {
        Some(c) => format!("(SELECT * FROM {} WHERE ({c}))", source.table),
        None => source.table.clone(),
    }
}

/// The breakdown value of event `e` as text, and the join it needs.
pub(crate) fn breakdown_parts(project: &str, breakdown: Option<&Breakdown>) -> (String, String) {
    match breakdown {
        None => ("NULL::text".into(), String::new()),
        Some(Breakdown::Event(column)) => (format!("e.{column}::text"), String::new()),
        Some(Breakdown::User(column)) => (
            format!("usr.{column}::text"),
            format!(" LEFT JOIN {project}.\"_users\" AS usr ON usr.id = e._user"),
        ),
    }
}

/// The events of `source` a user did first, in the range: one per user.
fn first_events(
    project: &str,
    source: &Source,
    range: &Range,
    breakdown: Option<&Breakdown>,
) -> String {
    let (b, join) = breakdown_parts(project, breakdown);
    format!(
        "SELECT DISTINCT ON (e._user) e._user AS u, e._id AS e0, e._time AS t0, e._time AS t, e._id AS id, {b} AS b \
           FROM {table} AS e{join} \
          WHERE e._user IS NOT NULL AND e._time >= {from} AND e._time < {to} \
          ORDER BY e._user, e._time, e._id",
        table = events(source),
        from = range.from,
        to = range.to,
    )
}

/// A funnel: for each user, the first event of step 1 in the range; then for each later
/// step the first of its events at or after the previous step's (strictly after it when
/// both steps are the same collection), within `window` of step 1. One row per step (and
/// breakdown value): users, conversion from the previous and the first step, median time
/// from the previous step.
pub fn funnel(
    project: &str,
    steps: &[Source],
    window: &Window,
    range: &Range,
    breakdown: Option<&Breakdown>,
) -> String {
    let mut ctes = vec![format!(
        "s1 AS ({})",
        first_events(project, &steps[0], range, breakdown)
    )];
    ctes.extend(chain(steps, window, &range.zone, "p.u"));
    let mut counts = vec![
        "SELECT 1 AS step, b, count(*) AS users, NULL::interval AS median FROM s1 GROUP BY b"
            .to_string(),
    ];
    for n in 2..=steps.len() {
        counts.push(format!(
            "SELECT {n}, b, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY dt) \
               FROM s{n} GROUP BY b"
        ));
    }
    funnel_result(ctes, &counts, steps, breakdown.is_some(), "s1")
}

/// The CTEs `s2` … `sn` of a funnel over `s1` (columns `u`, `e0` the entering event's
/// `_id`, `t0` its time, `t` and `id` the step's event, `b`): each is, per `key` (the
/// user, or the entering event), the first event of that step at or after the previous
/// step's (strictly after it when both steps are the same collection), within `window`
/// of `t0`; `dt` the time from the previous step's event.
pub(crate) fn chain(steps: &[Source], window: &Window, zone: &str, key: &str) -> Vec<String> {
    let mut ctes = Vec::new();
    for (i, step) in steps.iter().enumerate().skip(1) {
        let n = i + 1;
        let after = if step.collection == steps[i - 1].collection {
            " AND (e._time > p.t OR e._id > p.id)"
        } else {
            ""
        };
        ctes.push(format!(
            "s{n} AS (SELECT DISTINCT ON ({key}) p.u, p.e0, p.t0, e._time AS t, e._id AS id, p.b, e._time - p.t AS dt \
               FROM s{i} AS p JOIN {table} AS e ON e._user = p.u \
              WHERE e._time >= p.t AND e._time <= {end}{after} \
              ORDER BY {key}, e._time, e._id)",
            table = events(step),
            end = window.end("p.t0", zone),
        ));
    }
    ctes
}

/// A funnel's rows from `counts` (SELECTs of step, b, users, median): one per step and
/// breakdown value of the entering users (`first`, with column `b`).
pub(crate) fn funnel_result(
    mut ctes: Vec<String>,
    counts: &[String],
    steps: &[Source],
    by_breakdown: bool,
    first: &str,
) -> String {
    ctes.push(format!("counts AS ({})", counts.join(" UNION ALL ")));
    let groups = if by_breakdown {
        format!("SELECT b FROM {first} GROUP BY b")
    } else {
        "SELECT NULL::text AS b".to_string()
    };
    ctes.push(format!("groups AS ({groups})"));
    let names: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "({}, {})",
                i + 1,
                crate::names::quote_literal(&s.collection)
            )
        })
        .collect();
    ctes.push(format!(
        "names (step, collection) AS (VALUES {})",
        names.join(", ")
    ));
    format!(
        "WITH {} \
         SELECT n.step, n.collection, g.b AS breakdown, \
                coalesce(c.users, 0)::int8 AS users, \
                coalesce(c.users, 0)::float8 / nullif(coalesce(prev.users, 0), 0) AS conversion_from_previous, \
                coalesce(c.users, 0)::float8 / nullif(coalesce(first.users, 0), 0) AS conversion_from_first, \
                c.median AS median_time_from_previous \
           FROM groups AS g CROSS JOIN names AS n \
           LEFT JOIN counts AS c ON c.step = n.step AND c.b IS NOT DISTINCT FROM g.b \
           LEFT JOIN counts AS prev ON prev.step = n.step - 1 AND prev.b IS NOT DISTINCT FROM g.b \
           LEFT JOIN counts AS first ON first.step = 1 AND first.b IS NOT DISTINCT FROM g.b \
          ORDER BY g.b NULLS FIRST, n.step",
        ctes.join(", ")
    )
}

/// The periods retention counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// Periods from local date `from` (the start of one) to local date `to`.
    pub(crate) fn between(self, from: &str, to: &str) -> String {
        match self {
            Period::Day => format!("({to} - {from})"),
            Period::Week => format!("(({to} - {from}) / 7)"),
            Period::Month => format!(
                "((date_part('year', {to}) * 12 + date_part('month', {to}))::int4 \
                 - (date_part('year', {from}) * 12 + date_part('month', {from}))::int4)"
            ),
        }
    }
}

/// The local date that starts the period of `time` in the range's zone.
pub(crate) fn period_start(period: Period, time: &str, zone: &str) -> String {
    format!(
        "date_trunc('{}', ({time}) AT TIME ZONE {zone})::date",
        period.name()
    )
}

/// Retention: each user's cohort is the period of their first `first` event in the range;
/// for each cohort and period n ≥ 0 (up to the period of the range's end), the users
/// who did a `returning` event in period n at or after their first event and before the
/// range's end.
pub fn retention(
    project: &str,
    first: &Source,
    returning: &Source,
    period: Period,
    range: &Range,
    breakdown: Option<&Breakdown>,
) -> String {
    let cohort = period_start(period, "f.t", &range.zone);
    let returned = period_start(period, "e._time", &range.zone);
    let ctes = format!(
        "f AS ({firsts}), \
         r AS (SELECT DISTINCT f.u, {cohort} AS cohort, f.b, {n} AS n \
                 FROM f JOIN {table} AS e ON e._user = f.u \
                WHERE e._time >= f.t AND e._time < {to}), \
         sizes AS (SELECT {cohort} AS cohort, f.b, count(*) AS size FROM f GROUP BY 1, 2), \
         counts AS (SELECT cohort, b, n, count(*) AS users FROM r GROUP BY 1, 2, 3)",
        firsts = first_events(project, first, range, breakdown),
        n = period.between(&cohort, &returned),
        table = events(returning),
        to = range.to,
    );
    retention_result(&ctes, period, range)
}

/// Retention's rows from the CTEs `sizes` (cohort, b, size) and `counts` (cohort, b, n,
/// users): every period n from 0 to the one holding the range's end.
pub(crate) fn retention_result(ctes: &str, period: Period, range: &Range) -> String {
    let last = period_start(
        period,
        &format!("{} - make_interval(secs => 0.000001)", range.to),
        &range.zone,
    );
    format!(
        "WITH {ctes} \
         SELECT s.cohort, s.b AS breakdown, g.n AS period, \
                coalesce(c.users, 0)::int8 AS users, s.size::int8 AS cohort_size \
           FROM sizes AS s \
          CROSS JOIN LATERAL generate_series(0, {span}) AS g (n) \
           LEFT JOIN counts AS c ON c.cohort = s.cohort AND c.b IS NOT DISTINCT FROM s.b AND c.n = g.n \
          ORDER BY s.cohort, s.b NULLS FIRST, g.n",
        span = period.between("s.cohort", &last),
    )
}

/// Buckets of segmentation.
pub const BUCKETS: &[&str] = &["minute", "hour", "day", "week", "month"];

/// What segmentation measures per bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measure {
    Count,
    Users,
    /// `sum`, `avg`, `min` or `max` of a quoted column.
    Of(&'static str, String),
}

impl Measure {
    fn sql(&self) -> String {
        match self {
            Measure::Count => "count(*)::numeric".into(),
            Measure::Users => "count(DISTINCT e._user)::numeric".into(),
            Measure::Of(aggregate, column) => {
                format!("{aggregate}(e.{column})::numeric")
            }
        }
    }
}

/// Segmentation: the measure per bucket (and breakdown value) of the events in the
/// range that meet the condition; only buckets with events.
pub fn segmentation(
    project: &str,
    source: &Source,
    measure: &Measure,
    bucket: &str,
    range: &Range,
    breakdown: Option<&Breakdown>,
) -> String {
    let (b, join) = breakdown_parts(project, breakdown);
    format!(
        "SELECT date_trunc('{bucket}', e._time AT TIME ZONE {zone}) AT TIME ZONE {zone} AS bucket, \
                {b} AS breakdown, {measure} AS value \
           FROM {table} AS e{join} \
          WHERE e._time >= {from} AND e._time < {to} \
          GROUP BY 1, 2 ORDER BY 1, 2 NULLS FIRST",
        zone = range.zone,
        measure = measure.sql(),
        table = events(source),
        from = range.from,
        to = range.to,
    )
}

/// Where a page of a timeline starts: strictly before this event, in the timeline's order.
#[derive(Debug, Clone)]
pub struct Cursor {
    /// A rendered timestamptz expression.
    pub time: String,
    /// The collection name as a rendered literal.
    pub collection: String,
    pub id: i64,
}

/// One user's events across `collections` (quoted table, name literal), newest first.
pub fn timeline(
    collections: &[(String, String)],
    user: &str,
    from: Option<&str>,
    to: Option<&str>,
    before: Option<&Cursor>,
    limit: i64,
) -> String {
    let mut range = String::new();
    if let Some(from) = from {
        range.push_str(&format!(" AND e._time >= {from}"));
    }
    if let Some(to) = to {
        range.push_str(&format!(" AND e._time < {to}"));
    }
    let branches: Vec<String> = collections
        .iter()
        .map(|(table, name)| {
            format!(
                "SELECT {name}::text AS collection, e._id AS id, e._time AS time, \
                        jsonb_strip_nulls(to_jsonb(e)) AS event \
                   FROM {table} AS e WHERE e._user = {user}{range}"
            )
        })
        .collect();
    let page = before
        .map(|c| {
            format!(
                " WHERE x.time < {t} OR (x.time = {t} AND (x.collection < {c} OR (x.collection = {c} AND x.id < {id})))",
                t = c.time,
                c = c.collection,
                id = c.id
            )
        })
        .unwrap_or_default();
    format!(
        "SELECT x.collection, x.id, x.time, x.event FROM ({}) AS x{page} \
          ORDER BY x.time DESC, x.collection DESC, x.id DESC LIMIT {limit}",
        branches.join(" UNION ALL ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(collection: &str, condition: Option<&str>) -> Source {
        Source {
            table: format!("\"p\".\"{collection}\""),
            collection: collection.into(),
            condition: condition.map(String::from),
        }
    }

    fn range() -> Range {
        Range {
            from: "'2024-01-01T00:00:00.000000+00'::timestamptz".into(),
            to: "'2024-02-01T00:00:00.000000+00'::timestamptz".into(),
            zone: "'Europe/Paris'".into(),
        }
    }

    #[test]
    fn conditions_are_applied_where_only_their_table_is_in_scope() {
        let window = Window {
            calendar: None,
            elapsed: "make_interval(secs => 3600.000000)".into(),
        };
        let sql = funnel(
            "\"p\"",
            &[source("a", Some("\"id\" > 1")), source("a", None)],
            &window,
            &range(),
            Some(&Breakdown::User("\"plan\"".into())),
        );
        assert!(sql.contains("FROM (SELECT * FROM \"p\".\"a\" WHERE (\"id\" > 1)) AS e LEFT JOIN \"p\".\"_users\""), "{sql}");
        // a repeated step needs a later event than the previous step's
        assert!(sql.contains("AND (e._time > p.t OR e._id > p.id)"), "{sql}");
        assert!(
            sql.contains("e._time <= p.t0 + make_interval(secs => 3600.000000)"),
            "{sql}"
        );
    }

    #[test]
    fn calendar_parts_of_a_window_count_in_the_zone() {
        let window = Window {
            calendar: Some("make_interval(0, 0, 0, 1)".into()),
            elapsed: "make_interval(secs => 0.000000)".into(),
        };
        assert_eq!(
            window.end("p.t0", "'Europe/Paris'"),
            "(((p.t0) AT TIME ZONE 'Europe/Paris') + make_interval(0, 0, 0, 1)) AT TIME ZONE 'Europe/Paris' + make_interval(secs => 0.000000)"
        );
    }

    #[test]
    fn periods_between_local_dates() {
        assert_eq!(Period::Week.between("a", "b"), "((b - a) / 7)");
        assert!(Period::Month
            .between("a", "b")
            .contains("date_part('month', b)"));
        assert_eq!(Period::parse("year"), None);
    }
}
