//! The writers: each its own connection and session settings, each updating and deleting
//! only the rows it owns (`id % writers = no`) and inserting only ids of its own, so that
//! without pg_beacon they never wait for each other while holding row locks.

use super::classes::{DATE_STYLES, DML, EXTRA_FLOAT_DIGITS, INTERVAL_STYLES, TIME_ZONES};
use super::gen::{copy_line, literal, row_literal, Env};
use super::{describe, Rng};
use postgres::{Client, GenericClient};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Mutex;

pub struct WriterError {
    pub table: usize,
    pub class: &'static str,
    pub text: String,
    pub statement: String,
    pub settings: String,
}

pub struct LogEntry {
    pub writer: usize,
    pub class: &'static str,
    pub settings: String,
    pub statements: Vec<String>,
}

/// What every writer of a round reads.
pub struct Shared {
    pub env: Env,
    /// Qualified table names, by slot.
    pub tables: Vec<String>,
    pub writers: usize,
    /// The statements that succeeded, per table slot, since the epoch began.
    pub logs: Vec<Mutex<Vec<LogEntry>>>,
}

pub struct Writer {
    pub no: usize,
    rng: Rng,
    /// Per table slot: the next of this writer's ids is `no + writers * next`.
    pub next: Vec<i64>,
    pub errors: Vec<WriterError>,
    pub ops: u64,
    pub settings: String,
    extra_columns: u64,
    statements: Vec<String>,
}

impl Writer {
    pub fn new(no: usize, tables: usize, first: i64) -> Writer {
        Writer {
            no,
            rng: Rng::new(0),
            next: vec![first; tables],
            errors: Vec::new(),
            ops: 0,
            settings: String::new(),
            extra_columns: 0,
            statements: Vec::new(),
        }
    }

    /// Draws this round's stream and session settings.
    pub fn start_round(&mut self, client: &mut Client, rng: Rng) {
        self.rng = rng;
        self.settings = format!(
            "SET TimeZone = '{}'; SET DateStyle = '{}'; SET extra_float_digits = {}; SET IntervalStyle = '{}'",
            self.rng.pick(TIME_ZONES),
            self.rng.pick(DATE_STYLES),
            self.rng.pick(EXTRA_FLOAT_DIGITS),
            self.rng.pick(INTERVAL_STYLES)
        );
        client
            .batch_execute(&format!(
                "{}; SET statement_timeout = '120s'",
                self.settings
            ))
            .expect("writer settings");
    }

    pub fn run(&mut self, client: &mut Client, shared: &Shared, ops: u64) {
        for _ in 0..ops {
            let slot = self.rng.below(shared.tables.len());
            let class = self.rng.weighted(DML);
            self.statements.clear();
            self.ops += 1;
            match self.op(client, shared, slot, class) {
                Ok(()) => shared.logs[slot].lock().unwrap().push(LogEntry {
                    writer: self.no,
                    class,
                    settings: self.settings.clone(),
                    statements: std::mem::take(&mut self.statements),
                }),
                Err(e) => self.errors.push(WriterError {
                    table: slot,
                    class,
                    text: describe(&e),
                    statement: self.statements.last().cloned().unwrap_or_default(),
                    settings: self.settings.clone(),
                }),
            }
        }
    }

    fn fresh_id(&mut self, shared: &Shared, slot: usize) -> i64 {
        let id = self.no as i64 + shared.writers as i64 * self.next[slot];
        self.next[slot] += 1;
        id
    }

    /// One of this writer's ids that may or may not exist.
    fn own_id(&mut self, shared: &Shared, slot: usize) -> i64 {
        let n = self.rng.below(self.next[slot] as usize) as i64;
        self.no as i64 + shared.writers as i64 * n
    }

    fn own(&self, shared: &Shared) -> String {
        format!("id % {} = {}", shared.writers, self.no)
    }

