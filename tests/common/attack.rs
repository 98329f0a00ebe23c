//! The world the attack suites (tests/attacks_*.rs) share, and the instruments they measure
//! with: sessions that keep every NOTICE they receive, canaries that leave a trace only when
//! privileged code runs them, snapshots of a session's settings and of the whole database.
//!
//! Roles (one server per test binary, so the names are free):
//! - `outsider`: no membership anywhere, owns nothing;
//! - `reader`, `writer`, `boss`: read, write and admin of project `alpha`, each owning a
//!   schema `own_<role>` (where it may plant functions, operators and types);
//! - `schemer`: no membership, owns schema `own_schemer`;
//! - `monitor`: no membership, member of pg_read_all_stats.
//!
//! Project `beta` holds what an attacker is after: a secret row, a channel, a continuous
//! query and a materialized view whose texts contain [`BETA_MARKER`].
//!
//! A canary is a function an attacker plants (in pg_temp or in its own schema) whose body
//! writes `canary.hits` and advances the sequence `canary.<tag>`. Only the superuser may
//! do either, so a trace means the function ran with elevated privileges; the sequence
//! survives a rollback, so even an elevated run whose transaction failed is seen. Run by
//! the attacker itself the body is harmless (it swallows its own permission errors), so
//! an attack never fails merely because the canary was reached.

use super::server;
use postgres::{Client, Config, NoTls, SimpleQueryMessage};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub const DB: &str = "attacks";
pub const SECRET: &str = "TOP SECRET beta row";
/// Appears in the texts of beta's continuous query and materialized view.
pub const BETA_MARKER: &str = "beta_marker";
/// Appears in the text of alpha's continuous query.
pub const ALPHA_MARKER: &str = "alpha_marker";

/// Roles that attack, by level (see the module comment).
pub const ATTACKERS: [&str; 6] = ["outsider", "reader", "writer", "boss", "schemer", "monitor"];

pub struct World {
    /// Channels of beta's subscriptions: never to be seen by anyone outside beta.
    pub beta_channels: Vec<String>,
    /// A channel of alpha: never to be seen by anyone without read on alpha.
    pub alpha_channel: String,
}

pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let mut admin = server().fresh_db(DB);
        admin
            .batch_execute(&format!(
                r#"
                CREATE ROLE reader LOGIN; CREATE ROLE writer LOGIN; CREATE ROLE boss LOGIN;
                CREATE ROLE outsider LOGIN; CREATE ROLE schemer LOGIN;
                CREATE ROLE monitor LOGIN IN ROLE pg_read_all_stats;
                CREATE SCHEMA own_reader AUTHORIZATION reader;
                CREATE SCHEMA own_writer AUTHORIZATION writer;
                CREATE SCHEMA own_boss AUTHORIZATION boss;
                CREATE SCHEMA own_schemer AUTHORIZATION schemer;
                SELECT beacon.create_project('alpha'); SELECT beacon.create_project('beta');
                SELECT beacon.grant('alpha', 'reader', 'read');
                SELECT beacon.grant('alpha', 'writer', 'write');
                SELECT beacon.grant('alpha', 'boss', 'admin');
                SELECT beacon.collect('alpha', 'events', '{{"url": "/a", "price": 3, "n": 1}}');
                SELECT beacon.collect('beta', 'secret', '{{"note": "{SECRET}"}}');
                SELECT beacon.set_user('beta', 'vip', '{{"card": "4111"}}');
                SELECT beacon.create_continuous_query('beta', 'beta_cq',
                  'SELECT note AS {BETA_MARKER}, count(*) AS n FROM secret GROUP BY note');
                SELECT beacon.create_materialized_view('beta', 'beta_mv',
                  'SELECT count(*) AS {BETA_MARKER} FROM secret');
                SELECT beacon.create_continuous_query('alpha', 'alpha_cq',
                  'SELECT url AS {ALPHA_MARKER}, count(*) AS n FROM events GROUP BY url');
                CREATE SCHEMA canary;
                CREATE TABLE canary.hits (who text, via text, tag text, at timestamptz DEFAULT now());
                REVOKE ALL ON canary.hits FROM PUBLIC;
                GRANT USAGE ON SCHEMA canary TO PUBLIC;
                "#
            ))
            .unwrap();
        let channel = |admin: &mut Client, sql: &str| -> String {
            admin.query_one(sql, &[]).unwrap().get(0)
        };
        let beta_channels = vec![
            channel(
                &mut admin,
                "SELECT beacon.subscribe('beta', 'secret', 'note IS NOT NULL', false)",
            ),
            channel(&mut admin, "SELECT beacon.mailbox_channel('beta')"),
            channel(&mut admin, "SELECT beacon.mailbox_channel('beta', 'vip')"),
        ];
        let alpha_channel = channel(
            &mut admin,
            "SELECT beacon.subscribe('alpha', 'events', NULL, false)",
        );
        World {
            beta_channels,
            alpha_channel,
        }
    })
}

