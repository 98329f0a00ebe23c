//! The specification of a document view, read from the `spec` jsonb of
//! `beacon.create_document_view` and checked before anything touches the database.
//!
//!     {"from": "orders", "key": ["order_id"],
//!      "columns": [...] | "exclude": [...], "rename": {"column": "field"},
//!      "where": "<condition on the root's columns>",
//!      "lookups": [{"path": "order_items.product", "from": "products",
//!                   "type": "object" | "array", "on": {"<parent column>": "<its column>"},
//!                   "order_by": ["column", "column DESC"],
//!                   "columns" | "exclude", "rename"}],
//!      "indexes": ["doc->'customer_info'->>'customer_id'", "gin"]}
//!
//! `on` reads like TapFlow's `relation`: the parent's column first. Unknown keys are
//! refused, so a misspelt `"exlude"` does not silently embed every column.

use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupKind {
    /// The first matching row (by `order_by`, then by the whole row), or null.
    Object,
    /// Every matching row, in `order_by` order (then by the whole row), or `[]`.
    Array,
}

/// Which columns of a table a document shows, and under which names.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    pub columns: Option<Vec<String>>,
    pub exclude: Vec<String>,
    /// (column, field name)
    pub rename: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lookup {
    /// The field of the parent's object this lookup fills.
    pub field: String,
    /// The whole path, dotted, as given.
    pub path: String,
    /// The lookup it is nested in (an index into `Spec::lookups`), or None for the root.
    pub parent: Option<usize>,
    pub table: String,
    pub kind: LookupKind,
    /// (column of the parent, column of this table)
    pub on: Vec<(String, String)>,
    /// (column, descending)
    pub order_by: Vec<(String, bool)>,
    pub fields: Fields,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Index {
    /// `doc->'a'->>'b'`: the steps, each (key, as text)
    Path(Vec<(String, bool)>),
    /// A GIN index on the whole document (jsonb_path_ops).
    Gin,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub table: String,
    pub key: Vec<String>,
    pub fields: Fields,
    pub filter: Option<String>,
    /// A condition on the built document (`doc`) and the key columns.
    pub document_filter: Option<String>,
    /// Parents before children (each lookup's `parent` is smaller than its own index).
    pub lookups: Vec<Lookup>,
    pub indexes: Vec<Index>,
}

/// The most lookups a view may have: each is a subquery of every document's rebuild.
pub const MAX_LOOKUPS: usize = 32;

type Checked<T> = Result<T, String>;

fn object<'a>(value: &'a Value, what: &str) -> Checked<&'a Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| format!("{what} must be a JSON object"))
}

fn refuse_unknown(map: &Map<String, Value>, known: &[&str], what: &str) -> Checked<()> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{what} has an unknown key \"{k}\" (expected one of: {})",
            known.join(", ")
        )),
        None => Ok(()),
    }
}

/// A table or column name: checked against the database later, quoted wherever it is
/// used, so any name PostgreSQL allows is fine here.
fn identifier(text: &str, what: &str) -> Checked<()> {
    if text.is_empty() || text.len() > 63 || text.contains('\0') {
        return Err(format!("{what}: \"{text}\" is not a name of 1 to 63 bytes"));
    }
    Ok(())
}

fn name(value: &Value, what: &str) -> Checked<String> {
    let text = value
        .as_str()
        .ok_or_else(|| format!("{what} must be a string"))?;
    identifier(text, what)?;
    Ok(text.to_string())
}

fn names(value: &Value, what: &str) -> Checked<Vec<String>> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{what} must be an array of column names"))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let n = name(item, &format!("{what}[{i}]"))?;
        if out.contains(&n) {
            return Err(format!("{what} names \"{n}\" twice"));
        }
        out.push(n);
    }
    Ok(out)
}

fn fields(map: &Map<String, Value>, what: &str) -> Checked<Fields> {
    let columns = map
        .get("columns")
        .map(|v| names(v, &format!("{what}.columns")))
        .transpose()?;
    let exclude = map
        .get("exclude")
        .map(|v| names(v, &format!("{what}.exclude")))
        .transpose()?
        .unwrap_or_default();
    if columns.is_some() && !exclude.is_empty() {
        return Err(format!(
            "{what} has both \"columns\" and \"exclude\": give one"
        ));
    }
    let mut rename = Vec::new();
    if let Some(v) = map.get("rename") {
        for (column, to) in object(v, &format!("{what}.rename"))? {
            identifier(column, &format!("{what}.rename"))?;
            let to = to
                .as_str()
                .filter(|t| !t.is_empty() && t.len() <= 63)
                .ok_or_else(|| {
                    format!("{what}.rename.{column} must be a field name of 1 to 63 bytes")
                })?;
            rename.push((column.clone(), to.to_string()));
        }
    }
    Ok(Fields {
        columns,
        exclude,
        rename,
    })
}

