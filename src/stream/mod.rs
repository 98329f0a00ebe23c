//! Event streams: `beacon.subscribe` hands out a channel, and every committed event of the
//! collection that matches the subscription's filter is NOTIFYed on it.
//!
//! One statement-level AFTER INSERT trigger per collection serves all its subscriptions:
//! its PL/pgSQL function is regenerated from the catalog whenever a subscription comes or
//! goes, and dropped with the last one, so a collection nobody listens to pays nothing.
//! The function scans the statement's transition table once, with every filter OR-ed
//! together, so subscriptions whose filters match nothing cost one expression each per
//! row. NOTIFY is transactional: a rolled-back insert sends nothing, and a single
//! writer's events arrive in commit order.

pub(crate) mod filter;
mod trigger;

use crate::error::{report, BeaconError, BeaconResult};
use crate::generated::{self, Kind};
use crate::guc;
use crate::names::{column_for_property, dollar_quote, quote_ident, validate_collection_name};
use crate::project::require_project;
use crate::security::{catalog, function_settings, require_level, AsOwner, Level};
use crate::spi::{exists, run, text_pairs};
use pgrx::prelude::*;

const TRIGGER: &str = "_beacon_stream";

use trigger::{trigger_body, Subscription};

fn function_name(project: &str, collection: &str) -> String {
    let name = column_for_property(&format!("_stream_{collection}"), |_| false);
    format!("{}.{}", quote_ident(project), quote_ident(&name))
}

fn lock_collection(project: &str, collection: &str) -> BeaconResult<()> {
    run(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended($1, 0))",
        &[format!("beacon.stream {project}.{collection}").into()],
    )
}