/// One superuser connection for the instruments (canary traces, fingerprints), so that
/// measuring does not churn connections.
pub fn admin() -> MutexGuard<'static, Client> {
    static ADMIN: OnceLock<Mutex<Client>> = OnceLock::new();
    world();
    let mut guard = ADMIN
        .get_or_init(|| Mutex::new(server().connect(DB)))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_closed() {
        *guard = server().connect(DB);
    }
    guard
}

/// Tests that compare whole-database fingerprints, or create objects another test's
/// fingerprint would see, take turns.
pub fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    world();
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What one statement (or batch) did: rows as text, the error if any, the notices.
#[derive(Debug)]
pub struct Outcome {
    pub rows: Vec<Vec<Option<String>>>,
    /// (SQLSTATE, message)
    pub error: Option<(String, String)>,
    pub notices: Vec<String>,
}

impl Outcome {
    pub fn state(&self) -> Option<&str> {
        self.error.as_ref().map(|(s, _)| s.as_str())
    }

    /// Everything the caller got to see, as one string.
    pub fn seen(&self) -> String {
        let mut all = String::new();
        for row in &self.rows {
            for value in row.iter().flatten() {
                all.push_str(value);
                all.push('\n');
            }
        }
        if let Some((_, message)) = &self.error {
            all.push_str(message);
            all.push('\n');
        }
        for notice in &self.notices {
            all.push_str(notice);
            all.push('\n');
        }
        all
    }

    /// Panics unless the attempt failed with one of `states`.
    pub fn assert_refused(&self, states: &[&str], what: &str) {
        match self.state() {
            Some(state) if states.contains(&state) => {}
            Some(state) => {
                panic!("{what}: failed with {state}, expected one of {states:?}: {self:?}")
            }
            None => {
                panic!("{what}: was accepted, expected refusal with one of {states:?}: {self:?}")
            }
        }
    }
}

/// A session that records the notices it receives.
pub struct Session {
    pub client: Client,
    pub role: String,
    notices: Arc<Mutex<Vec<String>>>,
}

impl Session {
    pub fn connect(role: &str) -> Session {
        world();
        Session::connect_to(DB, role)
    }

    pub fn connect_to(db: &str, role: &str) -> Session {
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = notices.clone();
        let mut config: Config = server().dsn(db, role).parse().unwrap();
        config.notice_callback(move |notice| {
            sink.lock().unwrap().push(format!(
                "{}: {} {}",
                notice.severity(),
                notice.message(),
                notice.detail().unwrap_or("")
            ))
        });
        let client = config.connect(NoTls).unwrap_or_else(|e| {
            panic!(
                "connect to {db} as {role}: {e}: {:?}",
                e.as_db_error().map(|d| d.message())
            )
        });
        Session {
            client,
            role: role.to_string(),
            notices,
        }
    }

    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap())
    }

    /// Runs `sql` (one or several statements) with the simple protocol.
    pub fn run(&mut self, sql: &str) -> Outcome {
        self.take_notices();
        let result = self.client.simple_query(sql);
        let notices = self.take_notices();
        match result {
            Ok(messages) => Outcome {
                rows: messages
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).map(str::to_string))
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect(),
                error: None,
                notices,
            },
            Err(e) => {
                let error = match e.as_db_error() {
                    Some(db) => (db.code().code().to_string(), db.message().to_string()),
                    None => ("?????".to_string(), e.to_string()),
                };
                Outcome {
                    rows: Vec::new(),
                    error: Some(error),
                    notices,
                }
            }
        }
    }

    /// Runs `sql`, which must succeed (setup and legitimate uses).
    pub fn ok(&mut self, sql: &str) -> Outcome {
        let outcome = self.run(sql);
        assert!(
            outcome.error.is_none(),
            "{} could not run {sql}: {:?}",
            self.role,
            outcome.error
        );
        outcome
    }

    /// The first value of the first row of `sql`, which must succeed.
    pub fn value(&mut self, sql: &str) -> String {
        self.ok(sql)
            .rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default()
    }

    /// The session's settings an attack could change, its advisory locks and LISTENs.
    pub fn state(&mut self) -> Vec<String> {
        self.ok(
            "SELECT pg_catalog.concat_ws(' | ', current_user, session_user,
                 pg_catalog.current_setting('search_path'),
                 pg_catalog.current_setting('statement_timeout'),
                 pg_catalog.current_setting('lock_timeout'),
                 pg_catalog.current_setting('default_transaction_read_only'),
                 pg_catalog.current_setting('transaction_read_only'),
                 pg_catalog.current_setting('standard_conforming_strings'),
                 pg_catalog.current_setting('beacon.max_fields'),
                 pg_catalog.current_setting('TimeZone'),
                 (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks
                   WHERE pid = pg_catalog.pg_backend_pid() AND locktype = 'advisory'),
                 (SELECT pg_catalog.string_agg(c, ',' ORDER BY c)
                    FROM pg_catalog.pg_listening_channels() AS c))",
        )
        .rows
        .into_iter()
        .flatten()
        .flatten()
        .collect()
    }

    /// The name of this session's temporary schema (created on demand).
    pub fn temp_schema(&mut self) -> String {
        self.ok("CREATE TEMP TABLE IF NOT EXISTS _atk_temp_marker (x int)");
        self.value("SELECT nspname::text FROM pg_namespace WHERE oid = pg_my_temp_schema()")
    }
}

