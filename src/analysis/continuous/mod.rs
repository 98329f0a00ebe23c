//! Continuous funnels and retention: `beacon.create_continuous_funnel`,
//! `beacon.create_continuous_retention`, `beacon.drop_continuous_analysis`, their readers
//! `beacon.continuous_funnel` / `beacon.continuous_retention`, and the refresh of async
//! ones (sql/analysis.sql, around `_refresh_continuous_analysis_one`).
//!
//! Per analysis, in the project's schema: the state table `_ca_<name>` (one row per
//! entering event, see `continuous_sql`), the pending users `_ca_<name>_pending`, the
//! users table `_ca_<name>_users` (a row per user ever rebuilt, whose row lock orders the
//! rebuilds of one user), and generated functions: a capture per statement on each
//! collection the analysis reads, `_recompute(users)`, `_refresh(batch)`,
//! `_rebuild_all()`. Rebuilding a user from their events is idempotent, so correctness
//! reduces to never losing a dirty user and never rebuilding from a snapshot older than
//! the change, as for document views: async captures append the users to the pending
//! table in the writer's transaction, and the refresher (one at a time) takes only
//! entries it sees, rebuilding them with a later snapshot; immediate captures rebuild
//! the users at the end of the statement, after locking their rows of the users table.

use super::continuous_sql::{self as csql, Names};
use super::sql::{Breakdown, Period, Range, Source, Window};
use crate::error::{report, BeaconError, BeaconResult};
use crate::names::{quote_ident, quote_literal, validate_collection_name};
use crate::security::{catalog, require_level, Level};
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

mod install;
mod ops;
use install::{install_captures, install_functions, install_new, lock_tables, EVENTS};
pub(crate) use ops::{analyses_reading, drop_broken, drop_one, regenerate};
use ops::{drop_analysis, read_funnel, read_retention, refresh_one};

/// Names become `_ca_<name>_rebuild_all` and the like, which must fit 63 bytes.
const MAX_NAME_BYTES: usize = 40;

/// Pending entries one refresh statement takes.
const REFRESH_BATCH: i32 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Async,
    Immediate,
}

fn mode_of(text: &str) -> BeaconResult<Mode> {
    match text {
        "async" => Ok(Mode::Async),
        "immediate" => Ok(Mode::Immediate),
        _ => Err(super::invalid(format!(
            "invalid mode \"{text}\": expected async or immediate"
        ))),
    }
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Immediate => "immediate",
        }
    }
}

/// What an analysis computes, as resolved at creation.
enum Kind {
    /// The steps' window.
    Funnel(Window),
    Retention(Period),
}

/// An analysis as stored: its sources (the steps, or the first and returning actions)
/// with their rendered conditions, its breakdown, zone and mode.
struct Analysis {
    names: Names,
    kind: Kind,
    sources: Vec<Source>,
    breakdown: Option<Breakdown>,
    time_zone: String,
    mode: Mode,
}

impl Analysis {
    fn project(&self) -> &str {
        &self.names.project
    }

    /// The distinct collections it reads, in name order.
    fn collections(&self) -> Vec<String> {
        let mut all: Vec<String> = self.sources.iter().map(|s| s.collection.clone()).collect();
        all.sort();
        all.dedup();
        all
    }

    fn zone(&self) -> String {
        quote_literal(&self.time_zone)
    }

    /// The INSERT of the state rows of the users `users` selects.
    fn recompute(&self, users: &str) -> String {
        let project = quote_ident(self.project());
        let table = self.names.state();
        match &self.kind {
            Kind::Funnel(window) => csql::funnel_recompute(
                &project,
                &table,
                &self.sources,
                window,
                &self.zone(),
                self.breakdown.as_ref(),
                users,
            ),
            Kind::Retention(period) => csql::retention_recompute(
                &project,
                &table,
                &self.sources[0],
                &self.sources[1],
                *period,
                &self.zone(),
                self.breakdown.as_ref(),
                users,
            ),
        }
    }

    fn read(&self, range: &Range) -> String {
        let project = quote_ident(self.project());
        let table = self.names.state();
        match &self.kind {
            Kind::Funnel(_) => csql::funnel_read(
                &project,
                &table,
                &self.sources,
                range,
                self.breakdown.as_ref(),
            ),
            Kind::Retention(period) => {
                csql::retention_read(&project, &table, *period, range, self.breakdown.as_ref())
            }
        }
    }

