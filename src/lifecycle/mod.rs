//! How collections end: `beacon.drop_collection`, and DDL run by hand on a project's
//! tables (`ddl`: event triggers that keep the catalog and the generated objects in step
//! with what PostgreSQL dropped, renamed or retyped), so that neither leaves a capture or
//! stream trigger that fails every insert, nor a catalog entry that points at nothing.

mod ddl;
mod extension;

use crate::collect::schema::{collection_exists, table};
use crate::error::{report, BeaconError, BeaconResult};
use crate::names::validate_collection_name;
use crate::project::require_project;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::{exists, run, texts};
use pgrx::prelude::*;

/// What uses a collection: continuous queries reading it, its subscriptions (channels),
/// and materialized views whose query reads it.
pub(crate) struct Dependents {
    pub queries: Vec<String>,
    pub documents: Vec<String>,
    pub analyses: Vec<String>,
    pub subscriptions: Vec<String>,
    pub views: Vec<String>,
}

impl Dependents {
    fn is_empty(&self) -> bool {
        self.queries.is_empty()
            && self.documents.is_empty()
            && self.analyses.is_empty()
            && self.subscriptions.is_empty()
            && self.views.is_empty()
    }

    /// `continuous queries "a", "b"; subscription "beacon_…"`.
    fn describe(&self) -> String {
        let list = |one: &str, many: &str, names: &[String]| {
            let kind = if names.len() == 1 { one } else { many };
            let names = names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ");
            format!("{kind} {names}")
        };
        [
            ("continuous query", "continuous queries", &self.queries),
            ("document view", "document views", &self.documents),
            ("continuous analysis", "continuous analyses", &self.analyses),
            ("subscription", "subscriptions", &self.subscriptions),
            ("materialized view", "materialized views", &self.views),
        ]
        .into_iter()
        .filter(|(_, _, names)| !names.is_empty())
        .map(|(one, many, names)| list(one, many, names))
        .collect::<Vec<_>>()
        .join("; ")
    }
}

/// Everything that uses `collection`. The catalog is read as the extension owner; the
/// materialized views are found through PostgreSQL's own dependencies on the table.
pub(crate) fn dependents(project: &str, collection: &str) -> BeaconResult<Dependents> {
    let relation = table(project, collection);
    catalog(|| {
        Ok(Dependents {
            queries: texts(
                &format!(
                    "SELECT name FROM beacon.continuous_query q
                      WHERE project = $1 AND $2 = ANY ({}) ORDER BY name",
                    crate::cq::query_tables_sql("q")?
                ),
                &[project.into(), collection.into()],
            )?,
            documents: crate::documents::views_reading(project, collection)?,
            analyses: crate::analysis::continuous::analyses_reading(project, collection)?,
            subscriptions: texts(
                "SELECT channel FROM beacon.subscription WHERE project = $1 AND collection = $2
                  ORDER BY created_at, channel",
                &[project.into(), collection.into()],
            )?,
            views: texts(
                "SELECT m.name FROM beacon.materialized_view m
                  WHERE m.project = $1 AND EXISTS (
                        SELECT 1 FROM pg_catalog.pg_depend d
                          JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
                          JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
                          JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace
                         WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                           AND d.refobjid = pg_catalog.to_regclass($2)
                           AND n.nspname = m.project AND v.relname = m.name)
                  ORDER BY m.name",
                &[project.into(), relation.as_str().into()],
            )?,
        })
    })
}

/// Drops what uses a collection, each with a NOTICE. As the project's owner role.
pub(crate) fn drop_dependents(
    project: &str,
    collection: &str,
    dependents: &Dependents,
) -> BeaconResult<()> {
    for name in &dependents.queries {
        notice!(
            "dropping continuous query {project}.{name}, which reads collection \"{collection}\""
        );
    }
    if !dependents.queries.is_empty() {
        crate::cq::drop_queries(project, &dependents.queries)?;
    }
    for name in &dependents.documents {
        notice!("dropping document view {project}.{name}, which reads collection \"{collection}\"");
        crate::documents::drop_one(project, name)?;
    }
    for name in &dependents.analyses {
        notice!("dropping continuous analysis {project}.{name}, which reads collection \"{collection}\"");
        crate::analysis::continuous::drop_one(project, name)?;
    }
    for name in &dependents.views {
        notice!(
            "dropping materialized view {project}.{name}, which reads collection \"{collection}\""
        );
        crate::mv::drop_view(project, name)?;
    }
    for channel in &dependents.subscriptions {
        notice!("ending subscription {channel} of collection {project}.{collection}");
    }
    if !dependents.subscriptions.is_empty() {
        crate::stream::end_subscriptions(project, collection, &dependents.subscriptions)?;
    }
    Ok(())
}

