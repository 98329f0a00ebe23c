//! Deltas and how they reach the state, in both modes.
//!
//! Writers only append: each capture statement adds one delta row per query (its partials,
//! packed) and one per count(DISTINCT) (the value multiplicity changes). Writers therefore
//! take no lock on any group. Merging a delta into the state is the only thing that locks
//! groups: compaction (async) or, in immediate mode, a deferred constraint trigger on the
//! delta that runs at commit and merges every immediate query the transaction wrote, in
//! one order (query, then table, then key; see `beacon._cq_merge` in sql/cq.sql). A merging
//! transaction waits only for other merging transactions, each of which holds only locks
//! that come before the one it waits for: the waits cannot form a cycle.

use super::{Mode, PartialColumn, Plan, Rows};
use crate::names::quote_literal;

/// The setting in which a transaction lists the immediate queries it has pending deltas
/// for (`,project.name,…`). Transaction-local (set with `is_local`), so a rolled-back
/// savepoint takes its entries along with its delta rows.
const PENDING_SETTING: &str = "pg_beacon.pending_merges";

impl Plan {
    /// The delta column holding the multiplicity changes of count(DISTINCT) output `i`.
    fn distinct_column(i: usize) -> String {
        format!("_d{i}")
    }

    /// Delta columns added after the first release, in table order: (column, type).
    pub fn distinct_delta_columns(&self) -> Vec<(String, String)> {
        self.distinct_tables()
            .into_iter()
            .map(|(table, i, _)| (Plan::distinct_column(i), format!("{table}[]")))
            .collect()
    }

    /// DDL of the delta table (after the state and distinct tables, whose row types it
    /// holds). Immediate deltas carry their top-level transaction, which merges only its
    /// own (see `create_merge_trigger`).
    pub fn create_delta(&self) -> String {
        let mut columns = vec![
            format!("_rows {}[] NOT NULL", self.state_table()),
            "_at timestamptz NOT NULL DEFAULT pg_catalog.now()".to_string(),
        ];
        if self.mode == super::Mode::Immediate {
            columns.push("_xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id()".into());
        }
        columns.extend(
            self.distinct_delta_columns()
                .into_iter()
                .map(|(c, t)| format!("{c} {t}")),
        );
        format!(
            "CREATE TABLE {} ({})",
            self.delta_table(),
            columns.join(", ")
        )
    }

    /// Compresses the delta's packed partials with lz4 instead of the default pglz: a
    /// 1,000-row statement over 10,000 groups packs ~950 partials into one value, and
    /// pglz compressing it was a tenth of the writer's time. Only for servers built with
    /// lz4 (see `lz4_available`); existing values keep their compression.
    pub fn delta_compression(&self) -> String {
        let columns: Vec<String> = self
            .delta_packed_columns()
            .iter()
            .map(|c| format!("ALTER COLUMN {c} SET COMPRESSION lz4"))
            .collect();
        format!("ALTER TABLE {} {}", self.delta_table(), columns.join(", "))
    }

    /// The delta's columns of packed partials and multiplicities: those worth compressing.
    pub fn delta_packed_columns(&self) -> Vec<String> {
        std::iter::once("_rows".to_string())
            .chain(self.distinct_delta_columns().into_iter().map(|(c, _)| c))
            .collect()
    }

    /// The immediate-mode trigger that merges the deltas at commit.
    pub fn create_merge_trigger(&self) -> String {
        format!(
            "CREATE CONSTRAINT TRIGGER _beacon_merge AFTER INSERT ON {} \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION beacon._cq_merge()",
            self.delta_table()
        )
    }

    /// Appends a statement's value multiplicity changes for each count(DISTINCT) to the
    /// delta; the merge turns them into the 0 ↔ positive transitions of the partial.
    pub(super) fn append_distinct(
        &self,
        from: &str,
        rows: Rows,
        conditions: &[String],
    ) -> Vec<String> {
        let keys = self.key_columns();
        let sign = if rows == Rows::Deleted { "-" } else { "" };
        let key_exprs: Vec<String> = self
            .key_exprs()
            .iter()
            .zip(&keys)
            .map(|(e, k)| format!("{e} AS {k}"))
            .collect();
        let positions: Vec<String> = (1..=keys.len() + 1).map(|i| i.to_string()).collect();
        let x_keys: Vec<String> = keys.iter().map(|k| format!("x.{k}")).collect();
        self.distinct_tables()
            .into_iter()
            .map(|(table, i, arg)| {
                let mut wheres = conditions.to_vec();
                wheres.push(format!("({arg}) IS NOT NULL"));
                format!(
                    "INSERT INTO {delta} (_rows, {column}) \
                     SELECT '{{}}', array_agg(ROW({x_keys}, x.v, x.n)::{table}) \
                       FROM (SELECT {key_exprs}, ({arg}) AS v, {sign}count(*) AS n FROM {from} \
                              WHERE {wheres} GROUP BY {positions}) x HAVING count(*) > 0",
                    delta = self.delta_table(),
                    column = Plan::distinct_column(i),
                    x_keys = x_keys.join(", "),
                    key_exprs = key_exprs.join(", "),
                    wheres = wheres.join(" AND "),
                    positions = positions.join(", "),
                )
            })
            .collect()
    }

