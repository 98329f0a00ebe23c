//! Document views: `beacon.create_document_view`, `beacon.drop_document_view`,
//! `beacon.refresh_document_view` (sql/documents.sql, around `_refresh_document_view_one`)
//! and `beacon.subscribe_documents` (notify.rs).
//!
//! spec (parse) → resolve (the tables' columns, key, lock hashes; stored in the catalog)
//! → build (the defining query and the rebuild of a set of keys) → functions (capture per
//! table, refresh, rebuild-all, pending documents) → the hidden documents table, the
//! pending table and the view `<project>.<name>`.
//!
//! Maintenance rebuilds whole documents from the tables, which is idempotent: it only
//! has to never lose a dirty key and never rebuild from a snapshot older than the change
//! that dirtied it. A capture finds the documents its rows reach by reading up the lookup
//! tree, and locks the edges it reads across (cq::edge_locks), so that of two writers
//! whose rows meet in one document, one waits for the other and finds its documents
//! with the other's rows in view. The tree is cut below the root at lookups keyed by the
//! root's key (`order_items` on `order_id`): their rows name their document themselves,
//! nothing reads across that edge, and each part is locked on its own — so a transaction
//! writing an order, its payment and its items takes shared locks only. Async: the dirty
//! keys go to the pending table in the writer's transaction, and the refresher (one at a
//! time per view) takes only keys it sees, rebuilding them in the same statement, from a
//! snapshot that has their writer's commit. Immediate: the capture locks the documents
//! (by key hash, or the whole view for many), then rebuilds them with a new snapshot
//! (READ COMMITTED; REPEATABLE READ raises 40001 when a document or a read changed
//! since its snapshot).

pub mod build;
mod functions;
mod install;
mod notify;
mod refresh;
mod resolve;
pub mod spec;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

use crate::cq::tables::{check_table_kind, refuse_inheritance};
use crate::error::{report, BeaconError, BeaconResult};
use crate::names::{quote_ident, validate_collection_name};
use crate::project::require_project;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::{exists, run};
use build::Layout;
use install::{advise_indexes, hide, indexes, install_captures, install_functions, lock_tables};
use pgrx::prelude::*;
use pgrx::JsonB;
use resolve::{resolve_fields, resolve_joins};
use serde_json::{json, Value};

/// Names become `_dv_<name>_pending_docs` and the like, which must fit 63 bytes.
const MAX_NAME_BYTES: usize = 40;

/// Pending entries one refresh statement takes.
const REFRESH_BATCH: i32 = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Async,
    Immediate,
}

