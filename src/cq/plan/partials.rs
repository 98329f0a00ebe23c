//! The partial aggregates of a set of rows, as one grouped query: what capture appends,
//! backfill upserts and the state table is created from.

use super::{Plan, Rows};

pub(super) struct PartialsQuery {
    pub(super) targets: Vec<String>,
    pub(super) exprs: Vec<String>,
    /// FROM, WHERE and GROUP BY.
    pub(super) rest: String,
}

impl PartialsQuery {
    pub(super) fn select(&self) -> String {
        format!("SELECT {}{}", self.exprs.join(", "), self.rest)
    }

    pub(super) fn aliased(&self) -> String {
        let items: Vec<String> = self
            .exprs
            .iter()
            .zip(&self.targets)
            .map(|(e, t)| format!("{e} AS {t}"))
            .collect();
        format!("SELECT {}{}", items.join(", "), self.rest)
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
        exprs.push((rows == Rows::Deleted && self.recomputes_on_delete()).to_string());
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
        }
    }
}
