//! The generated objects of an analysis: tables, functions, captures, and creation.

use super::{Analysis, Kind, Mode};
use crate::analysis::continuous_sql as csql;
use crate::cq::tables::{check_table_kind, refuse_inheritance};
use crate::error::{BeaconError, BeaconResult};
use crate::names::{dollar_quote, quote_ident};
use crate::project::require_project;
use crate::security::{catalog, function_settings, role_name, AsOwner, Level};
use crate::spi::{exists, run};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

fn settings_clauses() -> String {
    format!(
        "{} {}",
        function_settings(),
        crate::cq::settings::set_clauses("UTC")
    )
}

pub(super) fn install_functions(a: &Analysis) -> BeaconResult<()> {
    let names = &a.names;
    let settings = settings_clauses();
    let entering = &a.sources[0].table;
    for (suffix, args, body) in [
        (
            "recompute",
            "users text[]",
            csql::recompute_body(
                names,
                &a.recompute("e._user OPERATOR(pg_catalog.=) ANY (users)"),
            ),
        ),
        ("refresh", "batch integer", csql::refresh_body(names)),
        ("rebuild_all", "", csql::rebuild_all_body(names, entering)),
    ] {
        run(
            &format!(
                "CREATE OR REPLACE FUNCTION {}({args}) RETURNS bigint LANGUAGE plpgsql \
                 SECURITY DEFINER {settings} AS {}",
                names.function(suffix),
                dollar_quote(&crate::generated::stamp(&body))
            ),
            &[],
        )?;
        run(
            &format!(
                "REVOKE ALL ON FUNCTION {}({}) FROM PUBLIC",
                names.function(suffix),
                args.split(' ').nth(1).unwrap_or("")
            ),
            &[],
        )?;
    }
    let body = csql::capture_body(names, a.mode == Mode::Immediate);
    run(
        &format!(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql \
             SECURITY DEFINER {settings} AS {}",
            names.function("capture"),
            dollar_quote(&crate::generated::stamp(&body))
        ),
        &[],
    )?;
    run(
        &format!(
            "REVOKE ALL ON FUNCTION {}() FROM PUBLIC",
            names.function("capture")
        ),
        &[],
    )
}

pub(super) const EVENTS: [(&str, &str, &str); 4] = [
    ("insert", "INSERT", "REFERENCING NEW TABLE AS beacon_new"),
    (
        "update",
        "UPDATE",
        "REFERENCING OLD TABLE AS beacon_old NEW TABLE AS beacon_new",
    ),
    ("delete", "DELETE", "REFERENCING OLD TABLE AS beacon_old"),
    ("truncate", "TRUNCATE", ""),
];

pub(super) fn install_captures(a: &Analysis) -> BeaconResult<()> {
    for collection in a.collections() {
        let rel = crate::analysis::table(a.project(), &collection);
        for (event, sql_event, referencing) in EVENTS {
            let trigger = format!("_ca_{}_{event}", a.names.name);
            if !crate::spi::has_trigger(&rel, &trigger)? {
                run(
                    &format!(
                        "CREATE TRIGGER {} AFTER {sql_event} ON {rel} {referencing} \
                         FOR EACH STATEMENT EXECUTE FUNCTION {}()",
                        quote_ident(&trigger),
                        a.names.function("capture")
                    ),
                    &[],
                )?;
            }
        }
    }
    Ok(())
}

pub(super) fn lock_tables(project: &str, collections: &[String]) -> BeaconResult<()> {
    for c in collections {
        run(
            &format!(
                "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                crate::analysis::table(project, c)
            ),
            &[],
        )?;
    }
    Ok(())
}

