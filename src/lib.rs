//! pg_beacon: a real-time product-analytics backend that lives inside PostgreSQL.
//! See DESIGN.md (shared) for the SQL surface and README.md for usage.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod analysis;
mod catalog_cache;
mod collect;
mod cq;
mod documents;
mod error;
mod generated;
mod guc;
mod jsonb;
mod lifecycle;
mod mailbox;
mod mv;
mod names;
mod project;
mod query;
mod security;
mod spi;
mod sql_policy;
mod sqlident;
mod stream;
#[cfg(any(test, feature = "pg_test"))]
mod testing;
mod users;
mod worker;

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    // the worker can only be registered while the server starts with the library preloaded
    // SAFETY: a plain global PostgreSQL sets before loading preloaded libraries; read in
    // _PG_init, on the backend's only thread
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        worker::init_board();
        worker::register_launcher();
        worker::install_drop_database_hook();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_beacon'"]
    }
}