/// What `outcome` showed the attacker of beta (or, for `alpha_too`, of alpha), if anything.
pub fn leaked(outcome: &Outcome, alpha_too: bool) -> Option<String> {
    let seen = outcome.seen();
    let world = world();
    let mut secrets: Vec<(&str, &str)> = vec![
        (SECRET, "beta's secret"),
        (BETA_MARKER, "beta's query texts"),
    ];
    for channel in &world.beta_channels {
        secrets.push((channel.as_str(), "a beta channel"));
    }
    if alpha_too {
        secrets.push((world.alpha_channel.as_str(), "an alpha channel"));
        secrets.push((ALPHA_MARKER, "alpha's query texts"));
    }
    secrets
        .iter()
        .find(|(secret, _)| seen.contains(secret))
        .map(|(_, what)| format!("saw {what}: {seen}"))
}

/// Panics if `outcome` shows the attacker anything of beta (or, for `alpha_too`, of alpha).
pub fn assert_nothing_leaked(outcome: &Outcome, alpha_too: bool, what: &str) {
    if let Some(leak) = leaked(outcome, alpha_too) {
        panic!("{what}: {leak}");
    }
}

/// Everything an attack could read, change or create, as one string (as in security.rs).
/// Each list is ordered by its contents (`ORDER BY 1` in an aggregate orders by the
/// constant 1: by heap order, which the worker's catalog updates change).
const FINGERPRINT: &str = "
SELECT concat_ws(' | ',
  (SELECT string_agg(s.note, ',' ORDER BY s._id) FROM beta.secret s),
  (SELECT count(*) FROM alpha.events),
  (SELECT string_agg(n.nspname || '.' || c.relname || ':' || c.relkind::text || ':' || coalesce(c.relacl::text, ''), ',' ORDER BY n.nspname, c.relname)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'),
  (SELECT string_agg(rolname || rolsuper::text || rolcanlogin::text || rolcreaterole::text || rolcreatedb::text, ',' ORDER BY rolname) FROM pg_roles),
  (SELECT string_agg(roleid::regrole::text || '>' || member::regrole::text, ',' ORDER BY roleid::regrole::text, member::regrole::text) FROM pg_auth_members),
  (SELECT string_agg(name, ',' ORDER BY name) FROM beacon.project),
  (SELECT count(*) FROM beacon.field),
  (SELECT string_agg(channel || ':' || coalesce(condition, ''), ',' ORDER BY channel) FROM beacon.subscription WHERE NOT temporary),
  (SELECT string_agg(project || '.' || name || ':' || query, ',' ORDER BY project, name) FROM beacon.continuous_query),
  (SELECT string_agg(project || '.' || name || ':' || query, ',' ORDER BY project, name) FROM beacon.materialized_view),
  (SELECT string_agg(project || '.' || name || ':' || definition::text, ',' ORDER BY project, name) FROM beacon.continuous_analysis),
  (SELECT count(*) FROM pg_largeobject_metadata),
  (SELECT string_agg(p.oid::regprocedure::text || coalesce(p.proacl::text, ''), ',' ORDER BY p.oid::regprocedure::text) FROM pg_proc p
    WHERE pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
      AND pronamespace::regnamespace::text NOT LIKE 'pg_temp%'))";

pub fn fingerprint() -> String {
    admin().query_one(FINGERPRINT, &[]).unwrap().get(0)
}

/// A function that leaves a trace only when it runs with the superuser's privileges.
pub struct Canary {
    pub tag: String,
}

impl Canary {
    /// A fresh canary (tags must be unique within the binary: [a-z0-9_]).
    pub fn new(tag: &str) -> Canary {
        admin()
            .batch_execute(&format!(
                "DROP SEQUENCE IF EXISTS canary.{tag}; CREATE SEQUENCE canary.{tag};
                 REVOKE ALL ON SEQUENCE canary.{tag} FROM PUBLIC;
                 DELETE FROM canary.hits WHERE tag = '{tag}';"
            ))
            .unwrap();
        Canary {
            tag: tag.to_string(),
        }
    }

    /// `<schema>.canary_<tag>()`: a call of the canary planted in `schema`.
    pub fn call(&self, schema: &str) -> String {
        format!("{schema}.canary_{}()", self.tag)
    }

    /// The statement that plants the canary in `schema` (pg_temp or a schema one owns).
    pub fn plant_sql(&self, schema: &str) -> String {
        let tag = &self.tag;
        format!(
            "CREATE OR REPLACE FUNCTION {schema}.canary_{tag}() RETURNS boolean LANGUAGE plpgsql AS $canary$
             BEGIN
               BEGIN
                 INSERT INTO canary.hits (who, via, tag) VALUES (current_user, session_user, '{tag}');
               EXCEPTION WHEN OTHERS THEN NULL;
               END;
               BEGIN
                 PERFORM pg_catalog.nextval('canary.{tag}');
               EXCEPTION WHEN OTHERS THEN NULL;
               END;
               RAISE NOTICE 'canary {tag} reached as %', current_user;
               RETURN true;
             END $canary$"
        )
    }

    /// How many traces exist: rows in canary.hits, plus 1 if the sequence moved.
    pub fn traces(&self) -> i64 {
        let tag = &self.tag;
        admin()
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM canary.hits WHERE tag = '{tag}')
                          + (SELECT CASE WHEN is_called THEN 1 ELSE 0 END FROM canary.{tag})"
                ),
                &[],
            )
            .unwrap()
            .get(0)
    }

    pub fn who(&self) -> String {
        let who: String = admin()
            .query_one(
                "SELECT coalesce(string_agg(DISTINCT who || ' (session ' || via || ')', ', '), '')
                   FROM canary.hits WHERE tag = $1",
                &[&self.tag],
            )
            .unwrap()
            .get(0);
        if who.is_empty() {
            "the owner, in a transaction that then rolled back (only its sequence moved)".into()
        } else {
            who
        }
    }

    pub fn assert_no_trace(&self, what: &str) {
        let traces = self.traces();
        assert_eq!(
            traces,
            0,
            "{what}: the attacker's canary ran with elevated privileges, as {}",
            self.who()
        );
    }

    pub fn reset(&self) {
        let tag = &self.tag;
        admin()
            .batch_execute(&format!(
                "DELETE FROM canary.hits WHERE tag = '{tag}'; SELECT setval('canary.{tag}', 1, false);"
            ))
            .unwrap();
    }

    /// Shows the trace mechanism works: planted and called by `attacker` the canary leaves
    /// no trace; planted and called by the superuser it leaves one.
    pub fn control(&self, attacker: &str) {
        let mut session = Session::connect(attacker);
        session.ok(&self.plant_sql("pg_temp"));
        session.ok(&format!("SELECT {}", self.call("pg_temp")));
        assert_eq!(
            self.traces(),
            0,
            "the canary must be harmless as {attacker}"
        );
        let mut admin = Session::connect("postgres");
        admin.ok(&self.plant_sql("pg_temp"));
        admin.ok(&format!("SELECT {}", self.call("pg_temp")));
        assert_eq!(
            self.traces(),
            2,
            "the canary must leave traces as the superuser"
        );
        self.reset();
    }
}