/// Creates a resolved analysis: its tables, functions and captures, its catalog entry,
/// and its state from the events already there. The caller checked admin.
pub(super) fn install_new(mut a: Analysis, definition: Value) -> BeaconResult<()> {
    let project = a.project().to_string();
    let collections = a.collections();
    for c in &collections {
        crate::project::adopt_table(&project, c)?;
    }
    let _owner = AsOwner::for_project(&project)?;
    require_project(&project)?;
    if catalog(|| {
        exists(
            "SELECT EXISTS (SELECT 1 FROM beacon.continuous_analysis WHERE project = $1 AND name = $2)",
            &[project.as_str().into(), a.names.name.as_str().into()],
        )
    })? {
        return Err(BeaconError::AlreadyExists(format!(
            "continuous analysis \"{}\" already exists in project \"{project}\"",
            a.names.name
        )));
    }
    for candidate in a.names.relations() {
        if exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
                              ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2)",
            &[project.as_str().into(), candidate.as_str().into()],
        )? {
            return Err(BeaconError::AlreadyExists(format!(
                "relation \"{candidate}\" already exists in project \"{project}\""
            )));
        }
    }
    for c in &collections {
        check_table_kind(&project, c)?;
    }
    // writers wait from here to commit: every change is either in the backfill or
    // captured, never neither
    lock_tables(&project, &collections)?;
    for c in &collections {
        refuse_inheritance(&project, c)?;
    }
    // the decisive check of each condition, in the owner's role and the settings the
    // generated functions run with
    for source in &mut a.sources {
        if let Some(condition) = &source.condition {
            source.condition = Some(crate::stream::checked_condition(
                &project,
                &source.collection,
                condition,
            )?);
        }
    }
    for c in &collections {
        let rel = crate::analysis::table(&project, c);
        if !crate::cq::leads_an_index(&rel, "_user")? {
            notice!(
                "continuous analysis \"{}\": creating an index on {c} (_user, _time), which \
                 rebuilding a user's state reads by",
                a.names.name
            );
            run(&format!("CREATE INDEX ON {rel} (_user, _time)"), &[])?;
        }
    }
    let names = &a.names;
    let state = match a.kind {
        Kind::Funnel(_) => csql::funnel_table(&names.state()),
        Kind::Retention(_) => csql::retention_table(&names.state()),
    };
    run(&state, &[])?;
    // the funnel's reads find everything they need in the indexes (once vacuumed)
    let covering = match a.kind {
        Kind::Funnel(_) => "u, b, reached, dts",
        Kind::Retention(_) => "",
    };
    for index in csql::state_indexes(&names.state(), covering) {
        run(&index, &[])?;
    }
    run(
        &format!(
            "CREATE TABLE {} (u text NOT NULL, _at timestamptz NOT NULL DEFAULT pg_catalog.now())",
            names.pending()
        ),
        &[],
    )?;
    run(
        &format!(
            "CREATE TABLE {} (u text PRIMARY KEY, version bigint NOT NULL)",
            names.users()
        ),
        &[],
    )?;
    let roles = [Level::Read, Level::Write, Level::Admin]
        .map(|level| quote_ident(&role_name(&project, level)))
        .join(", ");
    for relation in [names.state(), names.pending(), names.users()] {
        run(
            &format!("REVOKE ALL ON {relation} FROM PUBLIC, {roles}"),
            &[],
        )?;
    }
    install_functions(&a)?;
    let layout = a.layout();
    catalog(|| {
        run(
            "INSERT INTO beacon.continuous_analysis (project, name, kind, definition, layout, collections, mode)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                project.as_str().into(),
                a.names.name.as_str().into(),
                layout["kind"].as_str().unwrap_or("funnel").into(),
                JsonB(definition).into(),
                JsonB(layout.clone()).into(),
                collections.clone().into(),
                a.mode.as_str().into(),
            ],
        )
    })?;
    install_captures(&a)?;
    let started = std::time::Instant::now();
    let entries =
        Spi::get_one::<i64>(&format!("SELECT {}()", names.function("rebuild_all")))?.unwrap_or(0);
    notice!(
        "continuous analysis \"{}\": {entries} entering events in {:.1} s",
        a.names.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
