//! Continuous queries: `beacon.create_continuous_query`, `beacon.drop_continuous_query`,
//! compaction (`beacon.compact`, in sql/cq.sql, around `beacon._compact_one`).
//!
//! analyze (sqlparser) → plan (SQL from the aggregate table) → capture (one trigger
//! function per source table, serving all its queries) → compaction (async mode).

pub mod aggregates;
pub mod analyze;
mod capture;
mod commit_merge;
mod compact;
pub mod edge_locks;
pub mod guard;
pub mod hll;
mod indexes;
mod joins;
#[cfg(any(test, feature = "pg_test"))]
mod joins_tests;
#[cfg(any(test, feature = "pg_test"))]
mod keys_tests;
pub mod plan;
mod regenerate;
pub(crate) mod settings;
mod sketch;
pub(crate) mod tables;
#[cfg(any(test, feature = "pg_test"))]
mod tests;
mod typing;

use crate::error::{report, BeaconError, BeaconResult};
use crate::generated::{self, Kind};
use crate::names::{quote_ident, quote_literal, validate_collection_name};
use crate::project::require_project;
use crate::security::{catalog, function_settings, require_level, role_name, AsOwner, Level};
use crate::spi::{exists, run};
use aggregates::ArgType;
use analyze::analyze_with;
use compact::compact_one;
use indexes::{indexed_digests, new_table_digests, rebuild_indexes};
use joins::advise_indexes;
pub(crate) use joins::{hash_traits, leads_an_index, lock_hash};
use pgrx::prelude::*;
use plan::{Mode, Plan};
pub use regenerate::regenerate_view;
use std::collections::{BTreeMap, HashMap};
pub use tables::query_tables_sql;
use tables::{check_table_kind, readable_kind, refuse_inheritance, table_columns};
pub use typing::typed_plan_of;
use typing::{column_types, probe_types};

/// Query names become `_cq_<name>_columns` and the like, which must fit 63 bytes.
const MAX_NAME_BYTES: usize = 40;

/// Blocks of the source backfilled per statement, so progress can be reported.
const BACKFILL_BLOCKS: i64 = 2048;

