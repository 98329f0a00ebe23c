//! Projects: a schema owned by the project's owner role, three group roles, a `_rejected` table for events that did not fit,
//! and the customer tables `_users` and `_user_mailbox`.

use crate::error::{report, BeaconError, BeaconResult};
use crate::names::{quote_ident, validate_project_name};
use crate::security::{owner_role_name, require_level, require_owner, role_name, AsOwner, Level};
use crate::spi::{exists, run};
use pgrx::prelude::*;

mod drop;
pub use drop::drop_project_objects;

const LEVELS: [Level; 3] = [Level::Read, Level::Write, Level::Admin];

/// Returns an error unless `project` names an existing project. Runs as the owner.
pub fn require_project(project: &str) -> BeaconResult<()> {
    if crate::security::catalog(|| {
        crate::spi::kept_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM beacon.project WHERE name = $1)",
            &[project.into()],
        )
    })?
    .unwrap_or(false)
    {
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
/// every member the project later gets, so it is never adopted. Roles belong to the
/// cluster, so a project name is taken in every database once one of them has it.
fn require_new_role(role: &str, project: &str) -> BeaconResult<()> {
    if !exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[role.into()],
    )? {
        return Ok(());
    }
    let elsewhere = drop::databases_using(&[role.to_string()])?;
    let quoted = elsewhere
        .iter()
        .map(|d| quote_ident(d))
        .collect::<Vec<_>>()
        .join(", ");
    Err(if elsewhere.is_empty() {
        BeaconError::Taken(
            format!("role \"{role}\" already exists: a project's roles must be new"),
            format!(
                "Roles are shared by all databases of the cluster and never adopted. If it is \
                 left over from project \"{project}\" of a dropped database, drop the roles \
                 beacon_{project}_read, _write, _admin and _owner first; otherwise pick another \
                 project name."
            ),
        )
    } else {
        BeaconError::Taken(
            format!(
                "role \"{role}\" already exists and is used by database {quoted} of this \
                 cluster: project names are cluster-wide"
            ),
            format!(
                "Roles are shared by all databases of the cluster, and a restored copy of a \
                 database shares its original's: pick another project name, or drop project \
                 \"{project}\" in database {quoted} first."
            ),
        )
    })
}

/// What each project owner role may do in schema `beacon`, beyond what PUBLIC may: append
/// to the counters its stream triggers write, and name the commit-time merge trigger
/// function in the triggers of its immediate queries. Nothing else of the catalog: the
/// rest is read and written as the extension owner (`security::catalog`).
const OWNER_CATALOG_GRANTS: [(&str, &str); 3] = [
    (
        "beacon.subscription_sent",
        "GRANT INSERT ON beacon.subscription_sent TO {owner}",
    ),
    (
        "beacon.subscription_failure",
        "GRANT INSERT ON beacon.subscription_failure TO {owner}",
    ),
    (
        "beacon._cq_merge()",
        "GRANT EXECUTE ON FUNCTION beacon._cq_merge() TO {owner}",
    ),
];

/// `OWNER_CATALOG_GRANTS`, for those objects the installed version has (a database still
/// at an older version's catalog lacks some until its upgrade, which grants them again).
fn grant_catalog_rights(name: &str) -> BeaconResult<()> {
    let owner = quote_ident(&owner_role_name(name));
    for (object, grant) in OWNER_CATALOG_GRANTS {
        if exists(
            if object.ends_with(')') {
                "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL"
            } else {
                "SELECT pg_catalog.to_regclass($1) IS NOT NULL"
            },
            &[object.into()],
        )? {
            run(&grant.replace("{owner}", &owner), &[])?;
        }
    }
    Ok(())
}

/// Creates the project's owner role: NOLOGIN and NOINHERIT, no attribute, member of
/// nothing, granted to no one. As the extension owner, with no user input but the checked
/// project name.
fn create_owner_role(name: &str) -> BeaconResult<()> {
    let owner = quote_ident(&owner_role_name(name));
    run(
        &format!("CREATE ROLE {owner} NOLOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"),
        &[],
    )?;
    // a non-superuser extension owner (CREATEROLE) gets ADMIN OPTION on the role from
    // PostgreSQL 16 on, without INHERIT or SET: it cannot act as the role either
    grant_catalog_rights(name)
}

/// Default privileges, set for the owner role (it creates every table of the project):
/// every table is readable by `read` and insertable by `write` without a grant each.
fn set_default_privileges(name: &str) -> BeaconResult<()> {
    let schema = quote_ident(name);
    let owner = quote_ident(&owner_role_name(name));
    let [read, write] = [Level::Read, Level::Write].map(|l| quote_ident(&role_name(name, l)));
    run(
        &format!("GRANT USAGE ON SCHEMA {schema} TO {read}, {write}"),
        &[],
    )?;
    run(
        &format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT SELECT ON TABLES TO {read}"),
        &[],
    )?;
    run(
        &format!("ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} GRANT INSERT ON TABLES TO {write}"),
        &[],
    )
}