/// Removes the catalog entries of a collection whose table is gone (or about to go in
/// this transaction): the collection, its fields (by the foreign key), and what was
/// generated for it.
pub(crate) fn forget_collection(project: &str, collection: &str) -> BeaconResult<()> {
    catalog(|| {
        run(
            "DELETE FROM beacon.collection WHERE project = $1 AND name = $2",
            &[project.into(), collection.into()],
        )?;
        run(
            "DELETE FROM beacon.generated_object
              WHERE project = $1 AND name = $2 AND kind IN ('cq_capture', 'stream_trigger')",
            &[project.into(), collection.into()],
        )
    })
}

fn drop_collection_named(project: &str, collection: &str, cascade: bool) -> BeaconResult<()> {
    validate_collection_name(collection).map_err(|e| BeaconError::InvalidName(e.to_string()))?;
    require_level(project, Level::Admin)?;
    let _owner = AsOwner::for_project(project)?;
    require_project(project)?;
    if !collection_exists(project, collection)? {
        return Err(BeaconError::UnknownCollection(
            project.to_string(),
            collection.to_string(),
        ));
    }
    // the locks creating the collection and changing its subscriptions take, then the one
    // DROP TABLE needs, before anything is read: writers finish first, and nothing that
    // reads the dependents below can change them meanwhile
    for lock in [
        format!("beacon.collection {project}.{collection}"),
        format!("beacon.stream {project}.{collection}"),
    ] {
        run(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
            &[lock.into()],
        )?;
    }
    let relation = table(project, collection);
    let present = exists(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[relation.as_str().into()],
    )?;
    if present {
        run(
            &format!("LOCK TABLE {relation} IN ACCESS EXCLUSIVE MODE"),
            &[],
        )?;
    }
    // a concurrent drop may have won while we waited
    if !collection_exists(project, collection)? {
        return Err(BeaconError::UnknownCollection(
            project.to_string(),
            collection.to_string(),
        ));
    }
    let dependents = dependents(project, collection)?;
    if !dependents.is_empty() && !cascade {
        return Err(BeaconError::DependentObjects(format!(
            "cannot drop collection \"{collection}\" of project \"{project}\": it is used by {}",
            dependents.describe()
        )));
    }
    drop_dependents(project, collection, &dependents)?;
    // what is left of generated objects (a capture function whose queries are gone)
    crate::cq::install_capture(project, collection)?;
    crate::stream::install_trigger(project, collection)?;
    if present {
        // anything else that depends on the table (a view a superuser made) makes a plain
        // DROP fail, and the whole call with it
        run(
            &format!(
                "DROP TABLE {relation}{}",
                if cascade { " CASCADE" } else { "" }
            ),
            &[],
        )?;
    }
    forget_collection(project, collection)
}

/// Drops collection `collection` of `project`: its table with all its events, its fields,
/// and its generated triggers. Refused (2BP01) while continuous queries, subscriptions or
/// materialized views use it, unless `cascade`, which drops them first (a NOTICE each).
/// Requires admin on the project.
#[pg_extern]
fn drop_collection(project: &str, collection: &str, cascade: default!(bool, false)) {
    report(drop_collection_named(project, collection, cascade))
}

extension_sql!(
    "COMMENT ON FUNCTION beacon.drop_collection(text, text, boolean) IS
  'Drops a collection: its table and events, fields and generated triggers. Refused while continuous queries, subscriptions or materialized views use it, unless cascade, which drops them first. Requires admin on the project.';",
    name = "drop_collection_comment",
    requires = [drop_collection]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;
