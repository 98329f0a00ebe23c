//! The statements of continuous funnels and retention (pure text), built from the same
//! parts as the on-demand statements (`sql`), so that both agree by construction.
//!
//! The state of an analysis holds one row per *entering event* (every step-1 event of a
//! funnel, every first-action event of retention) of each user: its time, the time of
//! the user's previous entering event (`prev`), its breakdown value, and what follows
//! from it (the funnel's steps reached and the time between them; the periods of
//! retention's returning events and the earliest one at or after it in each). A range
//! `[from, to)` enters each user at their first entering event in it, which is the one
//! row with `from <= t < to` whose `prev` is NULL or before `from`: reading is a scan
//! of a GiST index on `span` (`entry_range`) that yields at most one row per user, whatever the range.

use super::sql::{
    breakdown_parts, chain, events, funnel_result, period_start, retention_result, Breakdown,
    Period, Range, Source, Window,
};

/// The breakdown value of an entering event `e`, as stored: a profile's is read at
/// reading time instead (the user's current profile, as the on-demand functions do).
fn stored_breakdown(project: &str, breakdown: Option<&Breakdown>) -> (String, String) {
    match breakdown {
        Some(Breakdown::User(_)) | None => ("NULL::text".into(), String::new()),
        event => breakdown_parts(project, event),
    }
}

/// The breakdown value of a state row `s` at reading time, and the join it needs.
fn read_breakdown(project: &str, breakdown: Option<&Breakdown>) -> (String, String) {
    match breakdown {
        Some(Breakdown::User(column)) => (
            format!("usr.{column}::text"),
            format!(" LEFT JOIN {project}.\"_users\" AS usr ON usr.id = s.u"),
        ),
        Some(Breakdown::Event(_)) => ("s.b".into(), String::new()),
        None => ("NULL::text".into(), String::new()),
    }
}

/// The entering events of `source` of the users `users` selects (an SQL condition on
/// `e._user`), each with the time of the user's previous one.
fn entering(project: &str, source: &Source, users: &str, breakdown: Option<&Breakdown>) -> String {
    let (b, join) = stored_breakdown(project, breakdown);
    format!(
        "SELECT e._user AS u, e._id AS e0, e._time AS t0, e._time AS t, e._id AS id, {b} AS b, \
                lag(e._time) OVER (PARTITION BY e._user ORDER BY e._time, e._id) AS prev \
           FROM {table} AS e{join} WHERE {users}",
        table = events(source),
    )
}

/// The state table of a funnel.
pub fn funnel_table(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (u text NOT NULL, e0 bigint NOT NULL, t0 timestamptz NOT NULL, \
         prev timestamptz, span tstzrange NOT NULL, b text, reached integer NOT NULL, \
         dts interval[] NOT NULL, \
         PRIMARY KEY (u, e0))"
    )
}

/// The state table of retention: `ns` the periods (from the cohort's) of returning
/// events at or after the entering one, `ts` the earliest such event in each.
pub fn retention_table(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (u text NOT NULL, e0 bigint NOT NULL, t0 timestamptz NOT NULL, \
         prev timestamptz, span tstzrange NOT NULL, b text, cohort date NOT NULL, ns integer[] NOT NULL, \
         ts timestamptz[] NOT NULL, PRIMARY KEY (u, e0))"
    )
}

/// Inserts into `table` the funnel's state rows of the users `users` selects.
pub fn funnel_recompute(
    project: &str,
    table: &str,
    steps: &[Source],
    window: &Window,
    zone: &str,
    breakdown: Option<&Breakdown>,
    users: &str,
) -> String {
    let mut ctes = vec![format!(
        "s1 AS ({})",
        entering(project, &steps[0], users, breakdown)
    )];
    ctes.extend(chain(steps, window, zone, "p.e0"));
    let joins: String = (2..=steps.len())
        .map(|n| format!(" LEFT JOIN s{n} ON s{n}.e0 = s1.e0"))
        .collect();
    let reached: String = (2..=steps.len())
        .map(|n| format!(" + (s{n}.e0 IS NOT NULL)::int4"))
        .collect();
    let dts: Vec<String> = (2..=steps.len()).map(|n| format!("s{n}.dt")).collect();
    let dts = if dts.is_empty() {
        "'{}'::interval[]".to_string()
    } else {
        format!("array_remove(ARRAY[{}]::interval[], NULL)", dts.join(", "))
    };
    format!(
        "INSERT INTO {table} (u, e0, t0, prev, span, b, reached, dts) \
         WITH {} SELECT s1.u, s1.e0, s1.t0, s1.prev, {}, s1.b, 1{reached}, {dts} FROM s1{joins}",
        ctes.join(", "),
        entry_range("s1.")
    )
}

