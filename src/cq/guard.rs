//! DDL that would silently break a continuous query, refused before it runs (from the
//! ProcessUtility hook in worker.rs). The stored query names its source table and
//! columns, and the capture trigger, compaction and drop are generated from it: renaming
//! the table or a read column, or moving the table to another schema, would make them
//! fail. A child table's rows are read by a query over its parent but fire only the
//! child's triggers, so a source may not become a parent either, nor a partition (rows
//! written through the parent fire the parent's statement triggers). (Dropping or retyping a
//! read column is already refused by PostgreSQL: the `_cq_<name>_columns` view depends
//! on it.)

use crate::error::{report, BeaconError};
use pgrx::pg_sys::{self, NodeTag};
use pgrx::prelude::*;

/// # Safety
/// `node` is null or the utility statement PostgreSQL is about to run.
pub unsafe fn before_utility(node: *mut pg_sys::Node) {
    if node.is_null() {
        return;
    }
    // SAFETY: the tag says which statement struct `node` is; the lists hold what
    // parsenodes.h says (AlterTableCmds, RangeVars).
    unsafe {
        match (*node).type_ {
            NodeTag::T_RenameStmt => {
                let stmt = &*node.cast::<pg_sys::RenameStmt>();
                let renames_table = stmt.renameType == pg_sys::ObjectType::OBJECT_TABLE;
                let renames_column = stmt.renameType == pg_sys::ObjectType::OBJECT_COLUMN
                    && stmt.relationType == pg_sys::ObjectType::OBJECT_TABLE;
                if renames_table {
                    refuse_if_source(stmt.relation, "renaming table", None);
                } else if renames_column && !stmt.subname.is_null() {
                    let column = std::ffi::CStr::from_ptr(stmt.subname).to_string_lossy();
                    refuse_if_source(
                        stmt.relation,
                        &format!("renaming column \"{column}\" of table"),
                        Some(&column),
                    );
                }
            }
            NodeTag::T_AlterObjectSchemaStmt => {
                let stmt = &*node.cast::<pg_sys::AlterObjectSchemaStmt>();
                if stmt.objectType == pg_sys::ObjectType::OBJECT_TABLE {
                    refuse_if_source(stmt.relation, "moving to another schema the table", None);
                }
            }
            NodeTag::T_AlterTableStmt => {
                let stmt = &*node.cast::<pg_sys::AlterTableStmt>();
                for cell in cells(stmt.cmds) {
                    let cmd = &*cell.ptr_value.cast::<pg_sys::AlterTableCmd>();
                    if cmd.def.is_null() {
                        continue;
                    }
                    if cmd.subtype == pg_sys::AlterTableType::AT_AddInherit {
                        refuse_if_source(cmd.def.cast(), "inheriting from table", None);
                    }
                    // rows written through the new parent would fire its triggers only
                    if cmd.subtype == pg_sys::AlterTableType::AT_AttachPartition {
                        let partition = &*cmd.def.cast::<pg_sys::PartitionCmd>();
                        refuse_if_source(
                            partition.name,
                            "attaching as a partition the table",
                            None,
                        );
                    }
                }
            }
            NodeTag::T_CreateStmt => {
                let stmt = &*node.cast::<pg_sys::CreateStmt>();
                for cell in cells(stmt.inhRelations) {
                    refuse_if_source(cell.ptr_value.cast(), "inheriting from table", None);
                }
            }
            _ => {}
        }
    }
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

/// Refuses the statement when `relation` is a continuous query's source (and, given
/// `column`, a column a query reads: the `_cq_<name>_columns` view depends on it).
///
/// # Safety
/// `relation` is null or a valid RangeVar.
unsafe fn refuse_if_source(relation: *mut pg_sys::RangeVar, doing: &str, column: Option<&str>) {
    if relation.is_null() {
        return;
    }
    // SAFETY: a name lookup without a lock; a missing relation is left to PostgreSQL's
    // own error. The statement itself takes the locks it needs.
    let oid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            relation,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    if oid == pg_sys::InvalidOid {
        return;
    }
    // A source is a table with pg_beacon's capture trigger: the pg_catalog tables are
    // readable by everyone, and exist in databases without pg_beacon, unlike its catalog.
    // A column a query or document view reads is one its view depends on (the
    // `_cq_<name>_columns` view, or the `_dv_<name>_source` view).
    let reads = |trigger: &str, view: &str| {
        format!(
            "(EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                       WHERE t.tgrelid = c.oid AND {trigger})
              AND ($2::pg_catalog.text IS NULL OR EXISTS (
                  SELECT 1 FROM pg_catalog.pg_attribute a
                    JOIN pg_catalog.pg_depend d ON d.refobjid = a.attrelid AND d.refobjsubid = a.attnum
                    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
                    JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
                   WHERE a.attrelid = c.oid AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name
                     AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                     AND v.relnamespace = c.relnamespace
                     AND v.relname OPERATOR(pg_catalog.~) '{view}')))"
        )
    };
    let source = Spi::get_one_with_args::<String>(
        &format!(
            "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $1 AND ({} OR {})",
            reads(
                "t.tgname OPERATOR(pg_catalog.=) '_beacon_cq_insert'",
                "^_cq_.*_columns$"
            ),
            reads(
                "pg_catalog.starts_with(t.tgname::pg_catalog.text, '_beacon_dv_')",
                "^_dv_.*_source$"
            )
        ),
        &[oid.into(), column.into()],
    );
    if let Ok(Some(source)) = source {
        report::<()>(Err(BeaconError::Unsupported(format!(
            "{doing} {source} is not supported: continuous queries or document views read \
             it (drop them first, see beacon.continuous_queries and beacon.document_views)"
        ))));
    }
}
