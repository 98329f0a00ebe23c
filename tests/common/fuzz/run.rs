//! The driver: epochs of fresh tables and queries, rounds of concurrent writes, and after
//! every round each view compared with its query, before and after compaction. A query
//! that failed is dropped at the end of the round and replaced by a new one (created over
//! the rows there are, so backfills are compared too).

use super::classes::{CI_COLLATION, DATE_STYLES, EXTRA_FLOAT_DIGITS, INTERVAL_STYLES, TIME_ZONES};
use super::dml::{Shared, Writer};
use super::gen::{self, row_literal, Env, QuerySpec};
use super::oracle::{self, creator_settings, Attributes};
use super::{describe, error_class, shorten, sqlstate, Config, Rng};
use crate::common::Server;
use postgres::Client;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

const PROJECT: &str = "fz";
const TABLES: usize = 3;
const QUERIES_PER_TABLE: usize = 3;
const WRITERS: usize = 3;
const OPS_PER_ROUND: u64 = 30;
const INITIAL_ROWS: usize = 40;

struct Query {
    name: String,
    mode: &'static str,
    slot: usize,
    spec: QuerySpec,
    time_zone: &'static str,
    types: Attributes,
    failed: bool,
    /// How much of its table's log had run when it was created.
    log_start: usize,
}

#[derive(Default)]
pub struct Summary {
    pub comparisons: u64,
    pub epochs: Vec<u64>,
    pub refusals: u64,
    pub writer_ops: u64,
    /// class → (occurrences, first report)
    pub failures: BTreeMap<String, (u64, String)>,
}

struct Fuzz<'a> {
    config: &'a Config,
    server: &'static Server,
    db: &'static str,
    admin: Client,
    env: Env,
    summary: Summary,
    next_query: u64,
    epoch_seed: u64,
}

fn reader_settings(rng: &mut Rng) -> String {
    format!(
        "SET TimeZone = '{}'; SET DateStyle = '{}'; SET extra_float_digits = {}; SET IntervalStyle = '{}'",
        rng.pick(TIME_ZONES),
        rng.pick(DATE_STYLES),
        rng.pick(EXTRA_FLOAT_DIGITS),
        rng.pick(INTERVAL_STYLES)
    )
}

