//! A real PostgreSQL server with pg_beacon preloaded, one per test binary, for tests that
//! need commits, several sessions, NOTIFY, the background worker or a restart.
//! It runs as the `postgres` OS user (PostgreSQL refuses root), on a free loopback port,
//! in a data directory under /tmp, and is stopped when the test binary exits.
#![allow(dead_code)]

pub mod attack;
pub mod catalog;
pub mod lifecycle;
pub mod sql;

use postgres::{Client, NoTls};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The PostgreSQL binaries to test with: `BEACON_PG_BIN`, which scripts/test.sh points at
/// the private installation it built the extension into (one per major version).
pub fn pg_bin() -> String {
    std::env::var("BEACON_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
}

pub struct Server {
    pub port: u16,
    pub data: PathBuf,
}

static SERVER: OnceLock<Server> = OnceLock::new();

pub fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `pg_command` with variables set in the binary's environment.
fn pg_command_with_env(binary: &str, env: &[(&str, &str)]) -> Command {
    let path = format!("{}/{binary}", pg_bin());
    let mut command = Command::new("env");
    if unsafe { libc::geteuid() } == 0 {
        command = Command::new("runuser");
        command.args(["-u", "postgres", "--", "env"]);
    }
    command
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    for (name, value) in env {
        command.arg(format!("{name}={value}"));
    }
    command.arg(path);
    command
}

/// Runs a PostgreSQL binary as the postgres OS user when we are root.
pub fn pg_command(binary: &str) -> Command {
    let path = format!("{}/{binary}", pg_bin());
    // a server started with RUST_BACKTRACE would attach Rust backtraces to errors
    let mut command = if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", &path]);
        command
    } else {
        Command::new(path)
    };
    command
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    command
}

fn check(command: &mut Command) {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

extern "C" fn stop_at_exit() {
    if let Some(server) = SERVER.get() {
        let _ = pg_command("pg_ctl")
            .args([
                "-D",
                server.data.to_str().unwrap(),
                "stop",
                "-m",
                "immediate",
            ])
            .output();
        let _ = fs::remove_dir_all(&server.data);
    }
}

impl Server {
    fn start() -> Server {
        let server = Server::start_with_env(&[]);
        unsafe { libc::atexit(stop_at_exit) };
        server
    }

    /// A server of the test's own, its postmaster started with `env` added (after the
    /// harness removed RUST_BACKTRACE). The caller stops it with `stop_and_remove`.
    pub fn start_with_env(env: &[(&str, &str)]) -> Server {
        Server::start_with(env, "")
    }

    /// A server of the test's own with `conf` appended to its postgresql.conf (later lines
    /// win). The caller stops it with `stop_and_remove`.
    pub fn start_with(env: &[(&str, &str)], conf: &str) -> Server {
        let port = free_port();
        let data = PathBuf::from(format!("/tmp/pg_beacon_it_{}_{port}", std::process::id()));
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            check(Command::new("chown").args(["postgres:postgres", data.to_str().unwrap()]));
        }
        check(pg_command("initdb").args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]));
        let base = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_beacon'\nfsync = off\nsynchronous_commit = off\n\
             max_connections = 60\nlog_min_messages = warning\n",
            data.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut existing = fs::read_to_string(&conf_path).unwrap();
        existing.push_str(&base);
        existing.push_str(conf);
        fs::write(&conf_path, existing).unwrap();
        let server = Server { port, data };
        server.start_existing_with_env(env);
        server
    }

    pub fn stop_and_remove(&self) {
        self.stop("immediate");
        let _ = fs::remove_dir_all(&self.data);
    }

    /// The postmaster's process id.
    pub fn postmaster_pid(&self) -> i32 {
        fs::read_to_string(self.data.join("postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn start_existing(&self) {
        self.start_existing_with_env(&[]);
    }

    fn start_existing_with_env(&self, env: &[(&str, &str)]) {
        check(pg_command_with_env("pg_ctl", env).args([
            "-D",
            self.data.to_str().unwrap(),
            "-l",
            self.data.join("server.log").to_str().unwrap(),
            "-w",
            "-t",
            "120",
            "start",
        ]));
    }

    pub fn stop(&self, mode: &str) {
        check(pg_command("pg_ctl").args([
            "-D",
            self.data.to_str().unwrap(),
            "-w",
            "stop",
            "-m",
            mode,
        ]));
    }

    pub fn dsn(&self, db: &str, user: &str) -> String {
        format!("host=127.0.0.1 port={} user={user} dbname={db}", self.port)
    }

    pub fn connect_as(&self, db: &str, user: &str) -> Client {
        Client::connect(&self.dsn(db, user), NoTls)
            .unwrap_or_else(|e| panic!("connect to {db} as {user}: {e}"))
    }

    pub fn connect(&self, db: &str) -> Client {
        self.connect_as(db, "postgres")
    }

    /// A new database with pg_beacon created in it.
    pub fn fresh_db(&self, name: &str) -> Client {
        self.plain_db(name);
        let mut client = self.connect(name);
        client.batch_execute("CREATE EXTENSION pg_beacon").unwrap();
        client
    }

    /// Drops a database and, first, its pg_beacon projects: their roles belong to the
    /// cluster, outlive the database, and are never adopted by a new project.
    pub fn drop_db(&self, name: &str) {
        let mut admin = self.connect("postgres");
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .unwrap()
            .is_some();
        if exists {
            let mut db = self.connect(name);
            db.batch_execute(
                "DO $$ BEGIN
                   IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_beacon') THEN
                     PERFORM beacon.drop_project(name) FROM beacon.project;
                   END IF;
                 END $$",
            )
            .unwrap();
        }
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .unwrap();
    }

    /// A new, empty database (an old one of that name is dropped with `drop_db`).
    pub fn plain_db(&self, name: &str) {
        self.drop_db(name);
        let mut admin = self.connect("postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
    }
}

/// Polls `condition` until it holds, up to a generous deadline: machines are shared and
/// noisy, so tests never sleep a fixed time or assert a duration.
pub fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(30, what, condition)
}

/// `eventually` with a deadline of `seconds`, for conditions that take rounds of
/// background work (databases taking turns for worker slots).
pub fn eventually_within(seconds: u64, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {seconds} s waiting for: {what}");
}

/// Deterministic pseudo-random numbers (xorshift64*), so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
