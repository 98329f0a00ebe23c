//! The objects parse analysis resolved, judged by OID: relations, types, functions,
//! operators and collations, each looked up in the catalogs (syscache, never SQL, so the
//! caller's search_path plays no part), each allowed one remembered. Also the bits of
//! PostgreSQL plumbing the walk needs: its memory context, List access, version
//! differences.

use super::{is_hidden_table, Policy, Refusal, TYPES};
use pgrx::pg_sys::{self, Oid};
use std::collections::HashSet;
use std::ffi::{c_char, CStr};

const PG_CATALOG: Oid = Oid::from_u32(pg_sys::PG_CATALOG_NAMESPACE);

pub(super) struct Objects<'p> {
    pub(super) policy: &'p Policy,
    /// Objects already allowed, by OID, so a long statement looks each up once.
    types: HashSet<Oid>,
    functions: HashSet<Oid>,
    operators: HashSet<Oid>,
    collations: HashSet<Oid>,
}

impl<'p> Objects<'p> {
    pub(super) fn new(policy: &'p Policy) -> Objects<'p> {
        Objects {
            policy,
            types: HashSet::new(),
            functions: HashSet::new(),
            operators: HashSet::new(),
            collations: HashSet::new(),
        }
    }

    pub(super) fn refuse<T>(&self, what: impl std::fmt::Display) -> Result<T, Refusal> {
        Err(Refusal::object(format!(
            "{what} is not allowed in a {}",
            self.policy.surface
        )))
    }

    pub(super) fn outside(&self, relation: &str) -> Refusal {
        Refusal::object(format!(
            "relation {relation} is outside project {}",
            self.policy.schema
        ))
    }

    pub(super) fn check_relation(&self, relid: Oid) -> Result<(), Refusal> {
        // SAFETY: lsyscache lookups by OID; NULL names are handled by `owned`.
        let (schema, name, kind) = unsafe {
            (
                owned(pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid))),
                owned(pg_sys::get_rel_name(relid)),
                pg_sys::get_rel_relkind(relid) as u8,
            )
        };
        let label = format!("{schema}.{name}");
        if schema != self.policy.schema {
            return Err(self.outside(&label));
        }
        if let Some(only) = &self.policy.only_table {
            if &name != only {
                return self.refuse(format!(
                    "relation {label} (a filter reads only {schema}.{only})"
                ));
            }
        }
        if is_hidden_table(&name) {
            return self.refuse(format!(
                "relation {label}, one of pg_beacon's hidden tables,"
            ));
        }
        match kind {
            pg_sys::RELKIND_RELATION
            | pg_sys::RELKIND_VIEW
            | pg_sys::RELKIND_MATVIEW
            | pg_sys::RELKIND_PARTITIONED_TABLE => Ok(()),
            _ => self.refuse(format!("relation {label}, not a table or view,")),
        }
    }

    pub(super) fn check_types(&mut self, types: Vec<Oid>) -> Result<(), Refusal> {
        types.into_iter().try_for_each(|oid| self.check_type(oid))
    }

    pub(super) fn check_type(&mut self, oid: Oid) -> Result<(), Refusal> {
        if oid == Oid::INVALID || self.types.contains(&oid) {
            return Ok(());
        }
        // SAFETY: syscache and lsyscache lookups by OID.
        let (row, element) = unsafe { (type_row(oid), pg_sys::get_element_type(oid)) };
        let Some(row) = row else {
            return self.refuse(format!("type {oid}"));
        };
        // SAFETY: format_type_be_qualified only reads the catalogs.
        let label = || unsafe { owned(pg_sys::format_type_be_qualified(oid)) };
        if row.typtype == pg_sys::TYPTYPE_DOMAIN {
            return self.refuse(format!("type {} (a domain)", label()));
        }
        if element != Oid::INVALID {
            self.check_type(element)?;
        } else if row.typtype == pg_sys::TYPTYPE_COMPOSITE {
            // a row type is as allowed as its relation
            self.check_relation(row.typrelid)?;
        } else {
            let allowed = row.namespace == PG_CATALOG
                && if row.typtype == pg_sys::TYPTYPE_PSEUDO {
                    oid == pg_sys::RECORDOID || oid == pg_sys::UNKNOWNOID
                } else {
                    TYPES.contains(&row.name.as_str())
                };
            if !allowed {
                return self.refuse(format!("type {}", label()));
            }
        }
        self.types.insert(oid);
        Ok(())
    }

    pub(super) fn check_function(&mut self, oid: Oid) -> Result<(), Refusal> {
        if self.functions.contains(&oid) {
            return Ok(());
        }
        // SAFETY: lsyscache lookups by OID.
        let (namespace, name) = unsafe {
            (
                pg_sys::get_func_namespace(oid),
                owned(pg_sys::get_func_name(oid)),
            )
        };
        let allowed = if namespace == PG_CATALOG {
            // SAFETY: as above.
            self.policy.functions.contains(name.as_str()) || unsafe { is_cast_function(oid) }
        } else {
            // SAFETY: as above.
            self.policy.beacon_functions.contains(&name.as_str())
                && unsafe { owned(pg_sys::get_namespace_name(namespace)) } == "beacon"
        };
        if !allowed {
            return self.refuse(format!("function {}", function_label(oid)));
        }
        self.functions.insert(oid);
        Ok(())
    }

    /// Functions PostgreSQL picks itself for a clause (RANGE offsets' in_range, a
    /// TABLESAMPLE method): built-ins of the expected name only.
    pub(super) fn check_support_function(&self, oid: Oid, names: &[&str]) -> Result<(), Refusal> {
        if oid == Oid::INVALID {
            return Ok(());
        }
        // SAFETY: lsyscache lookups by OID.
        let (namespace, name) = unsafe {
            (
                pg_sys::get_func_namespace(oid),
                owned(pg_sys::get_func_name(oid)),
            )
        };
        if namespace == PG_CATALOG && names.contains(&name.as_str()) {
            return Ok(());
        }
        self.refuse(format!("function {}", function_label(oid)))
    }

    pub(super) fn check_operator(&mut self, opno: Oid, opfuncid: Oid) -> Result<(), Refusal> {
        if opno == Oid::INVALID || (self.operators.contains(&opno) && opfuncid == Oid::INVALID) {
            return Ok(());
        }
        // SAFETY: a syscache lookup by OID.
        let row = unsafe { operator_row(opno) };
        let Some(row) = row else {
            return self.refuse(format!("operator {opno}"));
        };
        // SAFETY: an lsyscache lookup by OID.
        let allowed = row.namespace == PG_CATALOG
            && self.policy.operators.contains(&row.name.as_str())
            && unsafe { pg_sys::get_func_namespace(row.code) } == PG_CATALOG
            && (opfuncid == Oid::INVALID || opfuncid == row.code);
        if !allowed {
            // SAFETY: lookups by OID.
            let (schema, left, right) = unsafe {
                (
                    owned(pg_sys::get_namespace_name(row.namespace)),
                    type_label(row.left),
                    type_label(row.right),
                )
            };
            let operands = [left, right].into_iter().flatten().collect::<Vec<_>>();
            return self.refuse(format!(
                "operator {schema}.{}({})",
                row.name,
                operands.join(", ")
            ));
        }
        self.operators.insert(opno);
        Ok(())
    }

    pub(super) fn check_collations(&mut self, collations: Vec<Oid>) -> Result<(), Refusal> {
        collations
            .into_iter()
            .try_for_each(|oid| self.check_collation(oid))
    }

    /// `COLLATE "C"` resolves through search_path like any name.
    pub(super) fn check_collation(&mut self, oid: Oid) -> Result<(), Refusal> {
        if oid == Oid::INVALID || self.collations.contains(&oid) {
            return Ok(());
        }
        // SAFETY: a syscache lookup by OID.
        match unsafe { collation_row(oid) } {
            Some((_, namespace)) if namespace == PG_CATALOG => {
                self.collations.insert(oid);
                Ok(())
            }
            Some((name, namespace)) => {
                // SAFETY: as above.
                let schema = unsafe { owned(pg_sys::get_namespace_name(namespace)) };
                self.refuse(format!("collation {schema}.{name}"))
            }
            None => self.refuse(format!("collation {oid}")),
        }
    }
}

