//! The generator of the join fuzzer (tests/cq_joins_fuzz.rs): random star/snowflake
//! schemas and random DML on every table (the queries: joins_query.rs).
//!
//! A schema is a tree of 2–4 tables rooted at the fact `f`; dimension `dJ` has a join key
//! `kJ` (not unique, NULL sometimes) that its parent references with column `rJ` (of the
//! same type family: integers of mixed widths, text and varchar). Every table also has
//! attributes `<t>_i2 .. <t>_b` of the types aggregates read. Column names are unique in a
//! schema, so unqualified references resolve; values come from small pools, so groups
//! collide, dimension keys repeat (a fact joins several rows), and some facts match
//! nothing and some dimension rows have no fact.
#![allow(dead_code)]

use crate::common::Rng;

pub fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

pub fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

pub fn between(rng: &mut Rng, lo: u64, hi: u64) -> u64 {
    lo + rng.below(hi - lo + 1)
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Kind {
    I2,
    I4,
    I8,
    Num,
    Txt,
    Date,
    Bool,
    /// A join key or a reference to one: integers or text.
    Key {
        text: bool,
    },
}

pub const ATTRIBUTES: [(&str, &str, Kind); 7] = [
    ("i2", "smallint", Kind::I2),
    ("i4", "integer", Kind::I4),
    ("i8", "bigint", Kind::I8),
    ("num", "numeric", Kind::Num),
    ("txt", "text", Kind::Txt),
    ("d", "date", Kind::Date),
    ("b", "boolean", Kind::Bool),
];

/// (type of the dimension's key, type of the parent's reference, text?)
const KEY_TYPES: [(&str, &str, bool); 7] = [
    ("integer", "integer", false),
    ("bigint", "integer", false),
    ("integer", "smallint", false),
    ("smallint", "bigint", false),
    ("text", "text", true),
    ("varchar(12)", "text", true),
    ("text", "varchar", true),
];

/// A literal of the kind, NULL sometimes.
pub fn literal(rng: &mut Rng, kind: Kind) -> String {
    let null = match kind {
        Kind::Key { .. } => 15,
        _ => 10,
    };
    if chance(rng, null) {
        return "NULL".into();
    }
    match kind {
        Kind::I2 => (rng.below(24) as i64 - 3).to_string(),
        Kind::I4 => pick(
            rng,
            &[
                "0",
                "1",
                "2",
                "3",
                "5",
                "10",
                "-7",
                "46341",
                "2147483647",
                "-2147483648",
            ],
        )
        .to_string(),
        Kind::I8 => pick(
            rng,
            &[
                "0",
                "1",
                "-1",
                "42",
                "3000000000",
                "9223372036854775807",
                "-9223372036854775807",
            ],
        )
        .to_string(),
        // one scale only: equal numerics then print alike, so min/max compare as text
        Kind::Num => pick(
            rng,
            &[
                "0.00",
                "1.50",
                "2.25",
                "-3.10",
                "10.00",
                "0.01",
                "100000000000000000000.00",
            ],
        )
        .to_string(),
        Kind::Txt => pick(rng, &["''", "'a'", "'A'", "'b'", "'abc'", "'é'", "'zz'"]).to_string(),
        Kind::Date => pick(
            rng,
            &[
                "'2024-03-10'",
                "'2024-03-11'",
                "'2000-02-29'",
                "'1999-12-31'",
                "'infinity'",
            ],
        )
        .to_string(),
        Kind::Bool => pick(rng, &["true", "false"]).to_string(),
        Kind::Key { text } => key_value(rng.below(6) + 1, text),
    }
}

pub fn key_value(n: u64, text: bool) -> String {
    if text {
        format!("'k{n}'")
    } else {
        n.to_string()
    }
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub sql_type: String,
    pub kind: Kind,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    /// The prefix of its attributes: `f`, `d1`, …
    pub short: String,
    pub parent: Option<usize>,
    /// `kJ` of a dimension.
    pub key: Option<Column>,
    /// `(child, rJ)`: the columns referencing the children's keys.
    pub refs: Vec<(usize, Column)>,
    pub attributes: Vec<Column>,
}

impl Table {
    /// Every column but `id`.
    pub fn columns(&self) -> Vec<&Column> {
        self.key
            .iter()
            .chain(self.refs.iter().map(|(_, c)| c))
            .chain(&self.attributes)
            .collect()
    }

    pub fn join_columns(&self) -> Vec<&Column> {
        self.key
            .iter()
            .chain(self.refs.iter().map(|(_, c)| c))
            .collect()
    }

    pub fn attribute(&self, kind: Kind) -> &Column {
        self.attributes.iter().find(|c| c.kind == kind).unwrap()
    }
}

pub struct Schema {
    pub tables: Vec<Table>,
}

impl Schema {
    /// 2–4 tables named `<prefix>_f`, `<prefix>_d1`, …; each dimension's parent is the
    /// fact (star) or an earlier dimension (snowflake).
    pub fn random(rng: &mut Rng, prefix: &str) -> Schema {
        let n = between(rng, 2, 4) as usize;
        let mut tables: Vec<Table> = Vec::new();
        for j in 0..n {
            let short = if j == 0 {
                "f".to_string()
            } else {
                format!("d{j}")
            };
            let attributes = ATTRIBUTES
                .iter()
                .map(|(suffix, ty, kind)| Column {
                    name: format!("{short}_{suffix}"),
                    sql_type: ty.to_string(),
                    kind: *kind,
                })
                .collect();
            let (parent, key) = if j == 0 {
                (None, None)
            } else {
                let parent = if chance(rng, 55) {
                    0
                } else {
                    rng.below(j as u64) as usize
                };
                let (child_type, parent_type, text) = *pick(rng, &KEY_TYPES);
                tables[parent].refs.push((
                    j,
                    Column {
                        name: format!("r{j}"),
                        sql_type: parent_type.into(),
                        kind: Kind::Key { text },
                    },
                ));
                (
                    Some(parent),
                    Some(Column {
                        name: format!("k{j}"),
                        sql_type: child_type.into(),
                        kind: Kind::Key { text },
                    }),
                )
            };
            tables.push(Table {
                name: format!("{prefix}_{short}"),
                short,
                parent,
                key,
                refs: vec![],
                attributes,
            });
        }
        Schema { tables }
    }

    pub fn ddl(&self) -> String {
        self.tables
            .iter()
            .map(|t| {
                let columns: Vec<String> = t
                    .columns()
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.sql_type))
                    .collect();
                format!(
                    "CREATE TABLE {} (id bigserial PRIMARY KEY, {});",
                    t.name,
                    columns.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Tables joined to `t` by an edge of the tree (either direction).
    pub fn neighbours(&self, t: usize) -> Vec<usize> {
        let mut out: Vec<usize> = self.tables[t].refs.iter().map(|(c, _)| *c).collect();
        out.extend(self.tables[t].parent);
        out
    }

    /// The ON equality between table `new` (alias `n`) and its tree neighbour `old`
    /// (alias `o`), sides in random order.
    pub fn edge(&self, rng: &mut Rng, new: usize, n: &str, old: usize, o: &str) -> String {
        let (child, parent, c, p) = if self.tables[new].parent == Some(old) {
            (new, old, n, o)
        } else {
            (old, new, o, n)
        };
        let key = &self.tables[child].key.as_ref().unwrap().name;
        let r = format!("r{child}");
        let _ = parent;
        if chance(rng, 50) {
            format!("{c}{key} = {p}{r}")
        } else {
            format!("{p}{r} = {c}{key}")
        }
    }

    // -----------------------------------------------------------------------------------
    // DML

    /// Rows of random values for every column but `id`.
    fn values(&self, rng: &mut Rng, t: usize, rows: u64) -> String {
        let table = &self.tables[t];
        let columns = table.columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let rows: Vec<String> = (0..rows)
            .map(|_| {
                let values: Vec<String> = columns.iter().map(|c| literal(rng, c.kind)).collect();
                format!("({})", values.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO {} ({}) VALUES {}",
            table.name,
            names.join(", "),
            rows.join(", ")
        )
    }

    /// Initial rows: 8 per dimension, 40 facts.
    pub fn populate(&self, rng: &mut Rng) -> Vec<String> {
        (0..self.tables.len())
            .map(|t| self.values(rng, t, if t == 0 { 40 } else { 8 }))
            .collect()
    }

    /// A WHERE condition choosing one row, a few, or all rows of a join key.
    fn condition(&self, rng: &mut Rng, t: usize) -> String {
        let table = &self.tables[t];
        let joins = table.join_columns();
        match rng.below(5) {
            0 | 1 => format!("id = {}", between(rng, 1, if t == 0 { 60 } else { 14 })),
            2 => format!("id % 11 = {}", rng.below(11)),
            3 if !joins.is_empty() => {
                let c = pick(rng, &joins);
                if chance(rng, 20) {
                    format!("{} IS NULL", c.name)
                } else {
                    let Kind::Key { text } = c.kind else {
                        unreachable!()
                    };
                    format!("{} = {}", c.name, key_value(rng.below(6) + 1, text))
                }
            }
            _ => format!(
                "{} > {}",
                table.attribute(Kind::I4).name,
                pick(rng, &["0", "2", "5"])
            ),
        }
    }

    /// One random statement on a random table.
    pub fn statement(&self, rng: &mut Rng) -> String {
        self.statement_of(rng, None)
    }

    /// One random statement on the fact table, changing only rows with
    /// `id % writers = slot` (inserts add rows of their own anyway).
    pub fn fact_statement(&self, rng: &mut Rng, slot: u64, writers: u64) -> String {
        self.statement_of(rng, Some((slot, writers)))
    }

    fn statement_of(&self, rng: &mut Rng, own: Option<(u64, u64)>) -> String {
        let n = self.tables.len() as u64;
        let t = if own.is_some() || chance(rng, 45) {
            0
        } else {
            rng.below(n) as usize
        };
        let condition = |rng: &mut Rng| match own {
            Some((slot, writers)) => {
                format!("id % {writers} = {slot} AND ({})", self.condition(rng, t))
            }
            None => self.condition(rng, t),
        };
        let table = &self.tables[t];
        let joins = table.join_columns();
        match rng.below(100) {
            0..=29 => {
                let rows = if t == 0 {
                    between(rng, 1, 4)
                } else {
                    between(rng, 1, 2)
                };
                self.values(rng, t, rows)
            }
            30..=34 => {
                // a bulk insert spreading rows over every join key
                let mut names = vec![table.attribute(Kind::I4).name.clone()];
                let mut values = vec!["g".to_string()];
                for c in &joins {
                    let Kind::Key { text } = c.kind else {
                        unreachable!()
                    };
                    names.push(c.name.clone());
                    values.push(if text {
                        "CASE WHEN g % 7 = 0 THEN NULL ELSE 'k' || (g % 6 + 1) END".to_string()
                    } else {
                        "CASE WHEN g % 7 = 0 THEN NULL ELSE g % 6 + 1 END".to_string()
                    });
                }
                names.push(table.attribute(Kind::Txt).name.clone());
                values.push("pg_catalog.chr(97 + (g % 3)::int)".into());
                format!(
                    "INSERT INTO {} ({}) SELECT {} FROM pg_catalog.generate_series(1, {}) g",
                    table.name,
                    names.join(", "),
                    values.join(", "),
                    between(rng, 5, 25)
                )
            }
            35..=54 => {
                let mut sets: Vec<String> = Vec::new();
                for _ in 0..between(rng, 1, 2) {
                    let c = pick(rng, &table.attributes);
                    if !sets.iter().any(|s| s.starts_with(&format!("{} ", c.name))) {
                        sets.push(format!("{} = {}", c.name, literal(rng, c.kind)));
                    }
                }
                format!(
                    "UPDATE {} SET {} WHERE {}",
                    table.name,
                    sets.join(", "),
                    condition(rng)
                )
            }
            55..=79 if !joins.is_empty() => {
                let c = pick(rng, &joins);
                let mut sets = vec![format!("{} = {}", c.name, literal(rng, c.kind))];
                if chance(rng, 40) {
                    let a = pick(rng, &table.attributes);
                    sets.push(format!("{} = {}", a.name, literal(rng, a.kind)));
                }
                format!(
                    "UPDATE {} SET {} WHERE {}",
                    table.name,
                    sets.join(", "),
                    condition(rng)
                )
            }
            _ => format!("DELETE FROM {} WHERE {}", table.name, condition(rng)),
        }
    }
}
