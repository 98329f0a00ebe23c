//! Projects: a schema, three group roles, a `_rejected` table for events that did not fit,
//! and the customer tables `_users` and `_user_mailbox`.

use crate::error::{report, BeaconError, BeaconResult};
use crate::names::{quote_ident, validate_project_name};
use crate::security::{require_level, require_owner, role_name, AsOwner, Level};
use crate::spi::{exists, run};
use pgrx::prelude::*;

const LEVELS: [Level; 3] = [Level::Read, Level::Write, Level::Admin];

/// Returns an error unless `project` names an existing project. Runs as the owner.
pub fn require_project(project: &str) -> BeaconResult<()> {
    if exists(
        "SELECT EXISTS (SELECT 1 FROM beacon.project WHERE name = $1)",
        &[project.into()],
    )? {
        Ok(())
    } else {
        Err(BeaconError::UnknownProject(project.to_string()))
    }
}

fn checked_name(name: &str) -> BeaconResult<()> {
    validate_project_name(name).map_err(|e| {
        if e.reserved {
            BeaconError::ReservedName(e.to_string())
        } else {
            BeaconError::InvalidName(e.to_string())
        }
    })
}

/// A project's roles are always new: an existing role of the same name (whoever made it,
/// with whatever attributes, memberships or grants it carries) would pass all of that on to
/// every member the project later gets, so it is never adopted.
fn require_new_role(role: &str, project: &str) -> BeaconResult<()> {
    if exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[role.into()],
    )? {
        return Err(BeaconError::AlreadyExists(format!(
            "role \"{role}\" already exists: a project's roles must be new (roles are shared by \
             all databases of the cluster: is there a project \"{project}\" in another database, \
             or one left by a dropped database? Drop its roles first)"
        )));
    }
    Ok(())
}

fn create(name: &str) -> BeaconResult<()> {
    checked_name(name)?;
    require_owner("create a project")?;
    let _owner = AsOwner::enter()?;
    if exists(
        "SELECT EXISTS (SELECT 1 FROM beacon.project WHERE name = $1)",
        &[name.into()],
    )? {
        return Err(BeaconError::AlreadyExists(format!(
            "project \"{name}\" already exists"
        )));
    }
    if exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)",
        &[name.into()],
    )? {
        return Err(BeaconError::AlreadyExists(format!(
            "schema \"{name}\" already exists; a project needs a schema of its own"
        )));
    }
    for level in LEVELS {
        require_new_role(&role_name(name, level), name)?;
    }
    let schema = quote_ident(name);
    let [read, write, admin] = LEVELS.map(|l| quote_ident(&role_name(name, l)));
    for role in [&read, &write, &admin] {
        run(&format!("CREATE ROLE {role} NOLOGIN"), &[])?;
    }
    run(&format!("GRANT {read}, {write} TO {admin}"), &[])?;
    run(&format!("CREATE SCHEMA {schema}"), &[])?;
    run(
        &format!("GRANT USAGE ON SCHEMA {schema} TO {read}, {write}"),
        &[],
    )?;
    // Tables are created later by collect() running as the owner; default privileges make
    // every one of them readable by `read` and insertable by `write` without a grant each.
    run(
        &format!("ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {read}"),
        &[],
    )?;
    run(
        &format!("ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT INSERT ON TABLES TO {write}"),
        &[],
    )?;
    run(
        &format!(
            "CREATE TABLE {schema}._rejected (
                _id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                _time timestamptz NOT NULL DEFAULT now(),
                collection text NOT NULL,
                properties jsonb NOT NULL,
                reason text NOT NULL)"
        ),
        &[],
    )?;
    run(
        &format!(
            "COMMENT ON TABLE {schema}._rejected IS \
             'Events pg_beacon could not store in their collection, with the reason'"
        ),
        &[],
    )?;
    run(
        "INSERT INTO beacon.project (name) VALUES ($1)",
        &[name.into()],
    )?;
    crate::users::create_table(name)?;
    crate::mailbox::create_table(name)?;
    Ok(())
}

fn drop(name: &str) -> BeaconResult<()> {
    require_owner("drop a project")?;
    let _owner = AsOwner::enter()?;
    require_project(name)?;
    run(&format!("DROP SCHEMA {} CASCADE", quote_ident(name)), &[])?;
    run("DELETE FROM beacon.project WHERE name = $1", &[name.into()])?;
    for level in LEVELS {
        run(
            &format!("DROP ROLE {}", quote_ident(&role_name(name, level))),
            &[],
        )?;
    }
    Ok(())
}

fn member_name(member: pg_sys::Oid) -> BeaconResult<String> {
    Spi::get_one_with_args::<String>(
        "SELECT (SELECT rolname::text FROM pg_catalog.pg_roles WHERE oid = $1)",
        &[member.into()],
    )?
    .ok_or_else(|| BeaconError::InvalidArgument(format!("role with OID {member:?} does not exist")))
}

fn set_membership(
    project: &str,
    member: pg_sys::Oid,
    level: &str,
    grant: bool,
) -> BeaconResult<()> {
    let level = Level::parse(level)?;
    require_level(project, Level::Admin)?;
    let member = member_name(member)?;
    let _owner = AsOwner::enter()?;
    require_project(project)?;
    let role = quote_ident(&role_name(project, level));
    let statement = if grant {
        format!("GRANT {role} TO {}", quote_ident(&member))
    } else {
        format!("REVOKE {role} FROM {}", quote_ident(&member))
    };
    run(&statement, &[])
}

/// Creates project `name`: schema `name`, roles `beacon_<name>_read|write|admin` and tables
/// `<name>._rejected`, `<name>._users` and `<name>._user_mailbox`. Only the extension owner
/// or a superuser may create projects.
#[pg_extern]
fn create_project(name: &str) {
    report(create(name))
}

/// Drops project `name` with all its collections, data and roles.
#[pg_extern]
fn drop_project(name: &str) {
    report(drop(name))
}

#[pg_extern]
fn _grant(project: &str, member: pg_sys::Oid, level: &str) {
    report(set_membership(project, member, level, true))
}

#[pg_extern]
fn _revoke(project: &str, member: pg_sys::Oid, level: &str) {
    report(set_membership(project, member, level, false))
}

extension_sql!(
    r#"
CREATE FUNCTION beacon.grant(project text, member regrole, level text) RETURNS void
LANGUAGE sql STRICT AS $$ SELECT beacon._grant(project, member::oid, level) $$;
COMMENT ON FUNCTION beacon.grant(text, regrole, text) IS
  'Makes member a member of the project''s read, write or admin role. Requires admin on the project.';
CREATE FUNCTION beacon.revoke(project text, member regrole, level text) RETURNS void
LANGUAGE sql STRICT AS $$ SELECT beacon._revoke(project, member::oid, level) $$;
COMMENT ON FUNCTION beacon.revoke(text, regrole, text) IS
  'Removes member from the project''s read, write or admin role. Requires admin on the project.';
"#,
    name = "grant_wrappers",
    requires = [_grant, _revoke]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;
