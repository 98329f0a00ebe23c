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

/// While alive, the backend runs as the extension owner.
pub struct AsOwner {
    previous_user: pg_sys::Oid,
    previous_context: i32,
}

impl AsOwner {
    pub fn enter() -> BeaconResult<AsOwner> {
        let owner = Spi::get_one::<pg_sys::Oid>(
            "SELECT (SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'pg_beacon')",
        )?
        .ok_or_else(|| {
            BeaconError::InvalidArgument("extension pg_beacon is not installed".into())
        })?;
        let mut previous_user = pg_sys::InvalidOid;
        let mut previous_context = 0;
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
        })
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        unsafe { pg_sys::SetUserIdAndSecContext(self.previous_user, self.previous_context) }
    }
}
