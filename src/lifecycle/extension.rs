//! Dropping the extension: `DROP EXTENSION pg_beacon`, `DROP SCHEMA beacon` and `DROP OWNED
//! BY <extension owner>` either refuse while projects exist (without CASCADE) or drop every
//! project first (CASCADE), so that no schema, table, trigger or role of a project outlives
//! the extension its generated code calls into.
//!
//! It is an event trigger on `ddl_command_start` (sql/lifecycle_extension.sql), not the
//! ProcessUtility hook: the hook exists only in backends that loaded the library, which
//! without `shared_preload_libraries` a session running `DROP EXTENSION` first thing has
//! not, while an event trigger loads it. It fires before PostgreSQL looks at the statement,
//! so it makes PostgreSQL's own permission check for that statement itself and does nothing
//! for a caller PostgreSQL would refuse; it needs no `sql_drop` step, because the projects
//! go first, while they and their roles can still be dropped in the usual order. A
//! superuser can still bypass it (event triggers disabled, `session_replication_role =
//! replica`, single-user mode): that is PostgreSQL's plain behaviour, on purpose.

mod decide;

use crate::error::{report, BeaconError, BeaconResult};
use crate::security::{AsOwner, Pinned};
use crate::spi::{exists, run, texts};
use decide::{decide, Decision, Dropping};
use pgrx::pg_sys::{self, NodeTag};
use pgrx::prelude::*;
use std::ffi::CStr;

/// What the statement drops, read from its parse tree before anything is looked up.
enum Statement {
    /// DROP EXTENSION or DROP SCHEMA: the names it lists.
    Extensions(Vec<String>, bool),
    Schemas(Vec<String>, bool),
    /// DROP OWNED BY: the roles it names (those that exist).
    Owned(Vec<pg_sys::Oid>, bool),
}

/// # Safety
/// `list` is null or a List of `String` nodes.
unsafe fn strings(list: *mut pg_sys::List) -> Vec<String> {
    cells(list)
        .iter()
        // SAFETY: DROP EXTENSION and DROP SCHEMA list their names as String nodes
        .map(|cell| unsafe {
            let name = &*cell.ptr_value.cast::<pg_sys::String>();
            CStr::from_ptr(name.sval).to_string_lossy().into_owned()
        })
        .collect()
}

/// # Safety
/// `list` is null or a valid pointer List.
unsafe fn cells<'a>(list: *mut pg_sys::List) -> &'a [pg_sys::ListCell] {
    if list.is_null() {
        &[]
    } else {
        // SAFETY: a List's `elements` holds `length` cells.
        unsafe { std::slice::from_raw_parts((*list).elements, (*list).length as usize) }
    }
}

/// # Safety
/// `node` is null or the parse tree of the statement the event trigger fires for.
unsafe fn statement(node: *mut pg_sys::Node) -> Option<Statement> {
    if node.is_null() {
        return None;
    }
    // SAFETY: the tag says which statement struct `node` is; the lists hold what
    // parsenodes.h says (String nodes, RoleSpecs).
    unsafe {
        match (*node).type_ {
            NodeTag::T_DropStmt => {
                let stmt = &*node.cast::<pg_sys::DropStmt>();
                let cascade = stmt.behavior == pg_sys::DropBehavior::DROP_CASCADE;
                match stmt.removeType {
                    pg_sys::ObjectType::OBJECT_EXTENSION => {
                        Some(Statement::Extensions(strings(stmt.objects), cascade))
                    }
                    pg_sys::ObjectType::OBJECT_SCHEMA => {
                        Some(Statement::Schemas(strings(stmt.objects), cascade))
                    }
                    _ => None,
                }
            }
            NodeTag::T_DropOwnedStmt => {
                let stmt = &*node.cast::<pg_sys::DropOwnedStmt>();
                let roles = cells(stmt.roles)
                    .iter()
                    .map(|cell| cell.ptr_value.cast::<pg_sys::RoleSpec>())
                    // PUBLIC owns nothing; PostgreSQL reports it
                    .filter(|&spec| (*spec).roletype != pg_sys::RoleSpecType::ROLESPEC_PUBLIC)
                    .map(|spec| pg_sys::get_rolespec_oid(spec, true))
                    .filter(|&oid| oid != pg_sys::InvalidOid)
                    .collect();
                Some(Statement::Owned(
                    roles,
                    stmt.behavior == pg_sys::DropBehavior::DROP_CASCADE,
                ))
            }
            _ => None,
        }
    }
}

