//! Random legal join queries over a schema of tests/common/joins_gen.rs.
#![allow(dead_code)]

use crate::common::Rng;
use crate::joins_gen::{between, chance, key_value, pick, Kind, Schema, Table};

/// A generated query and what it exercises (for the report).
#[derive(Clone, Debug)]
pub struct Query {
    pub sql: String,
    pub mode: &'static str,
}

struct Joined {
    table: usize,
    alias: String,
}

const NUMBERS: [Kind; 4] = [Kind::I2, Kind::I4, Kind::I8, Kind::Num];

impl Schema {
    /// A random legal join query: 2–4 tables of a connected part of the tree joined in an
    /// order where each joins an earlier neighbour (usually from the fact, sometimes from
    /// a dimension), INNER and LEFT mixed, sometimes a self-join (the fact too), keys and
    /// aggregate arguments from any joined table, a WHERE half the time.
    pub fn query(&self, rng: &mut Rng) -> Query {
        self.query_of(rng, false)
    }

    /// A query whose FROM starts at the fact and that joins the fact only once.
    pub fn query_from_fact(&self, rng: &mut Rng) -> Query {
        self.query_of(rng, true)
    }

    fn query_of(&self, rng: &mut Rng, from_fact: bool) -> Query {
        let n = self.tables.len();
        let root = if from_fact || chance(rng, 75) {
            0
        } else {
            rng.below(n as u64) as usize
        };
        let size = between(rng, 2, n.min(4) as u64) as usize;
        let mut order = vec![root];
        let mut links: Vec<Option<usize>> = vec![None];
        while order.len() < size {
            let mut candidates = Vec::new();
            for (pos, t) in order.iter().enumerate() {
                for nb in self.neighbours(*t) {
                    if !order.contains(&nb) {
                        candidates.push((nb, pos));
                    }
                }
            }
            let (t, pos) = *pick(rng, &candidates);
            order.push(t);
            links.push(Some(pos));
        }
        let self_join = chance(rng, 15);
        let aliased = self_join || chance(rng, 70);
        let mut joined: Vec<Joined> = order
            .iter()
            .enumerate()
            .map(|(i, t)| Joined {
                table: *t,
                alias: if aliased {
                    format!("a{i}")
                } else {
                    self.tables[*t].name.clone()
                },
            })
            .collect();
        let qualify = self_join || chance(rng, 60);
        let q = |j: &Joined| {
            if qualify {
                format!("{}.", j.alias)
            } else {
                String::new()
            }
        };

        let mut from = format!(
            "{}{}",
            self.tables[order[0]].name,
            if aliased {
                format!(" AS {}", joined[0].alias)
            } else {
                String::new()
            }
        );
        let mut lefts = vec![false; joined.len()];
        for i in 1..joined.len() {
            let old = &joined[links[i].unwrap()];
            let new = &joined[i];
            let mut on = vec![self.edge(rng, new.table, &q(new), old.table, &q(old))];
            let left = chance(rng, 45);
            lefts[i] = left;
            let nt = &self.tables[new.table];
            if chance(rng, 10) {
                let ot = &self.tables[old.table];
                on.push(format!(
                    "{}{} = {}{}",
                    q(new),
                    nt.attribute(Kind::I2).name,
                    q(old),
                    ot.attribute(Kind::I2).name
                ));
            }
            if !left && chance(rng, 25) {
                on.push(filter(rng, nt, &q(new)));
            }
            from.push_str(&format!(
                " {} {}{} ON {}",
                if left { "LEFT JOIN" } else { "JOIN" },
                nt.name,
                if aliased {
                    format!(" AS {}", new.alias)
                } else {
                    String::new()
                },
                on.join(" AND ")
            ));
        }
        // a self-join of an inner-joined table (pg_beacon refuses one that is also
        // left-joined), on one of its join columns
        let inner: Vec<usize> = (0..joined.len())
            .filter(|i| !(lefts[*i] || (from_fact && joined[*i].table == 0)))
            .collect();
        if self_join && !inner.is_empty() {
            let of = &joined[*pick(rng, &inner)];
            let t = &self.tables[of.table];
            let key = &pick(rng, &t.join_columns()).name;
            let alias = format!("a{}", joined.len());
            from.push_str(&format!(
                " JOIN {} AS {alias} ON {alias}.{key} = {}.{key}",
                t.name, of.alias
            ));
            joined.push(Joined {
                table: of.table,
                alias,
            });
        }

        // every column of every joined table, qualified as chosen
        let columns: Vec<(String, Kind)> = joined
            .iter()
            .flat_map(|j| {
                let prefix = q(j);
                self.tables[j.table]
                    .columns()
                    .into_iter()
                    .map(move |c| (format!("{prefix}{}", c.name), c.kind))
                    .collect::<Vec<_>>()
            })
            .collect();
        let of = |kinds: &[Kind]| -> Vec<String> {
            columns
                .iter()
                .filter(|(_, k)| {
                    kinds.contains(k)
                        || (matches!(k, Kind::Key { .. })
                            && kinds.contains(&Kind::Key { text: false }))
                })
                .map(|(c, _)| c.clone())
                .collect()
        };
        let groupable = of(&[
            Kind::I2,
            Kind::I4,
            Kind::Txt,
            Kind::Date,
            Kind::Bool,
            Kind::Key { text: false },
        ]);
        let numbers = of(&NUMBERS);
        let ordered = of(&[
            Kind::I2,
            Kind::I4,
            Kind::I8,
            Kind::Num,
            Kind::Txt,
            Kind::Date,
        ]);
        let bools = of(&[Kind::Bool]);
        let all: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();

        let mut keys: Vec<String> = Vec::new();
        for _ in 0..rng.below(3) {
            let k = pick(rng, &groupable).clone();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let mut outputs: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} AS g{i}"))
            .collect();
        for i in 0..between(rng, 1, 4) {
            let aggregate = match rng.below(12) {
                0 => "count(*)".to_string(),
                1 => format!("count({})", pick(rng, &all)),
                2 => format!("count(DISTINCT {})", pick(rng, &all)),
                3 | 4 => format!("sum({})", pick(rng, &numbers)),
                5 => format!("avg({})", pick(rng, &numbers)),
                6 => format!("min({})", pick(rng, &ordered)),
                7 => format!("max({})", pick(rng, &ordered)),
                8 => format!(
                    "{}({})",
                    pick(
                        rng,
                        &[
                            "stddev_samp",
                            "stddev_pop",
                            "var_samp",
                            "var_pop",
                            "stddev",
                            "variance"
                        ]
                    ),
                    pick(rng, &numbers)
                ),
                9 => format!("bool_and({})", pick(rng, &bools)),
                10 => format!("bool_or({})", pick(rng, &bools)),
                _ => format!("count(DISTINCT {})", pick(rng, &ordered)),
            };
            outputs.push(format!("{aggregate} AS o{i}"));
        }
        let mut sql = format!("SELECT {} FROM {from}", outputs.join(", "));
        if chance(rng, 50) {
            let mut predicates = Vec::new();
            for _ in 0..between(rng, 1, 2) {
                let j = pick(rng, &joined);
                predicates.push(filter(rng, &self.tables[j.table], &q(j)));
            }
            if predicates.len() == 2 && chance(rng, 30) {
                sql.push_str(&format!(" WHERE ({} OR {})", predicates[0], predicates[1]));
            } else {
                sql.push_str(&format!(" WHERE {}", predicates.join(" AND ")));
            }
        }
        if !keys.is_empty() {
            sql.push_str(&format!(" GROUP BY {}", keys.join(", ")));
        }
        Query {
            sql,
            mode: if chance(rng, 50) {
                "async"
            } else {
                "immediate"
            },
        }
    }
}

/// A boolean condition over one table's columns (NULL for a LEFT JOIN's missing rows).
fn filter(rng: &mut Rng, table: &Table, prefix: &str) -> String {
    let a = |kind| format!("{prefix}{}", table.attribute(kind).name);
    match rng.below(6) {
        0 => format!("{} > 2", a(Kind::I4)),
        1 => a(Kind::Bool),
        2 => format!("{} <> 'a'", a(Kind::Txt)),
        3 => format!("{} IS NULL", a(Kind::I2)),
        4 => format!("{} >= '2000-01-01'", a(Kind::Date)),
        _ => match table.join_columns().first() {
            Some(c) => {
                let Kind::Key { text } = c.kind else {
                    unreachable!()
                };
                format!(
                    "{prefix}{} IN ({}, {})",
                    c.name,
                    key_value(1, text),
                    key_value(2, text)
                )
            }
            None => format!("{} < 5", a(Kind::I2)),
        },
    }
}
