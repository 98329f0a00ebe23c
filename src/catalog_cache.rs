//! What pg_beacon reads of its catalog on every event, remembered per backend until
//! PostgreSQL says that something it came from changed.
//!
//! A steady stream of events would otherwise read the same rows for each one: the
//! extension owner, the project's owner role, the collection's partitioning and fields.
//! PostgreSQL's own caches are kept the same way: a change to a role, a schema or a table
//! queues an invalidation message for every backend, which takes it in at its next
//! transaction start or lock (and here at each lookup, see `generation`). Each message
//! about a role, a schema or a watched table (a collection's table, or pg_beacon's
//! catalog tables, whose changes a trigger turns into such messages) starts a new
//! generation here, and what was remembered in an older one is read again. A message
//! sent by a transaction reaches the others when it commits and its own backend at once,
//! and an abort undoes it locally too, so a remembered value is never one that no
//! committed (or own) catalog state holds.

use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;

thread_local! {
    static GENERATION: Cell<u64> = const { Cell::new(1) };
    static REGISTERED: Cell<bool> = const { Cell::new(false) };
    /// Whether pg_beacon's catalog tables are in `WATCHED` (their oids change when the
    /// extension is dropped and created again, which itself starts a generation).
    static CATALOG_WATCHED: Cell<bool> = const { Cell::new(false) };
    static WATCHED: RefCell<HashSet<pg_sys::Oid>> = RefCell::new(HashSet::new());
}

/// pg_beacon's catalog tables whose rows the cached values come from.
const CATALOG_TABLES: [&str; 3] = ["project", "collection", "field"];

fn next_generation() {
    GENERATION.with(|g| g.set(g.get() + 1));
    CATALOG_WATCHED.with(|c| c.set(false));
    // the set is never borrowed across a call into PostgreSQL, but an invalidation can
    // only make it bigger than needed, never wrong: stale oids only start generations
    WATCHED.with(|w| {
        if let Ok(mut watched) = w.try_borrow_mut() {
            watched.clear();
        }
    });
}

#[pg_guard]
unsafe extern "C-unwind" fn relation_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let watched = relid == pg_sys::InvalidOid
        || WATCHED.with(|w| w.try_borrow().map_or(true, |w| w.contains(&relid)));
    if watched {
        next_generation();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn syscache_changed(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    next_generation();
}

fn register() {
    if REGISTERED.with(|r| r.get()) {
        return;
    }
    // SAFETY: callbacks for the life of the backend (PostgreSQL has no unregistering);
    // they only touch this module's thread-locals and raise no error
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relation_changed), pg_sys::Datum::from(0));
        for cache in [
            pg_sys::SysCacheIdentifier::AUTHOID,
            pg_sys::SysCacheIdentifier::NAMESPACEOID,
        ] {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(syscache_changed),
                pg_sys::Datum::from(0),
            );
        }
    }
    // only once registered: PostgreSQL raises an ERROR when its callback slots are full,
    // and a backend without callbacks must not keep values it would never see change
    REGISTERED.with(|r| r.set(true));
}

fn watch_catalog() {
    if CATALOG_WATCHED.with(|c| c.get()) {
        return;
    }
    // SAFETY: syscache lookups by name that raise no error (missing_ok)
    let namespace = unsafe { pg_sys::get_namespace_oid(c"beacon".as_ptr(), true) };
    if namespace == pg_sys::InvalidOid {
        return;
    }
    for table in CATALOG_TABLES {
        let name = std::ffi::CString::new(table).expect("no NUL in catalog table names");
        // SAFETY: as above
        let relid = unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) };
        if relid != pg_sys::InvalidOid {
            watch(relid);
        }
    }
    CATALOG_WATCHED.with(|c| c.set(true));
}

/// The current generation, after taking in the invalidations committed so far: a value
/// remembered in it is as fresh as a catalog read made now. Read it *before* reading what
/// is to be remembered, so that a change arriving during the read makes it stale.
pub fn generation() -> u64 {
    register();
    // SAFETY: what every lock acquisition does first; needs a transaction, which every
    // caller (a SQL function) is in
    unsafe { pg_sys::AcceptInvalidationMessages() };
    watch_catalog();
    GENERATION.with(|g| g.get())
}

/// Starts a new generation when `relid` changes (DDL on it, or its drop). Call it before
/// reading what depends on the relation.
pub fn watch(relid: pg_sys::Oid) {
    WATCHED.with(|w| {
        w.borrow_mut().insert(relid);
    });
}

/// A per-backend map whose entries live for one generation.
pub struct Remembered<K, V> {
    generation: u64,
    entries: std::collections::HashMap<K, V>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Remembered<K, V> {
    pub fn new() -> Remembered<K, V> {
        Remembered {
            generation: 0,
            entries: std::collections::HashMap::new(),
        }
    }

    /// The entry for `key` if it was stored in generation `now`.
    pub fn get<Q>(&mut self, now: u64, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if self.generation != now {
            self.entries.clear();
            self.generation = now;
            return None;
        }
        self.entries.get(key).cloned()
    }

    /// Stores a value read in generation `read_in` (see `generation`): dropped at once if
    /// a newer generation began while it was read. Kept to `limit` entries.
    pub fn put(&mut self, read_in: u64, key: K, value: V, limit: usize) {
        if read_in != self.generation {
            return;
        }
        if self.entries.len() >= limit {
            self.entries.clear();
        }
        self.entries.insert(key, value);
    }
}

/// Makes every backend read pg_beacon's catalog again (see the module comment): the
/// statement trigger of each catalog table the cached values come from. A C trigger
/// function: it runs for whoever writes the catalog, with no privilege of its own.
#[pg_trigger]
fn _catalog_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByRust>>, pgrx::PgTriggerError> {
    let relid = trigger.relation()?.oid();
    // SAFETY: queues a relcache invalidation of the trigger's own (open) table, sent to
    // every backend at commit and processed by this one at once
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}

extension_sql!(
    r#"
REVOKE ALL ON FUNCTION beacon._catalog_changed() FROM PUBLIC;
CREATE TRIGGER _beacon_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON beacon.project
    FOR EACH STATEMENT EXECUTE FUNCTION beacon._catalog_changed();
CREATE TRIGGER _beacon_catalog_changed AFTER INSERT OR UPDATE OF project, name, partition_period OR DELETE OR TRUNCATE
    ON beacon.collection FOR EACH STATEMENT EXECUTE FUNCTION beacon._catalog_changed();
CREATE TRIGGER _beacon_catalog_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON beacon.field
    FOR EACH STATEMENT EXECUTE FUNCTION beacon._catalog_changed();
"#,
    name = "catalog_changed_triggers",
    requires = [_catalog_changed, "bootstrap", "partitions_catalog"]
);