impl Fuzz<'_> {
    fn fail(&mut self, class: String, text: String) {
        let rerun = self.config.rerun(self.epoch_seed);
        let entry = self
            .summary
            .failures
            .entry(class.clone())
            .or_insert((0, String::new()));
        entry.0 += 1;
        if entry.0 == 1 {
            let report = format!(
                "FUZZ FAILURE [{class}] (epoch seed {})\n{text}\n{rerun}\n",
                self.epoch_seed
            );
            eprintln!("{report}");
            entry.1 = report;
        } else {
            eprintln!(
                "FUZZ FAILURE [{class}] again (epoch seed {})",
                self.epoch_seed
            );
        }
    }

    fn query_text(q: &Query) -> String {
        format!(
            "query {} ({} mode, created in TimeZone {}): {}\n  classes: {}",
            q.name,
            q.mode,
            q.time_zone,
            shorten(&q.spec.sql, 2000),
            q.spec.classes()
        )
    }

    /// The DML classes that ran on the query's table since it was created, and the last
    /// statements.
    fn history(shared: &Shared, q: &Query) -> String {
        let log = shared.logs[q.slot].lock().unwrap();
        let recent = &log[q.log_start.min(log.len())..];
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for entry in recent {
            *counts.entry(entry.class).or_default() += 1;
        }
        let mut text = format!("  DML since creation: {counts:?}\n  last statements:\n");
        for entry in recent.iter().rev().take(4).rev() {
            text.push_str(&format!(
                "    writer {} ({}) {}:\n",
                entry.writer, entry.settings, entry.class
            ));
            for s in &entry.statements {
                text.push_str(&format!("      {}\n", shorten(s, 500)));
            }
        }
        text
    }

    fn create_query(
        &mut self,
        rng: &mut Rng,
        shared: &Shared,
        slot: usize,
        mode: &'static str,
    ) -> Option<Query> {
        let name = format!("q{}", self.next_query);
        self.next_query += 1;
        let spec = gen::query(rng, &self.env, &format!("t{slot}"));
        let time_zone = *rng.pick(TIME_ZONES);
        creator_settings(&mut self.admin, time_zone);
        let created = self.admin.execute(
            "SELECT beacon.create_continuous_query($1, $2, $3, $4)",
            &[&PROJECT, &name, &spec.sql, &mode],
        );
        let mut q = Query {
            name,
            mode,
            slot,
            spec,
            time_zone,
            types: vec![],
            failed: false,
            log_start: shared.logs[slot].lock().unwrap().len(),
        };
        if let Err(e) = created {
            if q.spec.refusal_ok && matches!(sqlstate(&e).as_str(), "0A000" | "42501") {
                self.summary.refusals += 1;
                return None;
            }
            let class = format!("create fails {}", error_class(&describe(&e)));
            let text = format!(
                "{}\n  error: {}",
                Self::query_text(&q),
                shorten(&describe(&e), 1500)
            );
            self.fail(class, text);
            return None;
        }
        self.summary.comparisons += 1;
        match oracle::check_columns(
            &mut self.admin,
            &format!("{PROJECT}.{}", q.name),
            &q.spec,
            time_zone,
        ) {
            Ok(types) => q.types = types,
            Err(e) => {
                self.fail(
                    format!("column names/types ({})", q.spec.classes()),
                    format!("{}\n  {e}", Self::query_text(&q)),
                );
                self.drop_query(&q.name, Self::query_text(&q));
                return None;
            }
        }
        self.compare(rng, shared, &mut q, "right after creation (backfill)");
        Some(q)
    }

    fn compare(&mut self, rng: &mut Rng, shared: &Shared, q: &mut Query, phase: &str) {
        self.summary.comparisons += 1;
        let reader = reader_settings(rng);
        let view = format!("{PROJECT}.{}", q.name);
        if let Err(m) = oracle::compare(
            &mut self.admin,
            &view,
            &q.spec,
            &q.types,
            q.time_zone,
            &reader,
        ) {
            q.failed = true;
            let mut classes: Vec<String> = m
                .columns
                .iter()
                .map(|c| match q.spec.outputs.iter().find(|o| &o.name == c) {
                    Some(o) => o.class(),
                    None => format!(
                        "{c} (keys [{}])",
                        q.spec
                            .keys()
                            .map(|(_, k)| k.class)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
                .collect();
            if classes.is_empty() {
                classes.push("read or compare error".into());
            }
            let class = format!("{} {phase}: {}", q.mode, classes.join(", "));
            let text = format!(
                "{}\n  phase: {phase}; view read with: {reader}\n{}{}",
                Self::query_text(q),
                m.text,
                Self::history(shared, q)
            );
            self.fail(class, text);
        }
    }

    fn drop_query(&mut self, name: &str, what: String) {
        if let Err(e) = self.admin.execute(
            "SELECT beacon.drop_continuous_query($1, $2)",
            &[&PROJECT, &name],
        ) {
            self.fail(
                format!("drop fails {}", sqlstate(&e)),
                format!("{what}\n  {}", describe(&e)),
            );
        }
    }

    fn epoch(&mut self, epoch: u64, rounds: u64) {
        self.epoch_seed = self.config.seed.wrapping_add(epoch);
        self.summary.epochs.push(self.epoch_seed);
        eprintln!("cq_fuzz: epoch {epoch}, seed {}", self.epoch_seed);
        let mut rng = Rng::derive(self.epoch_seed, &[0]);
        let columns: Vec<String> = self
            .env
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.sql_type))
            .collect();
        let shared = Shared {
            env: Env::new(self.env.icu),
            tables: (0..TABLES).map(|s| format!("{PROJECT}.t{s}")).collect(),
            writers: WRITERS,
            logs: (0..TABLES).map(|_| Mutex::new(Vec::new())).collect(),
        };
        for table in &shared.tables {
            self.admin
                .batch_execute(&format!(
                    "CREATE TABLE {table} (id bigint PRIMARY KEY, {})",
                    columns.join(", ")
                ))
                .expect("create a source table");
        }
        let mut queries: Vec<Query> = Vec::new();
        let modes = ["async", "immediate"];
        // one query per table sees every row arrive; the others start from a backfill
        for slot in 0..TABLES {
            let mode = modes[rng.below(2)];
            queries.extend(self.create_query(&mut rng, &shared, slot, mode));
        }
        for (slot, table) in shared.tables.iter().enumerate() {
            // in small batches: a query that makes some rows fail loses only those
            for batch in 0..INITIAL_ROWS / 5 {
                let values: Vec<String> = (batch * 5..batch * 5 + 5)
                    .map(|id| row_literal(&self.env, id as i64, &self.env.row(&mut rng)))
                    .collect();
                let sql = format!(
                    "INSERT INTO {table} (id, {}) VALUES {}",
                    self.env.column_list(),
                    values.join(", ")
                );
                if let Err(e) = self.admin.batch_execute(&sql) {
                    let text = describe(&e);
                    let mut blamed = String::new();
                    for q in queries
                        .iter_mut()
                        .filter(|q| q.slot == slot && text.contains(&format!("_cq_{}_", q.name)))
                    {
                        q.failed = true;
                        blamed.push_str(&format!("{}\n", Self::query_text(q)));
                    }
                    self.fail(
                        format!("writer error {} [initial load]", error_class(&text)),
                        format!(
                            "  {}\n  statement: {}\n{blamed}",
                            shorten(&text, 1500),
                            shorten(&sql, 1500)
                        ),
                    );
                }
            }
        }
        for slot in 0..TABLES {
            for i in 1..QUERIES_PER_TABLE {
                let mode = modes[(i + slot + rng.below(2)) % 2];
                queries.extend(self.create_query(&mut rng, &shared, slot, mode));
            }
        }
        let mut writers: Vec<Writer> = (0..WRITERS)
            .map(|no| Writer::new(no, TABLES, (INITIAL_ROWS / WRITERS + 1) as i64))
            .collect();
        for round in 0..rounds {
            self.round(epoch, round, &mut rng, &shared, &mut writers, &mut queries);
        }
        for q in &queries {
            self.drop_query(&q.name, Self::query_text(q));
        }
        for table in &shared.tables {
            // with every query dropped, nothing of pg_beacon's may still depend on it
            if let Err(e) = self.admin.batch_execute(&format!("DROP TABLE {table}")) {
                self.fail(
                    format!(
                        "objects left after drop_continuous_query: {}",
                        error_class(&describe(&e))
                    ),
                    format!(
                        "  DROP TABLE {table} after dropping its queries: {}",
                        describe(&e)
                    ),
                );
                self.admin
                    .batch_execute(&format!("DROP TABLE {table} CASCADE"))
                    .expect("drop a source table");
            }
        }
    }

    fn round(
        &mut self,
        epoch: u64,
        round: u64,
        rng: &mut Rng,
        shared: &Shared,
        writers: &mut [Writer],
        queries: &mut Vec<Query>,
    ) {
        let done = AtomicBool::new(false);
        let compactor_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let (server, db, seed) = (self.server, self.db, self.epoch_seed);
        let compactor_settings = reader_settings(rng);
        std::thread::scope(|s| {
            let handles: Vec<_> = writers
                .iter_mut()
                .map(|w| {
                    s.spawn(move || {
                        let mut client = server.connect(db);
                        let no = w.no as u64;
                        w.start_round(&mut client, Rng::derive(seed, &[1, epoch, round, no]));
                        w.run(&mut client, shared, OPS_PER_ROUND);
                    })
                })
                .collect();
            // compaction concurrent with the writers, as the background worker does it
            let compactor = s.spawn(|| {
                let mut client = server.connect(db);
                client.batch_execute(&compactor_settings).unwrap();
                while !done.load(Ordering::SeqCst) {
                    if let Err(e) = client.query_one("SELECT beacon.compact()", &[]) {
                        compactor_errors.lock().unwrap().push(describe(&e));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            });
            for h in handles {
                h.join().expect("a writer panicked");
            }
            done.store(true, Ordering::SeqCst);
            compactor.join().expect("the compactor panicked");
        });
        self.summary.writer_ops += OPS_PER_ROUND * WRITERS as u64;
        for e in compactor_errors.into_inner().unwrap() {
            self.fail(
                format!(
                    "beacon.compact() during writes fails {}",
                    &e[..5.min(e.len())]
                ),
                format!(
                    "  while writers ran ({compactor_settings}): {}",
                    shorten(&e, 1500)
                ),
            );
        }
        self.writer_errors(shared, writers, queries);
        for q in queries.iter_mut().filter(|q| !q.failed) {
            self.compare(rng, shared, q, "before compaction");
        }
        let settings = reader_settings(rng);
        self.admin.batch_execute(&settings).unwrap();
        for q in queries.iter_mut().filter(|q| q.mode == "async") {
            if let Err(e) = self
                .admin
                .query_one("SELECT beacon.compact($1, $2)", &[&PROJECT, &q.name])
            {
                q.failed = true;
                let text = format!(
                    "{}\n  compacting with {settings}: {}",
                    Self::query_text(q),
                    shorten(&describe(&e), 1500)
                );
                self.fail(
                    format!(
                        "beacon.compact() fails {} ({})",
                        sqlstate(&e),
                        q.spec.classes()
                    ),
                    text,
                );
            }
        }
        let errors = self
            .admin
            .query(
                "SELECT name, last_error FROM beacon.continuous_queries WHERE project = $1 AND last_error IS NOT NULL",
                &[&PROJECT],
            )
            .expect("beacon.continuous_queries");
        for row in errors {
            let (name, error): (String, String) = (row.get(0), row.get(1));
            if let Some(q) = queries.iter_mut().find(|q| q.name == name) {
                q.failed = true;
                let text = format!(
                    "{}\n  last_error: {}",
                    Self::query_text(q),
                    shorten(&error, 1500)
                );
                self.fail(
                    format!("compaction error recorded: {}", shorten(&error, 80)),
                    text,
                );
            }
        }
        for q in queries.iter_mut().filter(|q| !q.failed) {
            self.compare(rng, shared, q, "after compaction");
        }
        // replace what failed, over the rows there are now
        let failed: Vec<(String, usize, &'static str, String)> = queries
            .iter()
            .filter(|q| q.failed)
            .map(|q| (q.name.clone(), q.slot, q.mode, Self::query_text(q)))
            .collect();
        queries.retain(|q| !q.failed);
        for (name, slot, mode, what) in failed {
            self.drop_query(&name, what);
            if let Some(new) = self.create_query(rng, shared, slot, mode) {
                queries.push(new);
            }
        }
    }

    /// Every writer error is a failure: the workload cannot fail without pg_beacon. The
    /// queries an error names (by their hidden tables) are blamed and replaced.
    fn writer_errors(&mut self, shared: &Shared, writers: &mut [Writer], queries: &mut [Query]) {
        let mut groups: BTreeMap<String, (u64, String)> = BTreeMap::new();
        let mut blamed_names = Vec::new();
        for w in writers.iter_mut() {
            for e in std::mem::take(&mut w.errors) {
                let on_table: Vec<&Query> = queries.iter().filter(|q| q.slot == e.table).collect();
                let named: Vec<&Query> = on_table
                    .iter()
                    .copied()
                    .filter(|q| {
                        e.text.contains(&format!("_cq_{}_", q.name))
                            || e.text.contains(&format!("\"{}\"", q.name))
                    })
                    .collect();
                let blamed = if named.is_empty() { &on_table } else { &named };
                blamed_names.extend(named.iter().map(|q| q.name.clone()));
                let mut modes: Vec<&str> = blamed.iter().map(|q| q.mode).collect();
                modes.sort();
                modes.dedup();
                let class = format!(
                    "writer error {} [{}]",
                    error_class(&e.text),
                    modes.join(", ")
                );
                let entry = groups.entry(class).or_insert((0, String::new()));
                entry.0 += 1;
                if entry.1.is_empty() {
                    let mut text = format!(
                        "  writer {} ({}) on table t{}, DML class {}: {}\n  statement: {}\n",
                        w.no,
                        e.settings,
                        e.table,
                        e.class,
                        shorten(&e.text, 2000),
                        shorten(&e.statement, 1500)
                    );
                    for q in blamed {
                        text.push_str(&format!("{}\n", Self::query_text(q)));
                    }
                    if let Some(q) = blamed.first() {
                        text.push_str(&Self::history(shared, q));
                    }
                    entry.1 = text;
                }
            }
        }
        for (class, (count, text)) in groups {
            self.fail(
                class,
                format!("{count} statements failed so this round; the first:\n{text}"),
            );
        }
        for q in queries
            .iter_mut()
            .filter(|q| blamed_names.contains(&q.name))
        {
            q.failed = true;
        }
    }
}

/// Runs the fuzzer against `server` in a fresh database; the summary says what failed.
pub fn run(config: &Config, server: &'static Server) -> Summary {
    let db = "cq_fuzz";
    let mut admin = server.fresh_db(db);
    eprintln!(
        "cq_fuzz: seed {} ({})",
        config.seed,
        config.rerun(config.seed)
    );
    // compactions happen where the fuzzer says: concurrently with the writers and after
    // each round, never between a round and the comparison that reads the pending deltas
    admin
        .batch_execute("ALTER SYSTEM SET beacon.compact_interval = '1h'")
        .expect("set up");
    admin
        .batch_execute(
            "SELECT pg_reload_conf(); SET TimeZone = 'UTC'; SELECT beacon.create_project('fz')",
        )
        .expect("set up");
    let icu = match admin.batch_execute(CI_COLLATION) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "cq_fuzz: NOTE no ICU on this server ({}): the nondeterministic-collation column and its classes are left out",
                describe(&e)
            );
            false
        }
    };
    let mut fuzz = Fuzz {
        config,
        server,
        db,
        admin,
        env: Env::new(icu),
        summary: Summary::default(),
        next_query: 0,
        epoch_seed: config.seed,
    };
    let started = Instant::now();
    let mut epoch = 0;
    loop {
        match config.seconds {
            Some(seconds) if started.elapsed().as_secs() >= seconds => break,
            None if epoch >= config.epochs => break,
            _ => {}
        }
        fuzz.epoch(epoch, config.rounds);
        epoch += 1;
    }
    fuzz.summary
}
