//! The oracle of the document view tests: every document built in Rust from the rows of
//! the tables (see tests/common/documents.rs), and documents compared as jsonb texts.
#![allow(dead_code)]

use super::{describe, strings, DocView};
use postgres::Client;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Object,
    Array,
}

/// A position of the lookup tree: 0 the root, then the lookups, parents first.
struct Position {
    table: String,
    /// (field, column) in column order
    fields: Vec<(String, String)>,
    parent: usize,
    field: String,
    kind: Kind,
    /// (parent column, own column)
    on: Vec<(String, String)>,
    /// `order_by` as given: "column" or "column DESC"
    order_by: Vec<String>,
}

pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn fields_of(spec: &Value, columns: &[String]) -> Vec<(String, String)> {
    let shown: Vec<String> = match spec.get("columns") {
        Some(list) => strings(list),
        None => {
            let exclude = spec.get("exclude").map(strings).unwrap_or_default();
            columns
                .iter()
                .filter(|c| !exclude.contains(c))
                .cloned()
                .collect()
        }
    };
    let rename = spec.get("rename").and_then(Value::as_object);
    shown
        .into_iter()
        .map(|c| {
            let field = rename
                .and_then(|r| r.get(&c))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| c.clone());
            (field, c)
        })
        .collect()
}

fn positions(view: &DocView) -> Vec<Position> {
    let spec = &view.spec;
    let root = view.root();
    let columns = |t: &str| {
        view.columns
            .get(t)
            .unwrap_or_else(|| panic!("{}: no columns recorded for {t}", view.name))
            .clone()
    };
    let mut out = vec![Position {
        table: root.clone(),
        fields: fields_of(spec, &columns(&root)),
        parent: 0,
        field: String::new(),
        kind: Kind::Object,
        on: vec![],
        order_by: vec![],
    }];
    let mut lookups: Vec<&Value> = spec["lookups"].as_array().into_iter().flatten().collect();
    lookups.sort_by_key(|l| l["path"].as_str().unwrap_or_default().split('.').count());
    let mut paths: Vec<String> = vec![String::new()];
    for l in lookups {
        let path = l["path"].as_str().unwrap().to_string();
        let (parent_path, field) = match path.rsplit_once('.') {
            Some((p, f)) => (p.to_string(), f.to_string()),
            None => (String::new(), path.clone()),
        };
        let parent = paths
            .iter()
            .position(|p| *p == parent_path)
            .unwrap_or_else(|| panic!("{}: lookup {path} has no parent", view.name));
        let table = l["from"].as_str().unwrap().to_string();
        out.push(Position {
            fields: fields_of(l, &columns(&table)),
            table,
            parent,
            field,
            kind: if l["type"] == "array" {
                Kind::Array
            } else {
                Kind::Object
            },
            on: l["on"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(p, c)| (p.clone(), c.as_str().unwrap().to_string()))
                .collect(),
            order_by: strings(&l["order_by"]),
        });
        paths.push(path);
    }
    out
}

/// The rows of one position: (row, its rank or where-result), read by the oracle.
type Rows = Vec<(Map<String, Value>, i64)>;

/// What to read for a position: the root's rows with their `where`, or a lookup's rows
/// ranked by its order.
fn position_sql(view: &DocView, p: &Position, root: bool) -> String {
    if root {
        let condition = view.spec["where"].as_str().unwrap_or("true");
        format!(
            "SELECT pg_catalog.to_jsonb(beacon_row), CASE WHEN ({condition}) THEN 1::bigint ELSE 0::bigint END \
             FROM {} beacon_row",
            quote(&p.table)
        )
    } else {
        let mut order: Vec<String> = p
            .order_by
            .iter()
            .map(|o| {
                let mut words = o.split_whitespace();
                let column = words.next().unwrap();
                let dir = words.next().unwrap_or("");
                format!("t.{} {dir}", quote(column))
            })
            .collect();
        order.push("pg_catalog.to_jsonb(t)".into());
        format!(
            "SELECT pg_catalog.to_jsonb(t), pg_catalog.row_number() OVER (ORDER BY {}) FROM {} t",
            order.join(", "),
            quote(&p.table)
        )
    }
}