/// (Re)creates the collection's stream trigger and function from the catalog, or removes
/// them when it has no subscription left. As the project's owner role (the trigger function
/// is its SECURITY DEFINER function), under the collection's lock.
fn install(project: &str, collection: &str) -> BeaconResult<()> {
    let _owner = AsOwner::for_project(project)?;
    let table = format!("{}.{}", quote_ident(project), quote_ident(collection));
    let function = function_name(project, collection);
    let subscriptions: Vec<Subscription> = catalog(|| {
        Ok(Spi::connect(|client| {
            client
                .select(
                    "SELECT channel, condition FROM beacon.subscription
                  WHERE project = $1 AND collection = $2 ORDER BY created_at, channel",
                    None,
                    &[project.into(), collection.into()],
                )?
                .map(|row| {
                    Ok(Subscription {
                        channel: row.get::<String>(1)?.unwrap_or_default(),
                        condition: row.get::<String>(2)?,
                    })
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })?)
    })?;
    let table_exists = exists(
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL",
        &[table.as_str().into()],
    )?;
    if subscriptions.is_empty() || !table_exists {
        if table_exists && crate::spi::has_trigger(&table, TRIGGER)? {
            run(&format!("DROP TRIGGER IF EXISTS {TRIGGER} ON {table}"), &[])?;
        }
        if crate::spi::present(&function, true)? {
            run(&format!("DROP FUNCTION IF EXISTS {function}()"), &[])?;
        }
        return generated::forget(Kind::StreamTrigger, project, collection);
    }
    let body = generated::stamp(&trigger_body(collection, &subscriptions));
    run(
        &format!(
            "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
             SECURITY DEFINER {} AS {}",
            function_settings(),
            dollar_quote(&body)
        ),
        &[],
    )?;
    if !exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = $1::regclass AND tgname = $2)",
        &[table.as_str().into(), TRIGGER.into()],
    )? {
        run(
            &format!(
                "CREATE TRIGGER {TRIGGER} AFTER INSERT ON {table} REFERENCING NEW TABLE AS beacon_new \
                 FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            ),
            &[],
        )?;
    }
    generated::record(Kind::StreamTrigger, project, collection)
}

/// Regenerates a collection's stream trigger (see `generated`). Runs as the owner.
pub fn install_trigger(project: &str, collection: &str) -> BeaconResult<()> {
    lock_collection(project, collection)?;
    install(project, collection)
}

fn columns_of(project: &str, collection: &str) -> BeaconResult<Vec<String>> {
    let table = format!("{}.{}", quote_ident(project), quote_ident(collection));
    Ok(Spi::connect(|client| {
        client
            .select(
                "SELECT attname::text FROM pg_catalog.pg_attribute
                  WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
                None,
                &[table.as_str().into()],
            )?
            .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })?)
}

/// Checks the filter as text first, then lets PostgreSQL type-check the rewritten
/// condition against the table, so that a filter that is accepted also runs.
pub(crate) fn checked_condition(
    project: &str,
    collection: &str,
    filter: &str,
) -> BeaconResult<String> {
    let columns = columns_of(project, collection)?;
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    let condition = filter::check_filter(filter, &columns)
        .map_err(|refusal| BeaconError::refused("invalid filter", refusal))?;
    // the decisive check, in the owner's role and settings the stream trigger runs with
    if let Err(refusal) = crate::sql_policy::check(
        &crate::sql_policy::filter_statement(project, collection, &condition),
        &crate::sql_policy::Policy::stream_filter(project, collection),
    ) {
        refusal.raise("invalid filter");
    }
    run(
        &format!(
            "SELECT 1 FROM {}.{} AS beacon_row WHERE ({condition}) LIMIT 0",
            quote_ident(project),
            quote_ident(collection)
        ),
        &[],
    )?;
    Ok(condition)
}

fn subscribe_to(
    project: &str,
    collection: &str,
    filter: Option<&str>,
    temporary: bool,
) -> BeaconResult<String> {
    validate_collection_name(collection).map_err(|e| BeaconError::InvalidName(e.to_string()))?;
    require_level(project, Level::Read)?;
    let owner_role = Spi::get_one::<String>("SELECT current_user::text")?.unwrap_or_default();
    let _owner = AsOwner::for_project(project)?;
    require_project(project)?;
    if !crate::collect::schema::collection_exists(project, collection)? {
        return Err(BeaconError::UnknownCollection(
            project.to_string(),
            collection.to_string(),
        ));
    }
    lock_collection(project, collection)?;
    // every subscription's filter runs in every writer's insert: bounded, by the superuser
    let limit = guc::MAX_SUBSCRIPTIONS.get();
    let existing = catalog(|| {
        Ok(Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM beacon.subscription WHERE project = $1 AND collection = $2",
            &[project.into(), collection.into()],
        )?
        .unwrap_or(0))
    })?;
    if existing >= i64::from(limit) {
        return Err(BeaconError::LimitExceeded(format!(
            "collection \"{collection}\" already has {existing} subscriptions, the most \
             beacon.max_subscriptions allows"
        )));
    }
    let filter = filter.filter(|f| !f.trim().is_empty());
    let max_bytes = guc::MAX_FILTER_BYTES.get();
    if let Some(f) = filter {
        if f.len() > max_bytes as usize {
            return Err(BeaconError::LimitExceeded(format!(
                "the filter is {} bytes long; beacon.max_filter_bytes allows {max_bytes}",
                f.len()
            )));
        }
    }
    let condition = filter
        .map(|f| checked_condition(project, collection, f))
        .transpose()?;
    let channel = catalog(|| {
        crate::spi::returning_one::<String>(
            "INSERT INTO beacon.subscription
                (channel, project, collection, filter, condition, temporary, owner_role,
                 owner_pid, owner_started)
         SELECT 'beacon_' || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''),
                $1, $2, $3, $4, $5, $6, a.pid, a.backend_start
           FROM (SELECT NULL) AS one
           LEFT JOIN pg_catalog.pg_stat_activity a ON $5 AND a.pid = pg_catalog.pg_backend_pid()
         RETURNING channel",
            &[
                project.into(),
                collection.into(),
                filter.into(),
                condition.into(),
                temporary.into(),
                owner_role.into(),
            ],
        )
    })?
    .ok_or_else(|| BeaconError::InvalidArgument("the subscription was not stored".into()))?;
    install(project, collection)?;
    Ok(channel)
}

fn unsubscribe_from(channel: &str) -> BeaconResult<()> {
    let caller = Spi::get_one::<String>("SELECT current_user::text")?.unwrap_or_default();
    // the catalog is not readable by callers: look it up as the owner, decide as the caller
    let found = {
        let _owner = AsOwner::enter()?;
        Spi::connect(|client| {
            client
                .select(
                    "SELECT s.project, s.collection,
                            EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                                     WHERE r.rolname = s.owner_role
                                       AND pg_catalog.pg_has_role($2::name, r.oid, 'MEMBER'))
                       FROM beacon.subscription s WHERE s.channel = $1",
                    None,
                    &[channel.into(), caller.as_str().into()],
                )?
                .map(|row| {
                    Ok::<_, pgrx::spi::Error>((
                        row.get::<String>(1)?.unwrap_or_default(),
                        row.get::<String>(2)?.unwrap_or_default(),
                        row.get::<bool>(3)?.unwrap_or(false),
                    ))
                })
                .next()
                .transpose()
        })
    };
    let (project, collection, made_it) = found?.ok_or_else(|| {
        BeaconError::UnknownObject(format!("no subscription with channel \"{channel}\""))
    })?;
    if !made_it {
        require_level(&project, Level::Admin).map_err(|_| {
            BeaconError::PermissionDenied(format!(
                "permission denied to end subscription \"{channel}\": only the role that made it \
                 or an admin of project \"{project}\" may"
            ))
        })?;
    }
    let _owner = AsOwner::enter()?;
    lock_collection(&project, &collection)?;
    run(
        "DELETE FROM beacon.subscription WHERE channel = $1",
        &[channel.into()],
    )?;
    install(&project, &collection)
}