impl Mode {
    fn parse(text: &str) -> BeaconResult<Mode> {
        match text {
            "async" => Ok(Mode::Async),
            "immediate" => Ok(Mode::Immediate),
            _ => Err(BeaconError::InvalidArgument(format!(
                "invalid mode \"{text}\": expected async or immediate"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Immediate => "immediate",
        }
    }
}

/// A view as stored: the layout, each lookup edge's lock hash, the root's rendered
/// condition, and the mode.
pub struct Stored {
    pub layout: Layout,
    pub hashes: Vec<String>,
    pub condition: Option<String>,
    pub mode: Mode,
}

fn checked_name(name: &str) -> BeaconResult<()> {
    validate_collection_name(name).map_err(|e| BeaconError::InvalidName(e.to_string()))?;
    if name.len() > MAX_NAME_BYTES {
        return Err(BeaconError::InvalidName(format!(
            "document view name \"{name}\" is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn relation(project: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(project), quote_ident(table))
}

fn create(project: &str, name: &str, spec_json: &Value, mode: &str) -> BeaconResult<()> {
    checked_name(name)?;
    let mode = Mode::parse(mode)?;
    let spec = spec::parse(spec_json).map_err(BeaconError::InvalidArgument)?;
    let create_indexes = spec_json
        .get("create_indexes")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    require_level(project, Level::Admin)?;
    let tables = spec.tables();
    let mut sorted = tables.clone();
    sorted.sort();
    for table in &sorted {
        crate::project::adopt_table(project, table)?;
    }
    let _owner = AsOwner::for_project(project)?;
    require_project(project)?;
    for candidate in [
        name.to_string(),
        format!("_dv_{name}"),
        format!("_dv_{name}_pending"),
    ] {
        if exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                              ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
            &[project.into(), candidate.as_str().into()],
        )? {
            return Err(BeaconError::AlreadyExists(format!(
                "relation \"{candidate}\" already exists in project \"{project}\""
            )));
        }
    }
    for table in &tables {
        check_table_kind(project, table)?;
    }
    // writers wait from here to commit: every change is either in the backfill or
    // captured, never neither
    lock_tables(project, &tables, "SHARE ROW EXCLUSIVE")?;
    for table in &tables {
        refuse_inheritance(project, table)?;
    }
    let (fields, columns) = resolve_fields(project, &spec)?;
    let hashes = resolve_joins(project, &spec, &columns)?;
    let condition = spec
        .filter
        .as_deref()
        .map(|f| crate::stream::checked_condition(project, &spec.table, f))
        .transpose()?;
    let mut layout = Layout {
        project: project.to_string(),
        name: name.to_string(),
        spec,
        fields,
        document_condition: None,
    };
    let key_types: Vec<(String, String)> = layout
        .spec
        .key
        .iter()
        .map(|k| {
            columns[0]
                .iter()
                .find(|(n, _)| n == k)
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let key_columns: Vec<String> = key_types
        .iter()
        .map(|(k, t)| format!("{} {t} NOT NULL", quote_ident(k)))
        .collect();
    run(
        &format!(
            "CREATE TABLE {} ({}, doc pg_catalog.jsonb NOT NULL, PRIMARY KEY ({}))",
            layout.docs_table(),
            key_columns.join(", "),
            layout.key_list("")
        ),
        &[],
    )?;
    run(
        &format!(
            "CREATE TABLE {} ({}, _at timestamptz NOT NULL DEFAULT pg_catalog.now())",
            layout.pending_table(),
            key_columns.join(", ")
        ),
        &[],
    )?;
    run(
        &format!(
            "CREATE INDEX ON {} ({})",
            layout.pending_table(),
            layout.key_list("")
        ),
        &[],
    )?;
    // checked against the view (key columns and doc), in its first form
    run(&layout.create_plain_view(), &[])?;
    layout.document_condition = layout
        .spec
        .document_filter
        .clone()
        .map(|f| crate::stream::checked_condition(project, name, &f))
        .transpose()?;
    indexes(&layout)?;
    let stored = Stored {
        layout,
        hashes,
        condition,
        mode,
    };
    install_functions(&stored, &key_types)?;
    run(&stored.layout.create_view(), &[])?;
    run(
        &format!(
            "CREATE VIEW {} AS {}",
            stored.layout.source_view(),
            stored
                .layout
                .defining_query(stored.condition.as_deref(), None)
        ),
        &[],
    )?;
    hide(&stored.layout)?;
    run(
        &format!(
            "COMMENT ON VIEW {} IS {}",
            stored.layout.view(),
            crate::names::quote_literal(&format!(
                "pg_beacon document view ({}): one document per row of {}",
                mode.as_str(),
                stored.layout.spec.table
            ))
        ),
        &[],
    )?;
    let layout_json = json!({
        "fields": stored.layout.fields,
        "hashes": stored.hashes,
        "condition": stored.condition,
        "document_condition": stored.layout.document_condition,
        "key_types": key_types,
    });
    catalog(|| {
        run(
            "INSERT INTO beacon.document_view (project, name, spec, layout, root, tables, mode)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                project.into(),
                name.into(),
                JsonB(spec_json.clone()).into(),
                JsonB(layout_json).into(),
                stored.layout.spec.table.as_str().into(),
                tables.clone().into(),
                mode.as_str().into(),
            ],
        )
    })?;
    install_captures(&stored)?;
    advise_indexes(&stored.layout, create_indexes)?;
    let started = std::time::Instant::now();
    let built = Spi::get_one::<i64>(&format!(
        "SELECT {}()",
        stored.layout.qualified_function("rebuild_all")
    ))?
    .unwrap_or(0);
    notice!(
        "document view \"{name}\": {built} documents built in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A view from the catalog (as the owner).
pub fn stored(project: &str, name: &str) -> BeaconResult<Stored> {
    let unknown = || {
        BeaconError::UnknownObject(format!(
            "document view \"{name}\" does not exist in project \"{project}\""
        ))
    };
    if !catalog(|| {
        exists(
            "SELECT EXISTS (SELECT 1 FROM beacon.document_view WHERE project = $1 AND name = $2)",
            &[project.into(), name.into()],
        )
    })? {
        return Err(unknown());
    }
    let row = catalog(|| {
        Ok(Spi::get_three_with_args::<JsonB, JsonB, String>(
            "SELECT spec, layout, mode FROM beacon.document_view WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )?)
    })?;
    let (Some(JsonB(spec_json)), Some(JsonB(layout_json)), Some(mode)) = row else {
        return Err(unknown());
    };
    let spec = spec::parse(&spec_json).map_err(BeaconError::InvalidArgument)?;
    let parse = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .map(|pairs| {
                pairs
                    .iter()
                    .filter_map(|p| {
                        Some((
                            p.get(0)?.as_str()?.to_string(),
                            p.get(1)?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let fields = layout_json["fields"]
        .as_array()
        .map(|a| a.iter().map(parse).collect())
        .unwrap_or_default();
    let hashes = layout_json["hashes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| h.as_str().unwrap_or("0").to_string())
                .collect()
        })
        .unwrap_or_default();
    Ok(Stored {
        layout: Layout {
            project: project.to_string(),
            name: name.to_string(),
            spec,
            fields,
            document_condition: layout_json["document_condition"]
                .as_str()
                .map(str::to_string),
        },
        hashes,
        condition: layout_json["condition"].as_str().map(str::to_string),
        mode: Mode::parse(&mode)?,
    })
}

fn key_types_of(project: &str, name: &str) -> BeaconResult<Vec<(String, String)>> {
    let layout = catalog(|| {
        Ok(Spi::get_one_with_args::<JsonB>(
            "SELECT layout FROM beacon.document_view WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )?)
    })?;
    Ok(layout
        .and_then(|JsonB(v)| v["key_types"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some((
                p.get(0)?.as_str()?.to_string(),
                p.get(1)?.as_str()?.to_string(),
            ))
        })
        .collect())
}

/// Rebuilds every document of a view from the rows its tables keep now (after retention
/// dropped a partition of one of them). As the project's owner role.
pub(crate) fn rebuild_all(project: &str, name: &str) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    let stored = stored(project, name)?;
    Spi::get_one::<i64>(&format!(
        "SELECT {}()",
        stored.layout.qualified_function("rebuild_all")
    ))?;
    Ok(())
}

/// Regenerates a view's functions and captures with the running code (beacon.regenerate).
pub fn regenerate(project: &str, name: &str) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    let stored = stored(project, name)?;
    install_functions(&stored, &key_types_of(project, name)?)?;
    run(&stored.layout.create_view(), &[])?;
    install_captures(&stored)?;
    notify::install(&stored.layout)
}

fn drop_view(project: &str, name: &str) -> BeaconResult<()> {
    require_level(project, Level::Admin)?;
    let _owner = AsOwner::for_project(project)?;
    require_project(project)?;
    drop_one(project, name)
}

/// The project's document views reading `table` (none before 0.2.1's catalog).
pub(crate) fn views_reading(project: &str, table: &str) -> BeaconResult<Vec<String>> {
    if !exists(
        "SELECT pg_catalog.to_regclass('beacon.document_view') IS NOT NULL",
        &[],
    )? {
        return Ok(Vec::new());
    }
    catalog(|| {
        crate::spi::texts(
            "SELECT name FROM beacon.document_view WHERE project = $1 AND $2 = ANY (tables)
              ORDER BY name",
            &[project.into(), table.into()],
        )
    })
}

/// Drops the views of the project whose view or one of whose tables is gone (DROP …
/// CASCADE by hand), each with a NOTICE: their captures on the remaining tables would
/// fail every write. As the project's owner role.
pub(crate) fn drop_broken(project: &str) -> BeaconResult<()> {
    if !exists(
        "SELECT pg_catalog.to_regclass('beacon.document_view') IS NOT NULL",
        &[],
    )? {
        return Ok(());
    }
    let broken = catalog(|| {
        crate::spi::texts(
            "SELECT v.name FROM beacon.document_view v
              WHERE v.project = $1
                AND (pg_catalog.to_regclass(pg_catalog.format('%I.%I', v.project, v.name)) IS NULL
                     OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', v.project, '_dv_' || v.name)) IS NULL
                     OR pg_catalog.to_regclass(pg_catalog.format('%I.%I', v.project, '_dv_' || v.name || '_source')) IS NULL
                     OR EXISTS (SELECT 1 FROM pg_catalog.unnest(v.tables) t
                                 WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', v.project, t)) IS NULL))
              ORDER BY v.name",
            &[project.into()],
        )
    })?;
    for name in broken {
        notice!("document view {project}.{name} lost a table or its view: it is dropped");
        drop_one(project, &name)?;
    }
    Ok(())
}

/// Drops a view's objects (those still there) and its catalog entry; the caller checked
/// the right to. As the project's owner role.
pub(crate) fn drop_one(project: &str, name: &str) -> BeaconResult<()> {
    let stored = stored(project, name)?;
    let layout = &stored.layout;
    let tables = layout.spec.tables();
    let present: Vec<String> = tables
        .iter()
        .filter(|t| {
            exists(
                "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                &[relation(project, t).as_str().into()],
            )
            .unwrap_or(false)
        })
        .cloned()
        .collect();
    lock_tables(project, &present, "SHARE ROW EXCLUSIVE")?;
    for table in &present {
        let rel = relation(project, table);
        for event in ["insert", "update", "delete", "truncate"] {
            run(
                &format!(
                    "DROP TRIGGER IF EXISTS {} ON {rel}",
                    quote_ident(&layout.trigger_name(event))
                ),
                &[],
            )?;
        }
    }
    for table in &tables {
        run(
            &format!(
                "DROP FUNCTION IF EXISTS {}()",
                layout.capture_function(table)
            ),
            &[],
        )?;
    }
    run(&format!("DROP VIEW IF EXISTS {}", layout.view()), &[])?;
    run(
        &format!("DROP VIEW IF EXISTS {}", layout.source_view()),
        &[],
    )?;
    for f in ["pending_docs()", "refresh(integer)", "rebuild_all()"] {
        let (suffix, args) = f.split_once('(').unwrap_or((f, ")"));
        run(
            &format!(
                "DROP FUNCTION IF EXISTS {}({args}",
                layout.qualified_function(suffix)
            ),
            &[],
        )?;
    }
    run(
        &format!("DROP TABLE IF EXISTS {}", layout.pending_table()),
        &[],
    )?;
    run(
        &format!("DROP TABLE IF EXISTS {}", layout.docs_table()),
        &[],
    )?;
    run(
        &format!("DROP FUNCTION IF EXISTS {}()", layout.notify_function()),
        &[],
    )?;
    catalog(|| {
        run(
            "DELETE FROM beacon.document_view WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )
    })
}

/// Creates a document view `<project>.<name>`: one JSON document per row of the spec's
/// `from` table, with its lookups embedded (see the README), kept up to date as any of
/// its tables changes, by the worker (`async`) or in the writing transaction
/// (`immediate`). Requires admin access.
#[pg_extern]
fn create_document_view(project: &str, name: &str, spec: JsonB, mode: default!(&str, "'async'")) {
    report(create(project, name, &spec.0, mode))
}

/// Drops a document view, its hidden tables, functions and triggers. Requires admin access.
#[pg_extern]
fn drop_document_view(project: &str, name: &str) {
    report(drop_view(project, name))
}

/// One async view's pending changes applied now (see `beacon.refresh_document_view`).
#[pg_extern]
fn _refresh_document_view_one(project: &str, name: &str) -> i64 {
    report(refresh::refresh_one(project, name))
}

extension_sql_file!(
    "../../sql/documents.sql",
    name = "documents_catalog",
    requires = ["bootstrap", _refresh_document_view_one]
);
