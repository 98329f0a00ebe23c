//! One trigger function per source table, regenerated whenever a query on it is created
//! or dropped, serving every continuous query on that table: one statement-level trigger
//! per event (PostgreSQL allows transition tables only on single-event triggers), so a
//! 1,000-row INSERT runs each query's aggregation once, over its transition table.
//!
//! PL/pgSQL, because it keeps each statement's plan for the session. The function is
//! SECURITY DEFINER (writers need no rights on the hidden tables) with a fixed
//! search_path, and its `SET TimeZone` clause makes every `set_config('TimeZone', …,
//! true)` inside it local to the call: each query computes its keys in its own time zone
//! and the writer's setting is untouched afterwards. The other settings that change what
//! an expression computes are fixed by its SET clauses too (see `settings`).

use super::plan::{Event, Mode, Rows};
use super::{settings, typed_plan_of};
use crate::error::BeaconResult;
use crate::generated::{self, Kind};
use crate::names::{column_for_property, dollar_quote, quote_ident, quote_literal};
use crate::security::function_settings;
use crate::spi::{exists, run};
use pgrx::prelude::*;

const EVENTS: [(&str, &str, &str); 4] = [
    ("insert", "INSERT", "REFERENCING NEW TABLE AS beacon_new"),
    (
        "update",
        "UPDATE",
        "REFERENCING OLD TABLE AS beacon_old NEW TABLE AS beacon_new",
    ),
    ("delete", "DELETE", "REFERENCING OLD TABLE AS beacon_old"),
    ("truncate", "TRUNCATE", ""),
];

fn function_name(project: &str, source: &str) -> String {
    let name = column_for_property(&format!("_cq_capture_{source}"), |_| false);
    format!("{}.{}", quote_ident(project), quote_ident(&name))
}

fn trigger_name(event: &str) -> String {
    format!("_beacon_cq_{event}")
}

/// (Re)creates the capture function and triggers of `source` from the catalog, or removes
/// them when no query reads it any more. Runs as the owner.
pub fn install(project: &str, source: &str) -> BeaconResult<()> {
    let table = format!("{}.{}", quote_ident(project), quote_ident(source));
    let function = function_name(project, source);
    let queries: Vec<(String, String, String, String)> = crate::security::catalog(|| {
        let sql = format!(
            "SELECT name, query, mode, time_zone FROM beacon.continuous_query q
              WHERE project = $1 AND $2 = ANY ({}) ORDER BY name",
            super::tables::query_tables_sql("q")?
        );
        Ok(Spi::connect(|client| {
            client
                .select(&sql, None, &[project.into(), source.into()])?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<String>(4)?.unwrap_or_default(),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })?)
    })?;
    // a table dropped with CASCADE took its triggers along: only the function is left
    let table_exists = exists(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[table.as_str().into()],
    )?;
    if queries.is_empty() || !table_exists {
        if table_exists {
            for (event, _, _) in EVENTS {
                if crate::spi::has_trigger(&table, &trigger_name(event))? {
                    run(
                        &format!("DROP TRIGGER IF EXISTS {} ON {table}", trigger_name(event)),
                        &[],
                    )?;
                }
            }
        }
        if crate::spi::present(&function, true)? {
            run(&format!("DROP FUNCTION IF EXISTS {function}()"), &[])?;
        }
        return generated::forget(Kind::CqCapture, project, source);
    }

    let mut inserted = String::new();
    let mut deleted = String::new();
    let mut updated = String::new();
    let mut truncated = String::new();
    // a join's locks come first, shared by the queries that join the same way
    let mut locks: [Vec<String>; 3] = Default::default();
    // the function starts in the first query's zone (its SET clause), so that the common
    // case of one zone sets none per statement; a query's zone is set only where it
    // differs from the one before (the insert, update and delete branches run the same
    // queries in the same order)
    let start_zone = queries
        .first()
        .map_or_else(|| "UTC".to_string(), |(_, _, _, zone)| zone.clone());
    let mut current_zone = start_zone.clone();
    for (name, query, mode, time_zone) in &queries {
        let plan = typed_plan_of(
            project,
            name,
            query,
            Mode::parse(mode).unwrap_or(Mode::Async),
        )?;
        let zone = format!(
            "    PERFORM pg_catalog.set_config('TimeZone', {}, true);\n",
            quote_literal(time_zone)
        );
        let same_zone = *time_zone == current_zone;
        current_zone = time_zone.clone();
        let statements_of = |statements: Vec<String>, set_zone: bool| -> String {
            let mut text = if set_zone {
                zone.clone()
            } else {
                String::new()
            };
            for statement in statements {
                text.push_str(&format!("    {statement};\n"));
            }
            text
        };
        let block = |statements: Vec<String>| statements_of(statements, !same_zone);
        if plan.is_join() {
            for (i, (event, text)) in [
                (Event::Insert, &mut inserted),
                (Event::Update, &mut updated),
                (Event::Delete, &mut deleted),
            ]
            .into_iter()
            .enumerate()
            {
                for statement in plan.join_locks(source, event) {
                    if !locks[i].contains(&statement) {
                        locks[i].push(statement);
                    }
                }
                text.push_str(&block(plan.join_capture(source, event)));
            }
            // the truncate branch runs only some queries' statements: always its own zone
            truncated.push_str(&statements_of(plan.join_truncate(), true));
            continue;
        }
        inserted.push_str(&block(plan.capture(Rows::Inserted)));
        deleted.push_str(&block(plan.capture(Rows::Deleted)));
        updated.push_str(&block(plan.capture_update()));
        for statement in plan.truncate() {
            truncated.push_str(&format!("    {statement};\n"));
        }
    }
    let locked = |i: usize, text: &str| -> String {
        let mut out: String = locks[i].iter().map(|s| format!("    {s};\n")).collect();
        out.push_str(text);
        out
    };
    let inserted = locked(0, &inserted);
    let updated = locked(1, &updated);
    let deleted = locked(2, &deleted);
    let declare = if locks.iter().all(Vec::is_empty) {
        String::new()
    } else {
        format!(
            "DECLARE\n  {}\n",
            super::edge_locks::REPEATABLE_READ_DECLARATION
        )
    };
    let body = format!(
        "{declare}BEGIN\n  IF TG_OP = 'INSERT' THEN\n{inserted}  ELSIF TG_OP = 'UPDATE' THEN\n{updated}  \
         ELSIF TG_OP = 'DELETE' THEN\n{deleted}  ELSE\n{truncated}  END IF;\n  RETURN NULL;\nEND"
    );
    run(
        &format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
             SECURITY DEFINER {} {} AS {}",
            function_settings(),
            settings::set_clauses(&start_zone),
            dollar_quote(&generated::stamp(&body))
        ),
        &[],
    )?;
    for (event, sql_event, referencing) in EVENTS {
        let trigger = trigger_name(event);
        if !exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger
                             WHERE tgrelid = $1::regclass AND tgname = $2)",
            &[table.as_str().into(), trigger.as_str().into()],
        )? {
            run(
                &format!(
                    "CREATE TRIGGER {trigger} AFTER {sql_event} ON {table} {referencing} \
                     FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
                ),
                &[],
            )?;
        }
    }
    generated::record(Kind::CqCapture, project, source)
}