fn read_rows(client: &mut Client, sql: &str) -> Result<Rows, String> {
    let rows = client
        .query(sql, &[])
        .map_err(|e| format!("`{sql}`: {}", describe(&e)))?;
    Ok(rows
        .iter()
        .map(|r| {
            let v: Value = r.get(0);
            let n: i64 = r.get(1);
            match v {
                Value::Object(m) => (m, n),
                other => panic!("to_jsonb(row) is not an object: {other}"),
            }
        })
        .collect())
}

/// The text of a tuple of values, None when one is NULL (NULLs match nothing).
fn tuple(row: &Map<String, Value>, columns: &[&String]) -> Option<String> {
    let mut values = Vec::new();
    for c in columns {
        match row.get(c.as_str()) {
            None | Some(Value::Null) => return None,
            Some(v) => values.push(v.clone()),
        }
    }
    Some(Value::Array(values).to_string())
}

struct Built<'a> {
    positions: &'a [Position],
    /// per position > 0: on-values → rows in rank order
    index: Vec<HashMap<String, Vec<&'a Map<String, Value>>>>,
}

impl Built<'_> {
    fn doc(&self, position: usize, row: &Map<String, Value>) -> Value {
        let mut doc = Map::new();
        for (field, column) in &self.positions[position].fields {
            doc.insert(
                field.clone(),
                row.get(column).cloned().unwrap_or(Value::Null),
            );
        }
        for (child, p) in self.positions.iter().enumerate().skip(1) {
            if p.parent != position {
                continue;
            }
            let parent_columns: Vec<&String> = p.on.iter().map(|(a, _)| a).collect();
            let matches = tuple(row, &parent_columns)
                .and_then(|k| self.index[child].get(&k))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let value = match p.kind {
                Kind::Object => matches
                    .first()
                    .map(|r| self.doc(child, r))
                    .unwrap_or(Value::Null),
                Kind::Array => Value::Array(matches.iter().map(|r| self.doc(child, r)).collect()),
            };
            doc.insert(p.field.clone(), value);
        }
        Value::Object(doc)
    }
}

/// jsonb's own text of a value (`jsonb::text`): object keys in jsonb's order (shorter
/// first, then bytewise), ", " and ": " separators, jsonb's string escapes; numbers as
/// PostgreSQL wrote them (serde_json's arbitrary_precision keeps their text). Documents
/// are compared as these texts, a fast path: two texts that differ are parsed and
/// compared as JSON values before anything is reported.
pub fn jsonb_text(v: &Value) -> String {
    let mut out = String::new();
    write_jsonb(v, &mut out);
    out
}

