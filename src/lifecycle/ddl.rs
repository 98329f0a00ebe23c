//! DDL run by hand on a project's objects, followed by the catalog. Two event triggers
//! (sql/lifecycle.sql) call in here: `sql_drop` after anything was dropped, and
//! `ddl_command_end` after an `ALTER TABLE`. Each first asks, in one query over
//! `pg_catalog` and the event's own data, whether any object of a pg_beacon project was
//! involved, and returns when none was (every DDL of the database pays that one query).
//! Then, per project involved, as that project's owner role, it compares the catalog with
//! what exists and repairs the difference:
//!
//! - a continuous query any of whose relations is gone (its source, its view, the guard
//!   view over the columns it reads, its state or delta table) is dropped whole, NOTICE;
//! - a materialized view that is gone loses its catalog entry, NOTICE;
//! - a collection whose table is gone loses its catalog entries and generated functions,
//!   and its subscriptions end, NOTICE; after an `ALTER TABLE`, a collection whose table
//!   is gone was renamed or moved away, which is refused (the statement fails);
//! - a field whose column is gone is forgotten, so that a later event carrying the
//!   property adds the column again; a column renamed by hand takes its field along, and
//!   a column whose type changed by hand gets its new type in the catalog;
//! - a subscription whose filter names a column the table no longer has ends, NOTICE;
//! - capture and stream triggers dropped by hand are generated again.
//!
//! DDL that pg_beacon's own code runs (inside an `AsOwner` guard: `drop_collection`,
//! `drop_continuous_query`, `drop_project`, `regenerate`, schema evolution) and extension
//! scripts are left alone: that code keeps the catalog itself. A project whose schema is
//! itself being dropped is left to `drop_project`. Nothing here executes text it was
//! given: names are looked up in the catalog and quoted, and the functions run with
//! pg_beacon's pinned settings.

use super::{dependents, drop_dependents, forget_collection};
use crate::collect::infer::ColumnType;
use crate::collect::schema::table;
use crate::cq::plan::Mode;
use crate::error::{report, BeaconError, BeaconResult};
use crate::names::quote_ident;
use crate::security::{catalog, in_own_work, AsOwner};
use crate::spi::{exists, run, text_pairs, texts};
use pgrx::prelude::*;

/// Whether this DDL is none of the triggers' business.
fn left_alone() -> bool {
    // SAFETY: a plain backend-local flag of extension.c, read on the backend's only thread
    in_own_work() || unsafe { pg_sys::creating_extension }
}

/// pg_beacon's catalog is there (not being dropped with the extension).
fn catalog_present() -> BeaconResult<bool> {
    exists(
        "SELECT pg_catalog.to_regclass('beacon.project') IS NOT NULL
            AND pg_catalog.to_regclass('beacon.collection') IS NOT NULL
            AND pg_catalog.to_regclass('beacon.field') IS NOT NULL
            AND pg_catalog.to_regclass('beacon.continuous_query') IS NOT NULL
            AND pg_catalog.to_regclass('beacon.subscription') IS NOT NULL
            AND pg_catalog.to_regclass('beacon.materialized_view') IS NOT NULL",
        &[],
    )
}

/// Keeps the projects that are in the catalog and whose schema belongs to their owner role.
fn catalogued(projects: Vec<String>) -> BeaconResult<Vec<String>> {
    if projects.is_empty() || !catalog_present()? {
        return Ok(Vec::new());
    }
    texts(
        "SELECT p.name FROM beacon.project p
           JOIN pg_catalog.pg_namespace n ON n.nspname = p.name
           JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
          WHERE p.name = ANY ($1) AND r.rolname = pg_catalog.concat('beacon_', p.name, '_owner')
          ORDER BY p.name",
        &[projects.into()],
    )
}

/// Refuses the statement when a collection of the project lost a system column or its
/// type: every insert names `_time` and `_user`, and everything reads `_id`.
fn require_system_columns(project: &str) -> BeaconResult<()> {
    let broken = catalog(|| {
        texts(
            "SELECT c.name FROM beacon.collection c
              WHERE c.project = $1 AND c.name <> '_users'
                AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.project, c.name)) IS NOT NULL
                AND (SELECT count(*) FROM pg_catalog.pg_attribute a
                      WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.project, c.name))
                        AND a.attnum > 0 AND NOT a.attisdropped
                        AND (a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod))
                            IN (('_id', 'bigint'), ('_time', 'timestamp with time zone'), ('_user', 'text'))) < 3
              ORDER BY c.name",
            &[project.into()],
        )
    })?;
    match broken.first() {
        Some(collection) => Err(BeaconError::Unsupported(format!(
            "the system columns _id bigint, _time timestamptz and _user text of collection \
             {}.{} cannot be dropped, renamed or retyped: pg_beacon writes and reads them",
            quote_ident(project),
            quote_ident(collection)
        ))),
        None => Ok(()),
    }
}

