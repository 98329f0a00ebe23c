//! Dropping a project, in one database of a cluster whose roles are shared.
//!
//! A project is a schema (this database) plus four roles (the cluster). A restored copy of
//! a database on the same cluster shares its original's roles, so dropping the project in
//! one database drops that database's objects and privileges only, and the roles with the
//! last database that uses them (`pg_shdepend` says which do).

use super::{require_project, LEVELS};
use crate::error::BeaconResult;
use crate::names::quote_ident;
use crate::security::{owner_role_name, require_owner, role_name, AsOwner};
use crate::spi::{exists, run};
use pgrx::prelude::*;

/// The four role names of `project`, owner last.
fn roles(project: &str) -> Vec<String> {
    let mut roles: Vec<String> = LEVELS.iter().map(|&l| role_name(project, l)).collect();
    roles.push(owner_role_name(project));
    roles
}

/// The other databases of the cluster in which any of `roles` owns something or holds a
/// privilege, by name.
pub fn databases_using(roles: &[String]) -> BeaconResult<Vec<String>> {
    crate::spi::texts(
        "SELECT DISTINCT d.datname::pg_catalog.text
           FROM pg_catalog.pg_shdepend s
           JOIN pg_catalog.pg_database d ON d.oid = s.dbid
          WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
            AND s.refobjid IN (SELECT r.oid FROM pg_catalog.pg_roles r
                                WHERE r.rolname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.name[]))
            AND d.datname OPERATOR(pg_catalog.<>) pg_catalog.current_database()
          ORDER BY 1",
        &[roles.to_vec().into()],
    )
}

/// Serialises the drops of one project's roles across the databases of the cluster: the
/// lock DROP ROLE takes, on the owner role, taken before looking at who else uses the
/// roles. Two databases dropping their copies at once would otherwise each see the other's
/// objects still there (neither committed) and both keep the roles.
fn lock_roles(project: &str) -> BeaconResult<()> {
    let owner = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name)",
        &[owner_role_name(project).into()],
    )?;
    if let Some(owner) = owner {
        // SAFETY: a lock on a shared object, held to the end of the transaction (released
        // by PostgreSQL at commit or abort); the role is looked up again by the statements
        // below, so one dropped meanwhile only makes them find nothing.
        unsafe {
            pg_sys::LockSharedObject(
                pg_sys::AuthIdRelationId,
                owner,
                0,
                pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE,
            )
        };
    }
    Ok(())
}

/// Locks the tables the project's continuous queries read, in name order, before the
/// schema goes: compaction locks a query's tables first, then its hidden tables, and the
/// DROP SCHEMA would otherwise take the hidden tables first and wait for a compaction that
/// waits for it.
fn lock_query_sources(name: &str) -> BeaconResult<()> {
    let tables = crate::spi::texts(
        &format!(
            "SELECT pg_catalog.format('%I.%I', $1, s.t) FROM (
                    SELECT DISTINCT t.t FROM beacon.continuous_query q,
                           pg_catalog.unnest({}) t (t)
                     WHERE q.project = $1) s
              WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1, s.t)) IS NOT NULL
              ORDER BY s.t",
            crate::cq::query_tables_sql("q")?
        ),
        &[name.into()],
    )?;
    for table in tables {
        run(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"), &[])?;
    }
    Ok(())
}

/// Drops `name`'s schema and everything in it, its catalog rows, what its owner role has
/// in this database, and its roles unless another database uses them. Checks the caller
/// first (the extension owner or a superuser); then runs as the extension owner.
pub fn drop_project_objects(name: &str) -> BeaconResult<()> {
    require_owner("drop a project")?;
    let _owner = AsOwner::enter()?;
    require_project(name)?;
    lock_roles(name)?;
    lock_query_sources(name)?;
    // dropping runs none of the project's code: no user trigger fires on DROP. A schema
    // already gone (dropped by hand) leaves the rest to clean up.
    run(
        &format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(name)),
        &[],
    )?;
    run("DELETE FROM beacon.project WHERE name = $1", &[name.into()])?;
    let owner = owner_role_name(name);
    if exists(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
        &[owner.as_str().into()],
    )? {
        // its grants on the catalog, and anything it made outside its schema: in this
        // database only (DROP OWNED works per database)
        run(&format!("DROP OWNED BY {}", quote_ident(&owner)), &[])?;
    }
    let roles = roles(name);
    let elsewhere = databases_using(&roles)?;
    if !elsewhere.is_empty() {
        notice!(
            "pg_beacon: the roles of project \"{name}\" are kept: database(s) {} of this \
             cluster still use them (they are dropped with the project in the last one)",
            elsewhere
                .iter()
                .map(|d| quote_ident(d))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    for role in &roles {
        // a role missing (a restore into another cluster without them) is nothing to drop
        run(&format!("DROP ROLE IF EXISTS {}", quote_ident(role)), &[])?;
    }
    Ok(())
}
