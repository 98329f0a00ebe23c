//! Errors reach clients as PostgreSQL raised them: no Rust backtrace in their DETAIL,
//! whatever the environment of the shell that started the tests or the server.

mod common;

use common::{server, Server};
use postgres::Client;
use std::fs;

fn error_of(client: &mut Client, sql: &str) -> postgres::error::DbError {
    let error = client.batch_execute(sql).expect_err("the statement fails");
    error
        .as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a database error: {error}"))
        .clone()
}

fn environment_of(pid: i32) -> String {
    String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/environ")).unwrap()).replace('\0', "\n")
}

#[test]
fn errors_carry_no_rust_backtrace() {
    // 1. the harness's servers (and scripts/lib.sh's) drop RUST_BACKTRACE from their
    //    environment even when the tests run with it
    std::env::set_var("RUST_BACKTRACE", "1");
    let shared = server();
    let environment = environment_of(shared.postmaster_pid());
    assert!(
        !environment.contains("RUST_BACKTRACE"),
        "the test server inherited RUST_BACKTRACE:\n{environment}"
    );

    // 2. even a server that has it: errors raised by PostgreSQL under pg_beacon's
    //    ProcessUtility hook are re-raised untouched
    let server = Server::start_with_env(&[("RUST_BACKTRACE", "1")]);
    assert!(environment_of(server.postmaster_pid()).contains("RUST_BACKTRACE=1"));
    server.plain_db("plain");
    let mut plain = server.connect("plain");
    let with_extension = {
        server.plain_db("with_extension");
        let mut client = server.connect("with_extension");
        client.batch_execute("CREATE EXTENSION pg_beacon").unwrap();
        client
    };
    for mut client in [plain, with_extension] {
        for (sql, state, message) in [
            (
                "DROP TABLE nonexistent",
                "42P01",
                "table \"nonexistent\" does not exist",
            ),
            (
                "CREATE TABLE t (a int); CREATE TABLE t (a int)",
                "42P07",
                "relation \"t\" already exists",
            ),
            (
                "DROP DATABASE no_such_database",
                "3D000",
                "database \"no_such_database\" does not exist",
            ),
        ] {
            let error = error_of(&mut client, sql);
            assert_eq!(error.code().code(), state, "{sql}");
            assert_eq!(error.message(), message, "{sql}");
            assert_eq!(error.detail(), None, "{sql}: {:?}", error.detail());
            assert_eq!(error.hint(), None, "{sql}");
        }
        plain = client;
        let _ = &plain;
    }
    server.stop_and_remove();
}
