//! Who may call what, and running DDL as the extension owner.
//!
//! Project schemas, tables and roles are owned by the extension owner, never by the
//! caller: a project's roles only ever get the privileges pg_beacon grants them. Each
//! entry point first checks the *caller's* role membership, then switches to the owner
//! for the work (the same mechanism PostgreSQL uses for SECURITY DEFINER functions,
//! scoped to a Rust guard). A raised ERROR also restores the user: transaction and
//! subtransaction abort reset it.

use crate::error::{BeaconError, BeaconResult};
use pgrx::prelude::*;

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

/// Fails unless the calling role has the privileges of the project's `level` role.
/// Superusers always pass. Called before elevation, so `current_user` is the caller.
pub fn require_level(project: &str, level: Level) -> BeaconResult<()> {
    // as the caller, but read under pg_beacon's settings: an operator or type of the
    // caller's must not decide the check
    let _pinned = Pinned::enter();
    let allowed = Spi::get_one_with_args::<bool>(
        "SELECT (SELECT pg_catalog.pg_has_role(current_user, r.oid, 'USAGE') \
                   FROM pg_catalog.pg_roles r WHERE r.rolname = $1)",
        &[role_name(project, level).into()],
    )?;
    match allowed {
        None => Err(BeaconError::UnknownProject(project.to_string())),
        Some(false) => Err(BeaconError::PermissionDenied(format!(
            "permission denied for project \"{project}\": requires {} access (role {})",
            level.as_str(),
            role_name(project, level)
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

/// While alive, the backend runs as the extension owner with `OWNER_SETTINGS` in force.
/// It is the one way pg_beacon elevates; both are undone when it is dropped, and by
/// PostgreSQL itself when an error aborts the (sub)transaction first.
pub struct AsOwner {
    previous_user: pg_sys::Oid,
    previous_context: i32,
    guc_level: i32,
}

impl AsOwner {
    pub fn enter() -> BeaconResult<AsOwner> {
        // read before anything changes: the caller's search_path cannot matter here, the
        // names are qualified and the parameters typed
        let owner = Spi::get_one::<pg_sys::Oid>(
            "SELECT (SELECT e.extowner FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_beacon'::pg_catalog.name)",
        )?
        .ok_or_else(|| {
            BeaconError::InvalidArgument("extension pg_beacon is not installed".into())
        })?;
        let mut previous_user = pg_sys::InvalidOid;
        let mut previous_context = 0;
        let guc_level = pin_settings(None);
        // SAFETY: see `pin_settings`; the user id is restored on drop or by (sub)transaction
        // abort, as for a SECURITY DEFINER function.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut previous_user, &mut previous_context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                previous_context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
            );
        }
        Ok(AsOwner {
            previous_user,
            previous_context,
            guc_level,
        })
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        // SAFETY: undoes exactly what `enter` did, innermost guard first (Rust drops in
        // reverse order of creation). While an error unwinds, the settings are rolled back
        // as an abort would.
        unsafe {
            pg_sys::SetUserIdAndSecContext(self.previous_user, self.previous_context);
            pg_sys::AtEOXact_GUC(!std::thread::panicking(), self.guc_level);
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