fn checked_name(name: &str) -> BeaconResult<()> {
    validate_collection_name(name).map_err(|e| BeaconError::InvalidName(e.to_string()))?;
    if name.len() > MAX_NAME_BYTES {
        return Err(BeaconError::InvalidName(format!(
            "continuous query name \"{name}\" is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The plan of a stored or new query, without its output types (only the view needs
/// them; see `probe_types`).
pub fn plan_of(project: &str, name: &str, query: &str, mode: Mode) -> BeaconResult<Plan> {
    let columns_of = |table: &str| table_columns(project, table).ok().flatten();
    let analyzed = analyze_with(query, &columns_of)
        .map_err(|r| BeaconError::Refused(r.to_string(), r.sqlstate()))?;
    let schemas =
        std::iter::once(&analyzed.source_schema).chain(analyzed.joins.iter().map(|j| &j.schema));
    for schema in schemas.flatten() {
        if schema != project {
            return Err(BeaconError::Unsupported(format!(
                "a continuous query reads tables of its own project, not of schema \"{schema}\""
            )));
        }
    }
    Ok(Plan {
        project: project.to_string(),
        name: name.to_string(),
        source: analyzed.source_table.clone(),
        mode,
        query: analyzed,
        output_types: Vec::new(),
        arg_types: Vec::new(),
        loose_keys: Vec::new(),
        digests: BTreeMap::new(),
        join_types: Default::default(),
    })
    .and_then(|mut plan| {
        plan.digests = indexed_digests(&plan)?;
        Ok(plan)
    })
}

/// The view and the function it calls for dirty groups, created or replaced.
fn create_views(plan: &Plan, time_zone: &str, replace_view: bool) -> BeaconResult<()> {
    if let Some(function) = plan.create_fresh_function(
        &column_types(&plan.state_table())?,
        &format!(
            "{} {}",
            function_settings(),
            settings::set_clauses(time_zone)
        ),
    ) {
        run(&function, &[])?;
    }
    let view = plan.create_view();
    if replace_view {
        run(
            &view.replacen("CREATE VIEW", "CREATE OR REPLACE VIEW", 1),
            &[],
        )
    } else {
        run(&view, &[])
    }
}

fn create(
    project: &str,
    name: &str,
    query: &str,
    mode: &str,
    create_indexes: bool,
) -> BeaconResult<()> {
    checked_name(name)?;
    let mode = Mode::parse(mode).ok_or_else(|| {
        BeaconError::InvalidArgument(format!(
            "invalid mode \"{mode}\": expected async or immediate"
        ))
    })?;
    // refuse unsupported queries before checking anything about the database
    let mut plan = plan_of(project, name, query, mode)?;
    require_level(project, Level::Admin)?;
    // in name order, as every lock on a query's tables is taken (see `lock_source`)
    let mut tables = plan.tables();
    tables.sort();
    for table in &tables {
        crate::project::adopt_table(project, table)?;
    }
    let _owner = AsOwner::for_project(project)?;
    require_project(project)?;
    if exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                          ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
        &[project.into(), name.into()],
    )? {
        return Err(BeaconError::AlreadyExists(format!(
            "relation \"{name}\" already exists in project \"{project}\""
        )));
    }
    for table in plan.tables() {
        check_table_kind(project, &table)?;
    }
    let time_zone = Spi::get_one::<String>("SELECT pg_catalog.current_setting('TimeZone')")?
        .unwrap_or_else(|| "UTC".into());
    // Writers wait from here to commit: every row is then either visible to the backfill
    // or captured by the trigger, never both and never neither.
    lock_source(&plan, "SHARE ROW EXCLUSIVE")?;
    // after the lock: the probe reads the source, and a weaker lock taken first would
    // have to be upgraded (a drop waiting for it would deadlock with us)
    let typed = typed_plan_of(project, name, query, mode)?;
    plan.arg_types = typed.arg_types;
    plan.loose_keys = typed.loose_keys;
    plan.join_types = typed.join_types;
    // after the lock: a child attached since would be refused by the utility hook only
    // once this query exists
    for table in plan.tables() {
        refuse_inheritance(project, &table)?;
    }
    // the decisive check: what PostgreSQL resolves the rendered query to, in the owner's
    // role and settings the capture trigger runs with
    if let Err(refusal) = crate::sql_policy::check(
        &plan.defining_query(),
        &crate::sql_policy::Policy::continuous_query(project),
    ) {
        refusal.raise("query refused");
    }
    plan.output_types = probe_types(&plan)?;
    for statement in plan.create_state() {
        run(&statement, &[])?;
    }
    tables::compress_delta(&plan)?;
    plan.digests = new_table_digests(&plan, true)?;
    for statement in plan.create_indexes() {
        run(&statement, &[])?;
    }
    run(&plan.create_columns_view(), &[])?;
    create_views(&plan, &time_zone, false)?;
    hide(&plan)?;
    comment_view(&plan, query)?;
    generated::record(Kind::CqView, project, name)?;
    // a join is stored as PostgreSQL will run it, every name qualified: a column added to
    // another table later cannot make a bare name ambiguous
    let stored_query = if plan.is_join() {
        plan.defining_query()
    } else {
        query.to_string()
    };
    if plan.is_join() && !tables::catalog_has_joins()? {
        return Err(BeaconError::Unsupported(
            "continuous queries over joins need the catalog of pg_beacon 0.2.1: run ALTER \
             EXTENSION pg_beacon UPDATE first"
                .into(),
        ));
    }
    catalog(|| {
        let mut args = vec![
            project.into(),
            name.into(),
            stored_query.as_str().into(),
            plan.source.as_str().into(),
            mode.as_str().into(),
            time_zone.as_str().into(),
        ];
        // a catalog before 0.2.1 has no `joined` (and then no join reaches here)
        let joined = tables::catalog_has_joins()?;
        if joined {
            args.push(plan.joined_tables().into());
        }
        run(
            &format!(
                "INSERT INTO beacon.continuous_query (project, name, query, source, mode, time_zone{})
                 VALUES ($1, $2, $3, $4, $5, $6{})",
                if joined { ", joined" } else { "" },
                if joined { ", $7" } else { "" }
            ),
            &args,
        )
    })?;
    install_merge(&plan, &time_zone)?;
    install_merge_trigger(&plan)?;
    for table in plan.tables() {
        capture::install(project, &table)?;
    }
    advise_indexes(&plan, create_indexes)?;
    backfill(&plan, &time_zone)
}

/// The immediate-mode merge function (see plan/merge.rs), callable only by pg_beacon.
fn install_merge(plan: &Plan, time_zone: &str) -> BeaconResult<()> {
    if plan.mode != Mode::Immediate {
        return Ok(());
    }
    run(
        &plan.create_merge_function(
            time_zone,
            &format!("{} {}", function_settings(), settings::constant_clauses()),
        ),
        &[],
    )?;
    run(
        &format!(
            "REVOKE ALL ON FUNCTION {}() FROM PUBLIC",
            plan.merge_function()
        ),
        &[],
    )
}

/// Creates an immediate query's merge trigger if it is missing; false if there was
/// nothing to do, or its function is not there yet (a library newer than the catalog,
/// before `ALTER EXTENSION pg_beacon UPDATE`, whose regenerate adds the trigger).
fn install_merge_trigger(plan: &Plan) -> BeaconResult<bool> {
    if plan.mode != Mode::Immediate
        || !exists(
            "SELECT pg_catalog.to_regprocedure('beacon._cq_merge()') IS NOT NULL",
            &[],
        )?
        || exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                             WHERE tgrelid = $1::regclass AND tgname = '_beacon_merge')",
            &[plan.delta_table().as_str().into()],
        )?
    {
        return Ok(false);
    }
    run(&plan.create_merge_trigger(), &[])?;
    Ok(true)
}

fn time_zone_of(project: &str, name: &str) -> BeaconResult<String> {
    catalog(|| {
        Ok(Spi::get_one_with_args::<String>(
            "SELECT time_zone FROM beacon.continuous_query WHERE project = $1 AND name = $2",
            &[project.into(), name.into()],
        )?
        .unwrap_or_else(|| "UTC".into()))
    })
}

/// The project's default privileges make every new table readable by `read` and writable
/// by `write`; the hidden state, delta and guard relations are pg_beacon's alone (a writer
/// who could insert into the state could make the view report groups that do not exist).
fn hide(plan: &Plan) -> BeaconResult<()> {
    let roles = [Level::Read, Level::Write, Level::Admin]
        .map(|level| quote_ident(&role_name(&plan.project, level)))
        .join(", ");
    for relation in plan.hidden_relations() {
        run(
            &format!("REVOKE ALL ON {relation} FROM PUBLIC, {roles}"),
            &[],
        )?;
    }
    // the view's readers call it for dirty groups; it answers what the view shows
    if exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                         WHERE n.nspname = $1 AND p.proname = $2)",
        &[plan.project.as_str().into(), format!("_cq_{}_fresh", plan.name).as_str().into()],
    )? {
        let function = plan.fresh_function();
        run(&format!("REVOKE ALL ON FUNCTION {function} FROM PUBLIC"), &[])?;
        run(
            &format!(
                "GRANT EXECUTE ON FUNCTION {function} TO {}",
                quote_ident(&role_name(&plan.project, Level::Read))
            ),
            &[],
        )?;
    }
    Ok(())
}