/// Whether the current user has the privileges of `role`: PostgreSQL's ownership test
/// (superusers pass).
fn acts_as(role: pg_sys::Oid) -> BeaconResult<bool> {
    exists(
        "SELECT pg_catalog.pg_has_role(CURRENT_USER, $1, 'USAGE')",
        &[role.into()],
    )
}

fn role_name(role: pg_sys::Oid) -> BeaconResult<String> {
    Ok(Spi::get_one_with_args::<String>(
        "SELECT pg_catalog.pg_get_userbyid($1)::pg_catalog.text",
        &[role.into()],
    )?
    .unwrap_or_default())
}

/// What the statement would drop of pg_beacon's and whether the caller may run it as
/// PostgreSQL will judge it; `None` when it drops nothing of pg_beacon's, or when
/// PostgreSQL will refuse it anyway (then nothing is done on its behalf).
fn what_it_drops(statement: Statement) -> BeaconResult<Option<(Dropping, bool)>> {
    let row = Spi::connect(|client| {
        client
            .select(
                "SELECT e.extowner, n.nspname::pg_catalog.text, n.nspowner
                   FROM pg_catalog.pg_extension e
                   JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname OPERATOR(pg_catalog.=) 'pg_beacon'::pg_catalog.name",
                None,
                &[],
            )?
            .first()
            .get_three::<pg_sys::Oid, String, pg_sys::Oid>()
    })?;
    let (Some(owner), Some(schema), Some(schema_owner)) = row else {
        return Ok(None);
    };
    Ok(match statement {
        Statement::Extensions(names, cascade) if names.iter().any(|n| n == "pg_beacon") => {
            acts_as(owner)?.then_some((Dropping::Extension, cascade))
        }
        // an extension pg_beacon depends on (plpgsql): CASCADE takes pg_beacon with it
        Statement::Extensions(names, true) if depends_on(&names)? => {
            let mut allowed = true;
            for owner in crate::spi::texts(
                "SELECT e.extowner::pg_catalog.text FROM pg_catalog.pg_extension e
                  WHERE e.extname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.name[])",
                &[names.into()],
            )? {
                allowed &= exists(
                    "SELECT pg_catalog.pg_has_role(CURRENT_USER, $1::pg_catalog.oid, 'USAGE')",
                    &[owner.into()],
                )?;
            }
            allowed.then_some((Dropping::Extension, true))
        }
        // the caller must own the schema (as PostgreSQL checks); dropping the projects
        // then also needs the extension owner's rights, which `drop_project` checks
        Statement::Schemas(names, cascade) if names.contains(&schema) => {
            acts_as(schema_owner)?.then_some((Dropping::Schema(schema), cascade))
        }
        Statement::Owned(roles, cascade) if roles.contains(&owner) => {
            let mut allowed = true;
            for &role in &roles {
                allowed &= acts_as(role)?;
            }
            allowed.then_some((Dropping::OwnedBy(role_name(owner)?), cascade))
        }
        _ => None,
    })
}

