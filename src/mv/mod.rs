//! Scheduled materialized views: `<project>.<name>`, refreshed by the scheduler when due.
//!
//! Views belong to the project's owner role, and PostgreSQL runs a refresh's query as the
//! view's owner whoever refreshes; still, the defining query goes through the same
//! checks as `beacon.query` (one project, allow-listed functions) and is stored rewritten:
//! an admin of one project cannot use a view to read another. When the query's GROUP BY
//! keys are output columns they get a unique index, and refreshes run CONCURRENTLY so
//! readers are never blocked.

use crate::error::{report, BeaconError, BeaconResult};
use crate::generated::{self, Kind};
use crate::names::{quote_ident, validate_collection_name};
use crate::project::require_project;
use crate::query::checked_query;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::{exists, run};
use pgrx::datum::Interval;
use pgrx::prelude::*;

fn view(project: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(project), quote_ident(name))
}

fn create(project: &str, name: &str, query: &str, every: Interval) -> BeaconResult<()> {
    validate_collection_name(name).map_err(|e| {
        BeaconError::InvalidName(e.to_string().replace("collection name", "view name"))
    })?;
    require_level(project, Level::Admin)?;
    let rewritten = checked_query(project, query)?;
    let _owner = AsOwner::for_project(project)?;
    require_project(project)?;
    if !exists(
        "SELECT $1::interval >= interval '1 second'",
        &[every.into()],
    )? {
        return Err(BeaconError::InvalidArgument(
            "refresh_every must be at least 1 second".into(),
        ));
    }
    if exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND c.relname = $2)",
        &[project.into(), name.into()],
    )? {
        return Err(BeaconError::AlreadyExists(format!(
            "relation \"{name}\" already exists in project \"{project}\""
        )));
    }
    // the decisive check, in the owner's role and settings the view is built and refreshed in
    if let Err(refusal) = crate::sql_policy::check(
        &rewritten,
        &crate::sql_policy::Policy::materialized_view(project),
    ) {
        refusal.raise("query refused");
    }
    let key = materialize(project, name, &rewritten)?;
    generated::record(Kind::MaterializedView, project, name)?;
    catalog(|| {
        run(
            "INSERT INTO beacon.materialized_view (project, name, query, refresh_every, unique_key, next_refresh, last_refresh)
             VALUES ($1, $2, $3, $4, $5, now() + $4, now())",
            &[
                project.into(),
                name.into(),
                rewritten.as_str().into(),
                every.into(),
                key.into(),
            ],
        )
    })
}

/// Creates the materialized view and, when its key is unique, the index that lets it be
/// refreshed concurrently. Returns the key.
fn materialize(project: &str, name: &str, rewritten: &str) -> BeaconResult<Option<Vec<String>>> {
    let target = view(project, name);
    run(
        &format!("CREATE MATERIALIZED VIEW {target} AS {rewritten} WITH DATA"),
        &[],
    )?;
    let key = unique_key(project, name, rewritten)?;
    if let Some(columns) = &key {
        let quoted: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
        run(
            &format!("CREATE UNIQUE INDEX ON {target} ({})", quoted.join(", ")),
            &[],
        )?;
    }
    Ok(key)
}