fn order_by(value: &Value, what: &str) -> Checked<Vec<(String, bool)>> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{what} must be an array such as [\"column\", \"column DESC\"]"))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = item
            .as_str()
            .ok_or_else(|| format!("{what}[{i}] must be a string"))?;
        let mut words = text.split_whitespace();
        let column = words.next().unwrap_or_default();
        identifier(column, &format!("{what}[{i}]"))?;
        let descending = match words.next().map(str::to_ascii_uppercase).as_deref() {
            None | Some("ASC") => false,
            Some("DESC") => true,
            Some(other) => {
                return Err(format!(
                    "{what}[{i}]: expected ASC or DESC after the column, not \"{other}\""
                ))
            }
        };
        if words.next().is_some() {
            return Err(format!("{what}[{i}]: expected \"column [ASC|DESC]\""));
        }
        out.push((column.to_string(), descending));
    }
    Ok(out)
}

/// `doc->'a'->>'b'`, `doc -> 'a'`: a path of constant keys from `doc`, nothing else.
fn index_path(text: &str, what: &str) -> Checked<Vec<(String, bool)>> {
    let bad = || {
        format!(
            "{what}: expected \"gin\" or a path such as doc->'customer_info'->>'customer_id', not {text:?}"
        )
    };
    let rest = text.trim().strip_prefix("doc").ok_or_else(bad)?;
    let mut steps = Vec::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (as_text, after) = if let Some(r) = rest.strip_prefix("->>") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix("->") {
            (false, r)
        } else {
            return Err(bad());
        };
        let after = after.trim_start().strip_prefix('\'').ok_or_else(bad)?;
        // a key is a string literal: '' stands for one quote
        let mut key = String::new();
        let mut chars = after.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if matches!(chars.peek(), Some((_, '\''))) {
                    chars.next();
                    key.push('\'');
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                key.push(c);
            }
        }
        let end = end.ok_or_else(bad)?;
        if steps.last().is_some_and(|(_, t)| *t) {
            return Err(format!(
                "{what}: ->> gives text, which has no keys: {text:?}"
            ));
        }
        steps.push((key, as_text));
        rest = after[end..].trim_start();
    }
    if steps.is_empty() {
        return Err(bad());
    }
    Ok(steps)
}

fn lookup(value: &Value, i: usize) -> Checked<(Lookup, Vec<String>)> {
    let what = format!("lookups[{i}]");
    let map = object(value, &what)?;
    refuse_unknown(
        map,
        &[
            "path", "from", "type", "on", "order_by", "columns", "exclude", "rename",
        ],
        &what,
    )?;
    let path = map
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}.path must be a string such as \"order_items.product\""))?;
    let segments: Vec<String> = path.split('.').map(str::to_string).collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || s.len() > 63 || s.contains(char::is_whitespace))
    {
        return Err(format!(
            "{what}.path \"{path}\": each dotted part is a field name of 1 to 63 bytes"
        ));
    }
    let table = name(
        map.get("from")
            .ok_or_else(|| format!("{what} has no \"from\" table"))?,
        &format!("{what}.from"),
    )?;
    let kind = match map.get("type").and_then(Value::as_str) {
        Some("object") => LookupKind::Object,
        Some("array") => LookupKind::Array,
        _ => return Err(format!("{what}.type must be \"object\" or \"array\"")),
    };
    let on_map = object(
        map.get("on").ok_or_else(|| {
            format!("{what} has no \"on\": {{\"<parent column>\": \"<column of {table}>\"}}")
        })?,
        &format!("{what}.on"),
    )?;
    let mut on = Vec::new();
    for (parent_column, own) in on_map {
        identifier(parent_column, &format!("{what}.on"))?;
        on.push((
            parent_column.clone(),
            name(own, &format!("{what}.on.{parent_column}"))?,
        ));
    }
    if on.is_empty() {
        return Err(format!("{what}.on joins no column"));
    }
    let order_by = map
        .get("order_by")
        .map(|v| order_by(v, &format!("{what}.order_by")))
        .transpose()?
        .unwrap_or_default();
    Ok((
        Lookup {
            field: segments.last().cloned().unwrap_or_default(),
            path: path.to_string(),
            parent: None,
            table,
            kind,
            on,
            order_by,
            fields: fields(map, &what)?,
        },
        segments,
    ))
}