/// A role that an injected `CREATE ROLE` would make.
pub fn role_exists(role: &str) -> bool {
    admin()
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .unwrap()
        .get(0)
}

/// Drops `role` if an attack created it, so a failing test leaves the others a clean slate.
pub fn drop_role_if_exists(role: &str) {
    let _ = admin().batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
}

/// A SQL string literal.
pub fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Operators an attacker defines in its own schema, shadowing pg_catalog's for code that
/// runs with the attacker's `search_path = <schema>, pg_catalog`: (operator, left, right,
/// result, the built-in function it forwards to).
const SHADOWED_OPERATORS: &[(&str, &str, &str, &str, &str)] = &[
    ("=", "text", "text", "boolean", "texteq"),
    ("<>", "text", "text", "boolean", "textne"),
    ("=", "name", "text", "boolean", "nameeqtext"),
    ("=", "name", "name", "boolean", "nameeq"),
    ("=", "integer", "integer", "boolean", "int4eq"),
    ("=", "bigint", "bigint", "boolean", "int8eq"),
    ("=", "oid", "oid", "boolean", "oideq"),
    (
        "=",
        "timestamptz",
        "timestamptz",
        "boolean",
        "timestamptz_eq",
    ),
    (">", "integer", "integer", "boolean", "int4gt"),
    (">", "bigint", "bigint", "boolean", "int8gt"),
    (">=", "interval", "interval", "boolean", "interval_ge"),
    ("||", "text", "text", "text", "textcat"),
    ("+", "integer", "integer", "integer", "int4pl"),
    ("+", "bigint", "bigint", "bigint", "int8pl"),
];

