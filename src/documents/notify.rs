//! `beacon.subscribe_documents`: every committed change of a view's documents NOTIFYed
//! as `{"view", "key", "op": "upsert" | "delete", "doc"}` (without `doc`, and with
//! `"truncated": true`, when over NOTIFY's limit).
//!
//! A deferred row trigger on the hidden documents table, regenerated from the catalog
//! when a subscription comes or goes (none without subscriptions). Maintenance writes a
//! document only when it changed, so a notification is a change; it is sent at commit, as
//! committed, once per transaction (see `body`). A subscription's filter is a condition on the document
//! (`doc->>'order_status' = 'shipped'`), checked by the same policy as stream filters;
//! it applies to the new document (to the old one for deletes). Each subscription runs
//! in a block of its own: a filter that fails on some document costs that subscription
//! the statement's notifications, never the maintenance that changed them.

use super::build::Layout;
use crate::error::{report, BeaconError, BeaconResult};
use crate::names::{dollar_quote, quote_ident, quote_literal};
use crate::security::{catalog, function_settings, require_level, AsOwner, Level};
use crate::spi::{exists, run};
use pgrx::prelude::*;

/// The one notification trigger of a view's documents table.
const TRIGGER_EVENT: &str = "notify";

fn subscriptions(layout: &Layout) -> BeaconResult<Vec<(String, Option<String>)>> {
    catalog(|| {
        Ok(Spi::connect(|client| {
            client
                .select(
                    "SELECT channel, condition FROM beacon.document_subscription
                      WHERE project = $1 AND view = $2 ORDER BY created_at, channel",
                    None,
                    &[layout.project.as_str().into(), layout.name.as_str().into()],
                )?
                .map(|row| {
                    Ok((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?,
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })?)
    })
}

/// A deferred row trigger: at commit, each changed document's key is looked up and the
/// document as committed is sent (or a delete when it is gone). A transaction that
/// changed a document several times (immediate mode rebuilds it per statement) thus sends
/// the same payload each time, and NOTIFY sends identical payloads of one transaction once.
fn body(layout: &Layout, subscriptions: &[(String, Option<String>)]) -> String {
    let key_of = |a: &str| -> String {
        layout
            .spec
            .key
            .iter()
            .map(|k| {
                let k = quote_ident(k);
                format!("{a}.{k} = (CASE WHEN TG_OP = 'DELETE' THEN OLD.{k} ELSE NEW.{k} END)")
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let docs = layout.docs_table();
    let mut upserts = String::new();
    let mut deletes = String::new();
    for (channel, condition) in subscriptions {
        let condition = condition.clone().unwrap_or_else(|| "true".into());
        let channel = quote_literal(channel);
        upserts.push_str(&format!(
            "    BEGIN\n      PERFORM pg_catalog.pg_notify({channel}, {}) FROM {docs} beacon_row \
             WHERE {} AND ({condition});\n    EXCEPTION WHEN OTHERS THEN NULL;\n    END;\n",
            layout.payload("beacon_row", "upsert", true),
            key_of("beacon_row")
        ));
        deletes.push_str(&format!(
            "    BEGIN\n      PERFORM pg_catalog.pg_notify({channel}, {}) FROM (SELECT OLD.*) beacon_row \
             WHERE ({condition});\n    EXCEPTION WHEN OTHERS THEN NULL;\n    END;\n",
            layout.payload("beacon_row", "delete", false),
        ));
    }
    format!(
        "BEGIN\n  IF EXISTS (SELECT 1 FROM {docs} beacon_row WHERE {}) THEN\n{upserts}  \
         ELSIF TG_OP <> 'INSERT' THEN\n{deletes}  END IF;\n  RETURN NULL;\nEND",
        key_of("beacon_row")
    )
}

/// (Re)creates the notification triggers of a view from the catalog, or removes them when
/// it has no subscription. As the project's owner role.
pub fn install(layout: &Layout) -> BeaconResult<()> {
    let table = layout.docs_table();
    let function = layout.notify_function();
    let subs = subscriptions(layout)?;
    let trigger = layout.trigger_name(TRIGGER_EVENT);
    if subs.is_empty() {
        if crate::spi::has_trigger(&table, &trigger)? {
            run(
                &format!("DROP TRIGGER {} ON {table}", quote_ident(&trigger)),
                &[],
            )?;
        }
        if crate::spi::present(&function, true)? {
            run(&format!("DROP FUNCTION {function}()"), &[])?;
        }
        return Ok(());
    }
    run(
        &format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
             SECURITY DEFINER {} AS {}",
            function_settings(),
            dollar_quote(&crate::generated::stamp(&body(layout, &subs)))
        ),
        &[],
    )?;
    if !crate::spi::has_trigger(&table, &trigger)? {
        run(
            &format!(
                "CREATE CONSTRAINT TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {function}()",
                quote_ident(&trigger)
            ),
            &[],
        )?;
    }
    Ok(())
}

fn lock_view(project: &str, view: &str) -> BeaconResult<()> {
    run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[format!("beacon.document_subscription {project}.{view}").into()],
    )
}

fn subscribe_to(
    project: &str,
    view: &str,
    filter: Option<&str>,
    temporary: bool,
) -> BeaconResult<String> {
    require_level(project, Level::Read)?;
    let owner_role = Spi::get_one::<String>("SELECT current_user::text")?.unwrap_or_default();
    let _owner = AsOwner::for_project(project)?;
    let stored = super::stored(project, view)?;
    lock_view(project, view)?;
    let limit = crate::guc::MAX_SUBSCRIPTIONS.get();
    let existing = catalog(|| {
        Ok(Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM beacon.document_subscription WHERE project = $1 AND view = $2",
            &[project.into(), view.into()],
        )?
        .unwrap_or(0))
    })?;
    if existing >= i64::from(limit) {
        return Err(BeaconError::LimitExceeded(format!(
            "document view \"{view}\" already has {existing} subscriptions, the most \
             beacon.max_subscriptions allows"
        )));
    }
    let filter = filter.filter(|f| !f.trim().is_empty());
    let max_bytes = crate::guc::MAX_FILTER_BYTES.get();
    if filter.is_some_and(|f| f.len() > max_bytes as usize) {
        return Err(BeaconError::LimitExceeded(format!(
            "the filter is longer than beacon.max_filter_bytes ({max_bytes})"
        )));
    }
    let condition = filter
        .map(|f| crate::stream::checked_condition(project, view, f))
        .transpose()?;
    let channel = catalog(|| {
        crate::spi::returning_one::<String>(
            "INSERT INTO beacon.document_subscription
                (channel, project, view, filter, condition, temporary, owner_role, owner_pid,
                 owner_started)
         SELECT 'beacon_doc_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''),
                $1, $2, $3, $4, $5, $6, a.pid, a.backend_start
           FROM (SELECT NULL) AS one
           LEFT JOIN pg_catalog.pg_stat_activity a ON $5 AND a.pid = pg_catalog.pg_backend_pid()
         RETURNING channel",
            &[
                project.into(),
                view.into(),
                filter.into(),
                condition.into(),
                temporary.into(),
                owner_role.into(),
            ],
        )
    })?
    .ok_or_else(|| BeaconError::InvalidArgument("the subscription was not stored".into()))?;
    install(&stored.layout)?;
    Ok(channel)
}

fn unsubscribe_from(channel: &str) -> BeaconResult<()> {
    let caller = Spi::get_one::<String>("SELECT current_user::text")?.unwrap_or_default();
    let found = {
        let _owner = AsOwner::enter()?;
        crate::spi::text_pairs(
            "SELECT s.project, s.view || '/' ||
                    (EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                              WHERE r.rolname = s.owner_role
                                AND pg_catalog.pg_has_role($2::name, r.oid, 'MEMBER')))::text
               FROM beacon.document_subscription s WHERE s.channel = $1",
            &[channel.into(), caller.as_str().into()],
        )?
    };
    let (project, rest) = found.into_iter().next().ok_or_else(|| {
        BeaconError::UnknownObject(format!(
            "no document subscription with channel \"{channel}\""
        ))
    })?;
    let (view, made_it) = rest.rsplit_once('/').unwrap_or((&rest, "false"));
    if made_it != "true" {
        require_level(&project, Level::Admin).map_err(|_| {
            BeaconError::PermissionDenied(format!(
                "permission denied to end subscription \"{channel}\": only the role that made it \
                 or an admin of project \"{project}\" may"
            ))
        })?;
    }
    let _owner = AsOwner::for_project(&project)?;
    lock_view(&project, view)?;
    catalog(|| {
        run(
            "DELETE FROM beacon.document_subscription WHERE channel = $1",
            &[channel.into()],
        )
    })?;
    install(&super::stored(&project, view)?.layout)
}

/// Ends temporary document subscriptions whose session is gone; returns how many.
fn housekeeping() -> BeaconResult<i64> {
    let ended = {
        let _owner = AsOwner::enter()?;
        crate::spi::text_pairs(
            "DELETE FROM beacon.document_subscription s
              WHERE s.temporary
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                                 WHERE a.pid = s.owner_pid
                                   AND (a.backend_start IS NULL OR a.backend_start = s.owner_started))
             RETURNING s.project, s.view",
            &[],
        )?
    };
    let mut views = ended.clone();
    views.sort();
    views.dedup();
    for (project, view) in &views {
        let _owner = AsOwner::for_project(project)?;
        if exists(
            "SELECT pg_catalog.to_regnamespace($1) IS NOT NULL",
            &[project.as_str().into()],
        )? {
            lock_view(project, view)?;
            install(&super::stored(project, view)?.layout)?;
        }
    }
    Ok(ended.len() as i64)
}

/// Subscribes to the changes of a document view's documents that match `filter` (a
/// condition on `doc` and the key columns; NULL for all) and returns the channel to
/// LISTEN on. A temporary subscription ends with the session that made it. Requires
/// read access.
#[pg_extern]
fn subscribe_documents(
    project: &str,
    view: &str,
    filter: default!(Option<&str>, "NULL"),
    temporary: default!(bool, true),
) -> String {
    report(subscribe_to(project, view, filter, temporary))
}

/// Ends a document subscription. Allowed to the role that made it and to admins.
#[pg_extern]
fn unsubscribe_documents(channel: &str) {
    report(unsubscribe_from(channel))
}

/// Run by the scheduler: ends temporary document subscriptions of sessions that are gone.
#[pg_extern]
fn _document_housekeeping() -> i64 {
    report(housekeeping())
}

extension_sql!(
    "REVOKE ALL ON FUNCTION beacon._document_housekeeping() FROM PUBLIC;",
    name = "document_housekeeping_private",
    requires = [_document_housekeeping]
);
