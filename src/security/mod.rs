//! Who may call what, and the roles pg_beacon's work runs as.
//!
//! Each entry point first checks the *caller's* role membership, then switches user for
//! the work (the same mechanism PostgreSQL uses for SECURITY DEFINER functions, scoped to
//! a Rust guard). Work inside a project — its tables, the code generated from user SQL,
//! the first fill of a continuous query or materialized view — runs as the project's owner
//! role `beacon_<project>_owner` (`AsOwner::for_project`): NOLOGIN, no attributes, member
//! of nothing, owner of the project's schema and of everything in it, so that even a gap
//! in a checker reaches that one project and no further. The extension owner
//! (`AsOwner::enter`) is used only for what needs it and takes no user SQL: creating and
//! dropping roles and schemas, and reading and writing pg_beacon's own catalog in schema
//! `beacon` (`catalog`), which the project owner roles have no rights on beyond the few
//! tables their triggers append to. A raised ERROR also restores the user: transaction
//! and subtransaction abort reset it.

use crate::catalog_cache::{self, Remembered};
use crate::error::{BeaconError, BeaconResult};
use pgrx::prelude::*;
use std::cell::RefCell;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Read,
    Write,
    Admin,
}

impl Level {
    pub fn parse(level: &str) -> BeaconResult<Level> {
        match level {
            "read" => Ok(Level::Read),
            "write" => Ok(Level::Write),
            "admin" => Ok(Level::Admin),
            other => Err(BeaconError::InvalidArgument(format!(
                "invalid level \"{other}\": expected read, write or admin"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

pub fn role_name(project: &str, level: Level) -> String {
    format!("beacon_{project}_{}", level.as_str())
}

/// The role that owns a project's schema and everything in it. Its suffix is no suffix of
/// a level's (`_read`, `_write`, `_admin`), so it never names another project's role.
pub fn owner_role_name(project: &str) -> String {
    format!("beacon_{project}_owner")
}

/// Fails unless the calling role has the privileges of the project's `level` role.
/// Superusers always pass. Called before elevation, so `current_user` is the caller.
pub fn require_level(project: &str, level: Level) -> BeaconResult<()> {
    let role = role_name(project, level);
    // no SQL runs, so no operator, type or setting of the caller's can take part: the
    // role is looked up and compared through PostgreSQL's own caches, as pg_has_role's
    // 'USAGE' does
    let allowed = match std::ffi::CString::new(role.as_str()) {
        // SAFETY: a NUL-terminated name that outlives the call; both functions only read
        // the role caches
        Ok(name) => unsafe {
            let oid = pg_sys::get_role_oid(name.as_ptr(), true);
            (oid != pg_sys::InvalidOid).then(|| pg_sys::has_privs_of_role(pg_sys::GetUserId(), oid))
        },
        Err(_) => None,
    };
    match allowed {
        None => Err(BeaconError::UnknownProject(project.to_string())),
        Some(false) => Err(BeaconError::PermissionDenied(format!(
            "permission denied for project \"{project}\": requires {} access (role {role})",
            level.as_str(),
        ))),
        Some(true) => Ok(()),
    }
}

/// Creating and dropping projects creates and drops cluster roles, so it is reserved to
/// the extension owner (and superusers, and members of the owner role).
pub fn require_owner(action: &str) -> BeaconResult<()> {
    let _pinned = Pinned::enter();
    let allowed = Spi::get_one::<bool>(
        "SELECT (SELECT pg_catalog.pg_has_role(current_user, e.extowner, 'USAGE') \
                   FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_beacon')",
    )?;
    if allowed == Some(true) {
        Ok(())
    } else {
        Err(BeaconError::PermissionDenied(format!(
            "permission denied to {action}: only the owner of extension pg_beacon or a superuser may"
        )))
    }
}

/// Settings under which every statement pg_beacon runs with the owner's privileges is
/// read, whatever the caller set: names resolve to pg_catalog first and never to the
/// caller's temporary types (an unlisted pg_temp is searched first for types), literals
/// read the same (`'\'` is one backslash), `x = NULL` is not rewritten, and new tables go
/// where the owner's would. Generated SECURITY DEFINER functions carry the same (see
/// `FUNCTION_SETTINGS`).
pub const OWNER_SETTINGS: [(&str, &str); 9] = [
    ("search_path", "pg_catalog, pg_temp"),
    ("standard_conforming_strings", "on"),
    ("backslash_quote", "safe_encoding"),
    ("transform_null_equals", "off"),
    ("array_nulls", "on"),
    ("DateStyle", "ISO, MDY"),
    ("IntervalStyle", "postgres"),
    ("default_tablespace", ""),
    ("default_table_access_method", "heap"),
];

/// The `SET` clauses of a generated SECURITY DEFINER function: `OWNER_SETTINGS`.
pub fn function_settings() -> String {
    OWNER_SETTINGS
        .iter()
        .map(|(name, value)| match *name {
            // a list of schema names: quoted as one string it would name one schema
            // "pg_catalog, pg_temp", and pg_temp would be searched first again
            "search_path" => format!("SET {name} = {value}"),
            _ => format!("SET {name} = {}", crate::names::quote_literal(value)),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Opens a GUC nest level with `OWNER_SETTINGS` in force (`search_path` replaced when
/// given) and returns it, for `AtEOXact_GUC` to roll back: what PostgreSQL does for a
/// function's SET clauses (fmgr_security_definer).
pub fn pin_settings(search_path: Option<&str>) -> i32 {
    // SAFETY: a new nest level, then settings saved at it; AtEOXact_GUC with this level
    // restores them, on the caller's drop or by transaction abort. Names and values are
    // NUL-free constants or checked below.
    unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for (name, value) in OWNER_SETTINGS {
            let value = match (name, search_path) {
                ("search_path", Some(path)) => path,
                _ => value,
            };
            let name = std::ffi::CString::new(name).expect("no NUL in setting names");
            let value = std::ffi::CString::new(value).expect("no NUL in a quoted schema name");
            // most sessions already have most of these: setting a value again would cost as
            // much as a change (a new search path is looked up afresh)
            let current = pg_sys::GetConfigOption(name.as_ptr(), false, false);
            if !current.is_null() && std::ffi::CStr::from_ptr(current) == value.as_c_str() {
                continue;
            }
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                pg_sys::PGERROR as i32,
                false,
            );
        }
        level
    }
}

/// While alive, `OWNER_SETTINGS` are in force for the caller's own privileges: for the
/// checks made before elevating, which decide as much as the elevated code does.
pub struct Pinned {
    guc_level: i32,
}

impl Pinned {
    pub fn enter() -> Pinned {
        Pinned {
            guc_level: pin_settings(None),
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: rolls back the nest level `enter` opened (see `pin_settings`).
        unsafe { pg_sys::AtEOXact_GUC(!std::thread::panicking(), self.guc_level) }
    }
}

thread_local! {
    /// The extension owner while an `AsOwner::for_project` guard is alive: whom `catalog`
    /// switches to. Invalid outside project work.
    static CATALOG_USER: std::cell::Cell<pg_sys::Oid> =
        const { std::cell::Cell::new(pg_sys::InvalidOid) };
    /// How many `AsOwner` guards are alive: pg_beacon's own work is under way.
    static OWN_WORK: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether pg_beacon's own code is running (an `AsOwner` guard is alive): the DDL it runs
/// then is its own, and it keeps its catalog itself (see `lifecycle::ddl`).
pub fn in_own_work() -> bool {
    OWN_WORK.with(|c| c.get() > 0)
}

/// While alive, the backend runs as the extension owner or a project's owner role, with
/// `OWNER_SETTINGS` in force. It is the one way pg_beacon elevates; both are undone when
/// it is dropped, and by PostgreSQL itself when an error aborts the (sub)transaction first.
pub struct AsOwner {
    previous_user: pg_sys::Oid,
    previous_context: i32,
    previous_catalog_user: pg_sys::Oid,
    guc_level: i32,
}

thread_local! {
    /// The extension owner, and each project's owner role (see `catalog_cache`): read on
    /// every call of a project's functions, changed only by DDL on roles and schemas.
    static EXTENSION_OWNER: RefCell<Remembered<(), pg_sys::Oid>> = RefCell::new(Remembered::new());
    static PROJECT_OWNERS: RefCell<Remembered<String, pg_sys::Oid>> = RefCell::new(Remembered::new());
}

fn extension_owner() -> BeaconResult<pg_sys::Oid> {
    let now = catalog_cache::generation();
    if let Some(owner) = EXTENSION_OWNER.with(|c| c.borrow_mut().get(now, &())) {
        return Ok(owner);
    }
    // the caller's search_path cannot matter here: the names are qualified and the
    // parameters typed
    let owner = crate::spi::kept_one::<pg_sys::Oid>(
        "SELECT (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_beacon'::pg_catalog.name)",
        &[],
    )?
    .ok_or_else(|| BeaconError::InvalidArgument("extension pg_beacon is not installed".into()))?;
    EXTENSION_OWNER.with(|c| c.borrow_mut().put(now, (), owner, 1));
    Ok(owner)
}

/// The owner role of a catalogued project, read as the extension owner.
fn project_owner(project: &str) -> BeaconResult<pg_sys::Oid> {
    let now = catalog_cache::generation();
    if let Some(role) = PROJECT_OWNERS.with(|c| c.borrow_mut().get(now, project)) {
        return Ok(role);
    }
    let role = crate::spi::kept_one::<pg_sys::Oid>(
        "SELECT (SELECT r.oid FROM beacon.project p
                   JOIN pg_catalog.pg_namespace n ON n.nspname = p.name
                   JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                  WHERE p.name = $1 AND r.rolname = $2 AND NOT r.rolsuper)",
        &[project.into(), owner_role_name(project).into()],
    )?;
    let Some(role) = role else {
        let known = crate::spi::exists(
            "SELECT EXISTS (SELECT 1 FROM beacon.project WHERE name = $1)",
            &[project.into()],
        )?;
        return Err(if known {
            BeaconError::InvalidArgument(format!(
                "project \"{project}\" has no owner role {}: run ALTER EXTENSION pg_beacon UPDATE",
                owner_role_name(project)
            ))
        } else {
            BeaconError::UnknownProject(project.to_string())
        });
    };
    PROJECT_OWNERS.with(|c| c.borrow_mut().put(now, project.to_string(), role, 1024));
    Ok(role)
}

/// Runs as `user` from now on (keeping the security context bits the caller had).
fn switch_user(user: pg_sys::Oid, context: i32) {
    // SAFETY: the user id is restored by the guard that called this, on drop or by
    // (sub)transaction abort, as for a SECURITY DEFINER function.
    unsafe {
        pg_sys::SetUserIdAndSecContext(user, context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32)
    }
}

impl AsOwner {
    /// As the extension owner: only for creating and dropping roles and schemas and for
    /// pg_beacon's own catalog, never for SQL a caller wrote.
    pub fn enter() -> BeaconResult<AsOwner> {
        let owner = extension_owner()?;
        let guard = AsOwner::open();
        switch_user(owner, guard.previous_context);
        CATALOG_USER.with(|c| c.set(pg_sys::InvalidOid));
        Ok(guard)
    }

    /// As `project`'s owner role: for everything done inside the project. The role is the
    /// one that owns the schema of a catalogued project, is called `beacon_<project>_owner`
    /// and is no superuser, so a role someone else made under that name is never used.
    pub fn for_project(project: &str) -> BeaconResult<AsOwner> {
        let owner = extension_owner()?;
        let guard = AsOwner::open();
        switch_user(owner, guard.previous_context);
        let role = project_owner(project)?;
        switch_user(role, guard.previous_context);
        CATALOG_USER.with(|c| c.set(owner));
        Ok(guard)
    }

    fn open() -> AsOwner {
        let mut previous_user = pg_sys::InvalidOid;
        let mut previous_context = 0;
        let guc_level = pin_settings(None);
        // SAFETY: reads the backend's current user and security context.
        unsafe { pg_sys::GetUserIdAndSecContext(&mut previous_user, &mut previous_context) };
        OWN_WORK.with(|c| c.set(c.get() + 1));
        AsOwner {
            previous_user,
            previous_context,
            previous_catalog_user: CATALOG_USER.with(|c| c.get()),
            guc_level,
        }
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        CATALOG_USER.with(|c| c.set(self.previous_catalog_user));
        OWN_WORK.with(|c| c.set(c.get().saturating_sub(1)));
        // SAFETY: undoes exactly what `enter` did, innermost guard first (Rust drops in
        // reverse order of creation). While an error unwinds, the settings are rolled back
        // as an abort would.
        unsafe {
            pg_sys::SetUserIdAndSecContext(self.previous_user, self.previous_context);
            pg_sys::AtEOXact_GUC(!std::thread::panicking(), self.guc_level);
        }
    }
}

/// Runs `f` as the extension owner when inside project work, for statements on pg_beacon's
/// catalog tables (schema `beacon`), which belong to the extension owner and which the
/// project owner roles may not touch: another project's rows, channel secrets and
/// subscriptions are there. `f` must run fixed catalog SQL with parameters only — nothing
/// that reaches a project's objects, whose triggers, rules or functions the project owner
/// role could have changed. Outside project work (already the extension owner) it just
/// runs `f`.
pub fn catalog<T>(f: impl FnOnce() -> BeaconResult<T>) -> BeaconResult<T> {
    let owner = CATALOG_USER.with(|c| c.get());
    if owner == pg_sys::InvalidOid {
        return f();
    }
    struct Back {
        user: pg_sys::Oid,
        context: i32,
    }
    impl Drop for Back {
        fn drop(&mut self) {
            // SAFETY: back to the project owner role the section started from.
            unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.context) }
        }
    }
    let mut user = pg_sys::InvalidOid;
    let mut context = 0;
    // SAFETY: reads the backend's current user and security context.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let _back = Back { user, context };
    // SAFETY: restored by `_back` on return and while unwinding, and by abort.
    unsafe { pg_sys::SetUserIdAndSecContext(owner, context) };
    f()
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