    /// Lists this query among the transaction's pending merges (immediate mode): the
    /// first deferred trigger to fire at commit merges every listed query, in order.
    pub(super) fn register_pending(&self) -> String {
        let entry = format!("{}.{}", self.project, self.name);
        let current =
            format!("coalesce(pg_catalog.current_setting('{PENDING_SETTING}', true), '')");
        format!(
            "IF pg_catalog.strpos({current}, {needle}) = 0 THEN \
             PERFORM pg_catalog.set_config('{PENDING_SETTING}', \
             coalesce(nullif({current}, ''), ',') || {entry}, true); END IF",
            needle = quote_literal(&format!(",{entry},")),
            entry = quote_literal(&format!("{entry},")),
        )
    }

    /// One statement that deletes the deltas (all visible ones, or only the current
    /// transaction's) and merges them: multiplicities into the distinct tables, each in
    /// key order, then the partials and the distinct transitions into the state, in key
    /// order. CTEs `u` (the partial rows), `merged` (the state rows written: ctid,
    /// `_count`, `_dirty`) and `w<i>` (distinct rows written: ctid, …, `mult`) are there
    /// for `result`, the statement's final SELECT.
    pub(super) fn merge_deltas(&self, own_only: bool, result: &str) -> String {
        let keys = self.key_columns();
        let key_list = keys.join(", ");
        let distinct = self.distinct_tables();
        let mut returned = vec!["_rows".to_string()];
        returned.extend(distinct.iter().map(|(_, i, _)| Plan::distinct_column(*i)));
        let own = if own_only {
            " WHERE _xid = pg_catalog.pg_current_xact_id()"
        } else {
            ""
        };
        let mut ctes = vec![format!(
            "d AS (DELETE FROM {}{own} RETURNING {})",
            self.delta_table(),
            returned.join(", ")
        )];
        let positions: Vec<String> = (1..=keys.len() + 1).map(|i| i.to_string()).collect();
        let key_positions: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
        let prefixed =
            |alias: &str| -> Vec<String> { keys.iter().map(|k| format!("{alias}.{k}")).collect() };
        let joined = keys
            .iter()
            .map(|k| format!("x.{k} IS NOT DISTINCT FROM w.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns = self.state_columns();
        let mut parts = vec![format!("SELECT {} FROM u", columns.join(", "))];
        for (table, i, _) in &distinct {
            let column = Plan::distinct_column(*i);
            ctes.push(format!(
                "x{i} AS (SELECT {}, r.v, sum(r.mult)::bigint AS n FROM d, unnest(d.{column}) r GROUP BY {})",
                prefixed("r").join(", "),
                positions.join(", ")
            ));
            ctes.push(format!(
                "w{i} AS (INSERT INTO {table} AS t ({key_list}, v, mult) SELECT * FROM x{i} ORDER BY {} \
                 ON CONFLICT ({}) DO UPDATE SET mult = t.mult + excluded.mult \
                 RETURNING t.ctid, {}, t.v, t.mult)",
                positions.join(", "),
                self.distinct_index(*i),
                prefixed("t").join(", ")
            ));
            ctes.push(format!(
                "c{i} AS (SELECT {}, sum(CASE WHEN w.mult > 0 AND w.mult - x.n <= 0 THEN 1 \
                                              WHEN w.mult <= 0 AND w.mult - x.n > 0 THEN -1 ELSE 0 END) AS dd \
                            FROM w{i} w JOIN x{i} x ON x.v = w.v AND {joined} GROUP BY {})",
                prefixed("w")
                    .iter()
                    .zip(&keys)
                    .map(|(w, k)| format!("{w} AS {k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                key_positions.join(", ")
            ));
            parts.push(format!(
                "SELECT {} FROM c{i} c WHERE dd <> 0",
                self.transition_fields(*i, "c.dd", "c").join(", ")
            ));
        }
        ctes.push("u AS (SELECT r.* FROM d, unnest(d._rows) r)".into());
        let mut merged = vec![key_list.clone(), "sum(_count) AS _count".into()];
        merged.extend(self.partial_columns().iter().map(|p: &PartialColumn| {
            format!(
                "{} AS {}",
                p.partial.merge_agg.replace("{a}", &p.column),
                p.column
            )
        }));
        merged.push("bool_or(_dirty) AS _dirty".into());
        let grouped = format!(
            "SELECT {} FROM ({}) m GROUP BY {key_list}",
            merged.join(", "),
            parts.join(" UNION ALL ")
        );
        let upsert = if own_only || !self.needs_fresh() {
            self.upsert_into_state(&columns, &grouped)
        } else {
            ctes.push(format!("g AS ({grouped})"));
            ctes.push(format!("f AS ({})", self.fresh_groups("g d")));
            self.upsert_recomputed()
        };
        ctes.push(format!(
            "merged AS ({upsert} RETURNING s.ctid, s._count, s._dirty)"
        ));
        format!("WITH {} {result}", ctes.join(", "))
    }

    /// Compaction's upsert of the merged groups `g`, whose dirty ones take their
    /// non-subtractable partials from `f`, recomputed from the source in the same
    /// statement: one snapshot sees exactly the rows whose deltas it merges, so a sum
    /// recomputed for a dirty group counts each row once (a later statement would also see
    /// rows committed meanwhile, whose deltas the next compaction merges: twice). The
    /// state is left clean. (Immediate mode merges at commit holding its groups' locks,
    /// and recomputes afterwards: no one else can merge into them meanwhile.)
    fn upsert_recomputed(&self) -> String {
        let keys = self.key_columns();
        let loose = self.loose_key_columns();
        let mut select: Vec<String> = Vec::new();
        let mut assignments = vec!["_count = s._count + excluded._count".to_string()];
        for k in &keys {
            if loose.contains(k) {
                // a remaining row's value of a key whose equal values print differently
                select.push(format!(
                    "CASE WHEN g._dirty AND f._found THEN f.{k} ELSE g.{k} END"
                ));
                assignments.push(format!(
                    "{k} = CASE WHEN excluded._dirty THEN excluded.{k} ELSE s.{k} END"
                ));
            } else {
                select.push(format!("g.{k}"));
            }
        }
        select.push("g._count".into());
        for p in self.partial_columns() {
            let c = &p.column;
            let merge = p
                .partial
                .merge_two
                .replace("{a}", &format!("s.{c}"))
                .replace("{b}", &format!("excluded.{c}"));
            if p.partial.negate.is_none() {
                select.push(format!("CASE WHEN g._dirty THEN f.{c} ELSE g.{c} END"));
                assignments.push(format!(
                    "{c} = CASE WHEN excluded._dirty THEN excluded.{c} ELSE {merge} END"
                ));
            } else {
                select.push(format!("g.{c}"));
                assignments.push(format!("{c} = {merge}"));
            }
        }
        // the proposed row says whether the group is dirty, for the conflict's CASEs; the
        // stored one is clean. A group first written by this merge keeps the flag (its
        // values are already recomputed): its view recomputes it again until the next
        // merge that touches it clears it — correct, only slower
        select.push("g._dirty".into());
        assignments.push("_dirty = false".into());
        let join = keys
            .iter()
            .map(|k| format!("f.{k} IS NOT DISTINCT FROM g.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        format!(
            "INSERT INTO {} AS s ({}) SELECT {} FROM g LEFT JOIN f ON {join} ORDER BY {} \
             ON CONFLICT ({}) DO UPDATE SET {}",
            self.state_table(),
            self.state_columns().join(", "),
            select.join(", "),
            self.key_positions(),
            self.state_index(),
            assignments.join(", ")
        )
    }

    /// A state row (all columns, in order) that adds `value` to distinct partial `i` of
    /// the group in `alias`'s key columns and nothing else.
    fn transition_fields(&self, i: usize, value: &str, alias: &str) -> Vec<String> {
        let keys = self.key_columns();
        let column = format!("a{i}_d");
        self.state_columns()
            .into_iter()
            .map(|c| {
                if keys.contains(&c) {
                    format!("{alias}.{c}")
                } else if c == "_count" {
                    "0::bigint".into()
                } else if c == column {
                    value.to_string()
                } else if c == "_dirty" {
                    "false".into()
                } else {
                    "NULL".into()
                }
            })
            .collect()
    }

    /// For the view: each count(DISTINCT)'s pending multiplicity changes, as state rows
    /// carrying the transitions they make against the distinct table.
    pub(super) fn pending_distinct(&self) -> Vec<String> {
        let keys = self.key_columns();
        let positions: Vec<String> = (1..=keys.len() + 1).map(|i| i.to_string()).collect();
        let key_positions: Vec<String> = (1..=keys.len()).map(|i| i.to_string()).collect();
        let joined = keys
            .iter()
            .map(|k| format!("t.{k} IS NOT DISTINCT FROM p.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        self.distinct_tables()
            .into_iter()
            .map(|(table, i, _)| {
                let r_keys: Vec<String> = keys.iter().map(|k| format!("r.{k}")).collect();
                let p_keys: Vec<String> = keys.iter().map(|k| format!("p.{k}")).collect();
                format!(
                    "SELECT {} FROM (SELECT {}, sum(CASE WHEN coalesce(t.mult, 0) <= 0 AND coalesce(t.mult, 0) + p.n > 0 THEN 1 \
                                                    WHEN coalesce(t.mult, 0) > 0 AND coalesce(t.mult, 0) + p.n <= 0 THEN -1 ELSE 0 END)::bigint AS dd \
                       FROM (SELECT {}, r.v, sum(r.mult) AS n FROM {} d, unnest(d.{}) r GROUP BY {}) p \
                       LEFT JOIN {table} t ON t.v = p.v AND {joined} GROUP BY {}) c",
                    self.transition_fields(i, "c.dd", "c").join(", "),
                    p_keys.iter().zip(&keys).map(|(p, k)| format!("{p} AS {k}")).collect::<Vec<_>>().join(", "),
                    r_keys.join(", "),
                    self.delta_table(),
                    Plan::distinct_column(i),
                    positions.join(", "),
                    key_positions.join(", "),
                )
            })
            .collect()
    }

    /// After a TRUNCATE of the source: the state, distinct tables and deltas emptied.
    pub fn truncate(&self) -> Vec<String> {
        let mut tables = vec![self.state_table()];
        tables.extend(self.distinct_tables().into_iter().map(|(t, _, _)| t));
        let mut statements = vec![format!("TRUNCATE {}", tables.join(", "))];
        match self.mode {
            Mode::Async => statements[0].push_str(&format!(", {}", self.delta_table())),
            // PostgreSQL refuses to truncate a table with pending trigger events (the merge
            // at commit); the source's lock keeps every other writer out meanwhile
            Mode::Immediate => statements.push(format!("DELETE FROM {}", self.delta_table())),
        }
        statements
    }

    pub fn merge_function(&self) -> String {
        self.qualified(&format!("_cq_{}_merge", self.name))
    }

    /// The immediate-mode merge of the current transaction's deltas, called at commit by
    /// `beacon._cq_merge`; it returns the number of partials it merged. Its clean-up touches only rows it has just written (and so
    /// already locked), or the dirty groups of this transaction.
    pub fn create_merge_function(&self, time_zone: &str, settings: &str) -> String {
        let distinct = self.distinct_tables();
        let mut result = vec![
            "(SELECT pg_catalog.array_agg(ctid) FROM merged WHERE _count = 0)".to_string(),
            "coalesce((SELECT bool_or(_dirty) FROM merged), false)".to_string(),
            "(SELECT pg_catalog.count(*) FROM u)".to_string(),
        ];
        let mut into = vec![
            "beacon_empty".to_string(),
            "beacon_dirty".to_string(),
            "beacon_applied".to_string(),
        ];
        let mut declare = String::from(
            "  beacon_empty tid[];\n  beacon_dirty boolean;\n  beacon_applied bigint;\n",
        );
        let mut cleanup = String::new();
        for (table, i, _) in &distinct {
            result.push(format!(
                "(SELECT pg_catalog.array_agg(ctid) FROM w{i} WHERE mult = 0)"
            ));
            into.push(format!("beacon_gone_{i}"));
            declare.push_str(&format!("  beacon_gone_{i} tid[];\n"));
            cleanup.push_str(&format!(
                "  IF beacon_gone_{i} IS NOT NULL THEN DELETE FROM {table} WHERE ctid = ANY (beacon_gone_{i}); END IF;\n"
            ));
        }
        let merge = self.merge_deltas(
            true,
            &format!("SELECT {} INTO {}", result.join(", "), into.join(", ")),
        );
        let recompute: String = self
            .recompute_dirty()
            .iter()
            .map(|s| format!("    {s};\n"))
            .collect();
        let body = format!(
            // user expressions in the recompute may name columns like the variables
            "#variable_conflict use_column\nDECLARE\n{declare}BEGIN\n  {merge};\n  \
             IF beacon_empty IS NOT NULL THEN DELETE FROM {state} WHERE ctid = ANY (beacon_empty); END IF;\n  \
             IF beacon_dirty THEN\n{recompute}  END IF;\n{cleanup}  RETURN beacon_applied;\nEND",
            state = self.state_table(),
        );
        // the query's zone as a SET clause: set once per call by PostgreSQL itself, not by
        // one more statement at every commit
        format!(
            "CREATE OR REPLACE FUNCTION {}() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER {settings} \
             SET TimeZone = {} AS {}",
            self.merge_function(),
            quote_literal(time_zone),
            crate::names::dollar_quote(&crate::generated::stamp(&body))
        )
    }
}