/// A C string PostgreSQL returned, as Rust text ("?" for NULL, an object that vanished).
///
/// # Safety
/// `ptr` is null or NUL-terminated.
pub(super) unsafe fn owned(ptr: *const c_char) -> String {
    if ptr.is_null() {
        "?".to_string()
    } else {
        // SAFETY: the caller's promise.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

fn name_of(name: &pg_sys::NameData) -> String {
    // SAFETY: catalog names are NUL-terminated within NAMEDATALEN.
    unsafe { CStr::from_ptr(name.data.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

struct TypeRow {
    name: String,
    namespace: Oid,
    typtype: u8,
    typrelid: Oid,
}

/// Copies what the check needs out of a syscache tuple and releases it.
///
/// # Safety
/// Inside a transaction; `T` is the catalog struct of `cache`.
unsafe fn with_syscache<T, R>(
    cache: u32,
    key: pg_sys::Datum,
    read: impl FnOnce(&T) -> R,
) -> Option<R> {
    // SAFETY: the caller's promise; the tuple is released before returning, and nothing
    // between search and release can fail.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(cache as i32, key);
        if tuple.is_null() {
            return None;
        }
        let result = read(&*pg_sys::GETSTRUCT(tuple).cast::<T>());
        pg_sys::ReleaseSysCache(tuple);
        Some(result)
    }
}

unsafe fn type_row(oid: Oid) -> Option<TypeRow> {
    // SAFETY: TYPEOID tuples are pg_type rows.
    unsafe {
        with_syscache(
            pg_sys::SysCacheIdentifier::TYPEOID,
            oid.into(),
            |t: &pg_sys::FormData_pg_type| TypeRow {
                name: name_of(&t.typname),
                namespace: t.typnamespace,
                typtype: t.typtype as u8,
                typrelid: t.typrelid,
            },
        )
    }
}

struct OperatorRow {
    name: String,
    namespace: Oid,
    left: Oid,
    right: Oid,
    code: Oid,
}

unsafe fn operator_row(oid: Oid) -> Option<OperatorRow> {
    // SAFETY: OPEROID tuples are pg_operator rows.
    unsafe {
        with_syscache(
            pg_sys::SysCacheIdentifier::OPEROID,
            oid.into(),
            |o: &pg_sys::FormData_pg_operator| OperatorRow {
                name: name_of(&o.oprname),
                namespace: o.oprnamespace,
                left: o.oprleft,
                right: o.oprright,
                code: o.oprcode,
            },
        )
    }
}

/// A type as refusals show it: as PostgreSQL prints it, qualified when not visible.
unsafe fn type_label(oid: Oid) -> Option<String> {
    // SAFETY: format_type_be only reads the catalogs.
    (oid != Oid::INVALID).then(|| unsafe { owned(pg_sys::format_type_be(oid)) })
}

/// `schema.name(argument types)`.
fn function_label(oid: Oid) -> String {
    // SAFETY: lsyscache lookups by OID; get_func_signature pallocs the argument types.
    unsafe {
        let mut argtypes: *mut Oid = std::ptr::null_mut();
        let mut nargs = 0;
        pg_sys::get_func_signature(oid, &mut argtypes, &mut nargs);
        let args = if argtypes.is_null() || nargs <= 0 {
            &[][..]
        } else {
            std::slice::from_raw_parts(argtypes, nargs as usize)
        };
        let args: Vec<String> = args.iter().filter_map(|&arg| type_label(arg)).collect();
        format!(
            "{}.{}({})",
            owned(pg_sys::get_namespace_name(pg_sys::get_func_namespace(oid))),
            owned(pg_sys::get_func_name(oid)),
            args.join(", ")
        )
    }
}

unsafe fn collation_row(oid: Oid) -> Option<(String, Oid)> {
    // SAFETY: COLLOID tuples are pg_collation rows.
    unsafe {
        with_syscache(
            pg_sys::SysCacheIdentifier::COLLOID,
            oid.into(),
            |c: &pg_sys::FormData_pg_collation| (name_of(&c.collname), c.collnamespace),
        )
    }
}

/// pg_cast's fixed part (catalog/pg_cast.h, the same in every supported major), which
/// pgrx does not bind.
#[repr(C)]
struct FormDataPgCast {
    oid: Oid,
    castsource: Oid,
    casttarget: Oid,
    castfunc: Oid,
    castcontext: c_char,
    castmethod: c_char,
}

/// Whether `oid` is the function of a cast (the one `x::t` runs), found by its argument
/// and result type as pg_cast's unique index is keyed.
unsafe fn is_cast_function(oid: Oid) -> bool {
    // SAFETY: get_func_signature pallocs the argument types (in the scratch context);
    // CASTSOURCETARGET tuples are pg_cast rows and are released before returning.
    unsafe {
        let mut argtypes: *mut Oid = std::ptr::null_mut();
        let mut nargs = 0;
        let result = pg_sys::get_func_signature(oid, &mut argtypes, &mut nargs);
        if nargs < 1 || argtypes.is_null() {
            return false;
        }
        let tuple = pg_sys::SearchSysCache2(
            pg_sys::SysCacheIdentifier::CASTSOURCETARGET as i32,
            (*argtypes).into(),
            result.into(),
        );
        if tuple.is_null() {
            return false;
        }
        let castfunc = (*pg_sys::GETSTRUCT(tuple).cast::<FormDataPgCast>()).castfunc;
        pg_sys::ReleaseSysCache(tuple);
        castfunc == oid
    }
}

/// A memory context for one check, current while it lasts and deleted afterwards.
pub(super) struct Scratch {
    previous: pg_sys::MemoryContext,
    context: pg_sys::MemoryContext,
}

impl Scratch {
    /// # Safety
    /// Backend thread only; the returned guard must be dropped before anything that was
    /// current before it is used again.
    pub(super) unsafe fn enter() -> Scratch {
        // SAFETY: creates a child of the current context and makes it current, as
        // MemoryContextSwitchTo does; the name is a static string as AllocSet requires.
        unsafe {
            let previous = pg_sys::CurrentMemoryContext;
            let context = pg_sys::AllocSetContextCreateExtended(
                previous,
                c"pg_beacon sql_policy".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            pg_sys::CurrentMemoryContext = context;
            Scratch { previous, context }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // SAFETY: `context` is ours and nothing allocated in it outlives the check (what
        // leaves it, refusals and error reports, is copied into Rust strings first).
        unsafe {
            pg_sys::CurrentMemoryContext = self.previous;
            pg_sys::MemoryContextDelete(self.context);
        }
    }
}

/// # Safety
/// `list` is null or a valid List; the slice must not outlive it.
pub(super) unsafe fn cells<'a>(list: *mut pg_sys::List) -> &'a [pg_sys::ListCell] {
    if list.is_null() {
        &[]
    } else {
        // SAFETY: a List's `elements` holds `length` cells.
        unsafe { std::slice::from_raw_parts((*list).elements, (*list).length as usize) }
    }
}

/// # Safety
/// `list` is null or a valid OID List.
pub(super) unsafe fn oids(list: *mut pg_sys::List) -> Vec<Oid> {
    // SAFETY: the caller's promise: every cell holds an OID.
    unsafe { cells(list).iter().map(|cell| cell.oid_value).collect() }
}

/// What differs between the supported majors.
pub(super) mod version {
    use pgrx::pg_sys::RTEKind;

    /// PostgreSQL 18 represents GROUP BY in the range table.
    #[cfg(feature = "pg18")]
    pub fn is_group_rte(kind: RTEKind::Type) -> bool {
        kind == RTEKind::RTE_GROUP
    }

    #[cfg(not(feature = "pg18"))]
    pub fn is_group_rte(_kind: RTEKind::Type) -> bool {
        false
    }
}