fn comment_view(plan: &Plan, query: &str) -> BeaconResult<()> {
    run(
        &format!(
            "COMMENT ON VIEW {} IS {}",
            plan.view(),
            quote_literal(&format!(
                "pg_beacon continuous query ({} mode): {query}",
                plan.mode.as_str()
            ))
        ),
        &[],
    )
}

fn drop_objects(plan: &Plan) -> BeaconResult<()> {
    // (the trigger may be gone already: a DROP TRIGGER by hand, or pg_dump --clean, is
    // what made the event trigger drop the rest of the query)
    if plan.mode == Mode::Immediate
        && crate::spi::has_trigger(&plan.delta_table(), "_beacon_merge")?
    {
        // this transaction's own writes left merges pending at commit on the delta, and
        // PostgreSQL refuses to drop a table with pending trigger events: merge them now
        let trigger = format!("{}._beacon_merge", quote_ident(&plan.project));
        run(&format!("SET CONSTRAINTS {trigger} IMMEDIATE"), &[])?;
        run(&format!("SET CONSTRAINTS {trigger} DEFERRED"), &[])?;
    }
    for relation in plan.owned_relations() {
        let kind = if relation == plan.view() || relation == plan.columns_view() {
            "VIEW"
        } else {
            "TABLE"
        };
        if crate::spi::present(&relation, false)? {
            run(&format!("DROP {kind} IF EXISTS {relation}"), &[])?;
        }
        if relation == plan.view() && crate::spi::present(&plan.fresh_function(), true)? {
            // the view calls it; it reads the state's row types
            run(
                &format!("DROP FUNCTION IF EXISTS {}", plan.fresh_function()),
                &[],
            )?;
        }
    }
    if crate::spi::present(&plan.merge_function(), true)? {
        run(
            &format!("DROP FUNCTION IF EXISTS {}()", plan.merge_function()),
            &[],
        )?;
    }
    Ok(())
}

