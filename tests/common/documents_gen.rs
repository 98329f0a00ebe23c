//! The generator of the document view fuzzer (tests/documents_fuzz.rs): random tables,
//! random specs over them and random DML on every table.
//!
//! Every table `<prefix>_tN` has the same columns, so that any table can be looked up
//! from any other (itself included): a key (`id` integer or text primary key, `(id, part)`,
//! or a nullable `id` with a UNIQUE index, whose NULL rows have no document), join columns
//! of both families (`a` integer, `b` bigint; `c` text, `d` varchar) from small pools that
//! overlap the ids (so lookups find one row, several, or none, and NULLs match nothing),
//! and payload columns (numeric, timestamptz, boolean, jsonb, and `Note`, mixed case, with
//! quotes, backslashes, newlines and non-ASCII text).
#![allow(dead_code)]

use crate::common::Rng;
use serde_json::{json, Map, Value};

pub fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

pub fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

pub fn between(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.below(hi - lo + 1)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyKind {
    Int,
    Text,
    /// (id integer, part text)
    Pair,
    /// id integer, nullable, UNIQUE
    NullableInt,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    pub key: KeyKind,
}

/// The payload columns (besides the key, the join columns and `part`).
const PAYLOAD: [&str; 5] = ["n", "ts", "flag", "j", "Note"];

impl Table {
    fn id_is_text(&self) -> bool {
        self.key == KeyKind::Text
    }

    pub fn key_columns(&self) -> Vec<&'static str> {
        match self.key {
            KeyKind::Pair => vec!["id", "part"],
            _ => vec!["id"],
        }
    }

    pub fn columns(&self) -> Vec<&'static str> {
        let mut out = vec!["id"];
        if self.key == KeyKind::Pair {
            out.push("part");
        }
        out.extend(["a", "b", "c", "d"]);
        out.extend(PAYLOAD);
        out
    }

    /// Columns of a join family: integers or text.
    fn family(&self, text: bool) -> Vec<&'static str> {
        let mut out = if text { vec!["c", "d"] } else { vec!["a", "b"] };
        if self.id_is_text() == text {
            out.push("id");
        }
        if text && self.key == KeyKind::Pair {
            out.push("part");
        }
        out
    }

    pub fn ddl(&self) -> String {
        let (id, key) = match self.key {
            KeyKind::Int => ("id integer", ", PRIMARY KEY (id)"),
            KeyKind::Text => ("id text", ", PRIMARY KEY (id)"),
            KeyKind::Pair => ("id integer, part text", ", PRIMARY KEY (id, part)"),
            KeyKind::NullableInt => ("id integer UNIQUE", ""),
        };
        format!(
            "CREATE TABLE {} ({id}, a integer, b bigint, c text, d varchar(8), n numeric(8,2), \
             ts timestamptz, flag boolean, j jsonb, \"Note\" text{key})",
            self.name
        )
    }

    fn id_literal(&self, rng: &mut Rng) -> String {
        match self.key {
            KeyKind::Text => format!("'x{}'", rng.below(24)),
            KeyKind::NullableInt if chance(rng, 15) => "NULL".into(),
            _ => rng.below(24).to_string(),
        }
    }

    /// A literal for a column, NULL sometimes (never for key columns that cannot be).
    fn literal(&self, rng: &mut Rng, column: &str) -> String {
        match column {
            "id" => return self.id_literal(rng),
            "part" => return format!("'p{}'", rng.below(3)),
            _ => {}
        }
        if chance(rng, 12) {
            return "NULL".into();
        }
        match column {
            "a" | "b" => rng.below(10).to_string(),
            "c" | "d" => format!("'x{}'", rng.below(10)),
            "n" => format!("{}.{:02}", rng.below(40), rng.below(100)),
            "ts" => format!(
                "timestamptz '2024-03-0{} {:02}:{:02}:00+0{}'",
                1 + rng.below(9),
                rng.below(24),
                rng.below(60),
                rng.below(5)
            ),
            "flag" => pick(rng, &["true", "false"]).to_string(),
            "j" => pick(
                rng,
                &[
                    "'{\"k\": 1}'",
                    "'{\"k\": [1, 2, {\"z\": null}], \"a b\": \"c\"}'",
                    "'[]'",
                    "'\"text\"'",
                    "'3.50'",
                ],
            )
            .to_string(),
            _ => pick(
                rng,
                &[
                    "'plain'",
                    "'it''s'",
                    "'back\\slash'",
                    "E'line\\nbreak\\ttab'",
                    "'ünïcödé ✓'",
                    "'\"quoted\"'",
                    "''",
                ],
            )
            .to_string(),
        }
    }

    fn row(&self, rng: &mut Rng) -> String {
        let values: Vec<String> = self
            .columns()
            .iter()
            .map(|c| self.literal(rng, c))
            .collect();
        format!("({})", values.join(", "))
    }

    fn quoted_columns(&self) -> String {
        self.columns()
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A condition choosing a few rows.
    fn predicate(&self, rng: &mut Rng) -> String {
        match rng.below(6) {
            0 => format!("id = {}", self.id_literal(rng).replace("NULL", "0")),
            1 => format!("a = {}", rng.below(10)),
            2 => format!("c = 'x{}'", rng.below(10)),
            3 => "b IS NULL".into(),
            4 if !self.id_is_text() => format!("id % 5 = {}", rng.below(5)),
            _ => format!("d < 'x{}'", rng.below(4)),
        }
    }

    /// One random statement on this table. `keys` allows key updates (single session).
    pub fn statement(&self, rng: &mut Rng, keys: bool) -> String {
        let t = &self.name;
        match rng.below(10) {
            0..=2 => {
                let rows: Vec<String> = (0..between(rng, 1, 3)).map(|_| self.row(rng)).collect();
                format!(
                    "INSERT INTO {t} ({}) VALUES {} ON CONFLICT DO NOTHING",
                    self.quoted_columns(),
                    rows.join(", ")
                )
            }
            3..=5 => {
                let settable = ["a", "b", "c", "d", "n", "ts", "flag", "j", "Note"];
                let mut sets = Vec::new();
                for _ in 0..between(rng, 1, 2) {
                    let c = *pick(rng, &settable);
                    if !sets
                        .iter()
                        .any(|s: &String| s.starts_with(&format!("\"{c}\" ")))
                    {
                        sets.push(format!("\"{c}\" = {}", self.literal(rng, c)));
                    }
                }
                format!(
                    "UPDATE {t} SET {} WHERE {}",
                    sets.join(", "),
                    self.predicate(rng)
                )
            }
            6 => format!(
                "UPDATE {t} SET a = a + 1, c = d WHERE {}",
                self.predicate(rng)
            ),
            7 if keys => {
                let old = self.id_literal(rng).replace("NULL", "0");
                let new = self.id_literal(rng);
                format!(
                    "UPDATE {t} SET id = {new} WHERE id = {old} AND NOT EXISTS (SELECT 1 FROM {t} x WHERE x.id = {})",
                    new.replace("NULL", "NULL::integer")
                )
            }
            8 => format!("DELETE FROM {t} WHERE {}", self.predicate(rng)),
            _ => format!("UPDATE {t} SET b = a, d = c WHERE {}", self.predicate(rng)),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Schema {
    pub tables: Vec<Table>,
}

impl Schema {
    pub fn random(rng: &mut Rng, prefix: &str) -> Schema {
        let kinds = [
            KeyKind::Int,
            KeyKind::Text,
            KeyKind::Pair,
            KeyKind::NullableInt,
        ];
        let tables = (0..between(rng, 3, 5))
            .map(|i| Table {
                name: format!("{prefix}_t{i}"),
                key: *pick(rng, &kinds),
            })
            .collect();
        Schema { tables }
    }

    pub fn ddl(&self) -> String {
        self.tables
            .iter()
            .map(|t| format!("{};", t.ddl()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The rows of one table.
    pub fn populate(&self, rng: &mut Rng, table: &Table) -> String {
        let rows: Vec<String> = (0..between(rng, 10, 22)).map(|_| table.row(rng)).collect();
        format!(
            "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
            table.name,
            table.quoted_columns(),
            rows.join(", ")
        )
    }

    fn table(&self, name: &str) -> &Table {
        self.tables.iter().find(|t| t.name == name).unwrap()
    }

    pub fn statement(&self, rng: &mut Rng, keys: bool) -> String {
        pick(rng, &self.tables).statement(rng, keys)
    }

    /// `columns` / `exclude` / `rename` of one position, at random.
    fn fields(rng: &mut Rng, table: &Table, spec: &mut Map<String, Value>) {
        let all = table.columns();
        let shown: Vec<&str> = match rng.below(3) {
            0 => all.clone(),
            1 => {
                let list: Vec<&str> = all.iter().copied().filter(|_| chance(rng, 50)).collect();
                spec.insert("columns".into(), json!(list));
                list
            }
            _ => {
                let list: Vec<&str> = all.iter().copied().filter(|_| chance(rng, 30)).collect();
                spec.insert("exclude".into(), json!(list));
                all.iter().copied().filter(|c| !list.contains(c)).collect()
            }
        };
        if !shown.is_empty() && chance(rng, 35) {
            let mut rename = Map::new();
            for _ in 0..between(rng, 1, 2) {
                let c = *pick(rng, &shown);
                rename.insert(c.to_string(), json!(format!("r_{c}")));
            }
            spec.insert("rename".into(), Value::Object(rename));
        }
    }

    /// A random spec: a root, 1–5 lookups down to depth 3, object and array, one or two
    /// on-pairs of either family, order_by, fields, rename, sometimes a `where`.
    pub fn spec(&self, rng: &mut Rng) -> Value {
        let root = pick(rng, &self.tables).clone();
        let mut spec = Map::new();
        spec.insert("from".into(), json!(root.name));
        spec.insert("key".into(), json!(root.key_columns()));
        Schema::fields(rng, &root, &mut spec);
        if chance(rng, 30) {
            let condition = *pick(
                rng,
                &[
                    "a IS DISTINCT FROM 3",
                    "c <> 'x1'",
                    "flag",
                    "n > 10",
                    "a < 5 OR c IS NULL",
                ],
            );
            spec.insert("where".into(), json!(condition));
        }
        // (path, table, depth, fields used by its lookups)
        let mut positions: Vec<(String, Table, u64, Vec<String>)> =
            vec![(String::new(), root, 0, Vec::new())];
        let mut lookups = Vec::new();
        for i in 0..between(rng, 1, 5) {
            let candidates: Vec<usize> = (0..positions.len())
                .filter(|p| positions[*p].2 < 3)
                .collect();
            let parent = *pick(rng, &candidates);
            let parent_table = positions[parent].1.clone();
            let table = pick(rng, &self.tables).clone();
            // the lookup's field: usually new, sometimes a column of the parent (replaced)
            let mut field = format!("l{i}");
            if chance(rng, 15) {
                let c = pick(rng, &parent_table.columns()).to_string();
                if !positions[parent].3.contains(&c) {
                    field = c;
                }
            }
            positions[parent].3.push(field.clone());
            let path = if positions[parent].0.is_empty() {
                field.clone()
            } else {
                format!("{}.{field}", positions[parent].0)
            };
            let mut on = Map::new();
            for _ in 0..if chance(rng, 25) { 2 } else { 1 } {
                let text = chance(rng, 50);
                let mine = pick(rng, &parent_table.family(text)).to_string();
                let theirs = pick(rng, &table.family(text)).to_string();
                on.entry(mine).or_insert(json!(theirs));
            }
            let mut lookup = Map::new();
            lookup.insert("path".into(), json!(path));
            lookup.insert("from".into(), json!(table.name));
            lookup.insert(
                "type".into(),
                json!(if chance(rng, 50) { "object" } else { "array" }),
            );
            lookup.insert("on".into(), Value::Object(on));
            let order: Vec<String> = (0..rng.below(3))
                .map(|_| {
                    let c = pick(rng, &table.columns()).to_string();
                    if chance(rng, 40) {
                        format!("{c} DESC")
                    } else {
                        c
                    }
                })
                .collect();
            if !order.is_empty() {
                lookup.insert("order_by".into(), json!(order));
            }
            Schema::fields(rng, &table, &mut lookup);
            lookups.push(Value::Object(lookup));
            positions.push((path, table, positions[parent].2 + 1, Vec::new()));
        }
        // any order: parents may come after their children
        if chance(rng, 30) {
            lookups.reverse();
        }
        spec.insert("lookups".into(), Value::Array(lookups));
        Value::Object(spec)
    }

    pub fn key_table(&self, name: &str) -> &Table {
        self.table(name)
    }
}