/// Plants `canary` and operators that call it in `schema` (which the session's role owns).
pub fn plant_operators_sql(schema: &str, canary: &Canary) -> String {
    let mut sql = canary.plant_sql(schema) + ";\n";
    for (i, (op, left, right, result, builtin)) in SHADOWED_OPERATORS.iter().enumerate() {
        sql.push_str(&format!(
            "CREATE FUNCTION {schema}.op_{i}(a pg_catalog.{left}, b pg_catalog.{right}) RETURNS pg_catalog.{result}
               LANGUAGE sql AS $f$ SELECT CASE WHEN {call} THEN pg_catalog.{builtin}(a, b) END $f$;
             CREATE OPERATOR {schema}.{op} (LEFTARG = pg_catalog.{left}, RIGHTARG = pg_catalog.{right},
                                            FUNCTION = {schema}.op_{i});\n",
            call = canary.call(schema),
            left = pg_type(left),
            right = pg_type(right),
            result = pg_type(result),
        ));
    }
    sql
}

fn pg_type(name: &str) -> &str {
    match name {
        "integer" => "int4",
        "bigint" => "int8",
        "boolean" => "bool",
        other => other,
    }
}

/// Types PostgreSQL looks up by name (not keywords that always mean pg_catalog's), each
/// shadowed by a domain whose CHECK calls the canary. In pg_temp they win even without
/// touching search_path: the temporary schema is searched first for types.
const SHADOWED_TYPES: &[&str] = &[
    "text",
    "regclass",
    "regrole",
    "regprocedure",
    "name",
    "timestamptz",
    "jsonb",
    "json",
    "int8",
    "int4",
    "bigint",
    "oid",
    "bool",
    "interval",
    "numeric",
    "float8",
    "uuid",
];

/// Plants `canary` in `schema` and domains named like built-in types that call it. The
/// canary itself must already exist when `plant_canary` is false.
pub fn shadow_types_sql(schema: &str, canary: &Canary, plant_canary: bool) -> String {
    let mut sql = if plant_canary {
        canary.plant_sql(schema) + ";\n"
    } else {
        String::new()
    };
    for ty in SHADOWED_TYPES {
        let base = if *ty == "bigint" { "int8" } else { ty };
        sql.push_str(&format!(
            "CREATE DOMAIN {schema}.\"{ty}\" AS pg_catalog.{base} CHECK ({});\n",
            canary.call(schema)
        ));
    }
    sql
}

/// Empties `own_<role>`-style schema `schema` again (as the superuser: its owner may not
/// create schemas).
pub fn reset_own_schema(schema: &str, owner: &str) {
    admin()
        .batch_execute(&format!(
            "DROP SCHEMA {schema} CASCADE; CREATE SCHEMA {schema} AUTHORIZATION {owner}"
        ))
        .unwrap();
}

/// A dollar-quoted literal: read the same whatever standard_conforming_strings says.
pub fn dq(text: &str) -> String {
    let mut tag = "$atk$".to_string();
    while text.contains(&tag) {
        tag.insert(tag.len() - 1, 'x');
    }
    format!("{tag}{text}{tag}")
}