/// The times for which a state row is the user's first entering event at or after them:
/// `(prev, t0]` (unbounded below for the user's first). For each user these ranges
/// partition time, so the entering rows of `[from, to)` are those whose range contains
/// `from`, with `t0 < to`: indexes on it (`state_indexes`) find them (at most one per
/// user) without reading the other entering events.
pub fn entry_range(prefix: &str) -> String {
    format!("tstzrange({prefix}prev, {prefix}t0, '(]')")
}

/// The indexes of a state table for reading it: `covering` the columns a read needs
/// (the funnel's; retention's arrays can be too long for an index entry).
pub fn state_indexes(table: &str, covering: &str) -> [String; 2] {
    let include = if covering.is_empty() {
        String::new()
    } else {
        format!(" INCLUDE ({covering})")
    };
    [
        format!("CREATE INDEX ON {table} (t0){include} WHERE prev IS NULL"),
        format!(
            "CREATE INDEX ON {table} USING gist (span){} WHERE prev IS NOT NULL",
            if covering.is_empty() {
                String::new()
            } else {
                format!(" INCLUDE (t0, {covering})")
            }
        ),
    ]
}

/// The entering rows of a state table `s` for a range, as the CTE `en`.
fn entered(
    project: &str,
    table: &str,
    range: &Range,
    breakdown: Option<&Breakdown>,
    columns: &str,
) -> String {
    let (b, join) = read_breakdown(project, breakdown);
    // a user's first entering event (its span unbounded below) by its time; the others
    // (short spans) by their span: each branch is one index's scan (`state_indexes`)
    format!(
        "en AS (SELECT s.u, {b} AS b, {columns} FROM {table} AS s{join} \
                 WHERE s.prev IS NULL AND s.t0 >= {from} AND s.t0 < {to} \
                UNION ALL \
                SELECT s.u, {b} AS b, {columns} FROM {table} AS s{join} \
                 WHERE s.prev IS NOT NULL AND s.span @> {from} AND s.t0 < {to})",
        from = range.from,
        to = range.to,
    )
}

/// The funnel's rows for a range, from its state table: the same rows as `sql::funnel`.
pub fn funnel_read(
    project: &str,
    table: &str,
    steps: &[Source],
    range: &Range,
    breakdown: Option<&Breakdown>,
) -> String {
    let ctes = vec![entered(
        project,
        table,
        range,
        breakdown,
        "s.reached, s.dts",
    )];
    let mut counts = vec![
        "SELECT 1 AS step, b, count(*) AS users, NULL::interval AS median FROM en GROUP BY b"
            .to_string(),
    ];
    for n in 2..=steps.len() {
        counts.push(format!(
            "SELECT {n}, b, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY dts[{}]) \
               FROM en WHERE reached >= {n} GROUP BY b",
            n - 1
        ));
    }
    funnel_result(ctes, &counts, steps, breakdown.is_some(), "en")
}

/// Inserts into `table` retention's state rows of the users `users` selects.
#[allow(clippy::too_many_arguments)]
pub fn retention_recompute(
    project: &str,
    table: &str,
    first: &Source,
    returning: &Source,
    period: Period,
    zone: &str,
    breakdown: Option<&Breakdown>,
    users: &str,
) -> String {
    let cohort = period_start(period, "f.t0", zone);
    let returned = period_start(period, "e._time", zone);
    format!(
        "INSERT INTO {table} (u, e0, t0, prev, span, b, cohort, ns, ts) \
         WITH f AS ({firsts}), \
         r AS (SELECT f.e0, {n} AS n, min(e._time) AS t \
                 FROM f JOIN {returns} AS e ON e._user = f.u \
                WHERE e._time >= f.t0 GROUP BY 1, 2), \
         x AS (SELECT r.e0, array_agg(r.n ORDER BY r.n) AS ns, array_agg(r.t ORDER BY r.n) AS ts \
                 FROM r GROUP BY r.e0) \
         SELECT f.u, f.e0, f.t0, f.prev, {span}, f.b, {cohort}, \
                coalesce(x.ns, '{{}}'), coalesce(x.ts, '{{}}') \
           FROM f LEFT JOIN x ON x.e0 = f.e0",
        firsts = entering(project, first, users, breakdown),
        n = period.between(&cohort, &returned),
        returns = events(returning),
        span = entry_range("f."),
    )
}

/// Retention's rows for a range, from its state table: the same rows as `sql::retention`.
pub fn retention_read(
    project: &str,
    table: &str,
    period: Period,
    range: &Range,
    breakdown: Option<&Breakdown>,
) -> String {
    let ctes = format!(
        "{}, \
         sizes AS (SELECT cohort, b, count(*) AS size FROM en GROUP BY 1, 2), \
         counts AS (SELECT en.cohort, en.b, x.n, count(*) AS users \
                      FROM en CROSS JOIN LATERAL unnest(en.ns, en.ts) AS x (n, t) \
                     WHERE x.t < {to} GROUP BY 1, 2, 3)",
        entered(project, table, range, breakdown, "s.cohort, s.ns, s.ts"),
        to = range.to,
    );
    retention_result(&ctes, period, range)
}

