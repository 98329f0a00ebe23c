//! Classes 9, 10 and 11 (settings):
//! - a role that may not drop a database (a pg_read_all_stats member, an outsider, a
//!   project reader) runs DROP DATABASE on one with pg_beacon: it fails, and the database's
//!   scheduler keeps running, same process;
//! - project roles that exist before `create_project` with powers of their own
//!   (SUPERUSER, CREATEDB, membership in pg_read_all_data, …) are refused, not adopted;
//! - `beacon.max_fields` can be changed by superusers only.

use crate::common::attack::*;
use crate::common::{eventually, server};

fn scheduler_pid(db: &str) -> Option<i32> {
    server()
        .connect("postgres")
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_beacon scheduler' AND datname = $1",
            &[&db],
        )
        .unwrap()
        .map(|row| row.get(0))
}

#[test]
fn attacks_roles_cannot_stop_another_databases_scheduler() {
    let _turn = turn();
    world();
    let target = "atk_sched";
    drop(server().fresh_db(target));
    eventually("the scheduler of atk_sched runs", || {
        scheduler_pid(target).is_some()
    });
    let mut findings = Vec::new();
    for role in ["monitor", "outsider", "reader", "schemer"] {
        for (from, sql) in [
            ("postgres", format!("DROP DATABASE {target}")),
            ("postgres", format!("DROP DATABASE IF EXISTS {target}")),
            ("postgres", format!("DROP DATABASE {target} WITH (FORCE)")),
            (DB, format!("DROP DATABASE \"{target}\"")),
        ] {
            eventually("the scheduler of atk_sched runs", || {
                scheduler_pid(target).is_some()
            });
            let before = scheduler_pid(target).unwrap();
            let outcome = Session::connect_to(from, role).run(&sql);
            outcome.assert_refused(&["42501"], &format!("{role}: {sql}"));
            let after = scheduler_pid(target);
            if after != Some(before) {
                findings.push(format!("{role}: {sql}: scheduler {before} -> {after:?}"));
            }
        }
    }
    // legitimate: the owner drops it, and then no scheduler is left
    let mut postgres = server().connect("postgres");
    postgres
        .batch_execute(&format!("DROP DATABASE {target} WITH (FORCE)"))
        .unwrap();
    assert_eq!(scheduler_pid(target), None);
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

/// (variant, the level whose role exists, the attributes it was created with).
const PREEXISTING: &[(&str, &str, &str)] = &[
    ("createdb", "read", "NOLOGIN CREATEDB"),
    ("superuser", "read", "NOLOGIN SUPERUSER"),
    ("readall", "read", "NOLOGIN IN ROLE pg_read_all_data"),
    ("writeall", "write", "NOLOGIN IN ROLE pg_write_all_data"),
    ("files", "read", "NOLOGIN IN ROLE pg_read_server_files"),
    ("createrole", "admin", "NOLOGIN CREATEROLE"),
    ("replication", "write", "NOLOGIN REPLICATION"),
    ("bypassrls", "read", "NOLOGIN BYPASSRLS"),
    ("monitor", "admin", "NOLOGIN IN ROLE pg_monitor"),
    ("signal", "read", "NOLOGIN IN ROLE pg_signal_backend"),
    ("superadmin", "admin", "NOLOGIN SUPERUSER"),
];

#[test]
fn attacks_roles_preexisting_project_roles_with_powers_are_refused() {
    let _turn = turn();
    let mut admin = Session::connect("postgres");
    // legitimate: a project whose roles do not exist yet
    admin.ok(
        "SELECT beacon.create_project('atk10_fresh'); SELECT beacon.drop_project('atk10_fresh')",
    );
    let mut findings = Vec::new();
    for (variant, level, attributes) in PREEXISTING {
        let project = format!("atk10_{variant}");
        let role = format!("beacon_{project}_{level}");
        admin.ok(&format!("CREATE ROLE {role} {attributes}"));
        let outcome = admin.run(&format!("SELECT beacon.create_project('{project}')"));
        match outcome.state() {
            Some("42710") => {}
            other => {
                let now = admin.value(&format!(
                    "SELECT concat_ws(' ', rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls,
                                      (SELECT string_agg(roleid::regrole::text, ',') FROM pg_auth_members WHERE member = r.oid))
                       FROM pg_roles r WHERE rolname = '{role}'"
                ));
                findings.push(format!(
                    "{role} {attributes}: create_project gave {:?}; the role now has: {now}",
                    other.unwrap_or("success")
                ));
            }
        }
        if outcome.error.is_none() {
            admin.ok(&format!("SELECT beacon.drop_project('{project}')"));
        }
        admin.ok(&format!("DROP ROLE IF EXISTS {role}"));
    }
    assert!(
        findings.is_empty(),
        "{} roles adopted:\n{}",
        findings.len(),
        findings.join("\n")
    );
}

#[test]
fn attacks_roles_cannot_change_max_fields() {
    let _turn = turn();
    // legitimate: the superuser may
    let mut admin = Session::connect("postgres");
    admin.ok("SET beacon.max_fields = 1500; RESET beacon.max_fields");
    let mut findings = Vec::new();
    for role in ATTACKERS {
        for sql in [
            "SET beacon.max_fields = 1500".to_string(),
            "SET LOCAL beacon.max_fields = 1".to_string(),
            "SELECT set_config('beacon.max_fields', '1500', false)".to_string(),
            format!("ALTER ROLE {role} SET beacon.max_fields = 1500"),
        ] {
            let mut attacker = Session::connect(role);
            let outcome = attacker.run(&sql);
            if outcome.state() != Some("42501") {
                findings.push(format!(
                    "{role}: {sql} -> {:?}",
                    outcome
                        .error
                        .clone()
                        .map(|e| e.0)
                        .unwrap_or_else(|| "accepted".into())
                ));
            }
            if sql.starts_with("ALTER ROLE") && outcome.error.is_none() {
                admin.ok(&format!("ALTER ROLE {role} RESET beacon.max_fields"));
            }
        }
    }
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
}