/// Whether pg_beacon, or one of its own objects, depends directly on one of the extensions
/// named (or on one of their objects): PostgreSQL then drops all of pg_beacon with them.
fn depends_on(extensions: &[String]) -> BeaconResult<bool> {
    exists(
        "WITH beacon AS (SELECT e.oid FROM pg_catalog.pg_extension e
                          WHERE e.extname OPERATOR(pg_catalog.=) 'pg_beacon'::pg_catalog.name),
              named AS (SELECT e.oid FROM pg_catalog.pg_extension e
                         WHERE e.extname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.name[])
                           AND e.extname OPERATOR(pg_catalog.<>) 'pg_beacon'::pg_catalog.name),
              ext AS (SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid AS id)
         SELECT EXISTS (
                  SELECT 1 FROM pg_catalog.pg_depend d, beacon, named, ext
                   WHERE d.classid OPERATOR(pg_catalog.=) ext.id AND d.objid OPERATOR(pg_catalog.=) beacon.oid
                     AND d.refclassid OPERATOR(pg_catalog.=) ext.id AND d.refobjid OPERATOR(pg_catalog.=) named.oid)
             OR EXISTS (
                  SELECT 1
                    FROM pg_catalog.pg_depend m
                    JOIN pg_catalog.pg_depend d
                      ON d.classid OPERATOR(pg_catalog.=) m.classid AND d.objid OPERATOR(pg_catalog.=) m.objid
                    JOIN pg_catalog.pg_depend x
                      ON x.classid OPERATOR(pg_catalog.=) d.refclassid AND x.objid OPERATOR(pg_catalog.=) d.refobjid,
                         beacon, named, ext
                   WHERE m.refclassid OPERATOR(pg_catalog.=) ext.id AND m.refobjid OPERATOR(pg_catalog.=) beacon.oid
                     AND m.deptype OPERATOR(pg_catalog.=) 'e'
                     AND x.refclassid OPERATOR(pg_catalog.=) ext.id AND x.refobjid OPERATOR(pg_catalog.=) named.oid
                     AND x.deptype OPERATOR(pg_catalog.=) 'e')",
        &[extensions.to_vec().into()],
    )
}

fn guard(statement: Statement) -> BeaconResult<()> {
    let _pinned = Pinned::enter();
    let Some((dropping, cascade)) = what_it_drops(statement)? else {
        return Ok(());
    };
    let projects = {
        let _owner = AsOwner::enter()?;
        // no project is created meanwhile: create_project's INSERT waits for this
        // transaction, and fails once the catalog is gone. The list below is read after
        // the lock, with a new snapshot (READ COMMITTED; under REPEATABLE READ the
        // transaction's snapshot could miss a project committed while this waited)
        run("LOCK TABLE beacon.project IN SHARE ROW EXCLUSIVE MODE", &[])?;
        // a project whose schema is gone or empty has nothing left that calls into the
        // extension: a restore with --clean drops every table and function of a project
        // first, then the extension, then the schemas, and reuses the roles
        texts(
            if cascade {
                "SELECT p.name FROM beacon.project p ORDER BY p.name COLLATE \"C\""
            } else {
                "SELECT p.name FROM beacon.project p
                   JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) p.name
                  WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace OPERATOR(pg_catalog.=) n.oid)
                     OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc f WHERE f.pronamespace OPERATOR(pg_catalog.=) n.oid)
                  ORDER BY p.name COLLATE \"C\""
            },
            &[],
        )?
    };
    match decide(&dropping, cascade, &projects) {
        Decision::Pass => Ok(()),
        Decision::Refuse { message, hint } => Err(BeaconError::StillInUse(message, hint)),
        Decision::DropProjects(projects) => {
            for project in projects {
                crate::project::drop_project_objects(&project)?;
                notice!("pg_beacon: dropped project \"{project}\"");
            }
            Ok(())
        }
    }
}

/// The `ddl_command_start` event trigger function (sql/lifecycle_extension.sql). Internal.
#[pg_extern(sql = false)]
fn _drop_guard(fcinfo: pg_sys::FunctionCallInfo) {
    // SAFETY: PostgreSQL calls an event trigger function with an EventTriggerData as its
    // context; anything else (a direct call is impossible: the function returns
    // event_trigger) is ignored.
    let statement = unsafe {
        let context = (*fcinfo).context;
        if context.is_null() || (*context).type_ != NodeTag::T_EventTriggerData {
            return;
        }
        statement((*context.cast::<pg_sys::EventTriggerData>()).parsetree)
    };
    if let Some(statement) = statement {
        report(guard(statement))
    }
}

extension_sql_file!(
    "../../sql/lifecycle_extension.sql",
    name = "lifecycle_extension",
    requires = ["bootstrap"]
);