/// The generated functions' names and tables of analysis `name`.
pub struct Names {
    pub project: String,
    pub name: String,
}

impl Names {
    fn object(&self, suffix: &str) -> String {
        format!(
            "{}.{}",
            crate::names::quote_ident(&self.project),
            crate::names::quote_ident(&format!("_ca_{}{suffix}", self.name))
        )
    }
    pub fn state(&self) -> String {
        self.object("")
    }
    pub fn pending(&self) -> String {
        self.object("_pending")
    }
    pub fn users(&self) -> String {
        self.object("_users")
    }
    pub fn function(&self, suffix: &str) -> String {
        self.object(&format!("_{suffix}"))
    }
    pub fn trigger(&self, event: &str) -> String {
        crate::names::quote_ident(&format!("_ca_{}_{event}", self.name))
    }
    /// The relations that must not exist before creation (unquoted).
    pub fn relations(&self) -> Vec<String> {
        ["", "_pending", "_users"]
            .iter()
            .map(|s| format!("_ca_{}{s}", self.name))
            .collect()
    }
}

/// `_recompute(users text[])`: the state rows of those users rebuilt from their events.
/// The users' rows of the users table are upserted first, in order: the row lock orders
/// two writers of one user (the second rebuilds after the first committed, with a new
/// snapshot), and under REPEATABLE READ a user another transaction rebuilt since the
/// snapshot is a serialization failure, not a rebuild from stale data.
pub fn recompute_body(names: &Names, insert: &str) -> String {
    format!(
        "DECLARE\n  \"beacon rows\" bigint;\nBEGIN\n  IF users IS NULL OR pg_catalog.cardinality(users) = 0 THEN\n    RETURN 0;\n  END IF;\n  \
         INSERT INTO {u} AS x (u, version) SELECT DISTINCT v, 1 FROM pg_catalog.unnest(users) AS v WHERE v IS NOT NULL ORDER BY v \
         ON CONFLICT (u) DO UPDATE SET version = x.version OPERATOR(pg_catalog.+) 1;\n  \
         DELETE FROM {s} WHERE u OPERATOR(pg_catalog.=) ANY (users);\n  \
         {insert};\n  GET DIAGNOSTICS \"beacon rows\" = ROW_COUNT;\n  RETURN \"beacon rows\";\nEND",
        u = names.users(),
        s = names.state(),
    )
}

/// `_refresh(batch integer)`: takes up to `batch` pending entries and rebuilds their
/// users (with a snapshot taken after the entries were seen); returns how many it took.
pub fn refresh_body(names: &Names) -> String {
    format!(
        "DECLARE\n  taken text[];\n  n bigint;\nBEGIN\n  \
         WITH d AS (DELETE FROM {p} WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM {p} LIMIT batch)) RETURNING u) \
         SELECT pg_catalog.array_agg(DISTINCT d.u), pg_catalog.count(*) INTO taken, n FROM d;\n  \
         PERFORM {r}(taken);\n  RETURN n;\nEND",
        p = names.pending(),
        r = names.function("recompute"),
    )
}

/// `_rebuild_all()`: every user with an event of the entering collection, and every user
/// with state.
pub fn rebuild_all_body(names: &Names, entering_table: &str) -> String {
    format!(
        "BEGIN\n  RETURN {r}(ARRAY(SELECT e._user FROM {entering_table} AS e WHERE e._user IS NOT NULL \
         UNION SELECT s.u FROM {s} AS s));\nEND",
        r = names.function("recompute"),
        s = names.state(),
    )
}