/// Regenerates the capture function and triggers of a source table, as the project's
/// owner role.
pub fn install_capture(project: &str, source: &str) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    capture::install(project, source)
}

fn backfill(plan: &Plan, time_zone: &str) -> BeaconResult<()> {
    // a partitioned source has no blocks of its own: a chunk's ctid range applies in each
    // partition, so the largest partition's blocks cover them all, each row once
    let blocks = Spi::get_one_with_args::<i64>(
        "SELECT coalesce((SELECT pg_catalog.max(pg_catalog.pg_relation_size(t.relid))
                            FROM pg_catalog.pg_partition_tree($1::regclass) t
                           WHERE t.isleaf AND t.relid <> $1::regclass),
                         pg_catalog.pg_relation_size($1::regclass))
                / pg_catalog.current_setting('block_size')::bigint",
        &[plan.source_table().as_str().into()],
    )?
    .unwrap_or(0);
    // keys are computed under the query's settings, as the trigger computes them
    settings::apply(time_zone)?;
    let mut from = 0;
    while from < blocks {
        let to = (from + BACKFILL_BLOCKS).min(blocks);
        for statement in plan.backfill_chunk(from, to) {
            run(&statement, &[])?;
        }
        if blocks > BACKFILL_BLOCKS {
            notice!(
                "backfilling {}: {to} of {blocks} blocks ({}%)",
                plan.name,
                to * 100 / blocks
            );
        }
        from = to;
    }
    Ok(())
}

fn stored(project: &str, name: &str) -> BeaconResult<(String, Mode, String)> {
    let row = catalog(|| {
        Ok(Spi::get_three_with_args::<String, String, String>(
            "SELECT query, mode, time_zone FROM beacon.continuous_query WHERE project = $1 AND name = $2
              UNION ALL SELECT NULL, NULL, NULL LIMIT 1",
            &[project.into(), name.into()],
        )?)
    })?;
    match row {
        (Some(query), Some(mode), Some(zone)) => {
            Ok((query, Mode::parse(&mode).unwrap_or(Mode::Async), zone))
        }
        _ => Err(BeaconError::UnknownObject(format!(
            "continuous query \"{name}\" does not exist in project \"{project}\""
        ))),
    }
}

