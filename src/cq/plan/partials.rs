//! The partial aggregates of a set of rows, as one grouped query: what capture appends,
//! backfill upserts and the state table is created from; and whether deleted rows make
//! their group dirty.

use super::{Plan, Rows};

pub(super) struct PartialsQuery {
    pub(super) targets: Vec<String>,
    pub(super) exprs: Vec<String>,
    /// FROM, WHERE and GROUP BY.
    pub(super) rest: String,
    /// For deleted rows whose groups may stay clean: aggregates computed beside the
    /// targets (expression, name), and `_dirty` computed from them over the grouped rows
    /// (`q`); PostgreSQL allows a grouped query's subqueries plain grouped columns only.
    bounds: Vec<(String, String)>,
    dirty: Option<String>,
}

impl PartialsQuery {
    pub(super) fn select(&self) -> String {
        format!("SELECT {}{}", self.exprs.join(", "), self.rest)
    }

    pub(super) fn aliased(&self) -> String {
        let mut items: Vec<String> = self
            .exprs
            .iter()
            .zip(&self.targets)
            .map(|(e, t)| format!("{e} AS {t}"))
            .collect();
        let Some(dirty) = &self.dirty else {
            return format!("SELECT {}{}", items.join(", "), self.rest);
        };
        items.extend(self.bounds.iter().map(|(e, n)| format!("{e} AS {n}")));
        let outer: Vec<String> = self
            .targets
            .iter()
            .map(|t| {
                if t == "_dirty" {
                    format!("{dirty} AS _dirty")
                } else {
                    format!("q.{t}")
                }
            })
            .collect();
        format!(
            "SELECT {} FROM (SELECT {}{}) q",
            outer.join(", "),
            items.join(", "),
            self.rest
        )
    }
}

impl Plan {
    /// `SELECT <keys>, <partials> FROM <from> WHERE <condition and filter> GROUP BY <keys>`.
    pub(super) fn partials_query(
        &self,
        from: &str,
        rows: Rows,
        condition: Option<&str>,
    ) -> PartialsQuery {
        let mut targets = self.key_columns();
        let mut exprs = self.key_exprs();
        targets.push("_count".into());
        exprs.push(match rows {
            Rows::Inserted => "count(*)".into(),
            Rows::Deleted => "-count(*)".into(),
        });
        for p in self.partial_columns() {
            let template = match rows {
                Rows::Inserted => Some(p.partial.compute),
                Rows::Deleted => p.partial.negate,
            };
            if let Some(template) = template {
                targets.push(p.column);
                exprs.push(template.replace("{x}", &p.arg));
            }
        }
        targets.push("_dirty".into());
        let deleted = rows == Rows::Deleted && self.recomputes_on_delete();
        let (bounds, dirty) = match deleted.then(|| self.deleted_dirty()).flatten() {
            Some((bounds, dirty)) => (bounds, Some(dirty)),
            None => (Vec::new(), None),
        };
        exprs.push((deleted && dirty.is_none()).to_string());
        let conditions: Vec<String> = condition
            .map(str::to_string)
            .into_iter()
            .chain(self.query.filter.as_ref().map(|f| format!("({f})")))
            .collect();
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        PartialsQuery {
            targets,
            exprs,
            rest: format!(" FROM {from}{filter}{}", self.group_by()),
            bounds,
            dirty,
        }
    }

    /// Whether deleted rows make their group dirty, when only min and max need a
    /// recompute: rows strictly inside a clean group's stored bounds leave them as they
    /// are, because those bounds are values of rows still there (a delete of the row
    /// holding one makes the group dirty itself, whenever it is merged). So a dimension
    /// change that moves a few facts out of a group recomputes it only if they held its
    /// max. None when every delete makes its group dirty; else the bounds of the deleted
    /// rows to compute (expression, name) and `_dirty` over them and the group's keys in
    /// `q` (see `PartialsQuery`).
    fn deleted_dirty(&self) -> Option<(Vec<(String, String)>, String)> {
        let recomputed = self.recomputed_partials();
        let bounded = !recomputed.is_empty()
            && self.loose_key_columns().is_empty()
            && recomputed.iter().all(|p| {
                p.partial.compute.starts_with("min(") || p.partial.compute.starts_with("max(")
            });
        if !bounded {
            return None;
        }
        const STATE: &str = "_beacon_state";
        let mut conditions: Vec<String> = self
            .key_columns()
            .into_iter()
            .map(|k| match self.digests.get(&k) {
                Some(digest) => format!(
                    "{} = {}",
                    digest.of(&format!("{STATE}.{k}")),
                    digest.of(&format!("q.{k}"))
                ),
                None => format!("{STATE}.{k} = q.{k}"),
            })
            .collect();
        conditions.push(format!("NOT {STATE}._dirty"));
        let mut bounds = Vec::new();
        for (j, p) in recomputed.iter().enumerate() {
            let (agg, inside) = if p.partial.compute.starts_with("min(") {
                ("min", ">")
            } else {
                ("max", "<")
            };
            let name = format!("_beacon_b{j}");
            bounds.push((format!("{agg}({})", p.arg), name.clone()));
            conditions.push(format!(
                "(q.{name} IS NULL OR q.{name} {inside} {STATE}.{})",
                p.column
            ));
        }
        Some((
            bounds,
            format!(
                "NOT EXISTS (SELECT 1 FROM {} {STATE} WHERE {})",
                self.state_table(),
                conditions.join(" AND ")
            ),
        ))
    }
}
