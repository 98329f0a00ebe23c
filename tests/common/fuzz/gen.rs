//! Values and queries drawn from the class tables.

use super::classes::{
    Arg, Column, Key, AGGREGATES, ARGS, AVG, BOOL, COLUMNS, COUNT, DISTINCT, FILTERS, KEYS,
    LONG_TOKEN, MINMAX, SUM, VAR,
};
use super::{quote_literal, Rng};

/// What this server offers: the columns (without `tc` when there is no ICU) and the run's
/// long strings.
pub struct Env {
    pub columns: Vec<&'static Column>,
    pub icu: bool,
    pub long: Vec<String>,
}

impl Env {
    pub fn new(icu: bool) -> Env {
        // letters drawn at random do not compress, so the values stay over the 2.7 kB a
        // btree entry may hold; two of them share a long prefix
        let mut rng = Rng::new(0x10_96);
        let prefix: String = (0..3000)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        let long = vec![format!("{prefix}-zero"), format!("{prefix}-one")];
        let columns = COLUMNS.iter().filter(|c| icu || c.name != "tc").collect();
        Env { columns, icu, long }
    }

    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A value of `column` as text, `None` for NULL.
    pub fn value(&self, rng: &mut Rng, column: &Column) -> Option<String> {
        let v = (*rng.pick(column.values))?;
        Some(match v.strip_prefix(LONG_TOKEN) {
            Some(n) => self.long[n.parse::<usize>().unwrap() % self.long.len()].clone(),
            None => v.to_string(),
        })
    }

    pub fn row(&self, rng: &mut Rng) -> Vec<Option<String>> {
        self.columns.iter().map(|c| self.value(rng, c)).collect()
    }

    pub fn column(&self, rng: &mut Rng) -> &'static Column {
        self.columns[rng.below(self.columns.len())]
    }
}

/// `'value'::type`, which reads the same under every DateStyle, IntervalStyle and
/// extra_float_digits (the values are written in forms every style accepts).
pub fn literal(column: &Column, value: &Option<String>) -> String {
    match value {
        None => "NULL".into(),
        Some(v) => {
            let ty = column.sql_type.split(" COLLATE").next().unwrap();
            format!("{}::{ty}", quote_literal(v))
        }
    }
}

pub fn row_literal(env: &Env, id: i64, row: &[Option<String>]) -> String {
    let values: Vec<String> = env
        .columns
        .iter()
        .zip(row)
        .map(|(c, v)| literal(c, v))
        .collect();
    format!("({id}, {})", values.join(", "))
}

/// A line of COPY's text format (the values hold no tabs, newlines or backslashes).
pub fn copy_line(id: i64, row: &[Option<String>]) -> String {
    let mut fields = vec![id.to_string()];
    fields.extend(
        row.iter()
            .map(|v| v.clone().unwrap_or_else(|| "\\N".into())),
    );
    format!("{}\n", fields.join("\t"))
}

pub enum OutKind {
    Key {
        key: &'static Key,
    },
    Aggregate {
        /// e.g. `avg(int4)`
        class: String,
        name: &'static str,
        arg: Option<&'static Arg>,
        /// The extended oracle's column with the scale floats are compared against.
        scale: Option<String>,
    },
}

pub struct Output {
    pub name: String,
    pub kind: OutKind,
}

impl Output {
    pub fn class(&self) -> String {
        match &self.kind {
            OutKind::Key { key } => format!("key {}", key.class),
            OutKind::Aggregate { class, .. } => class.clone(),
        }
    }
}

pub struct QuerySpec {
    pub sql: String,
    /// `sql` with scale columns appended: same groups, same rows.
    pub extended: String,
    pub table: String,
    pub outputs: Vec<Output>,
    /// A GROUP BY key that is not selected: rows need not have distinct visible keys.
    pub hidden_key: Option<&'static Key>,
    pub filter: Option<(&'static str, &'static str)>,
    pub filter_sql: Option<String>,
    /// Creation may be refused with 0A000 (a key on the nondeterministic collation).
    pub refusal_ok: bool,
}

impl QuerySpec {
    /// The classes of the query, for reports.
    pub fn classes(&self) -> String {
        let keys: Vec<&str> = self
            .outputs
            .iter()
            .filter_map(|o| match &o.kind {
                OutKind::Key { key } => Some(key.class),
                _ => None,
            })
            .collect();
        let aggs: Vec<String> = self
            .outputs
            .iter()
            .filter_map(|o| match &o.kind {
                OutKind::Aggregate { class, .. } => Some(class.clone()),
                _ => None,
            })
            .collect();
        format!(
            "keys [{}]{}, aggregates [{}], filter {}",
            keys.join(", "),
            self.hidden_key
                .map(|k| format!(" + hidden key {}", k.class))
                .unwrap_or_default(),
            aggs.join(", "),
            self.filter.map(|f| f.0).unwrap_or("none")
        )
    }

    pub fn keys(&self) -> impl Iterator<Item = (&Output, &'static Key)> {
        self.outputs.iter().filter_map(|o| match &o.kind {
            OutKind::Key { key } => Some((o, *key)),
            _ => None,
        })
    }
}

