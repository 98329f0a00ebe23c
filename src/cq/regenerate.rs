//! Bringing a query made by an earlier version to this version's shape: hidden tables,
//! indexes, views and functions regenerated, and the state rebuilt when its partials
//! changed.

use super::*;

/// Brings the hidden tables of a query made by an earlier version to this version's
/// shape: immediate queries gain their delta table, deltas their count(DISTINCT) columns.
/// Runs as the owner.
pub(super) fn upgrade_tables(plan: &Plan) -> BeaconResult<()> {
    let delta = plan.delta_table();
    if !exists(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[delta.as_str().into()],
    )? {
        run(&plan.create_delta(), &[])?;
    }
    for (column, ty) in plan.distinct_delta_columns() {
        if !exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                             WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped)",
            &[delta.as_str().into(), column.as_str().into()],
        )? {
            run(
                &format!("ALTER TABLE {delta} ADD COLUMN {column} {ty}"),
                &[],
            )?;
        }
    }
    tables::compress_delta(plan)?;
    if install_merge_trigger(plan)? {
        // deltas committed while the library was newer than the catalog (no trigger to
        // merge them at commit yet): visible to every merge now, so merged once here, in
        // the query's time zone as its capture computed them
        settings::apply(&time_zone_of(&plan.project, &plan.name)?)?;
        for statement in plan.compaction() {
            run(&statement, &[])?;
        }
    }
    Ok(())
}

/// The column types of an existing view, in order.
fn view_types(view: &str) -> BeaconResult<Vec<String>> {
    Ok(Spi::connect(|client| {
        client
            .select(
                "SELECT format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
                  WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                None,
                &[view.into()],
            )?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, _>>()
    })?)
}

/// Regenerates a query's views with the running code (see `generated`); false when its
/// source is gone and there is nothing to regenerate. As the project's owner role.
pub fn regenerate_view(project: &str, name: &str) -> BeaconResult<bool> {
    let _owner = AsOwner::for_project(project)?;
    let (query, mode, time_zone) = stored(project, name)?;
    let mut plan = plan_of(project, name, &query, mode)?;
    for table in plan.tables() {
        if !readable_kind(project, &table)? {
            return Ok(false);
        }
    }
    let typed = typed_plan_of(project, name, &query, mode)?;
    plan.arg_types = typed.arg_types;
    plan.loose_keys = typed.loose_keys;
    plan.join_types = typed.join_types;
    plan.output_types = probe_types(&plan)?;
    if !state_matches(&plan)? {
        rebuild(plan, &query, &time_zone)?;
        return Ok(true);
    }
    // first: the merge function and the view name the indexes' conflict targets
    rebuild_indexes(&mut plan)?;
    upgrade_tables(&plan)?;
    install_merge(&plan, &time_zone)?;
    let replace =
        |statement: String| statement.replacen("CREATE VIEW", "CREATE OR REPLACE VIEW", 1);
    run(&replace(plan.create_columns_view()), &[])?;
    let exists_now = exists(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[plan.view().as_str().into()],
    )?;
    if exists_now && view_types(&plan.view())? == plan.output_types {
        // keeps the grants and whatever users built on the view
        create_views(&plan, &time_zone, true)?;
    } else {
        // a column's type changed (a fix in how it is computed): the view must be rebuilt,
        // and PostgreSQL refuses if user objects depend on it, which the upgrade reports
        if exists_now {
            run(&format!("DROP VIEW {}", plan.view()), &[])?;
        }
        create_views(&plan, &time_zone, false)?;
    }
    hide(&plan)?;
    comment_view(&plan, &query)?;
    generated::record(Kind::CqView, project, name)?;
    Ok(true)
}

/// Whether the state table has the columns, of the types, that the running code computes.
fn state_matches(plan: &Plan) -> BeaconResult<bool> {
    let probe = "_beacon_state_probe";
    run(&plan.state_probe(probe), &[])?;
    let expected = column_types(&format!("pg_temp.{probe}"))?;
    run(&format!("DROP TABLE pg_temp.{probe}"), &[])?;
    Ok(column_types(&plan.state_table())? == expected)
}

/// Drops and recreates a query's hidden tables and views and backfills them from the
/// source: for partials whose shape changed (a fix in how an aggregate is computed).
/// Writers wait meanwhile, as they do while a query is created.
fn rebuild(mut plan: Plan, query: &str, time_zone: &str) -> BeaconResult<()> {
    lock_source(&plan, "SHARE ROW EXCLUSIVE")?;
    drop_objects(&plan)?;
    for statement in plan.create_state() {
        run(&statement, &[])?;
    }
    tables::compress_delta(&plan)?;
    plan.digests = new_table_digests(&plan, true)?;
    for statement in plan.create_indexes() {
        run(&statement, &[])?;
    }
    run(&plan.create_columns_view(), &[])?;
    create_views(&plan, time_zone, false)?;
    hide(&plan)?;
    comment_view(&plan, query)?;
    generated::record(Kind::CqView, &plan.project, &plan.name)?;
    install_merge(&plan, time_zone)?;
    install_merge_trigger(&plan)?;
    backfill(&plan, time_zone)
}