fn create(name: &str) -> BeaconResult<()> {
    checked_name(name)?;
    require_owner("create a project")?;
    let extension_owner = AsOwner::enter()?;
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
    require_new_role(&owner_role_name(name), name)?;
    let schema = quote_ident(name);
    let [read, write, admin] = LEVELS.map(|l| quote_ident(&role_name(name, l)));
    for role in [&read, &write, &admin] {
        run(&format!("CREATE ROLE {role} NOLOGIN"), &[])?;
    }
    run(&format!("GRANT {read}, {write} TO {admin}"), &[])?;
    create_owner_role(name)?;
    let owner = quote_ident(&owner_role_name(name));
    run(
        &format!("CREATE SCHEMA {schema} AUTHORIZATION {owner}"),
        &[],
    )?;
    set_default_privileges(name)?;
    run(
        "INSERT INTO beacon.project (name) VALUES ($1)",
        &[name.into()],
    )?;
    drop(extension_owner);
    // the project's own tables are made by its owner role
    let _project = AsOwner::for_project(name)?;
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
    crate::users::create_table(name)?;
    crate::mailbox::create_table(name)?;
    Ok(())
}

/// Hands a table of the project's schema that someone else made (only a superuser or the
/// extension owner can create there) to the project's owner role, before pg_beacon builds
/// on it as that role: everything in a project's schema belongs to its owner role. As the
/// extension owner; ALTER … OWNER runs no code of the table's.
pub fn adopt_table(project: &str, table: &str) -> BeaconResult<()> {
    let _owner = AsOwner::enter()?;
    let foreign = exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
                           AND c.relowner <> n.nspowner)",
        &[project.into(), table.into()],
    )? && exists(
        "SELECT EXISTS (SELECT 1 FROM beacon.project WHERE name = $1)",
        &[project.into()],
    )?;
    if foreign {
        run(
            &format!(
                "ALTER TABLE {}.{} OWNER TO {}",
                quote_ident(project),
                quote_ident(table),
                quote_ident(&owner_role_name(project))
            ),
            &[],
        )?;
    }
    Ok(())
}

/// Gives projects made by a release without owner roles theirs: creates the role, makes it
/// the owner of the schema and everything in it, and moves the default privileges to it —
/// what `create` would have made. Called by `beacon.regenerate()` (every upgrade script
/// runs it) before anything is regenerated as the project owner. As the extension owner;
/// it runs no code of the project's (ALTER … OWNER and default privileges only).
pub fn give_owner_roles() -> BeaconResult<()> {
    for name in crate::spi::texts("SELECT name FROM beacon.project ORDER BY name", &[])? {
        if exists(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
            &[owner_role_name(&name).into()],
        )? {
            grant_catalog_rights(&name)?;
        }
    }
    for name in crate::spi::texts(
        "SELECT p.name FROM beacon.project p
          WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                              JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                             WHERE n.nspname = p.name AND r.rolname = pg_catalog.format('beacon_%s_owner', p.name))
          ORDER BY p.name",
        &[],
    )? {
        require_new_role(&owner_role_name(&name), &name)?;
        create_owner_role(&name)?;
        let schema = quote_ident(&name);
        let owner = quote_ident(&owner_role_name(&name));
        // relations (sequences of identity columns follow their table), then functions
        for statement in crate::spi::texts(
            "SELECT s FROM (SELECT 0 AS k, c.oid AS o, pg_catalog.format('ALTER %s %s OWNER TO %s',
                      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                      c.oid::pg_catalog.regclass, $2) AS s
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                   AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                                   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass)
             UNION ALL
             SELECT 1, p.oid, pg_catalog.format('ALTER ROUTINE %s OWNER TO %s', p.oid::pg_catalog.regprocedure, $2)
               FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = $1) a
             ORDER BY k, o",
            &[name.as_str().into(), owner.as_str().into()],
        )? {
            run(&statement, &[])?;
        }
        run(&format!("ALTER SCHEMA {schema} OWNER TO {owner}"), &[])?;
        // the old default privileges were the extension owner's
        let [read, write] = [Level::Read, Level::Write].map(|l| quote_ident(&role_name(&name, l)));
        run(
            &format!("ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE SELECT ON TABLES FROM {read}"),
            &[],
        )?;
        run(
            &format!("ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE INSERT ON TABLES FROM {write}"),
            &[],
        )?;
        set_default_privileges(&name)?;
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

/// Drops project `name` with all its collections and data, and its roles unless another
/// database of the cluster (a restored copy) still uses them.
#[pg_extern]
fn drop_project(name: &str) {
    report(drop_project_objects(name))
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
