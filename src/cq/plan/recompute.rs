//! Recomputing dirty groups from the source: the partials a delete cannot subtract (and
//! the value of keys whose equal values print differently), for the merge at commit, for
//! compaction, and as rows the view and compaction join.

use super::{Plan, ROW};

impl Plan {
    /// The non-subtractable partials of the dirty groups in `groups` (a relation with the
    /// key columns and `_dirty`, aliased `d`), recomputed from the source: rows of the key
    /// columns and those partials' columns.
    pub(super) fn fresh_groups(&self, groups: &str) -> String {
        let recomputed = self.recomputed_partials();
        let key_match = |left: &str, right: &[String]| -> String {
            self.key_columns()
                .iter()
                .zip(right)
                .map(|(k, r)| format!("{left}.{k} IS NOT DISTINCT FROM {r}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        // keys and arguments are computed in a derived table over the source alone: in
        // the EXISTS below, a source column named like a state column (k0, _dirty, …)
        // would otherwise be read from the state
        let mut inner: Vec<String> = self
            .key_exprs()
            .into_iter()
            .zip(self.key_columns())
            .map(|(e, k)| format!("{e} AS {k}"))
            .collect();
        inner.extend(
            recomputed
                .iter()
                .enumerate()
                .map(|(j, p)| format!("{} AS x{j}", p.arg)),
        );
        let row_keys: Vec<String> = self
            .key_columns()
            .iter()
            .map(|k| format!("{ROW}.{k}"))
            .collect();
        let mut exprs = row_keys.clone();
        exprs.extend(
            recomputed
                .iter()
                .enumerate()
                .map(|(j, p)| p.partial.compute.replace("{x}", &format!("{ROW}.x{j}"))),
        );
        exprs.push("true".into());
        let mut names = self.key_columns();
        names.extend(recomputed.iter().map(|p| p.column.clone()));
        names.push("_found".into());
        // Without a dirty group the source is not read at all: an uncorrelated EXISTS is
        // evaluated once, as a gate over the scan. Then each key restricts the rows read
        // through a hashed IN before the groups are matched: the match below (IS NOT
        // DISTINCT FROM) cannot be hashed, so alone it compares every source row with
        // every dirty group. A key that is a column also lets a join read only the dirty
        // groups' rows of that table.
        // An expression key is matched on its computed value, above a derived table kept
        // apart (OFFSET 0): computed only for rows that passed the query's filter, as the
        // query itself computes it.
        let restrict = |key: &str, column: &str| -> String {
            format!(
                "({key} IN (SELECT d.{column} FROM {groups} WHERE d._dirty) OR ({key} IS NULL \
                 AND EXISTS (SELECT 1 FROM {groups} WHERE d._dirty AND d.{column} IS NULL)))"
            )
        };
        let mut conditions = vec![format!("EXISTS (SELECT 1 FROM {groups} WHERE d._dirty)")];
        conditions.extend(self.query.filter.iter().map(|f| format!("({f})")));
        let mut computed = Vec::new();
        for (key, column) in self.query.keys.iter().zip(self.key_columns()) {
            if is_column(key) {
                conditions.push(restrict(key, &column));
            } else {
                computed.push(format!(
                    " AND {}",
                    restrict(&format!("{ROW}.{column}"), &column)
                ));
            }
        }
        let filter = format!(
            " WHERE {}{}",
            conditions.join(" AND "),
            if computed.is_empty() { "" } else { " OFFSET 0" }
        );
        let computed = computed.concat();
        format!(
            "SELECT {} FROM (SELECT {} FROM {}{filter}) {ROW} WHERE EXISTS (SELECT 1 FROM {groups} WHERE d._dirty AND {}){computed}{}",
            exprs
                .iter()
                .zip(&names)
                .map(|(e, n)| format!("{e} AS {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            inner.join(", "),
            self.relation(),
            key_match("d", &row_keys),
            self.group_by()
        )
    }

    /// Recomputes the non-invertible partials of groups marked dirty by deletes, from the
    /// source. Recomputing is idempotent for them (min, max, sketches), so it is exact at
    /// whatever later snapshot it runs.
    pub(super) fn recompute_dirty(&self) -> Vec<String> {
        if !self.needs_fresh() {
            return Vec::new();
        }
        let recomputed = self.recomputed_partials();
        let state = self.state_table();
        let key_match = |left: &str, right: &[String]| -> String {
            self.key_columns()
                .iter()
                .zip(right)
                .map(|(k, r)| format!("{left}.{k} IS NOT DISTINCT FROM {r}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let fresh = self.fresh_groups(&format!("{state} d"));
        let r_keys: Vec<String> = self
            .key_columns()
            .iter()
            .map(|k| format!("r.{k}"))
            .collect();
        let mut set: Vec<String> = recomputed
            .iter()
            .map(|p| p.column.clone())
            .chain(self.loose_key_columns())
            .map(|c| format!("{c} = r.{c}"))
            .collect();
        set.push("_dirty = false".into());
        let mut emptied: Vec<String> = recomputed
            .iter()
            .map(|p| format!("{} = NULL", p.column))
            .collect();
        emptied.push("_dirty = false".into());
        vec![
            format!(
                "UPDATE {state} s SET {} FROM ({fresh}) r WHERE s._dirty AND {}",
                set.join(", "),
                key_match("s", &r_keys)
            ),
            // groups whose rows are all gone but whose count is still pending elsewhere
            format!("UPDATE {state} SET {} WHERE _dirty", emptied.join(", ")),
        ]
    }
}

/// Whether a rendered key is a plain column reference (`country`, `"p".category`).
fn is_column(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '"' || c == '.' || c == '$')
}

#[cfg(test)]
#[test]
fn plain_column_keys_are_recognized() {
    assert!(is_column("country"));
    assert!(is_column("\"p\".category"));
    assert!(!is_column("lower(country)"));
    assert!(!is_column("\"c\".region || '/' || \"p\".category"));
    assert!(!is_column("a + 1"));
}