fn write_jsonb(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(k, out);
                out.push_str(": ");
                write_jsonb(&map[k], out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// key text → document text (both as jsonb writes them)
pub type Docs = BTreeMap<String, String>;

/// Rows already read in this snapshot, by query (views often read the same tables in the
/// same order).
pub type Cache = HashMap<String, Rows>;

/// The expected documents of a view, read in the current snapshot.
pub fn expected(client: &mut Client, view: &DocView, cache: &mut Cache) -> Result<Docs, String> {
    let positions = positions(view);
    let queries: Vec<String> = positions
        .iter()
        .enumerate()
        .map(|(i, p)| position_sql(view, p, i == 0))
        .collect();
    for sql in &queries {
        if !cache.contains_key(sql) {
            let rows = read_rows(client, sql)?;
            cache.insert(sql.clone(), rows);
        }
    }
    let cache = &*cache;
    let mut index = vec![HashMap::new()];
    for (p, sql) in positions.iter().zip(&queries).skip(1) {
        let mut sorted: Vec<&(Map<String, Value>, i64)> = cache[sql].iter().collect();
        sorted.sort_by_key(|(_, rank)| *rank);
        let own: Vec<&String> = p.on.iter().map(|(_, c)| c).collect();
        let mut by_key: HashMap<String, Vec<&Map<String, Value>>> = HashMap::new();
        for (row, _) in sorted {
            if let Some(k) = tuple(row, &own) {
                by_key.entry(k).or_default().push(row);
            }
        }
        index.push(by_key);
    }
    let built = Built {
        positions: &positions,
        index,
    };
    let key = view.key();
    let key_refs: Vec<&String> = key.iter().collect();
    let mut docs = Docs::new();
    for (row, pass) in &cache[&queries[0]] {
        if tuple(row, &key_refs).is_none() || *pass == 0 {
            continue;
        }
        let k = jsonb_text(&Value::Array(
            key.iter().map(|c| row[c.as_str()].clone()).collect(),
        ));
        let doc = jsonb_text(&built.doc(0, row));
        if docs.insert(k.clone(), doc).is_some() {
            return Err(format!(
                "{}: two root rows with the key {k} (the oracle assumes a unique key)",
                view.name
            ));
        }
    }
    Ok(docs)
}

/// The (key, doc) rows of a relation with the key columns and `doc`, and the keys that
/// appear more than once.
pub fn read_docs(
    client: &mut Client,
    view: &DocView,
    relation: &str,
) -> Result<(Docs, Vec<String>), String> {
    let keys: Vec<String> = view
        .key()
        .iter()
        .map(|k| format!("v.{}", quote(k)))
        .collect();
    let sql = format!(
        "SELECT pg_catalog.jsonb_build_array({})::text, v.doc::text FROM {relation} v",
        keys.join(", ")
    );
    let rows = client
        .query(&sql, &[])
        .map_err(|e| format!("`{sql}`: {}", describe(&e)))?;
    let mut docs = Docs::new();
    let mut duplicated = Vec::new();
    for r in rows {
        let k: String = r.get(0);
        let doc: Option<String> = r.get(1);
        if docs
            .insert(k.clone(), doc.unwrap_or_else(|| "<SQL NULL>".into()))
            .is_some()
        {
            duplicated.push(k);
        }
    }
    Ok((docs, duplicated))
}

fn short(text: &str) -> String {
    if text.len() > 600 {
        let mut end = 600;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &text[..end], text.len())
    } else {
        text.to_string()
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The fields of two documents that differ, recursively down objects and arrays.
fn field_differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    if out.len() >= 6 || got == want {
        return;
    }
    match (got, want) {
        (Value::Object(a), Value::Object(b)) => {
            let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
            names.sort();
            names.dedup();
            for n in names {
                let absent = Value::String("<absent>".into());
                field_differences(
                    &format!("{path}.{n}"),
                    a.get(n).unwrap_or(&absent),
                    b.get(n).unwrap_or(&absent),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                field_differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        _ => out.push(format!(
            "      {path}: view {} | expected {}",
            short(&got.to_string()),
            short(&want.to_string())
        )),
    }
}

/// The differences between what a relation holds and the oracle, readably; None if equal.
pub fn compare_docs(what: &str, got: &Docs, duplicated: &[String], want: &Docs) -> Option<String> {
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let different: Vec<&String> = want
        .iter()
        .filter(|(k, d)| got.get(*k).is_some_and(|g| g != *d && parse(g) != parse(d)))
        .map(|(k, _)| k)
        .collect();
    if missing.is_empty() && extra.is_empty() && different.is_empty() && duplicated.is_empty() {
        return None;
    }
    let mut out = vec![format!(
        "{what}: {} documents, expected {}: {} missing, {} extra, {} different, {} keys more than once",
        got.len(),
        want.len(),
        missing.len(),
        extra.len(),
        different.len(),
        duplicated.len()
    )];
    for k in missing.iter().take(4) {
        out.push(format!("  missing {k}: expected {}", short(&want[*k])));
    }
    for k in extra.iter().take(4) {
        out.push(format!("  extra {k}: {}", short(&got[*k])));
    }
    for k in duplicated.iter().take(4) {
        out.push(format!("  more than once: {k}"));
    }
    for k in different.iter().take(4) {
        let mut fields = Vec::new();
        field_differences("doc", &parse(&got[*k]), &parse(&want[*k]), &mut fields);
        out.push(format!("  different {k}:\n{}", fields.join("\n")));
    }
    Some(out.join("\n"))
}