    fn layout(&self) -> Value {
        let sources: Vec<Value> = self
            .sources
            .iter()
            .map(|s| json!({"collection": s.collection, "condition": s.condition}))
            .collect();
        let breakdown = match &self.breakdown {
            None => Value::Null,
            Some(Breakdown::Event(c)) => json!({"kind": "event", "column": c}),
            Some(Breakdown::User(c)) => json!({"kind": "user", "column": c}),
        };
        let (kind, extra) = match &self.kind {
            Kind::Funnel(w) => (
                "funnel",
                json!({"calendar": w.calendar, "elapsed": w.elapsed}),
            ),
            Kind::Retention(p) => ("retention", json!(p.name())),
        };
        json!({"kind": kind, "sources": sources, "breakdown": breakdown,
               "time_zone": self.time_zone, "window_or_period": extra})
    }
}

fn text_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// An analysis from the catalog (as the owner).
fn stored(project: &str, name: &str) -> BeaconResult<Analysis> {
    let unknown = || {
        BeaconError::UnknownObject(format!(
            "continuous analysis \"{name}\" does not exist in project \"{project}\""
        ))
    };
    if !catalog(|| {
        crate::spi::exists(
            "SELECT EXISTS (SELECT 1 FROM beacon.continuous_analysis WHERE project = $1 AND name = $2)",
            &[project.into(), name.into()],
        )
    })? {
        return Err(unknown());
    }
    let row = catalog(|| {
        Ok(Spi::get_two_with_args::<JsonB, String>(
            "SELECT layout, mode FROM beacon.continuous_analysis WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )?)
    })?;
    let (Some(JsonB(layout)), Some(mode)) = row else {
        return Err(unknown());
    };
    let sources = layout["sources"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let collection = text_of(&s["collection"]).unwrap_or_default();
            Source {
                table: super::table(project, &collection),
                condition: text_of(&s["condition"]),
                collection,
            }
        })
        .collect();
    let breakdown = match (
        layout["breakdown"]["kind"].as_str(),
        text_of(&layout["breakdown"]["column"]),
    ) {
        (Some("event"), Some(c)) => Some(Breakdown::Event(c)),
        (Some("user"), Some(c)) => Some(Breakdown::User(c)),
        _ => None,
    };
    let extra = &layout["window_or_period"];
    let kind = match layout["kind"].as_str() {
        Some("funnel") => Kind::Funnel(Window {
            calendar: text_of(&extra["calendar"]),
            elapsed: text_of(&extra["elapsed"]).unwrap_or_default(),
        }),
        _ => Kind::Retention(
            extra
                .as_str()
                .and_then(Period::parse)
                .unwrap_or(Period::Day),
        ),
    };
    Ok(Analysis {
        names: Names {
            project: project.into(),
            name: name.into(),
        },
        kind,
        sources,
        breakdown,
        time_zone: text_of(&layout["time_zone"]).unwrap_or_else(|| "UTC".into()),
        mode: mode_of(&mode)?,
    })
}

fn checked_name(name: &str) -> BeaconResult<()> {
    validate_collection_name(name).map_err(|e| BeaconError::InvalidName(e.to_string()))?;
    if name.len() > MAX_NAME_BYTES {
        return Err(BeaconError::InvalidName(format!(
            "continuous analysis name \"{name}\" is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

fn checked_zone(time_zone: &str) -> BeaconResult<()> {
    // PostgreSQL's own check of the zone name (22023 with its hint when unknown)
    Spi::get_one_with_args::<TimestampWithTimeZone>(
        "SELECT pg_catalog.timezone($1, pg_catalog.timezone('UTC', pg_catalog.now()))",
        &[time_zone.into()],
    )?;
    Ok(())
}

fn names_of(project: &str, name: &str) -> Names {
    Names {
        project: project.into(),
        name: name.into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn create_funnel(
    project: &str,
    name: &str,
    steps: &Value,
    window: Interval,
    breakdown: Option<&str>,
    mode: &str,
    time_zone: &str,
) -> BeaconResult<()> {
    checked_name(name)?;
    let mode = mode_of(mode)?;
    require_level(project, Level::Admin)?;
    if window.months() < 0 || window.days() < 0 || window.micros() < 0 {
        return Err(super::invalid("the window must not be negative"));
    }
    let sources = super::steps_of(project, steps)?;
    let resolved = super::breakdown(project, &sources[0].collection, breakdown)?;
    checked_zone(time_zone)?;
    let window_text =
        Spi::get_one_with_args::<String>("SELECT $1::pg_catalog.text", &[window.into()])?;
    let definition = json!({"steps": steps, "window": window_text, "breakdown": breakdown,
                            "time_zone": time_zone});
    install_new(
        Analysis {
            names: names_of(project, name),
            kind: Kind::Funnel(super::window_of(window)),
            sources,
            breakdown: resolved,
            time_zone: time_zone.into(),
            mode,
        },
        definition,
    )
}

#[allow(clippy::too_many_arguments)]
fn create_retention(
    project: &str,
    name: &str,
    first_action: &Value,
    returning_action: &Value,
    period: &str,
    breakdown: Option<&str>,
    mode: &str,
    time_zone: &str,
) -> BeaconResult<()> {
    checked_name(name)?;
    let mode = mode_of(mode)?;
    require_level(project, Level::Admin)?;
    let parsed = Period::parse(period).ok_or_else(|| {
        super::invalid(format!(
            "period must be day, week or month, not \"{period}\""
        ))
    })?;
    let first = super::source_of(project, first_action, "first_action")?;
    let returning = super::source_of(project, returning_action, "returning_action")?;
    let resolved = super::breakdown(project, &first.collection, breakdown)?;
    checked_zone(time_zone)?;
    let definition = json!({"first_action": first_action, "returning_action": returning_action,
                            "period": period, "breakdown": breakdown, "time_zone": time_zone});
    install_new(
        Analysis {
            names: names_of(project, name),
            kind: Kind::Retention(parsed),
            sources: vec![first, returning],
            breakdown: resolved,
            time_zone: time_zone.into(),
            mode,
        },
        definition,
    )
}

/// Creates a continuous funnel: `beacon.funnel`'s answer for any range, kept up to date
/// as events arrive (see the README). Requires admin access.
#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn create_continuous_funnel(
    project: &str,
    name: &str,
    steps: JsonB,
    window: Interval,
    breakdown: default!(Option<&str>, "NULL"),
    mode: default!(&str, "'async'"),
    time_zone: default!(&str, "'UTC'"),
) {
    report(create_funnel(
        project, name, &steps.0, window, breakdown, mode, time_zone,
    ))
}

/// Creates a continuous retention analysis: `beacon.retention`'s answer for any range,
/// kept up to date as events arrive. Requires admin access.
#[pg_extern]
#[allow(clippy::too_many_arguments)]
fn create_continuous_retention(
    project: &str,
    name: &str,
    first_action: JsonB,
    returning_action: JsonB,
    period: &str,
    breakdown: default!(Option<&str>, "NULL"),
    mode: default!(&str, "'async'"),
    time_zone: default!(&str, "'UTC'"),
) {
    report(create_retention(
        project,
        name,
        &first_action.0,
        &returning_action.0,
        period,
        breakdown,
        mode,
        time_zone,
    ))
}

/// Drops a continuous funnel or retention analysis. Requires admin access.
#[pg_extern]
fn drop_continuous_analysis(project: &str, name: &str) {
    report(drop_analysis(project, name))
}

/// One async analysis's pending users rebuilt now (see `beacon.refresh_continuous_analysis`).
#[pg_extern]
fn _refresh_continuous_analysis_one(project: &str, name: &str) -> i64 {
    report(refresh_one(project, name))
}

/// A continuous funnel's rows for `[from, to)`: those of `beacon.funnel` with the
/// funnel's steps, window, breakdown and zone. Requires read access.
#[pg_extern]
#[allow(clippy::type_complexity)]
fn continuous_funnel(
    project: &str,
    name: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
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
    TableIterator::new(report(read_funnel(project, name, from, to)))
}

/// A continuous retention analysis's rows for cohorts in `[from, to)`: those of
/// `beacon.retention` with its actions, period, breakdown and zone. Requires read access.
#[pg_extern]
fn continuous_retention(
    project: &str,
    name: &str,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
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
    TableIterator::new(report(read_retention(project, name, from, to)))
}

extension_sql_file!(
    "../../../sql/analysis.sql",
    name = "analysis_catalog",
    requires = [
        "bootstrap",
        _refresh_continuous_analysis_one,
        create_continuous_funnel,
        create_continuous_retention,
        drop_continuous_analysis,
        continuous_funnel,
        continuous_retention
    ]
);

#[cfg(any(test, feature = "pg_test"))]
#[path = "../continuous_tests.rs"]
mod tests;