/// The subscriptions of a collection: (channel, filter as given).
pub(crate) fn subscriptions_of(
    project: &str,
    collection: &str,
) -> BeaconResult<Vec<(String, Option<String>)>> {
    catalog(|| {
        Ok(Spi::connect(|client| {
            client
                .select(
                    "SELECT channel, filter FROM beacon.subscription
                      WHERE project = $1 AND collection = $2 ORDER BY created_at, channel",
                    None,
                    &[project.into(), collection.into()],
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

/// Whether `filter` still names only columns the collection's table has (a column it
/// read was dropped or renamed by hand otherwise). The table must exist.
pub(crate) fn filter_still_applies(
    project: &str,
    collection: &str,
    filter: &str,
) -> BeaconResult<bool> {
    let columns = columns_of(project, collection)?;
    let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
    Ok(filter::check_filter(filter, &columns).is_ok())
}

/// Ends the given subscriptions of a collection, whoever made them (the caller decided),
/// and regenerates (or removes) the collection's stream trigger.
pub(crate) fn end_subscriptions(
    project: &str,
    collection: &str,
    channels: &[String],
) -> BeaconResult<()> {
    lock_collection(project, collection)?;
    catalog(|| {
        for table in [
            "beacon.subscription",
            "beacon.subscription_sent",
            "beacon.subscription_failure",
        ] {
            run(
                &format!("DELETE FROM {table} WHERE channel = ANY ($1)"),
                &[channels.to_vec().into()],
            )?;
        }
        Ok(())
    })?;
    install(project, collection)
}

/// Ends temporary subscriptions whose session is gone and folds sent-event counts into
/// the catalog; returns how many subscriptions ended.
fn housekeeping() -> BeaconResult<i64> {
    let _owner = AsOwner::enter()?;
    // a NULL backend_start means the caller may not see that session: count it as alive
    let ended = text_pairs(
        "DELETE FROM beacon.subscription s
          WHERE s.temporary
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                             WHERE a.pid = s.owner_pid
                               AND (a.backend_start IS NULL OR a.backend_start = s.owner_started))
         RETURNING s.project, s.collection",
        &[],
    )?;
    let mut collections = ended.clone();
    collections.sort();
    collections.dedup();
    for (project, collection) in &collections {
        lock_collection(project, collection)?;
        install(project, collection)?;
    }
    run(
        "WITH folded AS (DELETE FROM beacon.subscription_sent RETURNING channel, sent)
         UPDATE beacon.subscription s SET events_sent = s.events_sent + f.sent
           FROM (SELECT channel, sum(sent)::bigint AS sent FROM folded GROUP BY channel) f
          WHERE s.channel = f.channel",
        &[],
    )?;
    run(
        "DELETE FROM beacon.subscription_failure f
          WHERE NOT EXISTS (SELECT 1 FROM beacon.subscription s WHERE s.channel = f.channel)",
        &[],
    )?;
    Ok(ended.len() as i64)
}

/// Subscribes to the events of `collection` that match `filter` (a SQL boolean expression
/// over its columns; NULL for all events) and returns the channel to LISTEN on. Each
/// committed event arrives as `{"collection": ..., "event": {...}}`, or as
/// `{"collection", "_id", "truncated": true}` when it exceeds NOTIFY's 8000-byte limit.
/// A temporary subscription ends with the session that made it. Requires read access.
#[pg_extern]
fn subscribe(
    project: &str,
    collection: &str,
    filter: default!(Option<&str>, "NULL"),
    temporary: default!(bool, true),
) -> String {
    report(subscribe_to(project, collection, filter, temporary))
}

/// Ends the subscription on `channel`. Allowed to the role that made it and to admins of
/// the project.
#[pg_extern]
fn unsubscribe(channel: &str) {
    report(unsubscribe_from(channel))
}

/// Run by the scheduler every few seconds: ends temporary subscriptions of sessions that
/// are gone and updates events_sent. Returns how many subscriptions ended.
#[pg_extern]
fn _stream_housekeeping() -> i64 {
    report(housekeeping())
}

extension_sql_file!(
    "../../sql/stream.sql",
    name = "stream_catalog",
    requires = ["bootstrap"]
);

extension_sql!(
    "REVOKE ALL ON FUNCTION beacon._stream_housekeeping() FROM PUBLIC;",
    name = "stream_housekeeping_private",
    requires = [_stream_housekeeping]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;