/// Re-renders a materialized view's query with the running code (see `generated`) and
/// rebuilds the view when the rendering changed; false when nothing needed rebuilding.
/// As the project's owner role.
pub fn regenerate(project: &str, name: &str) -> BeaconResult<bool> {
    let _owner = AsOwner::for_project(project)?;
    let stored = catalog(|| {
        Ok(Spi::get_one_with_args::<String>(
            "SELECT query FROM beacon.materialized_view WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )?
        .unwrap_or_default())
    })?;
    let rewritten = checked_query(project, &stored)?;
    // this version's decisive check too: a query an earlier version let through is not
    // rebuilt (nor left to be refreshed) if the running policy refuses it
    if let Err(refusal) = crate::sql_policy::check(
        &rewritten,
        &crate::sql_policy::Policy::materialized_view(project),
    ) {
        refusal.raise(&format!(
            "materialized view {project}.{name} is refused by this version of pg_beacon (drop it, then regenerate)"
        ));
    }
    let changed = rewritten != stored;
    if changed {
        run(
            &format!("DROP MATERIALIZED VIEW IF EXISTS {}", view(project, name)),
            &[],
        )?;
        let key = materialize(project, name, &rewritten)?;
        catalog(|| {
            run(
                "UPDATE beacon.materialized_view SET query = $3, unique_key = $4, last_refresh = now()
                  WHERE project = $1 AND name = $2",
                &[
                    project.into(),
                    name.into(),
                    rewritten.as_str().into(),
                    key.into(),
                ],
            )
        })?;
    }
    generated::record(Kind::MaterializedView, project, name)?;
    Ok(changed)
}

/// The query's GROUP BY outputs, when each really is a distinct column of the view.
fn unique_key(project: &str, name: &str, query: &str) -> BeaconResult<Option<Vec<String>>> {
    let Some(columns) = crate::query::analyze::unique_output_key(query) else {
        return Ok(None);
    };
    let mut distinct = columns.clone();
    distinct.sort();
    distinct.dedup();
    if columns.is_empty() || distinct.len() != columns.len() {
        return Ok(None);
    }
    let found = Spi::get_one_with_args::<i64>(
        "SELECT count(*) FROM pg_catalog.pg_attribute
          WHERE attrelid = $1::regclass AND attname = ANY ($2) AND attnum > 0 AND NOT attisdropped",
        &[view(project, name).as_str().into(), columns.clone().into()],
    )?;
    if found != Some(columns.len() as i64) {
        return Ok(None);
    }
    // the parser cannot see the table's columns, and PostgreSQL resolves a bare GROUP BY
    // name to a table column before an output alias: only trust a key the data agrees with
    let quoted: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let unique = exists(
        &format!(
            "SELECT NOT EXISTS (SELECT 1 FROM {} GROUP BY {} HAVING count(*) > 1)",
            view(project, name),
            quoted.join(", ")
        ),
        &[],
    )?;
    Ok(unique.then_some(columns))
}

fn enter_view(project: &str, name: &str, level: Level) -> BeaconResult<AsOwner> {
    require_level(project, level)?;
    let owner = AsOwner::for_project(project)?;
    require_project(project)?;
    if !catalog(|| {
        exists(
            "SELECT EXISTS (SELECT 1 FROM beacon.materialized_view WHERE project = $1 AND name = $2)",
            &[project.into(), name.into()],
        )
    })? {
        return Err(BeaconError::UnknownObject(format!(
            "materialized view \"{name}\" does not exist in project \"{project}\""
        )));
    }
    Ok(owner)
}

fn refresh(project: &str, name: &str) -> BeaconResult<()> {
    let _owner = enter_view(project, name, Level::Write)?;
    // the catalog function refreshes; PostgreSQL runs the view's query as the view's owner,
    // the project owner role, whoever calls REFRESH
    catalog(|| {
        run(
            "SELECT beacon._refresh_materialized_view($1, $2, true, false)",
            &[project.into(), name.into()],
        )
    })
}

fn drop(project: &str, name: &str) -> BeaconResult<()> {
    let _owner = enter_view(project, name, Level::Admin)?;
    drop_view(project, name)
}

/// Drops a materialized view (if it is still there) and its catalog entry, after the
/// caller checked the caller's rights (see `lifecycle`).
pub(crate) fn drop_view(project: &str, name: &str) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    run(
        &format!("DROP MATERIALIZED VIEW IF EXISTS {}", view(project, name)),
        &[],
    )?;
    generated::forget(Kind::MaterializedView, project, name)?;
    catalog(|| {
        run(
            "DELETE FROM beacon.materialized_view WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )
    })
}

/// Creates `<project>.<name>` as a materialized view of `query` (checked like
/// `beacon.query`: one SELECT over the project's tables, safe functions only), refreshed by
/// the scheduler every `refresh_every`. Requires admin.
#[pg_extern]
fn create_materialized_view(
    project: &str,
    name: &str,
    query: &str,
    refresh_every: default!(Interval, "'5 minutes'"),
) {
    report(create(project, name, query, refresh_every))
}

/// Refreshes a materialized view now, waiting for a refresh already running. Requires
/// write access.
#[pg_extern]
fn refresh_materialized_view(project: &str, name: &str) {
    report(refresh(project, name))
}

/// Drops a materialized view created with `beacon.create_materialized_view`. Requires admin.
#[pg_extern]
fn drop_materialized_view(project: &str, name: &str) {
    report(drop(project, name))
}

extension_sql_file!(
    "../../sql/mv.sql",
    name = "mv_catalog",
    requires = ["bootstrap"]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;
