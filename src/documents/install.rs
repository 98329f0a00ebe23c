//! The generated objects of a view: its functions, the capture triggers of its tables,
//! its indexes, and who may use what.

use super::build::Layout;
use super::{functions, relation, spec, Mode, Stored};
use crate::cq::settings;
use crate::error::BeaconResult;
use crate::names::{dollar_quote, quote_ident};
use crate::security::{function_settings, role_name, Level};
use crate::spi::run;
use pgrx::prelude::*;

fn settings_clauses() -> String {
    format!("{} {}", function_settings(), settings::set_clauses("UTC"))
}

/// Creates or replaces the generated functions of a view (not the captures).
pub fn install_functions(stored: &Stored, key_types: &[(String, String)]) -> BeaconResult<()> {
    let layout = &stored.layout;
    let condition = stored.condition.as_deref();
    let settings = settings_clauses();
    let returns: Vec<String> = key_types
        .iter()
        .map(|(k, t)| format!("{} {t}", quote_ident(k)))
        .collect();
    run(
        &format!(
            "CREATE OR REPLACE FUNCTION {}() RETURNS TABLE ({}, doc pg_catalog.jsonb) LANGUAGE sql \
             STABLE SECURITY DEFINER {settings} AS {}",
            layout.qualified_function("pending_docs"),
            returns.join(", "),
            dollar_quote(&layout.pending_docs(condition))
        ),
        &[],
    )?;
    for (suffix, args, body) in [
        (
            "refresh",
            "batch integer",
            functions::refresh_body(layout, condition),
        ),
        (
            "rebuild_all",
            "",
            functions::rebuild_all_body(layout, condition),
        ),
    ] {
        run(
            &format!(
                "CREATE OR REPLACE FUNCTION {}({args}) RETURNS bigint LANGUAGE plpgsql \
                 SECURITY DEFINER {settings} AS {}",
                layout.qualified_function(suffix),
                dollar_quote(&crate::generated::stamp(&body))
            ),
            &[],
        )?;
    }
    Ok(())
}

/// Creates or replaces the capture function and triggers of every table of the view.
pub fn install_captures(stored: &Stored) -> BeaconResult<()> {
    let layout = &stored.layout;
    for table in layout.spec.tables() {
        let function = layout.capture_function(&table);
        let body = functions::capture_body(
            layout,
            &stored.hashes,
            stored.condition.as_deref(),
            stored.mode == Mode::Immediate,
            &table,
        );
        run(
            &format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
                 SECURITY DEFINER {} AS {}",
                settings_clauses(),
                dollar_quote(&crate::generated::stamp(&body))
            ),
            &[],
        )?;
        let rel = relation(&layout.project, &table);
        for (event, sql_event, referencing) in [
            ("insert", "INSERT", "REFERENCING NEW TABLE AS beacon_new"),
            (
                "update",
                "UPDATE",
                "REFERENCING OLD TABLE AS beacon_old NEW TABLE AS beacon_new",
            ),
            ("delete", "DELETE", "REFERENCING OLD TABLE AS beacon_old"),
            ("truncate", "TRUNCATE", ""),
        ] {
            let trigger = layout.trigger_name(event);
            if !crate::spi::has_trigger(&rel, &trigger)? {
                run(
                    &format!(
                        "CREATE TRIGGER {} AFTER {sql_event} ON {rel} {referencing} \
                         FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                        quote_ident(&trigger)
                    ),
                    &[],
                )?;
            }
        }
    }
    Ok(())
}

/// The documents table and the pending table are pg_beacon's alone; the view and its
/// pending-documents function are for the project's readers.
pub fn hide(layout: &Layout) -> BeaconResult<()> {
    let roles = [Level::Read, Level::Write, Level::Admin]
        .map(|level| quote_ident(&role_name(&layout.project, level)))
        .join(", ");
    for relation in [
        layout.docs_table(),
        layout.pending_table(),
        layout.source_view(),
    ] {
        run(
            &format!("REVOKE ALL ON {relation} FROM PUBLIC, {roles}"),
            &[],
        )?;
    }
    let reader = quote_ident(&role_name(&layout.project, Level::Read));
    let pending_docs = format!("{}()", layout.qualified_function("pending_docs"));
    run(
        &format!("REVOKE ALL ON FUNCTION {pending_docs} FROM PUBLIC"),
        &[],
    )?;
    run(
        &format!("GRANT EXECUTE ON FUNCTION {pending_docs} TO {reader}"),
        &[],
    )?;
    for f in ["refresh(integer)", "rebuild_all()"] {
        let (suffix, args) = f.split_once('(').unwrap_or((f, ")"));
        run(
            &format!(
                "REVOKE ALL ON FUNCTION {}({args} FROM PUBLIC",
                layout.qualified_function(suffix)
            ),
            &[],
        )?;
    }
    run(
        &format!("REVOKE ALL ON {} FROM PUBLIC, {roles}", layout.view()),
        &[],
    )?;
    run(
        &format!("GRANT SELECT ON {} TO {reader}", layout.view()),
        &[],
    )
}

/// Locks the view's tables in name order (as every lock on them is taken).
pub fn lock_tables(project: &str, tables: &[String], mode: &str) -> BeaconResult<()> {
    let mut sorted = tables.to_vec();
    sorted.sort();
    for t in sorted {
        run(
            &format!("LOCK TABLE {} IN {mode} MODE", relation(project, &t)),
            &[],
        )?;
    }
    Ok(())
}

pub fn indexes(layout: &Layout) -> BeaconResult<()> {
    for index in &layout.spec.indexes {
        let definition = match index {
            spec::Index::Gin => "USING gin (doc pg_catalog.jsonb_path_ops)".to_string(),
            spec::Index::Path(steps) => {
                let mut expr = "doc".to_string();
                for (key, as_text) in steps {
                    expr.push_str(if *as_text { "->>" } else { "->" });
                    expr.push_str(&crate::names::quote_literal(key));
                }
                format!("(({expr}))")
            }
        };
        run(
            &format!("CREATE INDEX ON {} {definition}", layout.docs_table()),
            &[],
        )?;
    }
    Ok(())
}

/// Says (NOTICE) which lookup columns have no index (a change of a looked-up row finds
/// its parents by them, and a rebuild its children), and creates them when asked to.
pub fn advise_indexes(layout: &Layout, create: bool) -> BeaconResult<()> {
    let spec = &layout.spec;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for (i, lookup) in spec.lookups.iter().enumerate() {
        let (parent_column, own) = &lookup.on[0];
        for pair in [
            (lookup.table.clone(), own.clone()),
            (
                spec.table_at(spec.parent_position(i)).to_string(),
                parent_column.clone(),
            ),
        ] {
            if !wanted.contains(&pair) {
                wanted.push(pair);
            }
        }
    }
    for (table, column) in wanted {
        let rel = relation(&layout.project, &table);
        if crate::cq::leads_an_index(&rel, &column)? {
            continue;
        }
        let ddl = format!("CREATE INDEX ON {rel} ({})", quote_ident(&column));
        if create {
            run(&ddl, &[])?;
        } else {
            notice!(
                "document view \"{}\": no index on {table} ({column}); changes will scan \
                 the table to find the documents they touch (create_indexes => true creates it: {ddl})",
                layout.name
            );
        }
    }
    Ok(())
}