/// The capture function of every collection the analysis reads: the users of the
/// statement's rows are pending (async) or rebuilt now (immediate); TRUNCATE makes every
/// user with state pending, or rebuilds them.
pub fn capture_body(names: &Names, immediate: bool) -> String {
    let users =
        |rows: &str| format!("SELECT r._user AS u FROM {rows} AS r WHERE r._user IS NOT NULL");
    let apply = |set: &str| {
        if immediate {
            format!(
                "PERFORM {}(ARRAY(SELECT DISTINCT x.u FROM ({set}) AS x))",
                names.function("recompute")
            )
        } else {
            format!(
                "INSERT INTO {} (u) SELECT DISTINCT x.u FROM ({set}) AS x",
                names.pending()
            )
        }
    };
    format!(
        "BEGIN\n  IF TG_OP = 'INSERT' THEN\n    {};\n  ELSIF TG_OP = 'UPDATE' THEN\n    {};\n  \
         ELSIF TG_OP = 'DELETE' THEN\n    {};\n  ELSE\n    {};\n  END IF;\n  RETURN NULL;\nEND",
        apply(&users("beacon_new")),
        apply(&format!(
            "{} UNION {}",
            users("beacon_old"),
            users("beacon_new")
        )),
        apply(&users("beacon_old")),
        apply(&format!("SELECT s.u FROM {} AS s", names.state())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(collection: &str, condition: Option<&str>) -> Source {
        Source {
            table: format!("\"p\".\"{collection}\""),
            collection: collection.into(),
            condition: condition.map(String::from),
        }
    }

    fn range() -> Range {
        Range {
            from: "'2024-01-01T00:00:00.000000+00'::timestamptz".into(),
            to: "'2024-02-01T00:00:00.000000+00'::timestamptz".into(),
            zone: "'UTC'".into(),
        }
    }

    fn window() -> Window {
        Window {
            calendar: None,
            elapsed: "make_interval(secs => 60.000000)".into(),
        }
    }

    #[test]
    fn recompute_chains_every_entering_event() {
        let sql = funnel_recompute(
            "\"p\"",
            "\"p\".\"_ca_f\"",
            &[
                source("a", Some("\"x\" > 1")),
                source("a", None),
                source("b", None),
            ],
            &window(),
            "'UTC'",
            Some(&Breakdown::Event("\"plan\"".into())),
            "e._user = ANY (users)",
        );
        // one chain per entering event, not per user
        assert!(sql.contains("DISTINCT ON (p.e0)"), "{sql}");
        assert!(
            sql.contains("lag(e._time) OVER (PARTITION BY e._user ORDER BY e._time, e._id)"),
            "{sql}"
        );
        assert!(
            sql.contains("FROM (SELECT * FROM \"p\".\"a\" WHERE (\"x\" > 1)) AS e"),
            "{sql}"
        );
        assert!(sql.contains("e.\"plan\"::text AS b"), "{sql}");
        assert!(
            sql.contains("1 + (s2.e0 IS NOT NULL)::int4 + (s3.e0 IS NOT NULL)::int4"),
            "{sql}"
        );
        assert!(sql.contains("AND (e._time > p.t OR e._id > p.id)"), "{sql}");
    }

    #[test]
    fn reading_enters_at_the_first_event_in_the_range() {
        let sql = funnel_read(
            "\"p\"",
            "\"p\".\"_ca_f\"",
            &[source("a", None), source("b", None)],
            &range(),
            Some(&Breakdown::User("\"plan\"".into())),
        );
        assert!(
            sql.contains(
                "s.prev IS NOT NULL AND s.span @> '2024-01-01T00:00:00.000000+00'::timestamptz AND s.t0 < '2024-02-01"
            ),
            "{sql}"
        );
        assert!(sql.contains("usr.\"plan\"::text AS b"), "{sql}");
        assert!(sql.contains("ORDER BY dts[1]"), "{sql}");
        let single = funnel_recompute(
            "\"p\"",
            "t",
            &[source("a", None)],
            &window(),
            "'UTC'",
            Some(&Breakdown::User("\"plan\"".into())),
            "true",
        );
        // a profile is read when reading, not stored
        assert!(single.contains("NULL::text AS b"), "{single}");
        assert!(single.contains("'{}'::interval[]"), "{single}");
    }

    #[test]
    fn retention_keeps_the_earliest_return_per_period() {
        let sql = retention_recompute(
            "\"p\"",
            "t",
            &source("a", None),
            &source("b", None),
            Period::Day,
            "'UTC'",
            None,
            "true",
        );
        assert!(sql.contains("min(e._time) AS t"), "{sql}");
        assert!(sql.contains("WHERE e._time >= f.t0 GROUP BY 1, 2"), "{sql}");
        let read = retention_read("\"p\"", "t", Period::Week, &range(), None);
        assert!(read.contains("unnest(en.ns, en.ts)"), "{read}");
        assert!(read.contains("WHERE x.t < '2024-02-01"), "{read}");
    }

    #[test]
    fn captures_mark_or_rebuild_the_users_of_the_rows() {
        let names = Names {
            project: "p".into(),
            name: "f".into(),
        };
        let body = capture_body(&names, false);
        assert!(
            body.contains("INSERT INTO \"p\".\"_ca_f_pending\" (u)"),
            "{body}"
        );
        assert!(
            body.contains("beacon_old AS r WHERE r._user IS NOT NULL UNION"),
            "{body}"
        );
        let body = capture_body(&names, true);
        assert!(
            body.contains("PERFORM \"p\".\"_ca_f_recompute\"(ARRAY("),
            "{body}"
        );
        let body = recompute_body(&names, "INSERT x");
        assert!(
            body.contains("ORDER BY v ON CONFLICT (u) DO UPDATE"),
            "{body}"
        );
    }
}