fn relation_exists(relation: &str) -> BeaconResult<bool> {
    exists(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[relation.into()],
    )
}

fn on_sql_drop() -> BeaconResult<()> {
    if left_alone() {
        return Ok(());
    }
    // schemas of projects (owned by a role named after them) in which something was
    // dropped; a schema dropped itself is not in pg_namespace any more
    let involved = texts(
        "SELECT DISTINCT n.nspname::pg_catalog.text
           FROM pg_catalog.pg_event_trigger_dropped_objects() d
           JOIN pg_catalog.pg_namespace n ON n.nspname = d.schema_name
           JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
          WHERE r.rolname = pg_catalog.concat('beacon_', n.nspname, '_owner')",
        &[],
    )?;
    for project in catalogued(involved)? {
        after_drop(&project)?;
    }
    Ok(())
}

/// (name, query, mode) of the project's continuous queries.
fn queries_of(project: &str) -> BeaconResult<Vec<(String, String, Mode)>> {
    catalog(|| {
        Ok(Spi::connect(|client| {
            client
                .select(
                    "SELECT name, query, mode FROM beacon.continuous_query WHERE project = $1
                      ORDER BY name",
                    None,
                    &[project.into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        Mode::parse(&row.get::<String>(3)?.unwrap_or_default())
                            .unwrap_or(Mode::Async),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })?)
    })
}

/// Collections of the project (its `_users` table aside, which is the project's own)
/// whose table is gone.
fn collections_without_table(project: &str) -> BeaconResult<Vec<String>> {
    catalog(|| {
        texts(
            "SELECT c.name FROM beacon.collection c
              WHERE c.project = $1 AND c.name <> '_users'
                AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', c.project, c.name)) IS NULL
              ORDER BY c.name",
            &[project.into()],
        )
    })
}

fn after_drop(project: &str) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    require_system_columns(project)?;
    // continuous queries missing a relation of theirs, all together (see drop_queries)
    let mut broken = Vec::new();
    for (name, query, mode) in queries_of(project)? {
        let Ok(plan) = crate::cq::plan_of(project, &name, &query, mode) else {
            continue;
        };
        let mut needed: Vec<String> = plan
            .tables()
            .iter()
            .map(|t| format!("{}.{}", quote_ident(project), quote_ident(t)))
            .collect();
        needed.extend(plan.owned_relations());
        for relation in needed {
            if !relation_exists(&relation)? {
                notice!(
                    "dropping continuous query {project}.{name}: {relation}, which it needs, was dropped"
                );
                broken.push(name.clone());
                break;
            }
        }
    }
    if !broken.is_empty() {
        crate::cq::drop_queries(project, &broken)?;
    }
    for name in catalog(|| {
        texts(
            "SELECT m.name FROM beacon.materialized_view m
              WHERE m.project = $1
                AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', m.project, m.name)) IS NULL
              ORDER BY m.name",
            &[project.into()],
        )
    })? {
        notice!("materialized view {project}.{name} was dropped: its catalog entry is removed");
        crate::mv::drop_view(project, &name)?;
    }
    crate::documents::drop_broken(project)?;
    crate::analysis::continuous::drop_broken(project)?;
    for collection in collections_without_table(project)? {
        notice!(
            "collection {project}.{collection} was dropped: its fields, subscriptions and \
             generated functions are removed (collecting into it creates it anew)"
        );
        let dependents = dependents(project, &collection)?;
        drop_dependents(project, &collection, &dependents)?;
        crate::cq::install_capture(project, &collection)?;
        crate::stream::install_trigger(project, &collection)?;
        forget_collection(project, &collection)?;
    }
    for (collection, property) in catalog(|| {
        text_pairs(
            "DELETE FROM beacon.field f
              WHERE f.project = $1
                AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', f.project, f.collection)) IS NOT NULL
                AND NOT EXISTS (
                    SELECT 1 FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', f.project, f.collection))
                       AND a.attname = f.column_name AND a.attnum > 0 AND NOT a.attisdropped)
             RETURNING f.collection, f.property",
            &[project.into()],
        )
    })? {
        notice!(
            "property \"{property}\" of collection {project}.{collection} lost its column: \
             a later event carrying it adds the column again"
        );
    }
    end_stale_subscriptions(project)?;
    regenerate_missing_triggers(project)
}

/// Ends the subscriptions whose filter names a column their collection no longer has.
fn end_stale_subscriptions(project: &str) -> BeaconResult<()> {
    for collection in catalog(|| {
        texts(
            "SELECT DISTINCT s.collection FROM beacon.subscription s
              WHERE s.project = $1
                AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.project, s.collection)) IS NOT NULL
              ORDER BY 1",
            &[project.into()],
        )
    })? {
        let mut stale = Vec::new();
        for (channel, filter) in crate::stream::subscriptions_of(project, &collection)? {
            let Some(filter) = filter else { continue };
            if !crate::stream::filter_still_applies(project, &collection, &filter)? {
                notice!(
                    "ending subscription {channel} of collection {project}.{collection}: its \
                     filter names a column the collection no longer has ({filter})"
                );
                stale.push(channel);
            }
        }
        if !stale.is_empty() {
            crate::stream::end_subscriptions(project, &collection, &stale)?;
        }
    }
    Ok(())
}