    /// A condition selecting some rows: by a column's value, by NULL, or by id.
    fn condition(&mut self, shared: &Shared) -> String {
        let column = shared.env.column(&mut self.rng);
        match self.rng.below(4) {
            0 => format!("{} IS NULL", column.name),
            1 => {
                let value = shared.env.value(&mut self.rng, column);
                match value {
                    None => format!("{} IS NOT NULL", column.name),
                    Some(_) => format!("{} = {}", column.name, literal(column, &value)),
                }
            }
            2 => format!("id % 5 = {}", self.rng.below(5)),
            _ => format!("id % 3 <> {}", self.rng.below(3)),
        }
    }

    /// `col = value, …` for one to three columns; values include NULL.
    fn assignments(&mut self, shared: &Shared) -> String {
        let mut names = BTreeSet::new();
        let mut parts = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let column = shared.env.column(&mut self.rng);
            if names.insert(column.name) {
                let value = shared.env.value(&mut self.rng, column);
                parts.push(format!("{} = {}", column.name, literal(column, &value)));
            }
        }
        parts.join(", ")
    }

    fn execute(
        &mut self,
        client: &mut impl GenericClient,
        sql: String,
    ) -> Result<(), postgres::Error> {
        self.statements.push(sql);
        client.batch_execute(self.statements.last().unwrap())
    }

    fn insert_sql(&mut self, shared: &Shared, slot: usize, rows: usize) -> String {
        let values: Vec<String> = (0..rows)
            .map(|_| {
                let id = self.fresh_id(shared, slot);
                let row = shared.env.row(&mut self.rng);
                row_literal(&shared.env, id, &row)
            })
            .collect();
        format!(
            "INSERT INTO {} (id, {}) VALUES {}",
            shared.tables[slot],
            shared.env.column_list(),
            values.join(", ")
        )
    }

    fn update_sql(&mut self, shared: &Shared, slot: usize) -> String {
        let set = self.assignments(shared);
        let condition = self.condition(shared);
        format!(
            "UPDATE {} SET {set} WHERE {} AND {condition}",
            shared.tables[slot],
            self.own(shared)
        )
    }

    fn delete_sql(&mut self, shared: &Shared, slot: usize) -> String {
        let condition = self.condition(shared);
        format!(
            "DELETE FROM {} WHERE {} AND {condition}",
            shared.tables[slot],
            self.own(shared)
        )
    }

    fn op(
        &mut self,
        client: &mut Client,
        shared: &Shared,
        slot: usize,
        class: &'static str,
    ) -> Result<(), postgres::Error> {
        let table = shared.tables[slot].clone();
        let env = &shared.env;
        match class {
            "insert_one" => {
                let sql = self.insert_sql(shared, slot, 1);
                self.execute(client, sql)
            }
            "insert_multi" => {
                let rows = 2 + self.rng.below(40);
                let sql = self.insert_sql(shared, slot, rows);
                self.execute(client, sql)
            }
            "insert_select" => {
                let rows = 1 + self.rng.below(20) as i64;
                let base = self.no as i64 + shared.writers as i64 * self.next[slot];
                self.next[slot] += rows + 1;
                // sometimes one column is replaced by a constant
                let mut columns: Vec<String> =
                    env.columns.iter().map(|c| c.name.to_string()).collect();
                if self.rng.chance(50) {
                    let i = self.rng.below(columns.len());
                    let value = env.value(&mut self.rng, env.columns[i]);
                    columns[i] = literal(env.columns[i], &value);
                }
                let condition = self.condition(shared);
                let sql = format!(
                    "INSERT INTO {table} (id, {}) SELECT {base} + {} * row_number() OVER (ORDER BY id), {} \
                     FROM {table} WHERE {condition} ORDER BY id LIMIT {rows}",
                    env.column_list(),
                    shared.writers,
                    columns.join(", ")
                );
                self.execute(client, sql)
            }
            "copy" => {
                let rows = 1 + self.rng.below(40);
                let mut data = String::new();
                for _ in 0..rows {
                    let id = self.fresh_id(shared, slot);
                    data.push_str(&copy_line(id, &env.row(&mut self.rng)));
                }
                let sql = format!("COPY {table} (id, {}) FROM STDIN", env.column_list());
                self.statements.push(format!("{sql}\n{data}\\."));
                let mut writer = client.copy_in(sql.as_str())?;
                writer.write_all(data.as_bytes()).expect("COPY data");
                writer.finish().map(|_| ())
            }
            "update_move" => {
                let sql = self.update_sql(shared, slot);
                self.execute(client, sql)
            }
            "update_to_null" => {
                let mut sets = Vec::new();
                for _ in 0..1 + self.rng.below(3) {
                    let name = env.column(&mut self.rng).name;
                    if !sets
                        .iter()
                        .any(|s: &String| s.starts_with(&format!("{name} ")))
                    {
                        sets.push(format!("{name} = NULL"));
                    }
                }
                let sql = format!(
                    "UPDATE {table} SET {} WHERE {} AND id % 4 = {}",
                    sets.join(", "),
                    self.own(shared),
                    self.rng.below(4)
                );
                self.execute(client, sql)
            }
            "delete_some" => {
                let sql = self.delete_sql(shared, slot);
                self.execute(client, sql)
            }
            "delete_all_own" => {
                let sql = format!("DELETE FROM {table} WHERE {}", self.own(shared));
                self.execute(client, sql)
            }
            "savepoint_rolled_back" => {
                let mut tx = client.transaction()?;
                let rows = 1 + self.rng.below(10);
                let sql = self.insert_sql(shared, slot, rows);
                self.execute(&mut tx, sql)?;
                let sql = self.update_sql(shared, slot);
                self.execute(&mut tx, sql)?;
                {
                    let mut undone = tx.savepoint("undone")?;
                    self.statements.push("SAVEPOINT undone".into());
                    let rows = 1 + self.rng.below(10);
                    let sql = self.insert_sql(shared, slot, rows);
                    self.execute(&mut undone, sql)?;
                    let sql = self.update_sql(shared, slot);
                    self.execute(&mut undone, sql)?;
                    let sql = self.delete_sql(shared, slot);
                    self.execute(&mut undone, sql)?;
                    self.statements.push("ROLLBACK TO SAVEPOINT undone".into());
                    undone.rollback()?;
                }
                let sql = self.delete_sql(shared, slot);
                self.execute(&mut tx, sql)?;
                self.statements.push("COMMIT".into());
                tx.commit()
            }
            "transaction_rolled_back" => {
                let mut tx = client.transaction()?;
                let rows = 1 + self.rng.below(10);
                let sql = self.insert_sql(shared, slot, rows);
                self.execute(&mut tx, sql)?;
                let sql = self.update_sql(shared, slot);
                self.execute(&mut tx, sql)?;
                let sql = self.delete_sql(shared, slot);
                self.execute(&mut tx, sql)?;
                self.statements.push("ROLLBACK".into());
                tx.rollback()
            }
            "upsert" => {
                let mut ids = BTreeSet::new();
                for _ in 0..1 + self.rng.below(5) {
                    let id = if self.rng.chance(60) {
                        self.own_id(shared, slot)
                    } else {
                        self.fresh_id(shared, slot)
                    };
                    ids.insert(id);
                }
                let values: Vec<String> = ids
                    .iter()
                    .map(|id| row_literal(env, *id, &env.row(&mut self.rng)))
                    .collect();
                let mut sets = BTreeSet::new();
                for _ in 0..1 + self.rng.below(4) {
                    sets.insert(env.column(&mut self.rng).name);
                }
                let sets: Vec<String> =
                    sets.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
                let sql = format!(
                    "INSERT INTO {table} AS t (id, {}) VALUES {} ON CONFLICT (id) DO UPDATE SET {}",
                    env.column_list(),
                    values.join(", "),
                    sets.join(", ")
                );
                self.execute(client, sql)
            }
            "truncate" => self.execute(client, format!("TRUNCATE {table}")),
            "add_column" => {
                self.extra_columns += 1;
                let default = if self.rng.chance(50) {
                    " DEFAULT 7"
                } else {
                    ""
                };
                let sql = format!(
                    "ALTER TABLE {table} ADD COLUMN extra_{}_{} integer{default}",
                    self.no, self.extra_columns
                );
                self.execute(client, sql)
            }
            other => panic!("DML class {other} has no generator"),
        }
    }
}