/// Takes the lock on a query's source that orders drop, compaction and writers: drop
/// and compaction take it first, before any of the query's relations, so that they never
/// wait for each other in opposite orders; writers hold theirs from their first write to
/// the table until they commit, which is when an immediate query's merge runs.
fn lock_source(plan: &Plan, mode: &str) -> BeaconResult<()> {
    // a join's tables in name order: two drops, or a drop and a compaction, lock them in
    // the same order
    let mut tables = plan.tables();
    tables.sort();
    for table in tables {
        let relation = format!("{}.{}", quote_ident(&plan.project), quote_ident(&table));
        if exists(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
            &[relation.as_str().into()],
        )? {
            run(&format!("LOCK TABLE {relation} IN {mode} MODE"), &[])?;
        }
    }
    Ok(())
}

fn drop(project: &str, name: &str) -> BeaconResult<()> {
    require_level(project, Level::Admin)?;
    drop_query(project, name)
}

/// Drops a continuous query and whatever is left of its objects (some may be gone
/// already: see `lifecycle`), after the caller checked the caller's rights.
pub(crate) fn drop_query(project: &str, name: &str) -> BeaconResult<()> {
    drop_queries(project, &[name.to_string()])
}

/// Drops continuous queries of one project together: every catalog row goes before any
/// capture function is regenerated, so that the capture of a source is rebuilt from the
/// queries that stay only (a query being dropped may read a column that is gone).
pub(crate) fn drop_queries(project: &str, names: &[String]) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    let mut plans = Vec::with_capacity(names.len());
    for name in names {
        let (query, mode, _) = stored(project, name)?;
        plans.push(plan_of(project, name, &query, mode)?);
    }
    // waits for the transactions writing the source (their captures and merges still use
    // the query's tables) and holds later writers until the drop commits; they then run
    // the capture function without this query
    for plan in &plans {
        lock_source(plan, "SHARE ROW EXCLUSIVE")?;
    }
    for name in names {
        // a concurrent drop may have won while we waited
        stored(project, name)?;
        catalog(|| {
            run(
                "DELETE FROM beacon.continuous_query WHERE project = $1 AND name = $2",
                &[project.into(), name.as_str().into()],
            )
        })?;
    }
    let mut sources: Vec<String> = plans.iter().flat_map(|p| p.tables()).collect();
    sources.sort_unstable();
    sources.dedup();
    for source in sources {
        capture::install(project, &source)?;
    }
    for plan in &plans {
        generated::forget(Kind::CqView, project, &plan.name)?;
        drop_objects(plan)?;
    }
    Ok(())
}

/// Creates continuous query `name`: the view `<project>.<name>`, kept equal to `query`
/// (`SELECT <keys>, <aggregates> FROM <table> [WHERE ...] [GROUP BY ...]`) as the table
/// changes. mode 'async' (default) appends partial aggregates per statement and merges
/// them in the background; 'immediate' merges them in the writing transaction. Existing
/// rows are backfilled. Requires admin on the project.
#[pg_extern]
fn create_continuous_query(
    project: &str,
    name: &str,
    query: &str,
    mode: default!(&str, "'async'"),
) {
    report(create(project, name, query, mode, false))
}

/// `create_continuous_query` that also creates the indexes a join's maintenance looks rows
/// up with, when `create_indexes` (an overload: the four-argument function keeps the C
/// signature of earlier releases, whose SQL definition a new library must still serve).
#[pg_extern(name = "create_continuous_query")]
fn create_continuous_query_with_indexes(
    project: &str,
    name: &str,
    query: &str,
    mode: &str,
    create_indexes: bool,
) {
    report(create(project, name, query, mode, create_indexes))
}

/// Drops a continuous query, its view and its hidden tables. Requires admin.
#[pg_extern]
fn drop_continuous_query(project: &str, name: &str) {
    report(drop(project, name))
}

/// Merges one async query's pending deltas into its state; returns how many were applied.
#[pg_extern]
fn _compact_one(project: &str, name: &str) -> i64 {
    report(compact_one(project, name))
}

extension_sql_file!(
    "../../sql/cq.sql",
    name = "cq_catalog",
    requires = ["bootstrap", _compact_one]
);