/// Reads and checks a spec. The tables and columns are checked against the database
/// later (see `super::resolve`).
pub fn parse(spec: &Value) -> Checked<Spec> {
    let map = object(spec, "the spec")?;
    refuse_unknown(
        map,
        &[
            "from",
            "key",
            "columns",
            "exclude",
            "rename",
            "where",
            "document_where",
            "lookups",
            "indexes",
            "create_indexes",
        ],
        "the spec",
    )?;
    let table = name(
        map.get("from")
            .ok_or("the spec has no \"from\" table (the documents' root)")?,
        "from",
    )?;
    let key = names(
        map.get("key")
            .ok_or("the spec has no \"key\": the root's columns that identify a document")?,
        "key",
    )?;
    if key.is_empty() {
        return Err("key names no column".into());
    }
    let condition = |key: &str| -> Checked<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key} must be a non-empty string (a condition)")),
        }
    };
    let filter = condition("where")?;
    let document_filter = condition("document_where")?;
    if map.get("create_indexes").is_some_and(|v| !v.is_boolean()) {
        return Err("create_indexes must be true or false".into());
    }
    let mut parsed = Vec::new();
    if let Some(v) = map.get("lookups") {
        let items = v.as_array().ok_or("lookups must be an array")?;
        if items.len() > MAX_LOOKUPS {
            return Err(format!(
                "{} lookups: a document view has at most {MAX_LOOKUPS}",
                items.len()
            ));
        }
        for (i, item) in items.iter().enumerate() {
            parsed.push(lookup(item, i)?);
        }
    }
    // parents before children, whatever order they were given in
    parsed.sort_by_key(|(_, segments)| segments.len());
    let paths: Vec<Vec<String>> = parsed.iter().map(|(_, s)| s.clone()).collect();
    let mut lookups = Vec::new();
    for (i, (mut lookup, segments)) in parsed.into_iter().enumerate() {
        if paths[..i].contains(&segments) {
            return Err(format!("two lookups have the path \"{}\"", lookup.path));
        }
        if segments.len() > 1 {
            let parent_path = &segments[..segments.len() - 1];
            let parent = paths[..i]
                .iter()
                .position(|p| p.as_slice() == parent_path)
                .ok_or_else(|| {
                    format!(
                        "lookup \"{}\" is nested in \"{}\", which no lookup fills",
                        lookup.path,
                        parent_path.join(".")
                    )
                })?;
            lookup.parent = Some(parent);
        }
        lookups.push(lookup);
    }
    let mut indexes = Vec::new();
    if let Some(v) = map.get("indexes") {
        let items = v.as_array().ok_or("indexes must be an array")?;
        for (i, item) in items.iter().enumerate() {
            let text = item
                .as_str()
                .ok_or_else(|| format!("indexes[{i}] must be a string"))?;
            if text.trim().eq_ignore_ascii_case("gin") {
                indexes.push(Index::Gin);
            } else {
                indexes.push(Index::Path(index_path(text, &format!("indexes[{i}]"))?));
            }
        }
    }
    Ok(Spec {
        table,
        key,
        fields: fields(map, "the spec")?,
        filter,
        document_filter,
        lookups,
        indexes,
    })
}

impl Spec {
    /// Every table the view reads, the root first, each once.
    pub fn tables(&self) -> Vec<String> {
        let mut out = vec![self.table.clone()];
        for l in &self.lookups {
            if !out.contains(&l.table) {
                out.push(l.table.clone());
            }
        }
        out
    }

    /// The table at a position of the lookup tree: 0 is the root, i the lookup i - 1.
    pub fn table_at(&self, position: usize) -> &str {
        match position {
            0 => &self.table,
            i => &self.lookups[i - 1].table,
        }
    }

    pub fn fields_at(&self, position: usize) -> &Fields {
        match position {
            0 => &self.fields,
            i => &self.lookups[i - 1].fields,
        }
    }

    /// The position of lookup i's parent.
    pub fn parent_position(&self, lookup: usize) -> usize {
        self.lookups[lookup].parent.map_or(0, |p| p + 1)
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