fn pick_key(rng: &mut Rng, env: &Env, taken: &[&Key], exact_only: bool) -> Option<&'static Key> {
    for _ in 0..50 {
        let key = rng.pick(KEYS);
        if (key.uses_ci && !env.icu)
            || (exact_only && key.ambiguous)
            || taken.iter().any(|t| t.sql == key.sql)
        {
            continue;
        }
        return Some(key);
    }
    None
}

/// A random legal continuous query over `table`.
pub fn query(rng: &mut Rng, env: &Env, table: &str) -> QuerySpec {
    let nkeys = [0, 1, 1, 1, 2, 2, 2, 3, 3][rng.below(9)];
    let hidden = nkeys > 0 && rng.chance(12);
    let mut keys: Vec<&'static Key> = Vec::new();
    for _ in 0..nkeys {
        if let Some(k) = pick_key(rng, env, &keys, hidden) {
            keys.push(k);
        }
    }
    let hidden_key = if hidden {
        pick_key(rng, env, &keys, true)
    } else {
        None
    };
    let mut outputs: Vec<Output> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| Output {
            name: format!("k{i}"),
            kind: OutKind::Key { key },
        })
        .collect();
    let naggs = 1 + rng.below(4);
    let mut scales = Vec::new();
    for i in 0..naggs {
        let (name, arg) = loop {
            let aggregate = rng.pick(AGGREGATES);
            if hidden
                && aggregate.family != 0
                && aggregate.family & (COUNT | DISTINCT | SUM | MINMAX | BOOL) == 0
            {
                continue;
            }
            if aggregate.family == 0 {
                break (aggregate, None);
            }
            let eligible: Vec<&'static Arg> = ARGS
                .iter()
                .filter(|a| a.families & aggregate.family != 0)
                .filter(|a| env.icu || !a.uses_ci)
                .filter(|a| !hidden || a.exact)
                .collect();
            if eligible.is_empty() {
                continue;
            }
            break (aggregate, Some(eligible[rng.below(eligible.len())]));
        };
        let class = match arg {
            None => name.class.to_string(),
            Some(a) => format!("{}({})", name.class, a.class),
        };
        let scale = match arg {
            Some(a) if a.float && name.family & (SUM | AVG) != 0 => {
                let column = format!("_scale{i}");
                let how = if name.family == SUM { "sum" } else { "avg" };
                scales.push(format!(
                    "{how}(pg_catalog.abs(({})::float8)) AS {column}",
                    a.sql
                ));
                Some(column)
            }
            // PostgreSQL's own float variance (Youngs–Cramer, and its combine function for
            // merged partials) is exact only to about ε·|mean|·σ: its result for nearly
            // equal large values depends on the order rows are added in. The bound is
            // that, with room (64 ε), on top of 1e-9 relative; for stddev, halved over σ
            Some(a) if a.float && name.family == VAR => {
                let column = format!("_scale{i}");
                let x = format!("(({})::float8)", a.sql);
                let rounding = if name.sql.starts_with("stddev") {
                    format!("avg(pg_catalog.abs({x})) * 0.5")
                } else {
                    format!("avg(pg_catalog.abs({x})) * coalesce(stddev_pop({x}), 0)")
                };
                let value = name.sql.replace("{}", &x);
                scales.push(format!(
                    "coalesce(pg_catalog.abs({value}), 0) + {rounding} * (64 * 2.2e-16 / 1e-9) AS {column}"
                ));
                Some(column)
            }
            _ => None,
        };
        outputs.push(Output {
            name: format!("a{i}"),
            kind: OutKind::Aggregate {
                class,
                name: name.sql,
                arg,
                scale,
            },
        });
    }
    // keys need not come first
    if rng.chance(30) {
        for i in (1..outputs.len()).rev() {
            let j = rng.below(i + 1);
            outputs.swap(i, j);
        }
    }
    let items: Vec<String> = outputs
        .iter()
        .map(|o| match &o.kind {
            OutKind::Key { key } => format!("{} AS {}", key.sql, o.name),
            OutKind::Aggregate { name, arg, .. } => format!(
                "{} AS {}",
                name.replace("{}", arg.map(|a| a.sql).unwrap_or("")),
                o.name
            ),
        })
        .collect();
    let filter = if rng.chance(33) {
        None
    } else {
        Some(*rng.pick(FILTERS))
    };
    let mut group_by: Vec<String> = keys.iter().map(|k| k.sql.to_string()).collect();
    if let Some(h) = hidden_key {
        let at = rng.below(group_by.len() + 1);
        group_by.insert(at, h.sql.to_string());
    }
    let tail = format!(
        " FROM {table}{}{}",
        filter
            .map(|f| format!(" WHERE {}", f.1))
            .unwrap_or_default(),
        if group_by.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", group_by.join(", "))
        }
    );
    let sql = format!("SELECT {}{tail}", items.join(", "));
    let mut extended_items = items.clone();
    extended_items.extend(scales);
    let extended = format!("SELECT {}{tail}", extended_items.join(", "));
    // the nondeterministic collation lives outside pg_catalog: the SQL policy refuses
    // queries that read it (42501), and keys on it are refused (0A000)
    let refusal_ok = sql
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|word| word == "tc");
    QuerySpec {
        sql,
        extended,
        table: table.to_string(),
        refusal_ok,
        outputs,
        hidden_key,
        filter,
        filter_sql: filter.map(|f| f.1.to_string()),
    }
}
