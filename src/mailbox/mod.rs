//! The in-app mailbox: `<project>._user_mailbox`, and a NOTIFY per message to the
//! recipient's, the sender's and the project's all-messages channel. NOTIFY is
//! transactional, so listeners only ever hear of committed messages.

use crate::error::{report, BeaconError, BeaconResult};
use crate::names::quote_ident;
use crate::project::require_project;
use crate::security::{catalog, require_level, AsOwner, Level};
use crate::spi::run;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

const MAX_PAGE: i32 = 10_000;

fn table(project: &str) -> String {
    format!("{}._user_mailbox", quote_ident(project))
}

/// Called by `create_project`, as the owner.
pub fn create_table(project: &str) -> BeaconResult<()> {
    let table = table(project);
    run(
        &format!(
            "CREATE TABLE {table} (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                from_user text,
                to_user text NOT NULL,
                content text NOT NULL,
                parent_id bigint REFERENCES {table} (id) ON DELETE SET NULL,
                seen boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL DEFAULT now())"
        ),
        &[],
    )?;
    // a mailbox page is "this user's messages, newest first"
    run(&format!("CREATE INDEX ON {table} (to_user, id DESC)"), &[])?;
    run(
        &format!("CREATE INDEX ON {table} (from_user, id DESC)"),
        &[],
    )?;
    run(
        &format!("COMMENT ON TABLE {table} IS 'pg_beacon in-app messages between users'"),
        &[],
    )?;
    catalog(|| {
        run(
            "INSERT INTO beacon.channel_secret (project, secret)
             VALUES ($1, pg_catalog.gen_random_uuid()::text || pg_catalog.gen_random_uuid()::text)",
            &[project.into()],
        )
    })
}

/// The distinct channels of a message: the recipient's, the sender's, the project's. The
/// secret they derive from is the extension owner's: the project owner role never sees it.
fn channels(project: &str, from_user: Option<&str>, to_user: &str) -> BeaconResult<Vec<String>> {
    catalog(|| {
        Ok(Spi::get_one_with_args::<Vec<String>>(
            "SELECT pg_catalog.array_agg(DISTINCT channel) FROM pg_catalog.unnest(ARRAY[
                 beacon._mailbox_channel($1, $3),
                 CASE WHEN $2::text IS NOT NULL THEN beacon._mailbox_channel($1, $2) END,
                 beacon._mailbox_channel($1, NULL)]) AS channel
              WHERE channel IS NOT NULL",
            &[project.into(), from_user.into(), to_user.into()],
        )?
        .unwrap_or_default())
    })
}

fn enter(project: &str, level: Level) -> BeaconResult<AsOwner> {
    require_level(project, level)?;
    let owner = AsOwner::for_project(project)?;
    catalog(|| require_project(project))?;
    Ok(owner)
}

fn required<'a>(value: Option<&'a str>, what: &str) -> BeaconResult<&'a str> {
    value.ok_or_else(|| BeaconError::InvalidArgument(format!("{what} must not be NULL")))
}

fn send(
    project: &str,
    from_user: Option<&str>,
    to_user: Option<&str>,
    content: Option<&str>,
    parent_id: Option<i64>,
) -> BeaconResult<i64> {
    let to_user = required(to_user, "to_user")?;
    let content = required(content, "content")?;
    let _owner = enter(project, Level::Write)?;
    let channels = channels(project, from_user, to_user)?;
    if let Some(parent) = parent_id {
        let parent_exists = crate::spi::exists(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1)",
                table(project)
            ),
            &[parent.into()],
        )?;
        if !parent_exists {
            return Err(BeaconError::InvalidArgument(format!(
                "parent message {parent} does not exist in project \"{project}\""
            )));
        }
    }
    // one statement: the row, its payload, and the notifications of the distinct channels
    let id = crate::spi::returning_one::<i64>(
        &format!(
            "WITH m AS (
                 INSERT INTO {} (from_user, to_user, content, parent_id)
                 VALUES ($2, $3, $4, $5) RETURNING *),
             p AS (
                 SELECT m.id, pg_catalog.json_build_object('project', $1::text, 'message', pg_catalog.to_jsonb(m))::text AS payload
                   FROM m),
             sent AS MATERIALIZED (
                 SELECT pg_catalog.pg_notify(c.channel,
                          CASE WHEN pg_catalog.octet_length(p.payload) < 8000 THEN p.payload
                               ELSE pg_catalog.json_build_object('project', $1::text, 'id', p.id, 'truncated', true)::text END)
                   FROM p, pg_catalog.unnest($6::text[]) AS c (channel))
             -- a CTE nobody reads does not run: reading sent is what sends
             SELECT p.id FROM p WHERE (SELECT count(*) FROM sent) >= 0",
            table(project)
        ),
        &[
            project.into(),
            from_user.into(),
            to_user.into(),
            content.into(),
            parent_id.into(),
            channels.into(),
        ],
    )?;
    id.ok_or_else(|| BeaconError::InvalidArgument("the message was not stored".into()))
}