/// Generates again the capture and stream triggers (or their functions) someone dropped.
fn regenerate_missing_triggers(project: &str) -> BeaconResult<()> {
    let missing = |sql: &str| catalog(|| texts(sql, &[project.into()]));
    for source in missing(&format!(
        "SELECT DISTINCT s.source FROM beacon.continuous_query q,
                pg_catalog.unnest({}) s (source)
          WHERE q.project = $1
            AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', q.project, s.source)) IS NOT NULL
            AND (SELECT count(*) FROM pg_catalog.pg_trigger t
                  WHERE t.tgrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', q.project, s.source))
                    AND t.tgname IN ('_beacon_cq_insert', '_beacon_cq_update', '_beacon_cq_delete',
                                     '_beacon_cq_truncate')) < 4
          ORDER BY 1",
        crate::cq::query_tables_sql("q")?
    ))? {
        crate::cq::install_capture(project, &source)?;
    }
    for collection in missing(
        "SELECT DISTINCT s.collection FROM beacon.subscription s
          WHERE s.project = $1
            AND pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.project, s.collection)) IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                  WHERE t.tgrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', s.project, s.collection))
                    AND t.tgname = '_beacon_stream')
          ORDER BY 1",
    )? {
        crate::stream::install_trigger(project, &collection)?;
    }
    Ok(())
}