fn mark(project: &str, user_id: Option<&str>, ids: Vec<Option<i64>>) -> BeaconResult<i64> {
    let user_id = required(user_id, "user_id")?;
    let ids: Vec<i64> = ids.into_iter().flatten().collect();
    let _owner = enter(project, Level::Write)?;
    let marked = crate::spi::returning_one::<i64>(
        &format!(
            "WITH u AS (UPDATE {} SET seen = true
                         WHERE to_user = $1 AND id = ANY ($2) AND NOT seen RETURNING 1)
             SELECT count(*) FROM u",
            table(project)
        ),
        &[user_id.into(), ids.into()],
    )?;
    Ok(marked.unwrap_or(0))
}

type Message = (
    i64,
    Option<String>,
    String,
    String,
    Option<i64>,
    bool,
    TimestampWithTimeZone,
);

fn page(
    project: &str,
    user_id: Option<&str>,
    unread_only: bool,
    limit: i32,
    before: Option<i64>,
) -> BeaconResult<Vec<Message>> {
    let user_id = required(user_id, "user_id")?;
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(BeaconError::InvalidArgument(format!(
            "lim must be between 1 and {MAX_PAGE}, not {limit}"
        )));
    }
    let _owner = enter(project, Level::Read)?;
    let table = table(project);
    // unread messages are received ones; otherwise the page holds both directions
    let condition = if unread_only {
        "to_user = $1 AND NOT seen"
    } else {
        "(to_user = $1 OR from_user = $1)"
    };
    Spi::connect(|client| {
        client
            .select(
                &format!(
                    "SELECT id, from_user, to_user, content, parent_id, seen, created_at FROM {table}
                      WHERE {condition} AND ($3::bigint IS NULL OR id < $3)
                      ORDER BY id DESC LIMIT $2"
                ),
                None,
                &[user_id.into(), limit.into(), before.into()],
            )?
            .map(|row| {
                Ok((
                    row.get::<i64>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?,
                    row.get::<String>(3)?.unwrap_or_default(),
                    row.get::<String>(4)?.unwrap_or_default(),
                    row.get::<i64>(5)?,
                    row.get::<bool>(6)?.unwrap_or_default(),
                    row.get::<TimestampWithTimeZone>(7)?
                        .ok_or(pgrx::spi::Error::InvalidPosition)?,
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .map_err(BeaconError::from)
}

fn channel(project: &str, user_id: Option<&str>) -> BeaconResult<String> {
    let _owner = enter(project, Level::Read)?;
    catalog(|| {
        Spi::get_one_with_args::<String>(
            "SELECT beacon._mailbox_channel($1, $2)",
            &[project.into(), user_id.into()],
        )?
        .ok_or_else(|| BeaconError::UnknownProject(project.to_string()))
    })
}

/// Stores a message from `from_user` (NULL for the application itself) to `to_user`,
/// optionally replying to `parent_id`, and returns its id. After commit it is NOTIFYed
/// on the recipient's, the sender's and the project's all-messages channel. Requires
/// write access to the project.
#[pg_extern]
fn send_message(
    project: &str,
    from_user: Option<&str>,
    to_user: Option<&str>,
    content: Option<&str>,
    parent_id: default!(Option<i64>, "NULL"),
) -> i64 {
    report(send(project, from_user, to_user, content, parent_id))
}

/// Marks the given messages received by `user_id` as seen (ids of other users' messages
/// are ignored) and returns how many changed. Requires write access to the project.
#[pg_extern]
fn mark_read(project: &str, user_id: Option<&str>, ids: Vec<Option<i64>>) -> i64 {
    report(mark(project, user_id, ids))
}

/// The messages sent to or by `user_id`, newest first; with `unread_only`, only unseen
/// received ones. Page with `before` (the smallest id of the previous page). Requires
/// read access to the project.
#[pg_extern]
#[allow(clippy::type_complexity)]
fn mailbox(
    project: &str,
    user_id: Option<&str>,
    unread_only: default!(bool, false),
    lim: default!(i32, 50),
    before: default!(Option<i64>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(id, i64),
        name!(from_user, Option<String>),
        name!(to_user, String),
        name!(content, String),
        name!(parent_id, Option<i64>),
        name!(seen, bool),
        name!(created_at, TimestampWithTimeZone),
    ),
> {
    TableIterator::new(report(page(project, user_id, unread_only, lim, before)))
}

/// The channel to LISTEN on for `user_id`'s messages, or with no user id the project's
/// all-messages channel. Names are derived from a per-project secret, so only roles
/// given them can listen. Requires read access to the project.
#[pg_extern]
fn mailbox_channel(project: &str, user_id: default!(Option<&str>, "NULL")) -> String {
    report(channel(project, user_id))
}

extension_sql_file!(
    "../../sql/mailbox.sql",
    name = "mailbox_catalog",
    requires = ["bootstrap"]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;