fn on_alter_table() -> BeaconResult<()> {
    if left_alone() {
        return Ok(());
    }
    // tables owned by a project's owner role, wherever they are now (a table moved to
    // another schema keeps its owner): project, schema, table, and the column when the
    // command was about one (RENAME COLUMN)
    let commands: Vec<(String, String, String, i32)> = Spi::connect(|client| {
        client
            .select(
                "SELECT DISTINCT p.nspname::pg_catalog.text, n.nspname::pg_catalog.text,
                        c.relname::pg_catalog.text,
                        CASE WHEN d.object_type = 'table column' THEN d.objsubid ELSE 0 END
                   FROM pg_catalog.pg_event_trigger_ddl_commands() d
                   JOIN pg_catalog.pg_class c ON c.oid = d.objid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_catalog.pg_namespace p ON p.nspowner = c.relowner
                   JOIN pg_catalog.pg_roles r ON r.oid = p.nspowner
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND r.rolname = pg_catalog.concat('beacon_', p.nspname, '_owner')
                  ORDER BY 1, 2, 3, 4",
                None,
                &[],
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<i32>(4)?.unwrap_or(0),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })?;
    let projects: Vec<String> = commands.iter().map(|c| c.0.clone()).collect();
    for project in catalogued(projects)? {
        let _owner = AsOwner::for_project(&project)?;
        // a table of the project that is no collection under its name now, while a
        // collection lost its table: this command renamed or moved that table (a catalog
        // left inconsistent by an older version does not block DDL on the collections)
        let mut elsewhere = false;
        for (_, schema, relation, _) in commands.iter().filter(|c| c.0 == project) {
            elsewhere |= *schema != project
                || !crate::collect::schema::collection_exists(&project, relation)?;
        }
        let missing = if elsewhere {
            collections_without_table(&project)?
        } else {
            Vec::new()
        };
        require_system_columns(&project)?;
        if let Some(collection) = missing.first() {
            return Err(BeaconError::Unsupported(format!(
                "renaming or moving the table of collection {}.{} is not supported: pg_beacon \
                 finds a collection by its table's name (create a new collection and copy the \
                 events, then use beacon.drop_collection)",
                quote_ident(&project),
                quote_ident(collection)
            )));
        }
        for (_, schema, relation, column) in commands.iter().filter(|c| c.0 == project) {
            if *schema != project || !crate::collect::schema::collection_exists(&project, relation)?
            {
                continue;
            }
            if *column > 0 {
                follow_renamed_column(&project, relation, *column)?;
            }
            follow_types(&project, relation)?;
        }
        end_stale_subscriptions(&project)?;
    }
    Ok(())
}

/// After `RENAME COLUMN`: the field whose column is gone now names the column at
/// `attnum`. A column a continuous query reads may not be renamed: its stored query, from
/// which capture and compaction are generated, names the column.
fn follow_renamed_column(project: &str, collection: &str, attnum: i32) -> BeaconResult<()> {
    let relation = table(project, collection);
    let new_name = Spi::get_one_with_args::<String>(
        "SELECT a.attname::pg_catalog.text FROM pg_catalog.pg_attribute a
          WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum = $2 AND NOT a.attisdropped",
        &[relation.as_str().into(), (attnum as i16).into()],
    )?;
    let Some(new_name) = new_name else {
        return Ok(());
    };
    if exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                          JOIN pg_catalog.pg_rewrite w ON w.oid = d.objid
                          JOIN pg_catalog.pg_class v ON v.oid = w.ev_class
                         WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                           AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                           AND d.refobjid = pg_catalog.to_regclass($1) AND d.refobjsubid = $2
                           AND v.relnamespace = pg_catalog.to_regnamespace($3)
                           AND v.relname ~ '^_cq_.*_columns$')",
        &[
            relation.as_str().into(),
            attnum.into(),
            quote_ident(project).as_str().into(),
        ],
    )? {
        return Err(BeaconError::Unsupported(format!(
            "renaming column \"{new_name}\" of {relation} is not supported: continuous queries \
             read it (drop them first, see beacon.continuous_queries)"
        )));
    }
    // the one field whose column is gone is the renamed one (a column no field names,
    // one a superuser added, takes no field along)
    let gone = catalog(|| {
        texts(
            "SELECT f.property FROM beacon.field f
              WHERE f.project = $1 AND f.collection = $2
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = pg_catalog.to_regclass($3)
                                   AND a.attname = f.column_name AND a.attnum > 0 AND NOT a.attisdropped)",
            &[project.into(), collection.into(), relation.as_str().into()],
        )
    })?;
    let [property] = gone.as_slice() else {
        return Ok(());
    };
    catalog(|| {
        run(
            "UPDATE beacon.field SET column_name = $4 WHERE project = $1 AND collection = $2 AND property = $3",
            &[
                project.into(),
                collection.into(),
                property.as_str().into(),
                new_name.as_str().into(),
            ],
        )
    })
}

/// After `ALTER COLUMN … TYPE`: the catalog records the column's new type, in pg_beacon's
/// spelling when it is a type pg_beacon writes (else values for it are rejected, see
/// `collect::schema::Field`).
fn follow_types(project: &str, collection: &str) -> BeaconResult<()> {
    let relation = table(project, collection);
    let columns = catalog(|| {
        text_pairs(
            "SELECT f.property, pg_catalog.format_type(a.atttypid, a.atttypmod) || '|' || f.type
               FROM beacon.field f
               JOIN pg_catalog.pg_attribute a ON a.attrelid = pg_catalog.to_regclass($3)
                AND a.attname = f.column_name AND a.attnum > 0 AND NOT a.attisdropped
              WHERE f.project = $1 AND f.collection = $2",
            &[project.into(), collection.into(), relation.as_str().into()],
        )
    })?;
    for (property, types) in columns {
        let Some((actual, recorded)) = types.split_once('|') else {
            continue;
        };
        let (now, before) = (ColumnType::from_sql(actual), ColumnType::from_sql(recorded));
        if now == before && (now.is_some() || actual == recorded) {
            continue;
        }
        let spelled = now
            .map(|t| t.sql().to_string())
            .unwrap_or(actual.to_string());
        catalog(|| {
            run(
                "UPDATE beacon.field SET type = $4 WHERE project = $1 AND collection = $2 AND property = $3",
                &[
                    project.into(),
                    collection.into(),
                    property.as_str().into(),
                    spelled.as_str().into(),
                ],
            )
        })?;
    }
    Ok(())
}

/// The `sql_drop` event trigger's function (sql/lifecycle.sql).
#[pg_extern(sql = false)]
fn _on_sql_drop() {
    report(on_sql_drop())
}

/// The `ddl_command_end` event trigger's function for `ALTER TABLE` (sql/lifecycle.sql).
#[pg_extern(sql = false)]
fn _on_alter_table() {
    report(on_alter_table())
}

extension_sql_file!(
    "../../sql/lifecycle.sql",
    name = "lifecycle",
    requires = ["bootstrap"]
);
